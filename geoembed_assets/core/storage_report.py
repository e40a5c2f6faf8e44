"""Storage and rate-distortion report (paper section 4.1, Table 3, measured at equal bytes).

Storage: bytes of the raw scene as delivered, of the chips, of multi- and single-band embeddings and of the
checkpoints needed to decode them, with ratios to the raw scene with and without the checkpoints.

Rate-distortion, per cell: every method is scored on the chip's own grid (reflectance in [0, 1], the chip's uint16
values are the truth) over the pixels valid in the chip, by MSE and by mean absolute NDVI error. Bytes per cell:
- embeddings: raw array bytes (patches x size x bytes per value), float32, float16 or uint8 (per-dimension
  min/max quantisation, its 2 x size float32 ranges counted); reported with and without the checkpoint bytes;
- block averaging: uint16 block means, nearest or bilinear upsampling, block side chosen for the byte budget;
- JPEG2000 (GDAL JP2OpenJPEG, 13-band uint16, QUALITY = % of the uncompressed size): real file bytes;
- lossless GeoTIFF (uint16, predictor 2, ZSTD / DEFLATE): real file bytes, MSE 0 by construction.
No-data pixels are filled with the band mean before a codec sees them and are never scored.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import torch
import torch.nn.functional as F
from rasterio.errors import NotGeoreferencedWarning

from geoembed_assets.core.checkpoints import load_checkpoint, serialize_checkpoint
from geoembed_assets.core.chipping import CHIP_SCALE, read_chip
from geoembed_assets.core.embeddings import checkpoint_patches
from geoembed_assets.core.patches import Patches, assemble, band_patches, cut_patches
from geoembed_assets.core.size_prediction import sample_cells, torch_threads
from geoembed_assets.core.training import Normalizer, TrainingConfig, index_errors, reconstruct, train_cell_vae
from geoembed_assets.core.vae import ConvVAE

EMBEDDING_DTYPES = ("float32", "float16", "uint8")


@dataclass(frozen=True)
class ReportConfig:
    """What the rate-distortion part trains and measures; the defaults take a few minutes on 2 CPU cores."""

    n_cells: int = 3
    min_coverage: float = 0.99  # sample only (nearly) fully covered cells, so every method sees the same pixels
    multi_sizes: tuple[int, ...] = (8, 32, 128)
    single_sizes: tuple[int, ...] = (8,)
    max_epochs: int = 40  # the pipeline's "fast" preset
    patience: int = 10
    base_channels: int = 32
    patch_size: int = 32
    ndvi_weight: float = 0.1
    jp2_qualities: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 25.0)  # % of uncompressed size; 100 = reversible
    seed: int = 0
    dtypes: tuple[str, ...] = EMBEDDING_DTYPES
    cpu_threads: int | None = None  # torch CPU threads while training (None: torch's default)

    def training(self, latent_dim: int) -> TrainingConfig:
        return TrainingConfig(
            latent_dim=latent_dim, patch_size=self.patch_size, base_channels=self.base_channels,
            max_epochs=self.max_epochs, patience=self.patience, seed=self.seed,
            index_weights={"ndvi": self.ndvi_weight} if self.ndvi_weight else {},
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------- error measures


def valid_mse(truth: np.ndarray, recon: np.ndarray) -> float:
    """MSE over pixels valid in both (B, H, W) arrays (NaN marks no data)."""
    return float(np.nanmean((truth - recon) ** 2))


def ndvi_mae(truth: np.ndarray, recon: np.ndarray, sensor: str, bands: tuple[str, ...]) -> float:
    """Mean absolute NDVI error (NaN when the bands hold no NDVI pair)."""
    return index_errors(sensor, bands, truth[None], recon[None]).get("ndvi", float("nan"))


def fill_nodata(refl: np.ndarray) -> np.ndarray:
    """NaN replaced by the band's mean over valid pixels (0 for an empty band)."""
    means = np.nan_to_num(np.nanmean(refl, axis=(1, 2)))
    return np.where(np.isnan(refl), means[:, None, None], refl).astype(np.float32)


def to_dn(refl: np.ndarray) -> np.ndarray:
    """Reflectance as the chips store it: uint16 = reflectance * 1e4 (no-data filled)."""
    return np.clip(np.rint(fill_nodata(refl) / CHIP_SCALE), 0, 65534).astype(np.uint16)


# ----------------------------------------------------------------------------------------------------- codecs


def block_for_budget(budget_bytes: float, bands: int, height: int, width: int) -> int:
    """Smallest block side whose uint16 block means fit in the byte budget."""
    for block in range(1, max(height, width) + 1):
        if bands * math.ceil(height / block) * math.ceil(width / block) * 2 <= budget_bytes:
            return block
    return max(height, width)


def block_average(refl: np.ndarray, block: int, upsample: str = "nearest") -> tuple[np.ndarray, int]:
    """Block means stored as uint16, upsampled back to the grid; (reconstruction, bytes stored)."""
    b, h, w = refl.shape
    ny, nx = math.ceil(h / block), math.ceil(w / block)
    padded = np.full((b, ny * block, nx * block), np.nan, np.float32)
    padded[:, :h, :w] = fill_nodata(refl)
    means = np.nanmean(padded.reshape(b, ny, block, nx, block), axis=(2, 4))
    means = np.clip(np.rint(means / CHIP_SCALE), 0, 65534).astype(np.uint16).astype(np.float32) * np.float32(CHIP_SCALE)
    if upsample == "nearest":
        up = np.repeat(np.repeat(means, block, axis=1), block, axis=2)[:, :h, :w]
    elif upsample == "bilinear":
        t = F.interpolate(torch.from_numpy(means)[None], size=(ny * block, nx * block), mode="bilinear", align_corners=False)
        up = t[0].numpy()[:, :h, :w]
    else:
        raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
    return up.astype(np.float32), b * ny * nx * 2


def _raster_roundtrip(dn: np.ndarray, path: Path, **profile) -> tuple[np.ndarray, int]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        b, h, w = dn.shape
        with rasterio.open(path, "w", width=w, height=h, count=b, dtype="uint16", **profile) as dst:
            dst.write(dn)
        with rasterio.open(path) as src:
            out = src.read()
    return out.astype(np.float32) * np.float32(CHIP_SCALE), path.stat().st_size


def jp2_roundtrip(refl: np.ndarray, quality: float, workdir: str | Path) -> tuple[np.ndarray, int]:
    """Write and read back a JPEG2000 (JP2OpenJPEG); quality is % of the uncompressed size, 100 = lossless."""
    options = dict(QUALITY=f"{quality:g}", REVERSIBLE="YES" if quality >= 100 else "NO", YCC="NO")
    return _raster_roundtrip(to_dn(refl), Path(workdir) / f"q{quality:g}.jp2", driver="JP2OpenJPEG", **options)


def geotiff_roundtrip(refl: np.ndarray, compress: str, workdir: str | Path) -> tuple[np.ndarray, int]:
    """Lossless uint16 GeoTIFF (predictor 2, 256 px tiles) with ZSTD or DEFLATE; (read back, file bytes)."""
    profile = dict(driver="GTiff", compress=compress, predictor=2, tiled=True, blockxsize=256, blockysize=256, interleave="pixel")
    return _raster_roundtrip(to_dn(refl), Path(workdir) / f"{compress}.tif", **profile)


def quantise_embedding(z: np.ndarray, dtype: str) -> tuple[np.ndarray, int]:
    """The stored form of latent means, back as float32, and its bytes (uint8: per-dimension min/max counted)."""
    if dtype == "float32":
        return z.astype(np.float32), z.size * 4
    if dtype == "float16":
        return z.astype(np.float16).astype(np.float32), z.size * 2
    if dtype == "uint8":
        lo, hi = z.min(axis=0), z.max(axis=0)
        scale = np.where(hi > lo, (hi - lo) / 255, 1.0)
        q = np.rint((z - lo) / scale)
        return (q * scale + lo).astype(np.float32), z.size + 2 * z.shape[1] * 4
    raise ValueError(f"dtype must be one of {EMBEDDING_DTYPES}, got {dtype!r}")


@torch.no_grad()
def embedding_roundtrip(
    model: ConvVAE, normalizer: Normalizer, patches: Patches, shape: tuple[int, int], dtype: str = "float32"
) -> tuple[np.ndarray, int]:
    """Encode patches, store the latent means as `dtype`, decode onto the (H, W) grid; (image, embedding bytes)."""
    z, _ = reconstruct(model, normalizer, patches.data)
    stored, nbytes = quantise_embedding(z, dtype)
    model.eval()
    decoded = normalizer.inverse(model.decode(torch.from_numpy(stored))).numpy()
    return assemble(decoded, patches.rows, patches.cols, shape), nbytes


def checkpoint_bytes(model: ConvVAE, normalizer: Normalizer) -> int:
    """Bytes of a checkpoint file holding this model (what decoding needs besides the embeddings)."""
    return len(serialize_checkpoint(model, normalizer, {}))


# ------------------------------------------------------------------------------------------ rate-distortion


def _row(cell: str, method: str, setting: str, nbytes: int, truth: np.ndarray, recon: np.ndarray, sensor: str,
         bands: tuple[str, ...], checkpoint: int = 0) -> dict:  # fmt: skip
    return dict(
        geohash=cell, method=method, setting=setting, bytes=int(nbytes), checkpoint_bytes=int(checkpoint),
        mse=valid_mse(truth, recon), ndvi_mae=ndvi_mae(truth, recon, sensor, bands),
    )  # fmt: skip


def baseline_rows(
    cell: str, refl: np.ndarray, bands: tuple[str, ...], sensor: str, config: ReportConfig, budgets: list[int], workdir: Path
) -> list[dict]:
    """Block averaging and JPEG2000 at each embedding byte budget, JPEG2000 at fixed rates, lossless GeoTIFFs."""
    rows = []
    b, h, w = refl.shape
    raw_bytes = b * h * w * 2
    for budget in sorted(set(budgets)):
        block = block_for_budget(budget, b, h, w)
        for up in ("nearest", "bilinear"):
            recon, nbytes = block_average(refl, block, up)
            setting = f"block {block} px (budget {budget} B)"
            rows.append(_row(cell, f"block average ({up})", setting, nbytes, refl, recon, sensor, bands))
        recon, nbytes = jp2_roundtrip(refl, 100 * budget / raw_bytes, workdir)
        setting = f"QUALITY {100 * budget / raw_bytes:.3g} (budget {budget} B)"
        rows.append(_row(cell, "JPEG2000", setting, nbytes, refl, recon, sensor, bands))
    for quality in config.jp2_qualities:
        recon, nbytes = jp2_roundtrip(refl, quality, workdir)
        rows.append(_row(cell, "JPEG2000", f"QUALITY {quality:g}", nbytes, refl, recon, sensor, bands))
    for compress in ("ZSTD", "DEFLATE"):
        recon, nbytes = geotiff_roundtrip(refl, compress, workdir)
        rows.append(_row(cell, f"GeoTIFF {compress} (lossless)", "uint16, predictor 2", nbytes, refl, recon, sensor, bands))
    return rows


def embedding_rows(
    cell: str, refl: np.ndarray, bands: tuple[str, ...], sensor: str, config: ReportConfig, device: str = "cpu"
) -> list[dict]:
    """Multi-band VAEs at each size and single-band VAEs (one per band) at each size, every storage dtype."""
    rows = []
    patches = cut_patches(refl, config.patch_size)
    train = cut_patches(refl, config.patch_size, min_valid=0.5)
    shape = refl.shape[1:]
    for size in config.multi_sizes:
        result = train_cell_vae(train, bands, sensor, config.training(size), device=device)
        ckpt = checkpoint_bytes(result.model, result.normalizer)
        for dtype in config.dtypes:
            recon, nbytes = embedding_roundtrip(result.model, result.normalizer, patches, shape, dtype)
            rows.append(_row(cell, "embeddings (multi-band)", f"size {size}, {dtype}", nbytes, refl, recon, sensor, bands, ckpt))
    for size in config.single_sizes:
        planes = {dtype: [] for dtype in config.dtypes}
        total = {dtype: 0 for dtype in config.dtypes}
        ckpt = 0
        for i, band in enumerate(bands):
            result = train_cell_vae(band_patches(train, i), (band,), sensor, config.training(size), device=device)
            ckpt += checkpoint_bytes(result.model, result.normalizer)
            for dtype in config.dtypes:
                recon, nbytes = embedding_roundtrip(result.model, result.normalizer, band_patches(patches, i), shape, dtype)
                planes[dtype].append(recon)
                total[dtype] += nbytes
        for dtype in config.dtypes:
            recon = np.concatenate(planes[dtype])
            setting = f"size {size}, {dtype}"
            rows.append(_row(cell, "embeddings (single-band)", setting, total[dtype], refl, recon, sensor, bands, ckpt))
    return rows


def pipeline_rows(cell: str, refl: np.ndarray, bands: tuple[str, ...], sensor: str, checkpoints: pd.DataFrame) -> list[dict]:
    """The pipeline's own checkpoints of the cell (vae_checkpoints output, its per-cell size), float32.

    One row for the multi-band checkpoint and one for the set of single-band checkpoints, when present.
    """
    rows = []
    mine = checkpoints[checkpoints["geohash"] == cell]
    band_of = mine["band"] if "band" in mine else pd.Series("all", index=mine.index)
    for label, group in (("multi-band", mine[band_of == "all"]), ("single-band", mine[band_of != "all"])):
        if group.empty:
            continue
        planes, nbytes, ckpt_bytes, sizes = [], 0, 0, set()
        for row in group.itertuples():
            ckpt = load_checkpoint(row.path)
            patches = checkpoint_patches(ckpt, refl, bands, getattr(row, "band", "all"))
            recon, n = embedding_roundtrip(ckpt.model, ckpt.normalizer, patches, refl.shape[1:])
            planes.append(recon)
            nbytes += n
            ckpt_bytes += Path(row.path).stat().st_size
            sizes.add(ckpt.model.config.latent_dim)
        recon = np.concatenate(planes)
        setting = f"size {'/'.join(map(str, sorted(sizes)))}, float32"
        rows.append(_row(cell, f"pipeline embeddings ({label})", setting, nbytes, refl, recon, sensor, bands, ckpt_bytes))
    return rows


def rate_distortion(
    chips: pd.DataFrame, config: ReportConfig, checkpoints: pd.DataFrame | None = None, device: str = "cpu"
) -> pd.DataFrame:
    """Per-cell rows of every method on a seeded sample of well-covered cells (one chip per cell)."""
    covered = chips[chips["coverage"] >= config.min_coverage]
    cells = sample_cells(covered["geohash"].tolist(), config.n_cells, config.seed)
    rows = []
    with tempfile.TemporaryDirectory() as workdir, torch_threads(config.cpu_threads if device == "cpu" else None):
        for cell in cells:
            chip = covered[covered["geohash"] == cell].iloc[0]
            refl, bands, _ = read_chip(chip["path"])
            sensor = str(chip["sensor"])
            emb = embedding_rows(cell, refl, bands, sensor, config, device)
            if checkpoints is not None:
                emb += pipeline_rows(cell, refl, bands, sensor, checkpoints)
            rows += emb + baseline_rows(cell, refl, bands, sensor, config, [r["bytes"] for r in emb], Path(workdir))
    return pd.DataFrame(rows)


def summarise(rd: pd.DataFrame) -> pd.DataFrame:
    """Mean over cells per (method, setting), with the bytes including checkpoints; ordered by method and bytes."""
    table = rd.groupby(["method", "setting"], as_index=False, sort=False).agg(
        cells=("geohash", "nunique"), bytes_per_cell=("bytes", "mean"), checkpoint_bytes=("checkpoint_bytes", "mean"),
        mse=("mse", "mean"), ndvi_mae=("ndvi_mae", "mean"),
    )  # fmt: skip
    table["bytes_with_checkpoint"] = table["bytes_per_cell"] + table["checkpoint_bytes"]
    return table.sort_values(["method", "bytes_per_cell"]).reset_index(drop=True)


def verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """For each embedding setting: the best baseline with no more bytes (with and without checkpoint bytes).

    "wins" means the embedding's MSE is lower than every baseline that stores at most as many bytes; the last two
    columns say how many acquisitions per checkpoint would amortise the decoder against the cheapest baseline of
    equal or lower MSE (see `break_even`).
    """
    is_emb = summary["method"].str.contains("embeddings")
    base, rows = summary[~is_emb], []
    for e in summary[is_emb].itertuples():
        out = dict(method=e.method, setting=e.setting, mse=e.mse, ndvi_mae=e.ndvi_mae)
        for label, budget in (("without checkpoint", e.bytes_per_cell), ("with checkpoint", e.bytes_with_checkpoint)):
            affordable = base[base["bytes_per_cell"] <= budget]
            if affordable.empty:
                out[f"best baseline {label}"], out[f"verdict {label}"] = "none fits", "wins (no baseline this small)"
                continue
            best = affordable.loc[affordable["mse"].idxmin()]
            out[f"best baseline {label}"] = (
                f"{best['method']} {best['setting']}: {best['bytes_per_cell']:.0f} B, MSE {best['mse']:.3g}"
            )
            out[f"verdict {label}"] = "wins" if e.mse < best["mse"] else "loses"
        cheapest, acquisitions = break_even(base, e.mse, e.bytes_per_cell, e.checkpoint_bytes)
        out["baseline bytes for same MSE"], out["break-even acquisitions"] = cheapest, acquisitions
        rows.append(out)
    return pd.DataFrame(rows)


def break_even(baselines: pd.DataFrame, mse: float, nbytes: float, checkpoint: float) -> tuple[float, float]:
    """Fewest baseline bytes reaching `mse`, and how many acquisitions of a cell must share one checkpoint before
    the embeddings (nbytes each, plus the checkpoint once) take fewer bytes than that baseline (inf: never)."""
    good = baselines[baselines["mse"] <= mse]
    if good.empty:
        return float("nan"), float("nan")
    cheapest = float(good["bytes_per_cell"].min())
    return cheapest, float(math.ceil(checkpoint / (cheapest - nbytes))) if cheapest > nbytes else float("inf")


# ------------------------------------------------------------------------------------------------------ storage


def _files_bytes(paths: list[str | Path]) -> int:
    return int(sum(Path(p).stat().st_size for p in {str(p) for p in paths} if Path(p).exists()))


def embeddings_storage(parquet: Path, checkpoints_dir: Path) -> tuple[int, int, int, int]:
    """(parquet bytes, float32 array bytes, checkpoint bytes, cells) of one embeddings file."""
    from geoembed_assets.core.checkpoints import checkpoint_path

    frame = pd.read_parquet(parquet, columns=["geohash", "checkpoint_id", "embedding"])
    ckpts = [checkpoint_path(checkpoints_dir, c) for c in frame["checkpoint_id"].unique()]
    array = int(sum(len(e) for e in frame["embedding"]) * 4)
    return parquet.stat().st_size, array, _files_bytes(ckpts), frame["geohash"].nunique()


def storage_table(
    raw_files: list[str | Path], chips: pd.DataFrame, embedding_files: dict[str, Path], checkpoints_dir: Path
) -> pd.DataFrame:
    """Bytes per artefact of one scene partition and the ratios to the raw scene, with and without checkpoints."""
    raw = _files_bytes(raw_files)
    rows = [
        dict(artefact="raw scene as delivered (band files)", bytes=raw, checkpoint_bytes=0, cells=chips["geohash"].nunique()),
        dict(artefact="chips (ZSTD uint16 GeoTIFF)", bytes=_files_bytes(chips["path"].tolist()), checkpoint_bytes=0,
             cells=chips["geohash"].nunique()),
    ]  # fmt: skip
    for label, path in embedding_files.items():
        if not Path(path).exists():
            continue
        pq_bytes, array, ckpt, cells = embeddings_storage(Path(path), checkpoints_dir)
        rows.append(dict(artefact=f"{label} embeddings (GeoParquet)", bytes=pq_bytes, checkpoint_bytes=ckpt, cells=cells))
        rows.append(dict(artefact=f"{label} embeddings (float32 arrays only)", bytes=array, checkpoint_bytes=ckpt, cells=cells))
    table = pd.DataFrame(rows)
    table["raw/bytes"] = raw / table["bytes"]
    table["raw/(bytes+checkpoints)"] = raw / (table["bytes"] + table["checkpoint_bytes"])
    return table


def estimated_rows(summary: pd.DataFrame, n_cells: int, raw: int) -> pd.DataFrame:
    """Scene-level bytes of the sampled embedding settings, extrapolated as (mean bytes per cell) x cells."""
    emb = summary[summary["method"].str.startswith("embeddings")]
    table = pd.DataFrame(
        dict(
            artefact=[f"{m} {s} (estimated: mean of {c} sampled cells x {n_cells})"
                      for m, s, c in zip(emb["method"], emb["setting"], emb["cells"])],
            bytes=(emb["bytes_per_cell"] * n_cells).round().astype(int).to_numpy(),
            checkpoint_bytes=(emb["checkpoint_bytes"] * n_cells).round().astype(int).to_numpy(),
            cells=n_cells,
        )
    )  # fmt: skip
    table["raw/bytes"] = raw / table["bytes"]
    table["raw/(bytes+checkpoints)"] = raw / (table["bytes"] + table["checkpoint_bytes"])
    return table


@dataclass
class StorageReport:
    storage: pd.DataFrame
    rate_distortion: pd.DataFrame  # per cell
    summary: pd.DataFrame  # per method and setting
    verdicts: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        fmt = dict(index=False, floatfmt=".4g")
        parts = ["## Storage", self.storage.to_markdown(**fmt), "## Rate-distortion (mean per cell)",
                 self.summary.to_markdown(**fmt), "## Embeddings against the best baseline at no more bytes",
                 self.verdicts.to_markdown(index=False, floatfmt=".3g"), *self.notes]  # fmt: skip
        return "\n\n".join(parts)


def build_report(
    chips: pd.DataFrame,
    raw_files: list[str | Path],
    embedding_files: dict[str, Path],
    checkpoints_dir: str | Path,
    config: ReportConfig,
    checkpoints: pd.DataFrame | None = None,
    device: str = "cpu",
) -> StorageReport:
    """The whole report for one scene partition: storage bytes, rate-distortion, verdicts."""
    storage = storage_table(raw_files, chips, embedding_files, Path(checkpoints_dir))
    rd = rate_distortion(chips, config, checkpoints, device)
    summary = summarise(rd)
    raw = int(storage["bytes"].iloc[0])
    storage = pd.concat([storage, estimated_rows(summary, chips["geohash"].nunique(), raw)], ignore_index=True)
    notes = [
        f"Rate-distortion on {rd['geohash'].nunique()} sampled cells with coverage >= {config.min_coverage} "
        f"({', '.join(sorted(rd['geohash'].unique()))}); VAEs trained {config.max_epochs} epochs max, "
        f"base_channels {config.base_channels}, NDVI weight {config.ndvi_weight}. MSE in reflectance^2 on each "
        "chip's grid; embedding bytes are raw arrays (the GeoParquet adds geometry and bookkeeping columns).",
        "JPEG2000 (OpenJPEG) cannot code 13 uint16 bands into a few kB: at those QUALITY values most code blocks are "
        "dropped and the decoder returns the DC level, hence MSE > 1; those rows are measured, not a bug of the report.",
    ]
    return StorageReport(storage, rd, summary, verdicts(summary), notes)


def raw_scene_files(scenes: list) -> list[str]:
    """The band files of the scenes as delivered (a multi-band file counted once)."""
    return sorted({str(band.path) for scene in scenes for band in scene.bands})


def checkpoints_of(parquet: Path, checkpoints_dir: str | Path) -> pd.DataFrame:
    """(geohash, band, checkpoint_id, path) of the checkpoints an embeddings file names; the last per cell and band."""
    from geoembed_assets.core.checkpoints import checkpoint_path

    frame = pd.read_parquet(parquet, columns=["geohash", "band", "checkpoint_id"]).drop_duplicates()
    frame = frame.drop_duplicates(["geohash", "band"], keep="last").reset_index(drop=True)
    frame["path"] = [str(checkpoint_path(checkpoints_dir, c)) for c in frame["checkpoint_id"]]
    return frame


def partition_report(data_dir: str | Path, region: str, month: str, config: ReportConfig, precision: int = 5) -> StorageReport:
    """The report of one region x month from the files under data_dir (what the pipeline left there)."""
    from geoembed_assets.core.workflow import find_scenes

    data = Path(data_dir)
    chips = pd.read_parquet(data / "chips" / region / f"index_{month}.parquet")
    scenes, _, _ = find_scenes(data / "landing", region, month, precision)
    scenes = [s for s in scenes if s.scene_id in set(chips["scene_id"])]
    files = {"multi-band": data / "embeddings" / region / f"{month}.parquet",
             "single-band": data / "embeddings" / region / f"{month}-single.parquet"}  # fmt: skip
    existing = [p for p in files.values() if p.exists()]
    checkpoints = pd.concat([checkpoints_of(p, data / "checkpoints") for p in existing]) if existing else None
    return build_report(chips, raw_scene_files(scenes), files, data / "checkpoints", config, checkpoints)
