"""Storage and rate-distortion report (paper section 4.1, Table 3, measured at equal bytes, split by cover).

Storage: bytes of the raw scene as delivered, of the chips, of the embeddings GeoParquet and of the checkpoints
needed to decode them, with ratios to the raw scene and to the chips as plain uint16 arrays, with and without the
checkpoints.

Rate-distortion: every method is scored per cell on the chip's own grid (reflectance in [0, 1], the chip's uint16
values are the truth) over the pixels valid in the chip, by MSE and by mean absolute NDVI error, and every result
is kept per cell with its cover (land / water: share of valid pixels with NDWI > 0) so land is never averaged
away by easy water. Bytes per cell, as stored:
- embeddings: a shared spatial VAE per rate setting (latent grid 1/2**depth of the pixel grid, `latent_dim`
  channels) trained on the partition's cells, each cell's row written to a real GeoParquet (int8 latents, scales,
  mask, geometry, bookkeeping columns, ZSTD): the file's bytes per row; checkpoint bytes reported apart and shared
  by the partition's cells;
- block averaging: uint16 block means, nearest or bilinear upsampling, block side chosen for the byte budget;
- JPEG2000 (GDAL JP2OpenJPEG, 13-band uint16, QUALITY = % of the uncompressed size): real file bytes;
- lossless GeoTIFF (uint16, predictor 2, ZSTD / DEFLATE): real file bytes, MSE 0 by construction.
No-data pixels are filled with the band mean before a codec sees them and are never scored.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import torch
import torch.nn.functional as F
from rasterio.errors import NotGeoreferencedWarning

from geoembed_assets.core.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from geoembed_assets.core.chipping import CHIP_SCALE, read_chip
from geoembed_assets.core.embeddings import encode_cell, water_fraction, cover_label, write_embeddings
from geoembed_assets.core.size_prediction import torch_threads
from geoembed_assets.core.training import TrainingConfig, index_errors, train_cell_vae

# (depth, latent channels): latent grid at 1/2**depth of the pixel grid; from about 130x to 10,000x smaller than
# the uint16 chip on the default scene.
RATE_SETTINGS: tuple[tuple[int, int], ...] = ((2, 4), (3, 4), (4, 4), (5, 4), (5, 1))


@dataclass(frozen=True)
class ReportConfig:
    """What the rate-distortion part trains and measures; the defaults take minutes on 2 CPU cores."""

    n_cells: int = 0  # cells scored (0: every cell of the partition)
    min_coverage: float = 0.99  # score only (nearly) fully covered cells, so every method sees the same pixels
    rates: tuple[tuple[int, int], ...] = RATE_SETTINGS
    max_epochs: int = 40
    max_steps: int = 300  # the pipeline's "fast" preset
    base_channels: int = 48
    patch_size: int = 48
    ndvi_weight: float = 0.1
    refine_steps: int = 10
    jp2_qualities: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 25.0)  # % of uncompressed size; 100 = reversible
    seed: int = 0
    cpu_threads: int | None = None  # torch CPU threads while training (None: torch's default)

    def training(self, depth: int, latent_dim: int) -> TrainingConfig:
        patch = max(self.patch_size, 2**depth * 2)
        patch = patch + (-patch) % 2**depth
        return TrainingConfig(
            latent_dim=latent_dim, patch_size=patch, base_channels=self.base_channels, depth=depth,
            max_epochs=self.max_epochs, max_steps=self.max_steps, seed=self.seed,
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


# ------------------------------------------------------------------------------------------ rate-distortion


def _row(cell: str, cover: str, method: str, setting: str, nbytes: float, raw_bytes: int, truth: np.ndarray,
         recon: np.ndarray, sensor: str, bands: tuple[str, ...], checkpoint: float = 0) -> dict:  # fmt: skip
    return dict(
        geohash=cell, cover=cover, method=method, setting=setting, bytes=float(nbytes), checkpoint_bytes=float(checkpoint),
        ratio=raw_bytes / max(nbytes, 1), mse=valid_mse(truth, recon), ndvi_mae=ndvi_mae(truth, recon, sensor, bands),
    )  # fmt: skip


def baseline_rows(
    cell: str, cover: str, refl: np.ndarray, bands: tuple[str, ...], sensor: str, config: ReportConfig,
    budgets: list[float], workdir: Path,
) -> list[dict]:  # fmt: skip
    """Block averaging and JPEG2000 at each embedding byte budget, JPEG2000 at fixed rates, lossless GeoTIFFs."""
    rows = []
    b, h, w = refl.shape
    raw = b * h * w * 2
    for budget in sorted(set(int(x) for x in budgets)):
        block = block_for_budget(budget, b, h, w)
        for up in ("nearest", "bilinear"):
            recon, nbytes = block_average(refl, block, up)
            setting = f"block {block} px (budget {budget} B)"
            rows.append(_row(cell, cover, f"block average ({up})", setting, nbytes, raw, refl, recon, sensor, bands))
        recon, nbytes = jp2_roundtrip(refl, 100 * budget / raw, workdir)
        setting = f"QUALITY {100 * budget / raw:.3g} (budget {budget} B)"
        rows.append(_row(cell, cover, "JPEG2000", setting, nbytes, raw, refl, recon, sensor, bands))
    for quality in config.jp2_qualities:
        recon, nbytes = jp2_roundtrip(refl, quality, workdir)
        rows.append(_row(cell, cover, "JPEG2000", f"QUALITY {quality:g}", nbytes, raw, refl, recon, sensor, bands))
    for compress in ("ZSTD", "DEFLATE"):
        recon, nbytes = geotiff_roundtrip(refl, compress, workdir)
        rows.append(_row(cell, cover, f"GeoTIFF {compress} (lossless)", "uint16, predictor 2", nbytes, raw, refl, recon, sensor, bands))
    return rows


def train_rate_model(chips: pd.DataFrame, depth: int, latent_dim: int, config: ReportConfig, workdir: Path,
                     device: str = "cpu") -> Checkpoint:  # fmt: skip
    """One shared spatial VAE for a rate setting, trained on every chip of the partition like the pipeline does."""
    from geoembed_assets.core.workflow import cell_patches

    training = config.training(depth, latent_dim)
    patches, bands = cell_patches(chips["path"].tolist(), training.patch_size)
    if len(patches) < 2:
        raise ValueError(f"too few {training.patch_size}-px patches to train on in {len(chips)} chips")
    result = train_cell_vae(patches, bands, str(chips["sensor"].iloc[0]), training, device=device)
    owner = os.path.commonprefix(sorted(chips["geohash"])) or str(chips["geohash"].iloc[0])[0]
    meta = dict(geohash=owner, owner=owner, sensor=str(chips["sensor"].iloc[0]), bands=list(bands),
                training=training.__dict__, version=1)  # fmt: skip
    _, path = save_checkpoint(workdir, result.model, result.normalizer, meta)
    return load_checkpoint(path)


def embedding_rows(
    chips: pd.DataFrame, cells: list[str], ckpt: Checkpoint, setting: str, config: ReportConfig, workdir: Path,
    method: str = "embeddings (spatial VAE)",
) -> list[dict]:  # fmt: skip
    """Encode the cells (units: a cell, or a cell and date) with one checkpoint into a real GeoParquet; per unit:
    its share of the file's bytes and of the checkpoint (shared by every unit the model encodes)."""
    encoded, truths = [], []
    for cell in cells:
        chip = chips[chips["unit"] == cell].iloc[0]
        refl, bands, _ = read_chip(chip["path"])
        row, recon = encode_cell(ckpt, refl, bands, str(chip["geohash"]), int(chip["size_px"]), str(chip["scene_id"]), chip["datetime"],
                                 refine_steps=config.refine_steps if ckpt.model.config.architecture == "spatial" else 0)  # fmt: skip
        encoded.append(row)
        truths.append((cell, refl, recon, bands, str(chip["sensor"])))
    path = workdir / f"{setting.replace(' ', '_').replace(',', '')}.parquet"
    per_row = write_embeddings(pd.DataFrame(encoded), path) / len(encoded)
    ckpt_share = Path(ckpt.path).stat().st_size / chips["unit"].nunique()
    rows = []
    for cell, refl, recon, bands, sensor in truths:
        cover = cover_label(water_fraction(refl, bands, sensor))
        raw = refl.size * 2
        rows.append(_row(cell, cover, method, setting, per_row, raw, refl, recon, sensor, bands, ckpt_share))
    return rows


def pipeline_rows(chips: pd.DataFrame, cells: list[str], embeddings: Path, checkpoints_dir: Path) -> list[dict]:
    """The pipeline's own embeddings of these cells, as stored: the file's bytes per row, decoded with the
    checkpoint each row names; checkpoint bytes shared by the rows that use them."""
    from geoembed_assets.core.checkpoints import checkpoint_path
    from geoembed_assets.core.embeddings import decode_cell, read_embeddings

    frame = read_embeddings(embeddings)
    per_row = embeddings.stat().st_size / len(frame)
    users = frame.groupby("checkpoint_id")["geohash"].nunique()
    rows = []
    for cell in cells:
        mine = frame[frame["geohash"] == cell]
        if mine.empty:
            continue
        mine = mine[mine["scene_id"] == mine["scene_id"].iloc[0]]
        chip = chips[(chips["geohash"] == cell) & (chips["scene_id"] == mine["scene_id"].iloc[0])].iloc[0]
        refl, bands, _ = read_chip(chip["path"])
        decoded = decode_cell(mine, checkpoints_dir)
        ckpt_share = sum(checkpoint_path(checkpoints_dir, c).stat().st_size / users[c] for c in mine["checkpoint_id"].unique())
        sensor = str(chip["sensor"])
        cover = cover_label(water_fraction(refl, bands, sensor))
        setting = f"as stored ({int(mine['latent_channels'].iloc[0])} ch, {int(mine['latent_height'].iloc[0])} px grid)"
        rows.append(_row(cell, cover, "pipeline embeddings", setting, per_row * len(mine), refl.size * 2, refl,
                         decoded.image, sensor, bands, ckpt_share))  # fmt: skip
    return rows


def rate_distortion(
    chips: pd.DataFrame, config: ReportConfig, embeddings: Path | None = None, checkpoints_dir: Path | None = None,
    device: str = "cpu", progress=None, all_acquisitions: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """Per-cell rows of every method on the well-covered cells: one chip per cell, or every acquisition of every
    cell (`all_acquisitions`: a time series; rows are then keyed '<geohash>@<date>')."""
    say = progress or (lambda message: None)
    first = chips.sort_values("datetime")
    if not all_acquisitions:
        first = first.drop_duplicates("geohash")
    first = first.assign(
        unit=[f"{g}@{pd.Timestamp(d):%Y-%m-%d}" if all_acquisitions else g for g, d in zip(first["geohash"], first["datetime"])]
    )
    covered = first[first["coverage"] >= config.min_coverage]
    cells = sorted(covered["unit"])
    if config.n_cells:
        cells = cells[: config.n_cells]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch_threads(config.cpu_threads if device == "cpu" else None):
        workdir = Path(tmp)
        emb = []
        if embeddings is not None and Path(embeddings).exists():
            emb += pipeline_rows(first, [c for c in cells if "@" not in c], Path(embeddings), Path(checkpoints_dir))
        for depth, latent in config.rates:
            say(f"training the rate setting depth {depth}, {latent} channels")
            ckpt = train_rate_model(covered, depth, latent, config, workdir, device)
            emb += embedding_rows(covered, cells, ckpt, f"1/{2**depth} grid, {latent} ch, int8", config, workdir)
        rows += emb
        for cell in cells:
            chip = covered[covered["unit"] == cell].iloc[0]
            refl, bands, _ = read_chip(chip["path"])
            cover = cover_label(water_fraction(refl, bands, str(chip["sensor"])))
            budgets = [r["bytes"] for r in emb if r["geohash"] == cell]
            rows += baseline_rows(cell, cover, refl, bands, str(chip["sensor"]), config, budgets, workdir)
    return pd.DataFrame(rows)


def comparison(rd: pd.DataFrame) -> pd.DataFrame:
    """Per embedding setting and cover: mean ratio and MSE of the embeddings, of the best baseline at no more
    bytes (per cell), and their quotient (below 0.5: the embeddings halve the best codec's error)."""
    is_emb = rd["method"].str.contains("embeddings")
    rows = []
    for e in rd[is_emb].itertuples():
        base = rd[~is_emb & (rd["geohash"] == e.geohash) & (rd["bytes"] <= e.bytes) & ~rd["method"].str.startswith("GeoTIFF")]
        best = base.loc[base["mse"].idxmin()] if len(base) else None
        rows.append(dict(
            method=e.method, setting=e.setting, cover=e.cover, geohash=e.geohash, ratio=e.ratio, bytes=e.bytes,
            checkpoint_share=e.checkpoint_bytes, ratio_with_checkpoint=e.ratio * e.bytes / (e.bytes + e.checkpoint_bytes),
            mse=e.mse, ndvi_mae=e.ndvi_mae, best_baseline=None if best is None else f"{best['method']} ({best['setting']})",
            baseline_mse=np.nan if best is None else best["mse"],
        ))  # fmt: skip
    per_cell = pd.DataFrame(rows)
    if per_cell.empty:
        return per_cell
    per_cell["mse/baseline"] = per_cell["mse"] / per_cell["baseline_mse"]
    return (
        per_cell.groupby(["method", "setting", "cover"], as_index=False, sort=False)
        .agg(cells=("geohash", "nunique"), ratio=("ratio", "mean"), ratio_with_checkpoint=("ratio_with_checkpoint", "mean"),
             bytes_per_cell=("bytes", "mean"), mse=("mse", "mean"), baseline_mse=("baseline_mse", "mean"),
             worst_mse_over_baseline=("mse/baseline", "max"), mean_mse_over_baseline=("mse/baseline", "mean"),
             ndvi_mae=("ndvi_mae", "mean"))  # fmt: skip
        .sort_values(["cover", "ratio"])
        .reset_index(drop=True)
    )


def curve(rd: pd.DataFrame) -> pd.DataFrame:
    """Points of the rate-distortion plot: mean ratio and MSE per method, setting and cover."""
    methods = rd[~rd["method"].str.startswith("GeoTIFF") & (rd["method"] != "block average (nearest)")]
    return methods.groupby(["method", "setting", "cover"], as_index=False).agg(ratio=("ratio", "mean"), mse=("mse", "mean"))


# ------------------------------------------------------------------------------------------------------ storage


def _files_bytes(paths: list[str | Path]) -> int:
    return int(sum(Path(p).stat().st_size for p in {str(p) for p in paths} if Path(p).exists()))


def storage_table(
    raw_files: list[str | Path], chips: pd.DataFrame, embedding_files: dict[str, Path], checkpoints_dir: Path
) -> pd.DataFrame:
    """Bytes per artefact of one scene partition, with the ratios to the raw scene and to the uint16 chips, with and
    without the checkpoints the embeddings need."""
    from geoembed_assets.core.checkpoints import checkpoint_path
    from geoembed_assets.core.workflow import raw_chip_bytes

    raw = _files_bytes(raw_files)
    chip_raw = raw_chip_bytes(chips)
    rows = [
        dict(artefact="raw scene as delivered (band files)", bytes=raw, checkpoint_bytes=0),
        dict(artefact="chips as uint16 arrays", bytes=chip_raw, checkpoint_bytes=0),
        dict(artefact="chips (ZSTD uint16 GeoTIFF, lossless)", bytes=_files_bytes(chips["path"].tolist()), checkpoint_bytes=0),
    ]  # fmt: skip
    for label, path in embedding_files.items():
        if not Path(path).exists():
            continue
        ids = pd.read_parquet(path, columns=["checkpoint_id"])["checkpoint_id"].unique()
        ckpt = _files_bytes([checkpoint_path(checkpoints_dir, c) for c in ids])
        rows.append(dict(artefact=f"{label} embeddings (GeoParquet)", bytes=Path(path).stat().st_size, checkpoint_bytes=ckpt))
    table = pd.DataFrame(rows)
    table["raw/bytes"] = raw / table["bytes"]
    table["raw/(bytes+checkpoints)"] = raw / (table["bytes"] + table["checkpoint_bytes"])
    table["uint16 chips/(bytes+checkpoints)"] = chip_raw / (table["bytes"] + table["checkpoint_bytes"])
    return table


@dataclass
class StorageReport:
    storage: pd.DataFrame
    rate_distortion: pd.DataFrame  # per cell and method
    comparison: pd.DataFrame  # per embedding setting and cover, against the best codec at no more bytes
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        fmt = dict(index=False, floatfmt=".4g")
        parts = ["## Storage", self.storage.to_markdown(**fmt),
                 "## Embeddings against the best of block averaging and JPEG2000 at no more bytes, per cover",
                 self.comparison.to_markdown(**fmt), "## Rate-distortion curve (mean per cover)",
                 curve(self.rate_distortion).sort_values(["cover", "method", "ratio"]).to_markdown(**fmt), *self.notes]  # fmt: skip
        return "\n\n".join(parts)

    def plot(self, title: str) -> bytes:
        from geoembed_assets.core.previews import rate_distortion_png

        return rate_distortion_png(curve(self.rate_distortion), title)


def build_report(
    chips: pd.DataFrame,
    raw_files: list[str | Path],
    embedding_files: dict[str, Path],
    checkpoints_dir: str | Path,
    config: ReportConfig,
    device: str = "cpu",
    progress=None,
) -> StorageReport:
    """The whole report for one scene partition: storage bytes, rate-distortion per cell and cover, comparison."""
    storage = storage_table(raw_files, chips, embedding_files, Path(checkpoints_dir))
    multi = embedding_files.get("multi-band")
    rd = rate_distortion(chips, config, multi, Path(checkpoints_dir), device, progress)
    notes = [
        f"Rate-distortion on {rd['geohash'].nunique()} cells with coverage >= {config.min_coverage}; rate settings "
        f"(depth, channels) {list(config.rates)}, {config.max_steps} training steps each, {config.refine_steps} latent "
        "refinement steps per cell. MSE in reflectance^2 on each chip's grid; ratio = uint16 chip bytes / embedding "
        "bytes as stored (the GeoParquet's bytes per row); checkpoint bytes are shared by the partition's cells.",
        "JPEG2000 (OpenJPEG) codes the 13 bands independently; at a few hundred bytes per cell it drops most code "
        "blocks, so its error explodes: measured, not a bug of the report.",
    ]
    return StorageReport(storage, rd, comparison(rd), notes)


def raw_scene_files(scenes: list) -> list[str]:
    """The band files of the scenes as delivered (a multi-band file counted once)."""
    return sorted({str(band.path) for scene in scenes for band in scene.bands})


def partition_report(
    data_dir: str | Path, region: str, month: str, config: ReportConfig, precision: int = 5, progress=None
) -> StorageReport:
    """The report of one region x month from the files under data_dir (what the pipeline left there)."""
    from geoembed_assets.core.workflow import find_scenes

    data = Path(data_dir)
    chips = pd.read_parquet(data / "chips" / region / f"index_{month}.parquet")
    scenes, _, _ = find_scenes(data / "landing", region, month, precision)
    scenes = [s for s in scenes if s.scene_id in set(chips["scene_id"])]
    files = {"multi-band": data / "embeddings" / region / f"{month}.parquet",
             "single-band": data / "embeddings" / region / f"{month}-single.parquet"}  # fmt: skip
    return build_report(chips, raw_scene_files(scenes), files, data / "checkpoints", config, progress=progress)


def quick_rate_distortion(
    shown: list, bytes_per_row: float, ratios: tuple[float, ...] = (50, 100, 200, 500, 1000)
) -> pd.DataFrame:
    """Curve points for the embeddings materialization, cheap enough for every run: the pipeline's embeddings of the
    shown cells (`workflow.PreviewCell`: chip and decoded row) as stored, against block averaging and JPEG2000 at
    fixed ratios on the same cells, with cover."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in shown:
            refl, raw = c.truth, c.truth.size * 2
            out.append(_row(c.geohash, c.cover, "pipeline embeddings", "as stored", bytes_per_row, raw, refl, c.decoded,
                            c.sensor, c.bands))  # fmt: skip
            for ratio in ratios:
                recon, nbytes = block_average(refl, block_for_budget(raw / ratio, *refl.shape), "bilinear")
                out.append(_row(c.geohash, c.cover, "block average (bilinear)", f"{ratio:g}x", nbytes, raw, refl, recon,
                                c.sensor, c.bands))  # fmt: skip
                recon, nbytes = jp2_roundtrip(refl, 100 / ratio, tmp)
                out.append(_row(c.geohash, c.cover, "JPEG2000", f"{ratio:g}x", nbytes, raw, refl, recon, c.sensor, c.bands))
    return pd.DataFrame(out)
