"""The per-partition steps (region x month) as plain functions: the Dagster assets only call these.

Files are laid out by cell so that one region's outputs never collide with another's:
    chips/<region>/<geohash>/<scene_id>.tif          one chip per cell and acquisition
    chips/<region>/index_<month>.parquet             the chip index of one partition
    checkpoints/<owner>/<checkpoint_id>.pt           owner: the region (shared model) or cell; never overwritten
    embeddings/<region>/<month>.parquet              GeoParquet, one row per cell and acquisition (single: <month>-single)
    size_predictions/<region>/<month>.parquet        embedding size per cell and mode
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from geoembed_assets.core.atomic import atomic_path, partition_lock, remove_stale_temp_files
from geoembed_assets.core.checkpoints import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from geoembed_assets.core.chipping import chip_scene, read_chip, scene_cells, write_chip
from geoembed_assets.core.complexity import complexity_scores
from geoembed_assets.core.embeddings import encode_cell, write_embeddings
from geoembed_assets.core.progress import Progress, track
from geoembed_assets.core.patches import Patches, band_patches, concat_patches, cut_patches
from geoembed_assets.core.readers import open_scene
from geoembed_assets.core.safe_paths import inside, safe_name
from geoembed_assets.core.scene import Scene, SceneError
from geoembed_assets.core.screening import screen_chip
from geoembed_assets.core.training import TrainingConfig, masked_mse, reconstruct, train_cell_vae
from geoembed_assets.core.vae import VAEConfig

log = logging.getLogger(__name__)
DRIFT_FACTOR = 1.5  # a model is reused while its error on new data stays within 1.5x its own held-out error
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
    scenes: list[Scene], region: str, month: str, chips_dir: str | Path, precision: int, size_px: int, min_coverage: float,
    stored_path: Callable[[str], str] = str, local_path: Callable[[str], str] = str,
) -> pd.DataFrame:
    """Chip every scene over the region's cells; write chips and the partition's chip index.

    Chips are screened first (:mod:`screening`): cells below the coverage minimum, constant or saturated data are
    skipped and listed in ``index.attrs["skipped"]`` (scene, source, geohash, reason) and logged with counts per
    scene; ``index.attrs["warnings"]`` names scenes that give no chip at all and chips with negative reflectance.
    The partition's outputs are one set: the chip files the previous index of this partition listed and the new
    one does not (a changed redelivery, other settings) are removed (and listed in ``index.attrs["removed"]``), and
    stale temp files of killed writes are cleaned, all under the partition's lock so concurrent runs of one
    partition do not interleave. `stored_path` spells a chip's local path as the index keeps it (e.g. its URL in
    an object store, see :mod:`storage`), `local_path` the other way; by default the local path itself.
    """
    region_dir = Path(chips_dir) / safe_name(region, "region")
    with partition_lock(region_dir, month):
        # only this partition's own temp files: months of the region share the folder and may be writing now
        own = {chip_path(chips_dir, region, "x", s.scene_id).name for s in scenes} | {f"index_{month}.parquet"}
        remove_stale_temp_files(region_dir, finals=own)
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
                        sensor=scene.sensor, path=stored_path(str(path)), coverage=chip.coverage, bytes=size, size_px=size_px,
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
                log.debug(message)  # the asset logs `warnings` through Dagster
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
        removed = []
        for old in sorted(set(previous) - set(index["path"])):  # outputs of the partition's previous set
            old_path = Path(local_path(old))
            if old_path.resolve().is_relative_to(region_dir.resolve()):
                removed.append(old_path)
                if old_path.exists():
                    old_path.unlink()
    index.attrs["skipped"] = skipped
    index.attrs["removed"] = [str(p) for p in removed]
    index.attrs["warnings"] = warnings
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


def model_versions(checkpoints_dir: str | Path, owner: str) -> list[Checkpoint]:
    """Every readable checkpoint of an owner (a cell, or a region for shared models), oldest version first."""
    folder = Path(checkpoints_dir) / owner
    found = []
    for path in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
        try:
            found.append(load_checkpoint(path))
        except CheckpointError as exc:  # a corrupt file is no version: the catalog check reports it
            log.warning(f"skipping unreadable checkpoint: {exc}")
            continue
    return sorted(found, key=lambda c: (int(c.meta.get("version", 0)), str(c.meta.get("created", ""))))


def latest_checkpoint(checkpoints_dir: str | Path, owner: str, bands: tuple[str, ...], wanted: VAEConfig | None = None) -> Checkpoint | None:
    """The newest version of this owner's model with the same bands (and architecture, when given)."""
    for ckpt in reversed(model_versions(checkpoints_dir, owner)):
        if ckpt.band_names == bands and (wanted is None or ckpt.model.config == wanted):
            return ckpt
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
    scope: str = "partition",
    region: str | None = None,
    max_mse: float | None = None,
    progress: Callable[[str], None] | None = None,
    retrain: bool = False,
    clusters: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Train (or reuse) the VAEs of a partition; one row per cell (and band in single mode) naming its checkpoint.

    scope "partition" (default): one model per band label shared by every cell of the region, trained on all
    their patches: one checkpoint decodes them all. A new partition first tries the region's current model: when
    it was trained on these scenes already, or its error on them stays within `max_mse`, it is reused and nothing
    is trained (temporal reuse; re-materializing is idempotent); also while its MSE stays within `DRIFT_FACTOR` of
    its own held-out MSE (where the bound is out of reach for these data, a new version every month would pile up
    checkpoints and gain nothing); otherwise a new version is trained from it (drift). scope "cell": the paper's
    one model per cell, with `latent_dims` giving each cell its own predicted size. `retrain` always trains a new version from the current one (a drift schedule).

    An owner without a model yet starts from another owner's model (spatial transfer, paper Figure 5): one whose
    cells share the dominant land-cover cluster of these cells (`clusters`: geohash, cluster), else any other,
    else scratch. Warm-started training (transfer or drift) runs a quarter of the steps.
    """
    say = progress or (lambda message: None)
    rows = []
    if scope == "cell":
        cells = list(chips.groupby("geohash", sort=True))
        for i, (geohash, cell_chips) in enumerate(cells):
            cell_config = replace(config, latent_dim=int((latent_dims or {}).get(geohash, config.latent_dim)))
            all_patches, all_bands = cell_patches(cell_chips["path"].tolist(), config.patch_size)
            for band, patches, bands in embedding_targets(all_patches, all_bands, mode):
                row = _train_one(
                    cell_chips, geohash, band, patches, bands, checkpoints_dir, cell_config, device, warm_start, max_mse,
                    retrain=retrain, clusters=clusters,
                )  # fmt: skip
                rows.append(row)
            say(f"trained cell {geohash} ({i + 1}/{len(cells)})")
        return pd.DataFrame(rows)
    if scope != "partition":
        raise ValueError(f"scope must be 'partition' or 'cell', got {scope!r}")
    owner = region or _common_prefix(chips["geohash"].tolist())
    all_patches, all_bands = cell_patches(chips["path"].tolist(), config.patch_size)
    for band, patches, bands in embedding_targets(all_patches, all_bands, mode):
        row = _train_one(
            chips, owner, band, patches, bands, checkpoints_dir, config, device, warm_start, max_mse, say, retrain, clusters
        )
        for geohash in sorted(chips["geohash"].unique()):
            rows.append({**row, "geohash": geohash})
    return pd.DataFrame(rows)


def _common_prefix(geohashes: list[str]) -> str:
    prefix = os.path.commonprefix(sorted(set(geohashes)))
    return prefix or sorted(geohashes)[0][0]  # cells under different top-level cells: the first one's (a geohash)


def _train_one(
    chips: pd.DataFrame, owner: str, band: str, patches: Patches, bands: tuple[str, ...],
    checkpoints_dir: str | Path, config: TrainingConfig, device: str, warm_start: bool, max_mse: float | None,
    say: Callable[[str], None] = lambda message: None, retrain: bool = False, clusters: pd.DataFrame | None = None,
) -> dict:  # fmt: skip
    """Reuse, fine-tune or train one model for `owner` (a cell or a region); its row of the checkpoints table."""
    sensor = chips["sensor"].iloc[0]
    scene_ids = sorted(chips["scene_id"].unique())
    wanted = config.vae_config(len(bands))
    current = latest_checkpoint(checkpoints_dir, owner, bands, wanted) if warm_start else None
    if current is not None and not retrain:
        seen = set(current.meta.get("scene_ids", [])) >= set(scene_ids)
        current_mse = float(np.nanmean(masked_mse(patches.data, reconstruct(current.model, current.normalizer, patches.data)[1])))
        # drift = worse than the bound AND clearly worse than the model did on its own held-out data: where the
        # bound is out of reach for these data, retraining every month would only pile up versions
        own = float(current.meta.get("holdout_mse", np.nan))
        allowed = max(max_mse, DRIFT_FACTOR * own) if max_mse is not None and np.isfinite(own) else max_mse
        if seen or (allowed is not None and current_mse <= allowed):
            say(f"{owner}/{band}: reusing {current.checkpoint_id} (MSE {current_mse:.2e} on these scenes"
                + (", trained on them)" if seen else f" <= {allowed:.2e})"))  # fmt: skip
            return _checkpoint_row(owner, band, current, config.latent_dim, "reused", current_mse)
        say(f"{owner}/{band}: MSE {current_mse:.2e} of {current.checkpoint_id} exceeds {allowed}: drift, new version")

    donor, start = None, "drift: from the current version" if current else "scratch"
    if current is None and warm_start:
        donor, start = donor_checkpoint(checkpoints_dir, owner, sorted(chips["geohash"].unique()), bands, wanted, clusters)
        if donor is not None:
            say(f"{owner}/{band}: no model yet; starting from {donor.checkpoint_id} ({start})")
    init = current or donor
    if init is not None:  # warm starts converge in a fraction of the steps (benchmarks/bench_transfer.py)
        config = replace(config, max_steps=max(1, (config.max_steps or config.max_epochs * 100) // 4))

    n_train = len(patches) - min(int(round(len(patches) * config.holdout_fraction)), len(patches) - 1)
    per_epoch = max(1, -(-n_train // config.batch_size))
    epochs = min(config.max_epochs, -(-(config.max_steps or config.max_epochs * per_epoch) // per_epoch))
    tracker = Progress(f"training {owner}/{band}", epochs, say, unit="epochs")
    tracker.start()

    def report(epoch: int, loss: float) -> None:
        tracker.advance(detail=f"loss {loss:.4f}")

    result = train_cell_vae(
        patches, bands, sensor, config, device=device,
        init_state=init.model.state_dict() if init else None,
        init_normalizer=init.normalizer if init else None, progress=report,
    )  # fmt: skip
    meta = dict(
        geohash=owner, owner=owner, cells=sorted(chips["geohash"].unique()), sensor=sensor, bands=list(bands),
        scene_ids=sorted(set(scene_ids) | set(current.meta.get("scene_ids", []) if current else [])),
        start_datetime=chips["datetime"].min().isoformat(), end_datetime=chips["datetime"].max().isoformat(),
        parent=current.checkpoint_id if current else None, version=int(current.meta.get("version", 0)) + 1 if current else 1,
        donor=donor.checkpoint_id if donor else None, start=start,
        training={**asdict(config)}, epochs=result.epochs, train_mse=result.train_mse, holdout_mse=result.holdout_mse,
        holdout_index_errors=result.holdout_index_errors, n_train=result.n_train, n_holdout=result.n_holdout,
        history=result.history, device=device,
    )  # fmt: skip
    checkpoint_id, path = save_checkpoint(checkpoints_dir, result.model, result.normalizer, meta)
    ckpt = load_checkpoint(path)
    return _checkpoint_row(owner, band, ckpt, config.latent_dim, "fine-tuned" if current else "trained", result.holdout_mse)


def donor_checkpoint(
    checkpoints_dir: str | Path, owner: str, cells: list[str], bands: tuple[str, ...], wanted: VAEConfig,
    clusters: pd.DataFrame | None,
) -> tuple[Checkpoint | None, str]:  # fmt: skip
    """The model a new owner starts from, and why: the latest compatible model of another owner whose cells share
    the dominant land-cover cluster of `cells` ("same-cluster"), else the closest other one ("other-cluster"),
    else none ("scratch")."""
    root = Path(checkpoints_dir)
    others = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != owner) if root.is_dir() else []
    candidates = [c for c in (latest_checkpoint(root, o, bands, wanted) for o in others) if c is not None]
    if not candidates:
        return None, "scratch"
    if clusters is None or clusters.empty or "cluster" not in clusters:
        return candidates[-1], "other-cluster (no land-cover clusters known)"
    cluster_of = clusters.drop_duplicates("geohash", keep="last").set_index("geohash")["cluster"]
    mine = cluster_of.reindex(cells).dropna()
    if mine.empty:
        return candidates[-1], "other-cluster (these cells have no cluster)"
    dominant = mine.mode().iloc[0]

    def share(ckpt: Checkpoint) -> float:
        theirs = cluster_of.reindex(ckpt.meta.get("cells") or [ckpt.meta.get("geohash")]).dropna()
        return float((theirs == dominant).mean()) if len(theirs) else 0.0

    best = max(candidates, key=share)
    return best, f"same-cluster ({dominant})" if share(best) > 0 else "other-cluster"


def _checkpoint_row(owner: str, band: str, ckpt: Checkpoint, latent_dim: int, action: str, mse: float) -> dict:
    meta = ckpt.meta
    return dict(
        geohash=owner, owner=owner, band=band, checkpoint_id=ckpt.checkpoint_id, path=str(ckpt.path),
        parent=meta.get("parent"), version=int(meta.get("version", 1)), action=action,
        start="reused" if action == "reused" else meta.get("start", "scratch"), donor=meta.get("donor"),
        latent_dim=int(ckpt.model.config.latent_dim), epochs=int(meta.get("epochs", 0)) if action != "reused" else 0,
        max_epochs=int(meta.get("training", {}).get("max_epochs", 0)), train_mse=float(meta.get("train_mse", np.nan)),
        holdout_mse=float(meta.get("holdout_mse", np.nan)) if action != "reused" else mse,
        n_train=int(meta.get("n_train", 0)), n_holdout=int(meta.get("n_holdout", 0)),
        checkpoint_bytes=int(Path(ckpt.path).stat().st_size),
        **{f"holdout_{k}_mae": v for k, v in meta.get("holdout_index_errors", {}).items()},
    )  # fmt: skip


def embed_partition(
    chips: pd.DataFrame,
    checkpoints: pd.DataFrame,
    region: str,
    month: str,
    embeddings_dir: str | Path,
    mode: str = "multi",
    refine_steps: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[Path, pd.DataFrame]:
    """Encode every chip with its cell's checkpoint(s) into one row per cell, acquisition (and band); write the
    partition's GeoParquet. Single-band embeddings go to `<month>-single.parquet`."""
    rows, loaded = [], {}
    for chip in track(chips.itertuples(), "embedding", progress, total=len(chips), unit="chips"):
        refl, bands, _ = read_chip(chip.path)
        for ckpt_row in checkpoints[checkpoints["geohash"] == chip.geohash].itertuples():
            if ckpt_row.path not in loaded:  # one checkpoint serves many cells and acquisitions
                loaded[ckpt_row.path] = load_checkpoint(ckpt_row.path)
            row, _ = encode_cell(
                loaded[ckpt_row.path], refl, bands, chip.geohash, int(chip.size_px), chip.scene_id, chip.datetime,
                band=getattr(ckpt_row, "band", "all"), refine_steps=refine_steps,
            )  # fmt: skip
            rows.append(row)
    frame = pd.DataFrame(rows)
    remove_stale_temp_files(Path(embeddings_dir) / safe_name(region, "region"), older_than_s=3600)  # killed writes
    path = Path(embeddings_dir) / region / (f"{month}.parquet" if mode == "multi" else f"{month}-{mode}.parquet")
    write_embeddings(frame, path)
    return path, frame


def raw_chip_bytes(chips: pd.DataFrame) -> int:
    """Bytes of the chips as plain uint16 arrays (bands x H x W x 2): the yardstick every ratio is measured against."""
    return int(sum(len(str(c.bands).split(",")) * int(c.size_px) ** 2 * 2 for c in chips.itertuples()))


def preview_cells(rows: pd.DataFrame, n_land: int = 2, n_water: int = 1) -> list[int]:
    """Row positions to show: the worst and the median land cell, and the median water cell."""
    picks = []
    for cover, n in (("land", n_land), ("water", n_water)):
        part = rows[rows["cover"] == cover].sort_values("recon_mse", ascending=False)
        if part.empty:
            continue
        order = [0, len(part) // 2][:n] if n > 1 else [len(part) // 2]
        picks += [part.index[i] for i in dict.fromkeys(order)]
    return picks


@dataclass(frozen=True)
class PreviewCell:
    """One shown cell: its chip, decoded from the stored row, read and decoded once for every picture."""

    geohash: str
    cover: str
    sensor: str
    bands: tuple[str, ...]
    truth: np.ndarray
    decoded: np.ndarray


def preview_decodes(chips: pd.DataFrame, rows: pd.DataFrame, checkpoints_dir: str | Path) -> list[PreviewCell]:
    """The cells `preview_cells` picks, each chip read and its stored row decoded (as a user would)."""
    from geoembed_assets.core.embeddings import decode_cell

    shown = []
    for i in preview_cells(rows):
        row = rows.loc[[i]]
        chip = chips[(chips["geohash"] == row["geohash"].iloc[0]) & (chips["scene_id"] == row["scene_id"].iloc[0])].iloc[0]
        truth, bands, _ = read_chip(chip.path)
        decoded = decode_cell(row, checkpoints_dir).image
        shown.append(PreviewCell(str(chip.geohash), str(row["cover"].iloc[0]), str(chip.sensor), bands, truth, decoded))
    return shown


def reconstruction_preview(shown: list[PreviewCell]) -> str:
    """Markdown with an inline PNG: land and water cells beside their reconstructions (RGB, NDVI, error)."""
    from geoembed_assets.core.previews import comparison_png, markdown_image

    if not shown:
        return "no cell to show"
    panels = [(f"{c.geohash} ({c.cover})", c.truth, c.decoded) for c in shown]
    return markdown_image(comparison_png(panels, shown[0].sensor, shown[0].bands, dpi=60), "chips and reconstructions")
