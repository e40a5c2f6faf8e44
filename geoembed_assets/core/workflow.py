"""The per-partition steps (region x month) as plain functions: the Dagster assets only call these.

Files are laid out by cell so that one region's outputs never collide with another's:
    chips/<region>/<geohash>/<scene_id>.tif          one chip per cell and acquisition
    chips/<region>/index_<month>.parquet             the chip index of one partition
    checkpoints/<geohash>/<checkpoint_id>.pt         content-addressed, never overwritten
    embeddings/<region>/<month>.parquet              GeoParquet, one row per patch (single-band: <month>-single)
    size_predictions/<region>/<month>.parquet        embedding size per cell and mode
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from geoembed_assets.core.atomic import atomic_path, partition_lock, remove_stale_temp_files
from geoembed_assets.core.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from geoembed_assets.core.chipping import chip_scene, read_chip, scene_cells, write_chip
from geoembed_assets.core.complexity import complexity_scores
from geoembed_assets.core.embeddings import checkpoint_patches, encode_patches, write_embeddings
from geoembed_assets.core.patches import Patches, band_patches, concat_patches, cut_patches
from geoembed_assets.core.readers import open_scene
from geoembed_assets.core.safe_paths import inside, safe_name
from geoembed_assets.core.scene import Scene, SceneError
from geoembed_assets.core.screening import screen_chip
from geoembed_assets.core.training import TrainingConfig, train_cell_vae
from geoembed_assets.core.vae import VAEConfig

log = logging.getLogger(__name__)
LANDING_SUFFIXES = (".scene.json", ".zip", ".tif", ".tiff", ".safe")


def landing_entries(landing_dir: str | Path) -> list[Path]:
    """Deliveries in the landing folder: descriptors, SAFE products, GeoTIFFs and band folders."""
    landing = Path(landing_dir)
    if not landing.is_dir():
        return []
    entries = []
    for p in sorted(landing.iterdir()):
        if p.name.startswith(".") or _is_raster_sidecar(p):
            continue
        if p.is_dir() or p.name.lower().endswith(LANDING_SUFFIXES):
            entries.append(p)
    return entries


def _is_raster_sidecar(path: Path) -> bool:
    """`x.tif.scene.json` / `x.scene.json` beside a raster `x.tif` is that raster's metadata, not a delivery."""
    if not path.name.endswith(".scene.json"):
        return False
    stem = path.name.removesuffix(".scene.json")
    candidates = [path.with_name(stem)] + [path.with_name(stem + s) for s in (".tif", ".tiff", ".TIF", ".TIFF")]
    return any(c.is_file() and c.suffix.lower() in (".tif", ".tiff") for c in candidates)


def delivery_fingerprint(entry: str | Path) -> str:
    """Name, size and modification time (ns) of every file of a delivery: a band file edited in place inside a
    band folder (which leaves the folder's own mtime alone) or a sidecar change gives a new fingerprint."""
    entry = Path(entry)
    files = [entry]
    if entry.is_dir():
        files += sorted(p for p in entry.rglob("*") if p.is_file())
    elif entry.name.endswith(".scene.json"):  # the local folder it points at, when inside the landing folder
        try:
            href = str(json.loads(entry.read_text()).get("href") or "")
        except (OSError, ValueError, AttributeError):
            href = ""
        target = entry.parent / href
        if href and "://" not in href and target.resolve().is_relative_to(entry.parent.resolve()) and target.is_dir():
            files += sorted(p for p in target.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for p in files:
        try:
            stat = p.stat()
        except OSError:
            continue
        digest.update(f"{p.relative_to(entry.parent)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return f"{entry.name}:{digest.hexdigest()[:16]}"


def month_of(when: datetime) -> str:
    return f"{when.year:04d}-{when.month:02d}-01"


def scene_regions(scene: Scene, precision: int, region_precision: int) -> list[str]:
    return sorted({g[:region_precision] for g in scene_cells(scene, precision)})


@dataclass
class LandingReport:
    """What the landing folder holds for one partition: its scenes and why every other delivery is not one."""

    scenes: list[Scene]
    rejected: dict[str, str]  # entry -> error
    duplicates: list[str]  # entries holding a scene already taken (same id, or the same pixels repackaged)
    elsewhere: dict[str, str]  # readable entries of other partitions -> "region(s) ..., month ..."

    def no_scene_message(self, landing_dir: str | Path, region: str, month: str) -> str:
        """Why the partition has no scene, naming every delivery and where it belongs."""
        lines = [f"no readable scene in {landing_dir} for region {region}, month {month}"]
        lines += [f"- {e}: belongs to {where}" for e, where in self.elsewhere.items()]
        lines += [f"- {e}: {err}" for e, err in self.rejected.items()]
        return "\n".join(lines)


def _pixel_key(scene: Scene) -> tuple:
    """Same acquisition, grid and bands whatever the container (band folder, multi-band GeoTIFF, SAFE)."""
    return (scene.datetime, scene.crs, scene.footprint_wkt, tuple(scene.band_names), scene.scale, scene.offset)


def landing_report(landing_dir: str | Path, region: str, month: str, precision: int) -> LandingReport:
    """Scenes in the landing folder acquired in `month` and touching `region`, and what became of the others.

    A delivery that cannot be read is reported, not fatal for the others; a scene delivered twice (same scene id,
    or the same acquisition, grid and bands in another container) is taken once.
    """
    report = LandingReport([], {}, [], {})
    ids: set[str] = set()
    keys: dict[tuple, str] = {}
    for entry in landing_entries(landing_dir):
        try:
            scene = open_scene(entry)
        except SceneError as exc:
            report.rejected[str(entry)] = str(exc)
            continue
        regions = scene_regions(scene, precision, len(region))
        if month_of(scene.datetime) != month or region not in regions:
            report.elsewhere[str(entry)] = f"region(s) {', '.join(regions)}, month {month_of(scene.datetime)}"
            continue
        key = _pixel_key(scene)
        if scene.scene_id in ids or key in keys:
            report.duplicates.append(str(entry))
            continue
        ids.add(scene.scene_id)
        keys[key] = scene.scene_id
        report.scenes.append(scene)
    return report


def find_scenes(
    landing_dir: str | Path, region: str, month: str, precision: int
) -> tuple[list[Scene], dict[str, str], list[str]]:
    """(scenes, rejected {entry: error}, duplicates [entry]) of :func:`landing_report`."""
    report = landing_report(landing_dir, region, month, precision)
    return report.scenes, report.rejected, report.duplicates


def chip_path(chips_dir: str | Path, region: str, geohash: str, scene_id: str) -> Path:
    """`chips/<region>/<geohash>/<scene_id>.tif`, each part a safe name and the result inside `chips_dir`."""
    parts = [safe_name(region, "region"), safe_name(geohash, "geohash"), safe_name(scene_id, "scene id") + ".tif"]
    path = Path(chips_dir).joinpath(*parts)
    inside(path, chips_dir, f"chip of scene {scene_id}")
    return path


def chip_partition(
    scenes: list[Scene], region: str, month: str, chips_dir: str | Path, precision: int, size_px: int, min_coverage: float
) -> pd.DataFrame:
    """Chip every scene over the region's cells; write chips and the partition's chip index.

    Chips are screened first (:mod:`screening`): cells below the coverage minimum, constant or saturated data are
    skipped and listed in ``index.attrs["skipped"]`` (scene, source, geohash, reason) and logged with counts per
    scene; ``index.attrs["warnings"]`` names scenes that give no chip at all and chips with negative reflectance.
    The partition's outputs are one set: the chip files the previous index of this partition listed and the new
    one does not (a changed redelivery, other settings) are removed, and stale temp files of killed writes are
    cleaned, all under the partition's lock so concurrent runs of one partition do not interleave.
    """
    region_dir = Path(chips_dir) / safe_name(region, "region")
    with partition_lock(region_dir, month):
        remove_stale_temp_files(region_dir)
        rows, skipped, warnings = [], [], []
        for scene in scenes:
            cells = [g for g in scene_cells(scene, precision) if g.startswith(region)]
            if not cells:
                raise SceneError(f"{scene.source}: scene {scene.scene_id} touches no cell of region {region}")
            kept = 0
            for chip in chip_scene(scene, cells, size_px):
                verdict = screen_chip(chip, scene, min_coverage)
                if verdict.reason is not None:
                    skipped.append(dict(scene_id=scene.scene_id, source=scene.source, geohash=chip.grid.geohash,
                                        coverage=chip.coverage, reason=verdict.reason))  # fmt: skip
                    continue
                kept += 1
                if verdict.negative_fraction > 0:
                    warnings.append(
                        f"{scene.source}: cell {chip.grid.geohash}: {verdict.negative_fraction:.2%} of the values have "
                        "negative reflectance (stored clipped at 0)"
                    )
                path = chip_path(chips_dir, region, chip.grid.geohash, scene.scene_id)
                size = write_chip(chip, path)
                west, south, east, north = chip.grid.bounds
                rows.append(
                    dict(
                        geohash=chip.grid.geohash, scene_id=scene.scene_id, datetime=pd.Timestamp(scene.datetime),
                        sensor=scene.sensor, path=str(path), coverage=chip.coverage, bytes=size, size_px=size_px,
                        bands=",".join(chip.band_names), west=west, south=south, east=east, north=north,
                        negative_fraction=verdict.negative_fraction,
                    )
                )  # fmt: skip
            mine = [s for s in skipped if s["scene_id"] == scene.scene_id]
            if mine:
                message = (
                    f"{scene.source}: scene {scene.scene_id}: {len(mine)} of {len(mine) + kept} cells of region "
                    f"{region} skipped: " + "; ".join(s["reason"] for s in mine[:5]) + ("; ..." if len(mine) > 5 else "")
                )
                warnings.append(("no chip at all: " if not kept else "") + message)
                log.warning(message)
        if not rows:
            raise SceneError(
                f"no usable cell of region {region} in scenes "
                + ", ".join(f"{s.scene_id} ({s.source})" for s in scenes)
                + ": "
                + "; ".join(f"{s['scene_id']}: {s['reason']}" for s in skipped[:10])
            )
        index = pd.DataFrame(rows).sort_values(["geohash", "datetime"]).reset_index(drop=True)
        index_path = region_dir / f"index_{month}.parquet"
        previous = pd.read_parquet(index_path, columns=["path"])["path"].tolist() if index_path.exists() else []
        with atomic_path(index_path) as tmp:
            index.to_parquet(tmp, index=False)
        for old in sorted(set(previous) - set(index["path"])):  # outputs of the partition's previous set
            old_path = Path(old)
            if old_path.exists() and old_path.resolve().is_relative_to(region_dir.resolve()):
                old_path.unlink()
    index.attrs["skipped"] = skipped
    index.attrs["warnings"] = warnings
    return index


def score_partition(chips: pd.DataFrame, patch_size: int) -> pd.DataFrame:
    """Complexity scores per chip."""
    rows = []
    for chip in chips.itertuples():
        refl, _, _ = read_chip(chip.path)
        patches = cut_patches(refl, patch_size, min_valid=0.5)
        scores = complexity_scores(refl, patches.data)
        rows.append(dict(geohash=chip.geohash, scene_id=chip.scene_id, **asdict(scores)))
    return pd.DataFrame(rows)


def latest_checkpoint(checkpoints_dir: str | Path, geohash: str, bands: tuple[str, ...]) -> Path | None:
    """The most recent earlier checkpoint of this cell with the same bands (warm start for drift retraining)."""
    folder = Path(checkpoints_dir) / geohash
    candidates = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    for path in reversed(candidates):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as exc:  # a corrupt file is no parent: train from the next one (or scratch)
            log.warning(f"skipping unreadable checkpoint as warm start: {exc}")
            continue
        if ckpt.band_names == bands:
            return path
    return None


def cell_patches(paths: list[str], patch_size: int) -> tuple[Patches, tuple[str, ...]]:
    """Patches (>= 50 % valid) of all the chips of one cell, and their band names."""
    arrays, bands = [], ()
    for path in paths:
        refl, bands, _ = read_chip(path)
        arrays.append(cut_patches(refl, patch_size, min_valid=0.5))
    return concat_patches(arrays), bands


def embedding_targets(patches: Patches, bands: tuple[str, ...], mode: str) -> list[tuple[str, Patches, tuple[str, ...]]]:
    """(band label, patches, band names) per VAE: one "all" VAE in multi mode, one per band in single mode."""
    if mode == "multi":
        return [("all", patches, bands)]
    if mode == "single":
        return [(b, band_patches(patches, i), (b,)) for i, b in enumerate(bands)]
    raise ValueError(f"mode must be 'multi' or 'single', got {mode!r}")


def write_size_predictions(predictions: pd.DataFrame, path: str | Path) -> None:
    """Store per-cell embedding sizes (geohash, mode, latent_dim, ...) atomically."""
    with atomic_path(path) as tmp:
        predictions.to_parquet(tmp, index=False)


def read_size_predictions(path: str | Path, mode: str) -> dict[str, int] | None:
    """{geohash: latent_dim} of one mode, or None when there are no predictions."""
    if not Path(path).exists():
        return None
    frame = pd.read_parquet(path)
    frame = frame[frame["mode"] == mode]
    return {str(g): int(d) for g, d in zip(frame["geohash"], frame["latent_dim"])} or None


def train_partition(
    chips: pd.DataFrame,
    checkpoints_dir: str | Path,
    config: TrainingConfig,
    device: str,
    warm_start: bool = True,
    mode: str = "multi",
    latent_dims: dict[str, int] | None = None,
) -> pd.DataFrame:
    """One VAE per cell (multi mode) or per cell and band (single mode), trained on all the cell's chips here.

    `latent_dims` gives a cell its own embedding size (the size predictions); other cells use config.latent_dim.
    """
    rows = []
    for geohash, cell_chips in chips.groupby("geohash", sort=True):
        cell_config = replace(config, latent_dim=int((latent_dims or {}).get(geohash, config.latent_dim)))
        all_patches, all_bands = cell_patches(cell_chips["path"].tolist(), config.patch_size)
        for band, patches, bands in embedding_targets(all_patches, all_bands, mode):
            rows.append(_train_one(cell_chips, geohash, band, patches, bands, checkpoints_dir, cell_config, device, warm_start))
    return pd.DataFrame(rows)


def _train_one(
    cell_chips: pd.DataFrame, geohash: str, band: str, patches: Patches, bands: tuple[str, ...],
    checkpoints_dir: str | Path, config: TrainingConfig, device: str, warm_start: bool,
) -> dict:  # fmt: skip
    """Train and save one VAE; its row of the checkpoints table."""
    sensor = cell_chips["sensor"].iloc[0]
    parent_path = latest_checkpoint(checkpoints_dir, geohash, bands) if warm_start else None
    parent = load_checkpoint(parent_path) if parent_path else None
    wanted = VAEConfig(len(bands), config.patch_size, config.latent_dim, config.base_channels, config.depth)
    if parent is not None and parent.model.config != wanted:
        parent = None  # another architecture (e.g. a new predicted size): train from scratch
    init = parent.model.state_dict() if parent else None
    result = train_cell_vae(patches, bands, sensor, config, device=device, init_state=init)
    meta = dict(
        geohash=geohash, sensor=sensor, bands=list(bands), scene_ids=sorted(cell_chips["scene_id"].unique()),
        start_datetime=cell_chips["datetime"].min().isoformat(), end_datetime=cell_chips["datetime"].max().isoformat(),
        parent=parent.checkpoint_id if parent else None, training={**asdict(config)}, epochs=result.epochs,
        train_mse=result.train_mse, holdout_mse=result.holdout_mse, n_train=result.n_train,
        n_holdout=result.n_holdout, history=result.history, device=device,
        created=datetime.now(timezone.utc).isoformat(),
    )  # fmt: skip
    checkpoint_id, path = save_checkpoint(checkpoints_dir, result.model, result.normalizer, meta)
    return dict(
        geohash=geohash, band=band, checkpoint_id=checkpoint_id, path=str(path), parent=meta["parent"],
        latent_dim=config.latent_dim, epochs=result.epochs, train_mse=result.train_mse,
        holdout_mse=result.holdout_mse, n_train=result.n_train, n_holdout=result.n_holdout,
        **{f"holdout_{k}_mae": v for k, v in result.holdout_index_errors.items()},
    )  # fmt: skip


def embed_partition(
    chips: pd.DataFrame, checkpoints: pd.DataFrame, region: str, month: str, embeddings_dir: str | Path, mode: str = "multi"
) -> tuple[Path, pd.DataFrame]:
    """Embed every patch of every chip with its cell's checkpoint(s); write the partition's GeoParquet.

    Single-band embeddings go to `<month>-single.parquet`, one row per patch and band.
    """
    frames, loaded = [], {}
    for chip in chips.itertuples():
        refl, bands, _ = read_chip(chip.path)
        for ckpt_row in checkpoints[checkpoints["geohash"] == chip.geohash].itertuples():
            if ckpt_row.path not in loaded:  # a cell's checkpoint serves all its acquisitions
                loaded[ckpt_row.path] = load_checkpoint(ckpt_row.path)
            ckpt = loaded[ckpt_row.path]
            band = getattr(ckpt_row, "band", "all")
            patches = checkpoint_patches(ckpt, refl, bands, band)
            frames.append(
                encode_patches(ckpt, patches, chip.geohash, int(chip.size_px), chip.scene_id, chip.datetime, band=band)
            )
    frame = pd.concat(frames, ignore_index=True)
    remove_stale_temp_files(Path(embeddings_dir) / safe_name(region, "region"), older_than_s=3600)  # killed writes
    path = Path(embeddings_dir) / region / (f"{month}.parquet" if mode == "multi" else f"{month}-{mode}.parquet")
    write_embeddings(frame, path)
    return path, frame
