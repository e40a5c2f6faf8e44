"""The per-partition steps (region x month) as plain functions: the Dagster assets only call these.

Files are laid out by cell so that one region's outputs never collide with another's:
    chips/<region>/<geohash>/<scene_id>.tif          one chip per cell and acquisition
    chips/<region>/index_<month>.parquet             the chip index of one partition
    checkpoints/<geohash>/<checkpoint_id>.pt         content-addressed, never overwritten
    embeddings/<region>/<month>.parquet              GeoParquet, one row per patch (single-band: <month>-single)
    size_predictions/<region>/<month>.parquet        embedding size per cell and mode
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from geoembed_assets.core.atomic import atomic_path
from geoembed_assets.core.checkpoints import load_checkpoint, save_checkpoint
from geoembed_assets.core.chipping import chip_scene, read_chip, scene_cells, write_chip
from geoembed_assets.core.complexity import complexity_scores
from geoembed_assets.core.embeddings import checkpoint_patches, encode_patches, write_embeddings
from geoembed_assets.core.progress import track
from geoembed_assets.core.patches import Patches, band_patches, concat_patches, cut_patches
from geoembed_assets.core.readers import open_scene
from geoembed_assets.core.scene import Scene, SceneError
from geoembed_assets.core.training import TrainingConfig, train_cell_vae
from geoembed_assets.core.vae import VAEConfig

LANDING_SUFFIXES = (".scene.json", ".zip", ".tif", ".tiff", ".safe")


def landing_entries(landing_dir: str | Path) -> list[Path]:
    """Deliveries in the landing folder: descriptors, SAFE products, GeoTIFFs and band folders."""
    landing = Path(landing_dir)
    if not landing.is_dir():
        return []
    entries = []
    for p in sorted(landing.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir() or p.name.lower().endswith(LANDING_SUFFIXES):
            entries.append(p)
    return entries


def month_of(when: datetime) -> str:
    return f"{when.year:04d}-{when.month:02d}-01"


def scene_regions(scene: Scene, precision: int, region_precision: int) -> list[str]:
    return sorted({g[:region_precision] for g in scene_cells(scene, precision)})


def find_scenes(
    landing_dir: str | Path, region: str, month: str, precision: int
) -> tuple[list[Scene], dict[str, str], list[str]]:
    """Scenes in the landing folder acquired in `month` and touching `region`.

    Returns (scenes, rejected {entry: error}, duplicates [entry]): a delivery that cannot be read is reported,
    not fatal for the others; a scene delivered twice (same scene id) is taken once.
    """
    scenes: dict[str, Scene] = {}
    rejected: dict[str, str] = {}
    duplicates: list[str] = []
    for entry in landing_entries(landing_dir):
        try:
            scene = open_scene(entry)
        except SceneError as exc:
            rejected[str(entry)] = str(exc)
            continue
        if month_of(scene.datetime) != month or region not in scene_regions(scene, precision, len(region)):
            continue
        if scene.scene_id in scenes:
            duplicates.append(str(entry))
            continue
        scenes[scene.scene_id] = scene
    return list(scenes.values()), rejected, duplicates


def chip_partition(
    scenes: list[Scene], region: str, month: str, chips_dir: str | Path, precision: int, size_px: int, min_coverage: float
) -> pd.DataFrame:
    """Chip every scene over the region's cells; write chips and the partition's chip index."""
    rows = []
    for scene in scenes:
        cells = [g for g in scene_cells(scene, precision) if g.startswith(region)]
        if not cells:
            raise SceneError(f"{scene.source}: scene {scene.scene_id} touches no cell of region {region}")
        for chip in chip_scene(scene, cells, size_px):
            if chip.coverage < min_coverage:
                continue
            path = Path(chips_dir) / region / chip.grid.geohash / f"{scene.scene_id}.tif"
            size = write_chip(chip, path)
            west, south, east, north = chip.grid.bounds
            rows.append(
                dict(
                    geohash=chip.grid.geohash, scene_id=scene.scene_id, datetime=pd.Timestamp(scene.datetime),
                    sensor=scene.sensor, path=str(path), coverage=chip.coverage, bytes=size, size_px=size_px,
                    bands=",".join(chip.band_names), west=west, south=south, east=east, north=north,
                )
            )  # fmt: skip
    if not rows:
        raise SceneError(
            f"no cell of region {region} reaches coverage {min_coverage} in scenes "
            + ", ".join(f"{s.scene_id} ({s.source})" for s in scenes)
        )
    index = pd.DataFrame(rows).sort_values(["geohash", "datetime"]).reset_index(drop=True)
    with atomic_path(Path(chips_dir) / region / f"index_{month}.parquet") as tmp:
        index.to_parquet(tmp, index=False)
    return index


def score_partition(chips: pd.DataFrame, patch_size: int, log: Callable[[str], object] | None = None) -> pd.DataFrame:
    """Complexity scores per chip (`log`: where progress lines go, e.g. `context.log.info`)."""
    rows = []
    for chip in track(chips.itertuples(), "scoring", log, total=len(chips), unit="chips"):
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
        ckpt = load_checkpoint(path)
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
    chips: pd.DataFrame, checkpoints: pd.DataFrame, region: str, month: str, embeddings_dir: str | Path, mode: str = "multi",
    log: Callable[[str], object] | None = None,
) -> tuple[Path, pd.DataFrame]:
    """Embed every patch of every chip with its cell's checkpoint(s); write the partition's GeoParquet.

    Single-band embeddings go to `<month>-single.parquet`, one row per patch and band. `log` gets progress lines.
    """
    frames, loaded = [], {}
    for chip in track(chips.itertuples(), "embedding", log, total=len(chips), unit="chips"):
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
    path = Path(embeddings_dir) / region / (f"{month}.parquet" if mode == "multi" else f"{month}-{mode}.parquet")
    write_embeddings(frame, path)
    return path, frame
