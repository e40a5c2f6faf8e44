"""STAC Items of what the pipeline reads and writes: source scenes, VAE checkpoints (MLM) and embeddings (emb).

MLM fields are built with stac-model (validated pydantic objects) and written through pystac; stac-model 0.7.0
announces MLM v1.6.0, whose schema is not published offline, so Items announce v1.5.2 (its output validates
against it). Items are STAC 1.0.0 because the embeddings extension v0.0.1 pins the 1.0.0 Item schema; bands are
described with eo v1.1.0 `eo:bands` on the model asset, as MLM requires for STAC 1.0 bands.

A builder returns a :class:`Built`: the Item plus the ids of the Items it links to, which the catalog resolves
once every Item exists (a link to an Item that is not in the catalog is dropped, never left dangling).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pystac
import shapely
import torch
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.file import FileExtension
from shapely import wkt
from shapely.geometry import box, mapping
from stac_model.base import ProcessingExpression
from stac_model.input import InputStructure, ModelInput, ValueScalingZScore
from stac_model.output import ModelOutput, ModelResult
from stac_model.schema import SCHEMA_URI as STAC_MODEL_MLM_URI
from stac_model.schema import MLModelExtension, MLModelProperties, ModelHyperParameters

from geoembed_assets.core.checkpoints import CheckpointError, checkpoint_path, load_checkpoint
from geoembed_assets.core.safe_paths import UnsafePathError
from geoembed_assets.core.geohash_grid import cell_bounds
from geoembed_assets.core.scene import Scene

STAC_VERSION = "1.0.0"
MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.5.2/schema.json"
EMB_SCHEMA = "https://stac-extensions.github.io/embeddings/v0.0.1/schema.json"
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
PYTORCH_MEDIA_TYPE = "application/octet-stream; framework=pytorch"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
SCENES_COLLECTION = "scenes"
EMBEDDINGS_COLLECTION = "embeddings"
EMB_MODEL_REL = "emb:model"
EMB_SOURCE_REL = "emb:source-data"
# Every band of the sensors the readers know: (eo common name, centre wavelength um, full width at half max um).
# Sentinel-2 MSI (S2A spectral response, ESA), Landsat-8 OLI/TIRS (USGS). Common names are eo v1.1.0's
# (its enum has one "rededge" for the three red-edge bands; STAC 1.1's rededge071/075/078 would not validate).
SENSOR_BANDS: dict[str, dict[str, tuple[str, float, float]]] = {
    "sentinel-2": {
        "B01": ("coastal", 0.443, 0.027), "B02": ("blue", 0.490, 0.098), "B03": ("green", 0.560, 0.045),
        "B04": ("red", 0.665, 0.038), "B05": ("rededge", 0.705, 0.019), "B06": ("rededge", 0.740, 0.018),
        "B07": ("rededge", 0.783, 0.028), "B08": ("nir", 0.842, 0.145), "B8A": ("nir08", 0.865, 0.033),
        "B09": ("nir09", 0.945, 0.026), "B10": ("cirrus", 1.375, 0.075), "B11": ("swir16", 1.610, 0.143),
        "B12": ("swir22", 2.190, 0.242),
    },
    "landsat-8": {
        "B1": ("coastal", 0.443, 0.016), "B2": ("blue", 0.482, 0.060), "B3": ("green", 0.561, 0.057),
        "B4": ("red", 0.655, 0.037), "B5": ("nir08", 0.865, 0.028), "B6": ("swir16", 1.609, 0.085),
        "B7": ("swir22", 2.201, 0.187), "B8": ("pan", 0.590, 0.172), "B9": ("cirrus", 1.373, 0.020),
        "B10": ("lwir11", 10.895, 0.590), "B11": ("lwir12", 12.005, 1.010),
    },
}  # fmt: skip


@dataclass
class Built:
    """An Item and the (rel, target Item id) links it should carry once the target is in the catalog."""

    item: pystac.Item
    links: list[tuple[str, str]] = field(default_factory=list)


def multihash_sha256(path: str | Path) -> str:
    """`file:checksum` value: multihash of SHA2-256 (code 0x12, length 0x20) in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "1220" + digest.hexdigest()


def _describe_file(asset: pystac.Asset, path: Path) -> None:
    FileExtension.ext(asset, add_if_missing=True).apply(size=path.stat().st_size, checksum=multihash_sha256(path))


def sensor_bands(sensor: str) -> dict[str, tuple[str, float, float]]:
    """{band: (common name, centre wavelength um, FWHM um)} of a sensor family ("sentinel-2a" -> Sentinel-2)."""
    for family, bands in SENSOR_BANDS.items():
        if sensor.lower().startswith(family):
            return bands
    return {}


def eo_bands(names: list[str], sensor: str) -> list[Band]:
    """eo:bands of `names`: common name, centre wavelength and width where the sensor's band is known."""
    table = sensor_bands(sensor)
    out = []
    for name in names:
        known = table.get(name)
        out.append(
            Band.create(name=name, common_name=known[0], center_wavelength=known[1], full_width_half_max=known[2])
            if known else Band.create(name=name)
        )  # fmt: skip
    return out


def _describe_bands(asset: pystac.Asset, names: list[str], sensor: str) -> None:
    """eo:bands of every band, with its common name and centre wavelength (all 13 Sentinel-2 bands, Landsat-8)."""
    EOExtension.ext(asset, add_if_missing=True).bands = eo_bands(names, sensor)


def _geometry(shape: shapely.Geometry) -> tuple[dict[str, Any], list[float]]:
    return mapping(shape), [float(v) for v in shape.bounds]


def as_utc(value: str | datetime) -> datetime:
    """A timezone-aware datetime from an ISO string or datetime; naive values are taken as UTC."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def scene_item(scene: Scene) -> Built:
    """A delivered scene: footprint, acquisition time, sensor, and its bands on the delivered source."""
    meta = scene.to_metadata()
    geometry, bbox = _geometry(wkt.loads(meta["footprint_wkt"]))
    item = pystac.Item(
        id=meta["scene_id"],
        geometry=geometry,
        bbox=bbox,
        datetime=as_utc(meta["datetime"]),
        properties={
            "platform": meta["sensor"], "geoembed:product_type": meta["product_type"], "geoembed:crs": meta["crs"]
        },  # fmt: skip
        collection=SCENES_COLLECTION,
    )
    if meta["cloud_cover"] is not None:
        EOExtension.ext(item, add_if_missing=True).cloud_cover = meta["cloud_cover"]
    source = pystac.Asset(href=str(Path(meta["source"]).resolve()), title="delivered scene", roles=["data", "source"])
    item.add_asset("source", source)
    _describe_bands(source, scene.band_names, scene.sensor)
    return Built(item)


def _publish_mlm(item: pystac.Item, properties: MLModelProperties) -> None:
    """Apply MLM fields with stac-model, then announce the vendored v1.5.2 schema instead of stac-model's."""
    MLModelExtension.ext(item, add_if_missing=True).apply(properties)
    item.stac_extensions = [MLM_SCHEMA if url == STAC_MODEL_MLM_URI else url for url in item.stac_extensions]
    item.properties["mlm:tasks"] = sorted(item.properties["mlm:tasks"])  # sets in stac-model: sort for stable JSON
    for output in item.properties["mlm:output"]:
        output["tasks"] = sorted(output["tasks"])


def vae_properties(ckpt_path: Path) -> tuple[MLModelProperties, dict[str, Any]]:
    """MLM properties of a VAE checkpoint (inputs, outputs, scaling, hyper-parameters) and its meta."""
    ckpt = load_checkpoint(ckpt_path)
    meta, cfg = ckpt.meta, ckpt.model.config
    bands = list(ckpt.band_names)
    spatial = cfg.architecture == "spatial"
    image = [-1, cfg.in_channels, -1, -1] if spatial else [-1, cfg.in_channels, cfg.patch_size, cfg.patch_size]
    image_dims = ["batch", "bands", "height", "width"]
    model_input = ModelInput(
        name="reflectance chip" if spatial else "reflectance patches",
        bands=bands,
        input=InputStructure(shape=image, dim_order=image_dims, data_type="float32"),
        value_scaling=[
            ValueScalingZScore(mean=float(m), stddev=float(s))
            for m, s in zip(ckpt.normalizer.mean, ckpt.normalizer.std, strict=True)
        ],
        resize_type=None,
        pre_processing_function=ProcessingExpression(
            format="python",
            expression="geoembed_assets.core.codec:encode_chip",
            description=(
                f"a whole cell chip (EPSG:4326 geohash grid, sides padded to multiples of {cfg.factor}); "
                if spatial else f"square {cfg.patch_size}-px patches of a cell chip; "
            ) + "no-data (NaN) is set to 0 after z-scoring; the latent is stored as int8 with a scale per channel",
        ),
    )
    latent = (
        ModelResult(shape=[-1, cfg.latent_dim, -1, -1], dim_order=["batch", "channel", "height", "width"], data_type="float32")
        if spatial
        else ModelResult(shape=[-1, cfg.latent_dim], dim_order=["batch", "embedding"], data_type="float32")
    )
    outputs = [
        ModelOutput(name="latent mean" + (f" grid (1/{cfg.factor} of the pixel grid)" if spatial else ""),
                    tasks={"similarity-search"}, result=latent),
        ModelOutput(
            name="reconstruction",
            tasks={"generative"},
            bands=bands,
            result=ModelResult(shape=image, dim_order=image_dims, data_type="float32"),
        ),
    ]  # fmt: skip
    device = str(meta.get("device", "cpu"))
    parent = meta.get("parent") or meta.get("donor")  # a previous version, or another region's model (transfer)
    properties = MLModelProperties(
        name=f"geoembed VAE {ckpt.checkpoint_id}",
        architecture=f"VAE ({cfg.architecture}: {'latent grid' if cfg.architecture == 'spatial' else 'one vector per patch'})",
        tasks={"similarity-search", "generative"},
        framework="pytorch",
        framework_version=torch.__version__,
        total_parameters=sum(p.numel() for p in ckpt.model.parameters()),
        pretrained=parent is not None,
        pretrained_source=parent,
        accelerator="cuda" if device.startswith("cuda") else "amd64",
        accelerator_constrained=False,
        accelerator_summary=f"trained on {device}",
        hyperparameters=ModelHyperParameters(**meta["training"], epochs_run=meta.get("epochs")),
        input=[model_input],
        output=outputs,
    )
    return properties, meta


def vae_item(ckpt_path: str | Path) -> Built:
    """MLM Item of one cell's VAE checkpoint: the cell polygon, its training period, the .pt asset."""
    ckpt_path = Path(ckpt_path)
    properties, meta = vae_properties(ckpt_path)
    cells = meta.get("cells") or [meta["geohash"]]
    geometry, bbox = _geometry(shapely.union_all([box(*cell_bounds(g)) for g in cells]))
    extra = {
        "description": f"Convolutional VAE of geohash {'region' if len(cells) > 1 else 'cell'} {meta['geohash']}, "
        f"version {meta.get('version', 1)}, shared by {len(cells)} cell(s) ({meta['sensor']}, bands "
        f"{', '.join(meta['bands'])})",
        "created": meta.get("created"),
        "version": str(meta.get("version", 1)),
        "geoembed:geohash": meta["geohash"],
        "geoembed:cells": cells,
        "geoembed:sensor": meta["sensor"],
        "geoembed:train_mse": meta.get("train_mse"),
        "geoembed:holdout_mse": meta.get("holdout_mse"),
    }
    item = pystac.Item(
        id=ckpt_path.stem,
        geometry=geometry,
        bbox=bbox,
        datetime=None,
        start_datetime=as_utc(meta["start_datetime"]),
        end_datetime=as_utc(meta["end_datetime"]),
        properties={k: v for k, v in extra.items() if v is not None and v == v},  # v != v: NaN (no holdout)
    )
    model = pystac.Asset(
        href=str(ckpt_path.resolve()),
        title="state_dict, VAE config and normalizer (torch.save; load with weights_only=True)",
        media_type=PYTORCH_MEDIA_TYPE,
        roles=["mlm:model", "mlm:checkpoint", "checkpoint"],
        extra_fields={"mlm:artifact_type": "torch.save"},
    )
    item.add_asset("model", model)
    try:
        thumbnail = model_thumbnail(ckpt_path)
    except Exception as exc:  # noqa: BLE001 - a picture must not cost the catalog its Item (tests check it exists)
        logging.getLogger(__name__).warning(f"no thumbnail for {ckpt_path.name}: {type(exc).__name__}: {exc}")
        thumbnail = None
    if thumbnail is not None:
        item.add_asset(
            "thumbnail",
            pystac.Asset(href=str(thumbnail.resolve()), title="a chip of the cell beside its reconstruction",
                         media_type=pystac.MediaType.PNG, roles=["thumbnail", "overview"]),
        )  # fmt: skip
    _describe_file(model, ckpt_path)
    _describe_bands(model, list(meta["bands"]), meta["sensor"])
    _publish_mlm(item, properties)
    links = [(pystac.RelType.DERIVED_FROM, scene_id) for scene_id in meta.get("scene_ids", [])]
    if meta.get("parent"):
        links.append((pystac.RelType.DERIVED_FROM, meta["parent"]))
        links.append(("predecessor-version", meta["parent"]))
    return Built(item, links)


def model_thumbnail(ckpt_path: Path) -> Path | None:
    """`<data_dir>/thumbnails/<geohash>/<checkpoint id>.png`: the first chip this checkpoint embedded, beside its
    reconstruction from the stored embeddings. Written once per checkpoint (atomically); None until the
    checkpoint has embeddings rows and the chip is on disk."""
    from geoembed_assets.core import plots
    from geoembed_assets.core.atomic import write_bytes_atomic
    from geoembed_assets.core.chipping import read_chip
    from geoembed_assets.core.embeddings import decode_cell

    data_dir, checkpoint_id, geohash = ckpt_path.parents[2], ckpt_path.stem, ckpt_path.parent.name
    out = data_dir / "thumbnails" / geohash / f"{checkpoint_id}.png"
    if out.exists():
        return out
    for path in sorted(data_dir.glob("embeddings/*/*.parquet")):
        rows = pq.read_table(path, filters=[("checkpoint_id", "=", checkpoint_id)]).to_pandas()
        if rows.empty:
            continue
        scene_id = sorted(rows["scene_id"].unique())[0]
        chip = data_dir / "chips" / path.parent.name / sorted(rows["geohash"].unique())[0] / f"{scene_id}.tif"
        if not chip.exists():
            continue
        cell = sorted(rows["geohash"].unique())[0]  # a shared model's first cell
        rows = rows[(rows["scene_id"] == scene_id) & (rows["geohash"] == cell)]
        decoded = decode_cell(rows, data_dir / "checkpoints")
        image, bands = decoded.image, decoded.bands
        original, chip_bands, _ = read_chip(chip)
        original = original[[list(chip_bands).index(b) for b in bands]]
        write_bytes_atomic(out, plots.chip_and_reconstruction(original, image, bands, f"{geohash}, {scene_id[:40]}"))
        return out
    return None


def models_in_use(data_dir: str | Path) -> set[str] | None:
    """Checkpoint ids that decode at least one embedding row (old versions included) or whose decoder a downstream
    model (time series, GAN) uses; None without embeddings.
    Unreadable embeddings files are skipped here (the catalog reports them)."""
    files = sorted(Path(data_dir, "embeddings").glob("*/*.parquet"))
    if not files:
        return None
    used: set[str] = set()
    for f in files:
        try:
            used |= set(pq.read_table(f, columns=["checkpoint_id"]).column("checkpoint_id").to_pylist())
        except Exception:  # noqa: BLE001 - reported by the embeddings items
            continue
    from geoembed_assets.core.models.store import decoders_in_use  # issue 12: decoders of downstream models

    return used | decoders_in_use(data_dir)


def vae_items(data_dir: str | Path, problems: list[str] | None = None) -> list[Built]:
    """The readable VAE checkpoints on disk (`checkpoints/<owner>/<id>.pt`) that decode embedding rows (every one
    while no embeddings exist yet): a superseded version stays listed while rows it made remain.

    A corrupt checkpoint, or one whose name is not a checkpoint id, is left out and described in `problems`
    (the catalog asset fails a check naming it) instead of taking the whole catalog down.
    """
    used = models_in_use(data_dir)
    built = []
    for p in sorted(Path(data_dir, "checkpoints").glob("*/*.pt")):
        if used is not None and p.stem not in used:
            continue
        try:
            checkpoint_path(Path(data_dir, "checkpoints"), p.stem)  # the file name must be a safe checkpoint id
            built.append(vae_item(p))
        except (CheckpointError, UnsafePathError) as e:
            if problems is None:
                raise
            problems.append(str(e))
    return built


def embeddings_item(path: str | Path) -> Built:
    """emb Item of one partition's embeddings GeoParquet (`embeddings/<region>/<month>.parquet`)."""
    path = Path(path)
    table = pq.read_table(path, columns=["geohash", "datetime", "scene_id", "checkpoint_id", "cell_size_px"])
    cells = sorted(set(table.column("geohash").to_pylist()))
    geometry, bbox = _geometry(shapely.union_all([box(*cell_bounds(g)) for g in cells]))
    times = table.column("datetime").to_pylist()
    size = int(table.column("cell_size_px")[0].as_py())
    region, month = path.parent.name, path.stem
    item = pystac.Item(
        id=f"embeddings-{region}-{month}",
        geometry=geometry,
        bbox=bbox,
        datetime=None,
        start_datetime=as_utc(min(times)),
        end_datetime=as_utc(max(times)),
        properties={
            "description": f"VAE latent grids (int8 with a scale per channel), one row per {size}x{size}-px cell and "
            f"acquisition of region {region}",
            "emb:runtime_parameters": {"statistic": "latent mean, quantised to int8", "cell_size_px": size, "cells": len(cells)},
            "processing:datetime": datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(),
        },
        collection=EMBEDDINGS_COLLECTION,
        stac_extensions=[EMB_SCHEMA, PROCESSING_SCHEMA],
    )
    asset = pystac.Asset(
        href=str(path.resolve()), title="GeoParquet of embeddings", media_type=PARQUET_MEDIA_TYPE, roles=["data"]
    )
    item.add_asset("embeddings", asset)
    _describe_file(asset, path)
    links = [(EMB_MODEL_REL, c) for c in sorted(set(table.column("checkpoint_id").to_pylist()))]
    links += [(pystac.RelType.DERIVED_FROM, target) for _, target in links]
    links += [(EMB_SOURCE_REL, s) for s in sorted(set(table.column("scene_id").to_pylist()))]
    return Built(item, links)


def embedding_collection_fields(paths: list[Path]) -> dict[str, Any]:
    """emb Collection fields shared by every embeddings file (empty when their sizes differ)."""
    layouts = set()
    for path in paths:
        schema = pq.read_schema(path)
        size = int(pq.read_table(path, columns=["cell_size_px"]).column("cell_size_px")[0].as_py())
        field_type = schema.field("embedding").type
        layouts.add((getattr(field_type, "list_size", -1), size))
    if len(layouts) != 1:
        return {}
    dim, size = layouts.pop()
    if dim is None or dim < 0:
        return {}
    return {
        "emb:type": "chip",
        "emb:dimensions": dim,
        "data_type": "int8",
        "emb:chip_layout": {"layout_type": "regular_grid", "chip_size": [size, size], "stride": [size, size],
                            "grid_id": "geohash cell grid (EPSG:4326)"},
    }  # fmt: skip

