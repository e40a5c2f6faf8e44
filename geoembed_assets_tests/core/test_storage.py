"""Durable store + local scratch (core/storage.py), on fsspec's in-memory file system (the S3 server test is in ops/)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest

from geoembed_assets.core.safe_paths import UnsafePathError
from geoembed_assets.core.storage import Store, default_cache_dir, is_remote
from geoembed_assets.resources import GeoembedStorage


def memory_root() -> str:
    return f"memory://geoembed-test-{uuid.uuid4().hex[:8]}/root"


def test_local_root_is_its_own_scratch_and_transfers_are_no_ops(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    assert not store.remote and store.scratch == tmp_path / "data"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a")
    assert store.commit([tmp_path / "data" / "a.txt"]) == [] and store.fetch([tmp_path / "data" / "b"]) == []
    assert store.url(tmp_path / "data" / "a.txt") == str(tmp_path / "data" / "a.txt")
    assert store.to_store("/x/y") == "/x/y" and Store("data").scratch == Path("data")  # spelled as given
    storage = GeoembedStorage(data_dir=str(tmp_path / "data"))
    frame = pd.DataFrame({"path": [str(tmp_path / "data" / "a.txt")]})
    assert storage.portable(frame) is frame and storage.localize(frame) is frame and storage.local_dir == tmp_path / "data"


def test_commit_fetch_and_respelled_paths(tmp_path: Path) -> None:
    root = memory_root()
    writer = Store(root, tmp_path / "w1")
    assert writer.remote and is_remote(root) and not is_remote("file:///tmp/x")
    chip = writer.scratch / "chips" / "dqd" / "dqdnn" / "s1.tif"
    chip.parent.mkdir(parents=True)
    chip.write_bytes(b"pixels")
    assert writer.commit([writer.scratch / "chips"]) == [f"{root}/chips/dqd/dqdnn/s1.tif"]
    assert writer.commit([chip]) == []  # unchanged: not uploaded again
    url = writer.to_store(str(chip))
    assert url == f"{root}/chips/dqd/dqdnn/s1.tif" and writer.url(chip) == url
    assert writer.to_store(f"/vsizip/{writer.scratch}/landing/x.zip/B01.jp2") == f"/vsizip/{root}/landing/x.zip/B01.jp2"

    reader = Store(root, tmp_path / "w2")  # another worker, empty scratch
    local = Path(reader.to_local(url))
    assert local == reader.scratch / "chips" / "dqd" / "dqdnn" / "s1.tif" and not local.exists()
    assert reader.fetch([local, reader.scratch / "missing.txt"]) == [local] and local.read_bytes() == b"pixels"
    assert reader.fetch([local]) == []  # unchanged: not downloaded again
    assert reader.fetch_tree("chips") == [] and Store(root, tmp_path / "w3").fetch_tree("chips", "nothing") != []
    with pytest.raises(UnsafePathError):
        reader.to_local(f"{root}/../elsewhere/x")
    with pytest.raises(UnsafePathError):
        reader.relative(tmp_path / "outside.txt")


def test_mirror_deletes_what_a_rebuild_dropped(tmp_path: Path) -> None:
    store = Store(memory_root(), tmp_path / "s")
    catalog = store.scratch / "catalog"
    (catalog / "a").mkdir(parents=True)
    (catalog / "a" / "item.json").write_text("{}")
    (catalog / "catalog.json").write_text("{}")
    store.mirror(catalog)
    (catalog / "a" / "item.json").unlink()
    written, deleted = store.mirror(catalog)
    assert written == [] and deleted == [f"{store.root}/catalog/a/item.json"]


def test_storage_resource_scratch_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEOEMBED_CACHE_DIR", raising=False)
    assert GeoembedStorage(data_dir="s3://b/p").local_dir == default_cache_dir("s3://b/p")
    monkeypatch.setenv("GEOEMBED_CACHE_DIR", str(tmp_path / "env"))
    assert GeoembedStorage(data_dir="s3://b/p").local_dir == tmp_path / "env"
    assert GeoembedStorage(data_dir="s3://b/p", cache_dir=str(tmp_path / "c")).chips_dir == tmp_path / "c" / "chips"
    monkeypatch.setenv("GEOEMBED_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    assert GeoembedStorage(data_dir="s3://b/p").upath().storage_options["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9"
