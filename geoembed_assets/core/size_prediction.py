"""Embedding-size prediction (paper section 3.3, Tables 1-2, Figure 4).

Calibration trains VAEs of several latent sizes on a seeded sample of cells and records the best held-out
reconstruction MSE per (cell, mode, size). Each cell also has complexity scores (gzip ratio, linear and kernel
PCA components). We then model the loss as a function of (score s, size) with u = log2(size):

- linear:       loss = t0 + t1*u + t2*s
- polynomial:   loss = t0 + t1*u + t2*s + t3*u^2 + t4*u*s + t5*s^2          (degree 2)
- exponential:  loss = exp(t0 + t1*u + t2*s + t3*u*s)                      (log-loss linear in u, s, u*s)

All three use the same size feature u, so they are compared fairly; the exponential model is the paper's choice
(loss decays with size at a rate that depends on the cell's complexity). R^2 is computed on the loss itself for
every model (the exponential one is fitted in log space, then refined by least squares on the loss). The best
(function, score) pair is chosen by leave-one-cell-out R^2 when there are >= 3 cells (in-sample R^2 rewards the
6-parameter polynomial for memorising a handful of points), by in-sample R^2 otherwise, among the models whose
predicted loss is positive and non-increasing in size for every cell to predict (see `is_plausible`).

A cell's predicted size is the smallest candidate size whose predicted loss is <= the error bound (default: the
quality target's MSE 2.25e-4, reflectance RMSE 0.015, see `core/quality.py`; the paper's 0.002 is far looser), or
the largest candidate when none is.

A fit no better than a constant is not used: when the chosen model's leave-one-cell-out R^2 (in-sample R^2 with
fewer than 3 cells) is not above `MIN_R2`, every cell gets the measured fallback size instead, the smallest
calibrated size at which every sampled cell met the bound (the largest calibrated size when none did), and the
materialization says so.

Sizes are latent channels per grid position for the spatial VAE, vector lengths for the flat one.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from scipy.optimize import least_squares

from geoembed_assets.core.patches import Patches, band_patches
from geoembed_assets.core.quality import QualityTarget
from geoembed_assets.core.training import TrainingConfig, train_cell_vae

SCORES = ("gzip_ratio", "pca_components", "kernel_pca_components")
FUNCTIONS = ("linear", "polynomial", "exponential")
MODES = ("multi", "single")


@dataclass(frozen=True)
class CalibrationConfig:
    """Calibration settings; the defaults are tiny (tests, default pipeline), `PAPER_CALIBRATION` is the paper's."""

    sizes: tuple[int, ...] = (2, 4, 8)
    n_cells: int = 4
    max_epochs: int = 10
    patience: int = 5  # epochs without improvement of the training loss before stopping
    base_channels: int = 16
    patch_size: int = 48
    architecture: str = "spatial"
    modes: tuple[str, ...] = ("multi",)
    single_bands: tuple[str, ...] | None = ("B08",)  # bands calibrated in single mode; None: every band
    index_weights: dict[str, float] = field(default_factory=lambda: {"ndvi": 0.1})
    ndvi_ablation: bool = True  # also train without the NDVI term (multi mode, middle size) and record NDVI error
    seed: int = 0
    cpu_threads: int | None = 1  # torch threads on CPU while calibrating (None: torch's default)

    def training(self, latent_dim: int, index_weights: dict[str, float] | None = None) -> TrainingConfig:
        return TrainingConfig(
            latent_dim=latent_dim, patch_size=self.patch_size, base_channels=self.base_channels,
            max_epochs=self.max_epochs, patience=self.patience, seed=self.seed, architecture=self.architecture,
            depth=2 if self.architecture == "spatial" else 3, max_steps=None,
            index_weights=dict(self.index_weights if index_weights is None else index_weights),
        )  # fmt: skip


PAPER_CALIBRATION = CalibrationConfig(
    sizes=(2, 4, 8, 16, 32, 64, 128), n_cells=100, max_epochs=10_000, patience=50, base_channels=32, single_bands=None,
    architecture="flat", patch_size=32, modes=MODES,
)  # fmt: skip
CANDIDATE_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
ERROR_BOUND = QualityTarget().max_mse
MIN_R2 = 0.0  # a fit must predict held-out cells better than their mean loss does


def sample_cells(geohashes: list[str], n: int, seed: int, scores: pd.DataFrame | None = None) -> list[str]:
    """Seeded random sample of n distinct cells (all of them when n >= their number), sorted.

    With `scores` (per geohash, the SCORES columns) the sample is stratified: cells are ordered by their mean rank
    over the scores, cut into n equal bins, and one cell drawn per bin, so that the calibration spans the range of
    complexity the predictions will be asked about (a fit extrapolates badly).
    """
    cells = sorted(set(geohashes))
    if n >= len(cells):
        return cells
    rng = np.random.default_rng(seed)
    if scores is None:
        return sorted(rng.choice(cells, size=n, replace=False).tolist())
    ranked = scores.set_index("geohash").reindex(cells)[list(SCORES)].rank().mean(axis=1).sort_values(kind="stable")
    return sorted(str(rng.choice(part)) for part in np.array_split(ranked.index.to_numpy(), n))


def calibrate_cell(
    patches: Patches, band_names: tuple[str, ...], sensor: str, config: CalibrationConfig, device: str = "cpu"
) -> list[dict]:
    """Train one VAE per (mode, band, size) on one cell; rows of best held-out MSE and NDVI error.

    `ndvi_weight` records the NDVI term the run trained with; the ablation rows (ndvi_weight 0) exist only in
    multi mode at the middle size and are excluded from the size fits.
    """
    rows = []
    for mode in config.modes:
        if mode == "multi":
            targets = [("all", patches, band_names)]
        elif mode == "single":
            wanted = band_names if config.single_bands is None else [b for b in band_names if b in config.single_bands]
            targets = [(b, band_patches(patches, band_names.index(b)), (b,)) for b in wanted]
        else:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        for band, data, names in targets:
            for size in config.sizes:
                weights = [config.index_weights]
                if config.ndvi_ablation and mode == "multi" and size == config.sizes[len(config.sizes) // 2]:
                    weights.append({k: v for k, v in config.index_weights.items() if k != "ndvi"})
                for w in weights:
                    result = train_cell_vae(data, names, sensor, config.training(size, w), device=device)
                    rows.append(
                        dict(
                            mode=mode, band=band, size=size, ndvi_weight=float(w.get("ndvi", 0.0)),
                            holdout_mse=result.holdout_mse, train_mse=result.train_mse, epochs=result.epochs,
                            best_train_loss=min(result.history), holdout_ndvi_mae=result.holdout_index_errors.get("ndvi", np.nan),
                        )
                    )  # fmt: skip
    return rows


def calibration_points(runs: pd.DataFrame, scores: pd.DataFrame, ndvi_weight: float | None = None) -> pd.DataFrame:
    """One (cell, mode, size) point: loss = held-out MSE (mean over bands in single mode) plus the cell's scores.

    Ablation runs (an NDVI weight other than the main one) are left out; scores are averaged over the cell's chips.
    """
    main = runs if ndvi_weight is None else runs[np.isclose(runs["ndvi_weight"], ndvi_weight)]
    main = main[np.isfinite(main["holdout_mse"])]  # a cell too small to hold out a patch gives no point
    loss = main.groupby(["geohash", "mode", "size"], as_index=False)["holdout_mse"].mean().rename(columns={"holdout_mse": "loss"})
    cell_scores = scores.groupby("geohash", as_index=False)[list(SCORES)].mean()
    return loss.merge(cell_scores, on="geohash", how="inner")


def _features(function: str, s: np.ndarray, size: np.ndarray) -> np.ndarray:
    u = np.log2(np.asarray(size, float))
    s = np.asarray(s, float)
    one = np.ones_like(u)
    if function == "linear":
        return np.stack([one, u, s], axis=1)
    if function == "polynomial":
        return np.stack([one, u, s, u**2, u * s, s**2], axis=1)
    if function == "exponential":
        return np.stack([one, u, s, u * s], axis=1)
    raise ValueError(f"function must be one of {FUNCTIONS}, got {function!r}")


@dataclass(frozen=True)
class SizeModel:
    """A fitted loss(score, size) model (see the module docstring for the formulas)."""

    function: str
    score: str
    coef: tuple[float, ...]
    r2: float  # in-sample, on the loss
    n_points: int
    cv_r2: float = float("nan")  # leave-one-cell-out
    fallback_size: int | None = None  # set when the fit is no better than a constant: every cell gets this size

    @property
    def skill(self) -> float:
        """The R^2 the choice rests on: leave-one-cell-out when computed, else in-sample."""
        return self.cv_r2 if np.isfinite(self.cv_r2) else self.r2

    @property
    def informative(self) -> bool:
        return bool(np.isfinite(self.skill) and self.skill > MIN_R2)

    def predict(self, score: float | np.ndarray, size: float | np.ndarray) -> np.ndarray:
        s, z = np.broadcast_arrays(np.atleast_1d(np.asarray(score, float)), np.atleast_1d(np.asarray(size, float)))
        y = _features(self.function, s, z) @ np.asarray(self.coef)
        return np.exp(y) if self.function == "exponential" else y

    def to_dict(self) -> dict:
        return asdict(self)


def r_squared(y: np.ndarray, y_hat: np.ndarray) -> float:
    """Coefficient of determination; NaN when y has no variance."""
    y, y_hat = np.asarray(y, float), np.asarray(y_hat, float)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return float("nan") if ss_tot == 0 else 1.0 - float(np.sum((y - y_hat) ** 2)) / ss_tot


def _fit_coef(function: str, s: np.ndarray, size: np.ndarray, loss: np.ndarray) -> np.ndarray:
    x = _features(function, s, size)
    if function != "exponential":
        return np.linalg.lstsq(x, loss, rcond=None)[0]
    start = np.linalg.lstsq(x, np.log(np.maximum(loss, 1e-12)), rcond=None)[0]
    scale = np.maximum(np.abs(loss).mean(), 1e-12)  # residuals in units of the mean loss: well conditioned
    method = "lm" if len(loss) >= len(start) else "trf"
    refined = least_squares(lambda t: (np.exp(np.clip(x @ t, -50, 50)) - loss) / scale, start, method=method)
    return refined.x if refined.success else start


def fit_size_model(function: str, score: str, points: pd.DataFrame) -> SizeModel:
    """Fit one (function, score) pair to calibration points (columns: score, size, loss[, geohash])."""
    s, size, loss = points[score].to_numpy(float), points["size"].to_numpy(float), points["loss"].to_numpy(float)
    coef = _fit_coef(function, s, size, loss)
    model = SizeModel(function, score, tuple(float(c) for c in coef), 0.0, len(points))
    cv = float("nan")
    if "geohash" in points and points["geohash"].nunique() >= 3:
        pred = np.empty(len(points))
        for cell in points["geohash"].unique():
            out = (points["geohash"] == cell).to_numpy()
            c = _fit_coef(function, s[~out], size[~out], loss[~out])
            pred[out] = replace(model, coef=tuple(c)).predict(s[out], size[out])
        cv = r_squared(loss, pred)
    return replace(model, r2=r_squared(loss, model.predict(s, size)), cv_r2=cv)


def fit_all(points: pd.DataFrame) -> list[SizeModel]:
    """Every (function, score) model on the points of one mode."""
    return [fit_size_model(f, s, points) for f in FUNCTIONS for s in SCORES]


def r2_table(models: list[SizeModel], cross_validated: bool = False) -> pd.DataFrame:
    """Paper-style table: one row per function, one column per score."""
    rows = {f: {m.score: (m.cv_r2 if cross_validated else m.r2) for m in models if m.function == f} for f in FUNCTIONS}
    return pd.DataFrame(rows).T.reindex(index=list(FUNCTIONS), columns=list(SCORES)).rename_axis("function")


def is_plausible(model: SizeModel, scores: np.ndarray, sizes: tuple[int, ...] = CANDIDATE_SIZES) -> bool:
    """Positive loss that never grows with the size, for every given score, over the candidate sizes.

    Linear and polynomial fits to a handful of cells easily extrapolate to negative or rising losses, which would
    hand cells absurd sizes; such models are not used for prediction.
    """
    grid = np.asarray(sorted(sizes), float)
    for score in np.unique(np.asarray(scores, float)):
        loss = model.predict(score, grid)
        if not (np.all(np.isfinite(loss)) and np.all(loss > 0) and np.all(np.diff(loss) <= 1e-12)):
            return False
    return True


def choose_best(models: list[SizeModel], scores: pd.DataFrame | None = None, sizes: tuple[int, ...] = CANDIDATE_SIZES) -> SizeModel:
    """Highest leave-one-cell-out R^2 (in-sample R^2 when not every model has one) among plausible models.

    `scores` (columns named by score) are the cells the model will predict for; a model is plausible when
    `is_plausible` on them. When none is, the paper's choice (exponential on the gzip ratio) is returned.
    """
    use_cv = all(np.isfinite(m.cv_r2) for m in models)

    def key(m: SizeModel) -> float:
        v = m.cv_r2 if use_cv else m.r2
        return v if np.isfinite(v) else -np.inf

    usable = [m for m in models if scores is None or is_plausible(m, scores[m.score].to_numpy(), sizes)]
    if not usable:
        paper = [m for m in models if m.function == "exponential" and m.score == "gzip_ratio"]
        return paper[0] if paper else max(models, key=key)
    return max(usable, key=key)


def predict_size(model: SizeModel, score: float, candidates: tuple[int, ...] = CANDIDATE_SIZES, bound: float = ERROR_BOUND) -> int:
    """Smallest candidate size whose predicted loss is <= bound; the largest candidate when none is; the model's
    fallback size when its fit is no better than a constant."""
    if model.fallback_size is not None:
        return int(model.fallback_size)
    sizes = sorted(candidates)
    losses = model.predict(score, np.asarray(sizes, float))
    for size, loss in zip(sizes, losses):
        if loss <= bound:
            return int(size)
    return int(sizes[-1])


def measured_fallback_size(points: pd.DataFrame, bound: float, candidates: tuple[int, ...] = CANDIDATE_SIZES) -> int:
    """Smallest calibrated size at which every sampled cell's measured loss met the bound; else the largest
    calibrated size (nothing measured supports a larger one). Used instead of a fit that predicts no better than
    a constant."""
    worst = points.groupby("size")["loss"].max().sort_index()
    meeting = worst[worst <= bound]
    if len(meeting):
        return int(meeting.index[0])
    return int(worst.index.max()) if len(worst) else int(max(candidates))


def with_fallback(model: SizeModel, points: pd.DataFrame, bound: float, candidates: tuple[int, ...] = CANDIDATE_SIZES) -> SizeModel:
    """The model itself when informative, else the model carrying the measured fallback size."""
    return model if model.informative else replace(model, fallback_size=measured_fallback_size(points, bound, candidates))


def predict_cell_sizes(
    models: dict[str, SizeModel], cell_scores: pd.DataFrame, candidates: tuple[int, ...] = CANDIDATE_SIZES,
    bound: float = ERROR_BOUND,
) -> pd.DataFrame:
    """Per cell and mode: the predicted size, the score it came from and the loss predicted at that size."""
    rows = []
    for mode, model in models.items():
        for cell in cell_scores.itertuples():
            score = float(getattr(cell, model.score))
            size = predict_size(model, score, candidates, bound)
            rows.append(
                dict(
                    geohash=cell.geohash, mode=mode, latent_dim=size, score_name=model.score, score=score,
                    function=model.function if model.fallback_size is None else "fallback (fit no better than a constant)",
                    predicted_loss=float(model.predict(score, size)[0]) if model.fallback_size is None else float("nan"),
                )
            )  # fmt: skip
    return pd.DataFrame(rows)


def loss_curve_png(
    models: dict[str, SizeModel],
    scores: dict[str, float],
    title: str,
    bound: float = ERROR_BOUND,
    sizes: tuple[int, ...] = CANDIDATE_SIZES,
    points: pd.DataFrame | None = None,
) -> bytes:
    """Figure-4-like plot: predicted loss against embedding size for one cell, one line per mode, with the measured
    calibration points of every sampled cell (`points`: mode, size, loss); PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    grid = np.geomspace(min(sizes), max(sizes), 64)
    for mode, model in models.items():
        ax.plot(grid, model.predict(scores[mode], grid), label=f"{mode}-band ({model.function}, {model.score}={scores[mode]:.3g})")
        chosen = predict_size(model, scores[mode], sizes, bound)
        ax.scatter([chosen], model.predict(scores[mode], chosen), zorder=3)
    if points is not None and len(points):
        for mode, part in points.groupby("mode"):
            ax.scatter(part["size"], part["loss"], s=12, alpha=0.6, marker="x", label=f"measured ({mode}-band, sampled cells)")
    ax.axhline(bound, color="red", linestyle="--", linewidth=1, label=f"error bound {bound:g}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("embedding size")
    ax.set_ylabel("predicted loss (MSE)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


@contextmanager
def torch_threads(n: int | None):
    """Temporarily use n CPU threads: tiny networks run faster on one thread than on several contended ones."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_calibration(
    chips: pd.DataFrame, config: CalibrationConfig, device: str = "cpu", scores: pd.DataFrame | None = None,
    log=None,
) -> pd.DataFrame:
    """Calibrate on a seeded sample of the chip index's cells (stratified by `scores` per cell when given);
    one row per trained VAE (with its geohash)."""
    from geoembed_assets.core.progress import track
    from geoembed_assets.core.workflow import cell_patches

    rows = []
    factor = 2 ** (2 if config.architecture == "spatial" else 3)
    size_px = int(chips["size_px"].min()) if "size_px" in chips else config.patch_size * 2
    if size_px < 2 * config.patch_size:  # small cells: patches small enough for a few per chip, held-out ones too
        config = replace(config, patch_size=max(factor, (size_px // 2) // factor * factor))
    with torch_threads(config.cpu_threads if device == "cpu" else None):
        cells = sample_cells(chips["geohash"].tolist(), config.n_cells, config.seed, scores)
        for geohash in track(cells, "calibrating", log, unit="cells"):
            cell = chips[chips["geohash"] == geohash]
            patches, bands = cell_patches(cell["path"].tolist(), config.patch_size)
            for row in calibrate_cell(patches, bands, str(cell["sensor"].iloc[0]), config, device):
                rows.append(dict(geohash=geohash, **row))
    return pd.DataFrame(rows)


def ndvi_ablation(runs: pd.DataFrame) -> pd.DataFrame:
    """Held-out NDVI error and MSE with and without the NDVI loss term (multi mode, ablation size), per cell."""
    multi = runs[runs["mode"] == "multi"]
    sizes = multi.groupby("size")["ndvi_weight"].nunique()
    sizes = sizes[sizes > 1].index
    part = multi[multi["size"].isin(sizes)]
    if part.empty:
        return pd.DataFrame()
    table = part.pivot_table(index=["geohash", "size"], columns="ndvi_weight", values=["holdout_ndvi_mae", "holdout_mse"])
    table.columns = [f"{v}@ndvi_w={w:g}" for v, w in table.columns]
    return table.reset_index()
