"""Missing-date prediction (paper section 4.3, Figure 9, Tables 5-6): a ConvLSTM predicts a cell at date T from
its previous `window` dates with data (paper: 2) and, for gap filling, the `after` following dates with data, on
embeddings (the cell model's latent grids, decoded by the frozen decoder) and on raw chips (its twin), against two
baselines that need no training: persistence (the previous date with data) and linear interpolation in time
between the dates with data around T.

The network is a residual on top of the baseline its own inputs allow, computed in its own space (standardised
latents or standardised pixels): persistence of the last previous date when `after` is 0, linear interpolation in
time between the last previous and the first following date when `after` >= 1. Its head starts at zero, so an
untrained model *is* that baseline; every frame also carries its signed time offset to T (days / `time_scale`), so
the recurrence knows how far each input is from the target.

Split: held-back dates on held-back cells. Training cells contribute every date as a target; test cells are
never seen by the ConvLSTM, and their held-back dates are seen by nobody (the shared VAE is trained on every
other chip, as the pipeline trains a partition's model on what it has observed). Windows skip dates without
data (the sample's winter gap) and the held-back dates of the test cells, which are "missing".

Errors are per-pixel MSE and MAE in reflectance over pixels valid in the real image and finite in every
prediction compared (one common mask, so the methods are scored on the same pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from geoembed_assets.core.codec import encode_chip, encode_chip_float
from geoembed_assets.core.models.measure import Cost, measured, measured_isolated
from geoembed_assets.core.models.series import CellSeries
from geoembed_assets.core.patches import concat_patches, cut_patches
from geoembed_assets.core.training import Normalizer, TrainingConfig, seed_everything, train_cell_vae


@dataclass(frozen=True)
class SeriesConfig:
    """Hyper-parameters shared by the embedding ConvLSTM and its raw twin."""

    window: int = 2  # previous dates with data fed to the model (paper: 2)
    after: int = 0  # following dates with data fed to the model (0: forecast; 1: gap filling, what interpolation sees)
    time_scale: float = 30.0  # days per unit of the time-offset channel
    hidden: int = 32  # ConvLSTM hidden channels
    kernel: int = 3
    epochs: int = 60
    batch_size: int = 16
    learning_rate: float = 3e-3
    seed: int = 0
    holdout_dates: tuple[str, ...] = ("2021-05", "2021-08")  # ISO prefixes of the dates held back
    test_fraction: float = 0.3  # share of cells held back (their held-back dates are the test set)
    # "decoder" (default, best on the validation split of both settings): latent error mapped by the decoder's linearised
    # response; "uniform": MSE of standardised latents; "pixel": masked, band-weighted MSE of the predicted grid decoded
    # by the frozen decoder vs the real chip (~2.5x the CPU time of the others, no better on validation)
    latent_loss: str = "decoder"
    latents: str = "int8"  # ConvLSTM inputs/targets: "int8" (dequantised, as stored) or "float" (refined, unquantised)
    refine_steps: int = 10  # latent refinement when encoding the series (the pipeline's embed default)


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step: the four gates from a convolution over [input, hidden]."""

    def __init__(self, channels: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(channels + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, o, g = torch.chunk(self.gates(torch.cat([x, h], dim=1)), 4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class ConvLSTM(nn.Module):
    """(N, T, C, H, W) -> (N, C, H, W): a baseline of the inputs plus a learnt change (so it starts at the baseline).

    The T frames are `window` previous dates then `after` following ones, in time order. `offsets` (N, T) are the
    frames' signed time distances to the target (negative before it), in units of `time_scale` days. With
    `time_channel` each frame gets its offset as an extra constant channel. The baseline is the last previous
    frame (persistence) when `after` is 0, else the linear interpolation in time between the last previous and the
    first following frame (needs `offsets`)."""

    def __init__(self, channels: int, hidden: int = 32, kernel: int = 3, window: int | None = None, after: int = 0,
                 time_channel: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.window, self.after, self.time_channel = window, after, time_channel
        self.cell = ConvLSTMCell(channels + int(time_channel), hidden, kernel)
        self.head = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def baseline(self, seq: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Persistence (after == 0) or linear interpolation in time between the frames around the target."""
        if not self.after:
            return seq[:, -1]
        if offsets is None:
            raise ValueError("a ConvLSTM with following dates needs the frames' time offsets")
        k = seq.shape[1] - self.after  # first following frame
        before, after = offsets[:, k - 1], offsets[:, k]
        w = (-before / (after - before)).view(-1, 1, 1, 1)
        return seq[:, k - 1] + w * (seq[:, k] - seq[:, k - 1])

    def forward(self, seq: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
        n, steps, _, hgt, wid = seq.shape
        if self.time_channel:
            if offsets is None:
                raise ValueError("a ConvLSTM with a time channel needs the frames' time offsets")
            seq_in = torch.cat([seq, offsets.view(n, steps, 1, 1, 1).expand(n, steps, 1, hgt, wid).to(seq.dtype)], dim=2)
        else:
            seq_in = seq
        h = seq.new_zeros(n, self.cell.hidden, hgt, wid)
        c = torch.zeros_like(h)
        for t in range(steps):
            h, c = self.cell(seq_in[:, t], (h, c))
        return self.baseline(seq, offsets) + self.head(h)


def previous_dates(usable: np.ndarray, target: int, window: int) -> list[int] | None:
    """The `window` latest usable dates before `target`, oldest first (None when there are fewer)."""
    before = np.flatnonzero(usable[:target])
    return [int(i) for i in before[-window:]] if len(before) >= window else None


def context_dates(usable: np.ndarray, target: int, window: int, after: int = 0) -> list[int] | None:
    """The `window` latest usable dates before `target` and the `after` first usable dates after it, in time order
    (None when either side has fewer)."""
    prev = previous_dates(usable, target, window)
    following = np.flatnonzero(usable[target + 1 :]) + target + 1
    if prev is None or len(following) < after:
        return None
    return prev + [int(i) for i in following[:after]]


def persistence(cube: np.ndarray, usable: np.ndarray, target: int) -> np.ndarray | None:
    """The image of the latest usable date before `target` ((dates, B, H, W) -> (B, H, W)); None if there is none."""
    prev = previous_dates(usable, target, 1)
    return None if prev is None else cube[prev[0]]


def linear_interpolation(cube: np.ndarray, usable: np.ndarray, days: np.ndarray, target: int) -> np.ndarray | None:
    """Interpolation in time between the usable dates around `target` (by day); None without one on each side."""
    before, after = np.flatnonzero(usable[:target]), np.flatnonzero(usable[target + 1 :]) + target + 1
    if not len(before) or not len(after):
        return None
    a, b = int(before[-1]), int(after[0])
    w = (days[target] - days[a]) / (days[b] - days[a])
    return (1 - w) * cube[a] + w * cube[b]


def masked_errors(truth: np.ndarray, predictions: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per-pixel MSE and MAE of each prediction over entries valid in `truth` and finite in every prediction."""
    mask = np.isfinite(truth)
    for p in predictions.values():
        mask &= np.isfinite(p)
    n = int(mask.sum())
    out = {}
    for name, p in predictions.items():
        d = (p - truth)[mask]
        out[name] = {"mse": float(np.mean(d**2)) if n else float("nan"), "mae": float(np.mean(np.abs(d))) if n else float("nan"), "n": n}
    return out


@dataclass
class FitResult:
    model: ConvLSTM
    history: list[float]  # training loss per epoch
    epochs: int


class LatentDecoder(nn.Module):
    """Standardised latent grids (N, C, h, w) -> standardised pixels (N, B, H, W) through a frozen VAE decoder (the
    ConvLSTM's pixel-space loss); `z_mean`, `z_std`: the latent standardisation, `shape`: the chips' (H, W)."""

    def __init__(self, vae: nn.Module, z_mean: np.ndarray, z_std: np.ndarray, shape: tuple[int, int]) -> None:
        super().__init__()
        self.vae = vae.eval()
        for p in self.vae.parameters():
            p.requires_grad_(False)
        self.register_buffer("z_mean", torch.as_tensor(np.asarray(z_mean, np.float32).reshape(1, -1, 1, 1)))
        self.register_buffer("z_std", torch.as_tensor(np.asarray(z_std, np.float32).reshape(1, -1, 1, 1)))
        self.shape = tuple(int(v) for v in shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z * self.z_std + self.z_mean)[:, :, : self.shape[0], : self.shape[1]]


def fit_convlstm(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: SeriesConfig,
    masks: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    device: str = "cpu",
    projection: torch.Tensor | None = None,
    offsets: torch.Tensor | None = None,
    decoder: nn.Module | None = None,
) -> FitResult:
    """Seeded training of a ConvLSTM on (N, T, C, H, W) -> (N, C, H, W) by masked, band-weighted MSE.

    `projection` (K, C) maps the error before squaring (the decoder's linearised response for latents), so the
    loss is the reflectance error the prediction would cause, at the cost of a C x K product per position.
    `offsets` (N, T): the frames' time offsets to the target (then the model gets a time channel); needed when
    `config.after` > 0 (the interpolation baseline). `decoder` (e.g. `LatentDecoder`): the prediction goes through it
    before the error (its parameters frozen), so `targets`, `masks` and `weights` are in its output space (pixels)."""
    seed_everything(config.seed)
    model = ConvLSTM(inputs.shape[2], config.hidden, config.kernel, config.window, config.after, offsets is not None).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    x_all, y_all = inputs.to(device), targets.to(device)
    m_all = masks.to(device).float() if masks is not None else None
    w = weights.to(device) if weights is not None else None
    proj = projection.to(device) if projection is not None else None
    o_all = offsets.to(device).float() if offsets is not None else None
    dec = decoder.to(device).eval() if decoder is not None else None
    history = []
    for epoch in range(config.epochs):
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * max(0.05, 1 - epoch / config.epochs)
        order = torch.randperm(len(x_all), generator=generator).to(device)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            pred = model(x_all[idx], o_all[idx] if o_all is not None else None)
            diff = (dec(pred) if dec is not None else pred) - y_all[idx]
            if proj is not None:
                diff = torch.einsum("kc,nchw->nkhw", proj, diff)
            sq = diff**2
            if w is not None:
                sq = sq * w
            if m_all is not None:
                m = m_all[idx].expand_as(sq)
                loss = (sq * m).sum() / m.sum().clamp_min(1)
            else:
                loss = sq.mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(x_all))
    return FitResult(model.cpu().eval(), history, len(history))


def split_cells(n_cells: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test split of cell indices (at least one of each when n_cells >= 2)."""
    order = np.random.default_rng(seed).permutation(n_cells)
    n_test = min(max(1, int(round(n_cells * test_fraction))), n_cells - 1)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def train_series_vae(series: CellSeries, train_cells: np.ndarray, heldout: list[int], config: TrainingConfig, device: str = "cpu"):
    """The partition's shared VAE, trained with `train_cell_vae` on every chip except the test cells' held-back
    dates (and dates without data)."""
    usable = series.has_data
    parts = []
    for i in range(len(series.geohashes)):
        for t in np.flatnonzero(usable):
            if i in set(train_cells.tolist()) or t not in heldout:
                parts.append(cut_patches(series.cube[i, t], config.patch_size))
    patches = concat_patches([p for p in parts if len(p)])
    return train_cell_vae(patches, series.bands, series.sensor, config, device=device)


def encode_series(model: nn.Module, normalizer: Normalizer, cube: np.ndarray, usable: np.ndarray, refine_steps: int = 0,
                  quantized: bool = True) -> np.ndarray:  # fmt: skip
    """(cells, dates, C, h, w) dequantised int8 latent grids, as stored in the embeddings (`encode_chip`, with the
    pipeline's latent refinement when `refine_steps` > 0, band-weighted like `encode_cell`); NaN on unusable dates.
    `quantized=False`: the same grids before the int8 quantisation (float, what the refinement reached)."""
    first = next(int(t) for t in np.flatnonzero(usable))
    c, h, w = encode_chip_float(model, normalizer, cube[0, first]).shape
    weights = normalizer.band_weights("reflectance") if refine_steps else None
    out = np.full((cube.shape[0], cube.shape[1], c, h, w), np.nan, np.float32)
    for i in range(cube.shape[0]):
        for t in np.flatnonzero(usable):
            if quantized:
                out[i, t] = encode_chip(model, normalizer, cube[i, t], refine_steps, weights).dequantize()
            else:
                out[i, t] = encode_chip_float(model, normalizer, cube[i, t], refine_steps, weights)
    return out


@torch.no_grad()
def decode_latents(model: nn.Module, normalizer: Normalizer, z: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, B, H, W) reflectance from (N, C, h, w) float latents through the frozen decoder."""
    model.eval()
    out = normalizer.inverse(model.decode(torch.from_numpy(np.ascontiguousarray(z, np.float32))))
    return out[:, :, : shape[0], : shape[1]].numpy()


@torch.no_grad()
def decoder_response(model: nn.Module, normalizer: Normalizer, z_mean: np.ndarray, z_std: np.ndarray, eps: float = 0.1) -> torch.Tensor:
    """(B, C) mean reflectance change of each band per unit change of each standardised latent channel, by finite
    differences around the mean latent grid (the decoder linearised; used to weight the latent loss)."""
    model.eval()
    c = len(z_mean)
    base = torch.from_numpy(np.broadcast_to(np.asarray(z_mean, np.float32)[:, None, None], (c, 4, 4)).copy())[None]
    ref = normalizer.inverse(model.decode(base))
    cols = []
    for k in range(c):
        step = base.clone()
        step[0, k] += eps * float(z_std[k])
        cols.append(((normalizer.inverse(model.decode(step)) - ref) / eps).mean(dim=(0, 2, 3)))
    return torch.stack(cols, dim=1)


@dataclass
class SeriesResult:
    """Errors of every method on the test set, the cost of both trainings, and the samples behind them."""

    errors: dict[str, dict[str, float]]  # method -> mse, mae, n
    costs: dict[str, Cost]  # "embeddings" / "raw" -> training cost
    epochs: dict[str, int]
    histories: dict[str, list[float]]
    n_train: int
    n_test: int
    test_dates: list[str]
    shapes: dict[str, list[int]]  # input tensor shape (without batch) of each twin
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for method, err in self.errors.items():
            cost = self.costs.get(method)
            rows.append({"method": method, "mse": err["mse"], "mae": err["mae"], "epochs": self.epochs.get(method, 0),
                         "train_s": cost.seconds if cost else 0.0, "peak_rss_mb": cost.peak_rss_mb if cost else 0.0,
                         "peak_cuda_mb": cost.peak_cuda_mb if cost else None})  # fmt: skip
        return rows


def make_pairs(usable: np.ndarray, cells, targets, window: int, after: int) -> list[tuple[int, list[int], int]]:
    """(cell, context dates, target) for every cell and target whose context exists in `usable`."""
    pairs = []
    for i in cells:
        for t in targets:
            ctx = context_dates(usable, int(t), window, after)
            if ctx is not None:
                pairs.append((int(i), ctx, int(t)))
    return pairs


def run_series_experiment(
    series: CellSeries,
    vae: nn.Module,
    normalizer: Normalizer,
    config: SeriesConfig,
    train_cells: np.ndarray,
    test_cells: np.ndarray,
    device: str = "cpu",
    isolate: bool = False,
    latents: np.ndarray | None = None,
    raw: bool = True,
) -> SeriesResult:
    """Train both ConvLSTMs on the training cells and score them and the baselines on the test cells' held-back dates.

    `latents`: the series already encoded with this VAE (`encode_series`, int8 or float as `config.latents`), to share
    the encoding between runs. `raw=False`: the embedding model and the baselines only (tuning). Errors are in the
    series' units (`series.units`). Besides the pixel baselines, the same baselines on the latent grids, decoded
    ("latent_persistence", "latent_linear"), show where the embedding model's residual starts from."""
    cube, usable = series.cube, series.has_data
    heldout = [series.date_index(d) for d in config.holdout_dates]
    days = np.array([d.timestamp() / 86400 for d in series.dates])
    if config.latents not in ("int8", "float"):
        raise ValueError(f"latents must be 'int8' or 'float', got {config.latents!r}")
    if latents is None:
        latents = encode_series(vae, normalizer, cube, usable, config.refine_steps, quantized=config.latents == "int8")
    std_raw, mask_raw = normalizer.forward(cube.reshape(-1, *cube.shape[2:]))
    std_raw = std_raw.reshape(cube.shape)
    mask_raw = mask_raw.reshape(cube.shape[0], cube.shape[1], 1, *cube.shape[3:])

    # Training: every usable date of the training cells is a target; its context skips dates without data.
    train_pairs = make_pairs(usable, train_cells, np.flatnonzero(usable), config.window, config.after)
    test_usable = usable.copy()
    test_usable[heldout] = False  # missing on the test cells
    test_pairs = make_pairs(test_usable, test_cells, [t for t in heldout if usable[t]], config.window, config.after)
    if not train_pairs or not test_pairs:
        raise ValueError(f"{len(train_pairs)} training and {len(test_pairs)} test windows: too few dates")

    def stack(source, pairs, inputs: bool):
        if inputs:
            return torch.from_numpy(np.stack([source[i, ctx] for i, ctx, _ in pairs]))
        return torch.from_numpy(np.stack([source[i, t] for i, _, t in pairs]))

    def offsets(pairs) -> torch.Tensor:
        return torch.from_numpy(np.stack([(days[ctx] - days[t]) / config.time_scale for _, ctx, t in pairs]).astype(np.float32))

    # Embeddings: standardise latent channels on the training windows (the ConvLSTM sees unit-scale inputs).
    z_train = np.stack([latents[i, [*ctx, t]] for i, ctx, t in train_pairs])
    z_mean = z_train.mean(axis=(0, 1, 3, 4), keepdims=True)[0, 0]
    z_std = z_train.std(axis=(0, 1, 3, 4), keepdims=True)[0, 0] + 1e-6
    z_norm = (latents - z_mean) / z_std
    emb_x, emb_y = stack(z_norm, train_pairs, True), stack(z_norm, train_pairs, False)
    raw_x = stack(std_raw.numpy(), train_pairs, True)
    raw_m = torch.from_numpy(np.stack([mask_raw[i, t].numpy() for i, _, t in train_pairs]))
    train_off, test_off = offsets(train_pairs), offsets(test_pairs)
    weights = normalizer.band_weights("reflectance")

    raw_y = stack(std_raw.numpy(), train_pairs, False)
    emb_kw: dict[str, Any] = dict(device=device, offsets=train_off)
    if config.latent_loss == "decoder":
        response = decoder_response(vae, normalizer, np.ravel(z_mean), np.ravel(z_std))
        emb_kw["projection"] = response / response.pow(2).sum(0).mean().sqrt()  # unit scale: comparable learning rate
    elif config.latent_loss == "pixel":  # the real chip is the target, through the frozen decoder
        emb_y = raw_y
        emb_kw.update(masks=raw_m, weights=weights, decoder=LatentDecoder(vae, np.ravel(z_mean), np.ravel(z_std), cube.shape[-2:]))
    elif config.latent_loss != "uniform":
        raise ValueError(f"latent_loss must be 'uniform', 'decoder' or 'pixel', got {config.latent_loss!r}")
    emb_args = (emb_x.float(), emb_y.float(), config)
    raw_args = (raw_x.float(), raw_y.float(), config)
    raw_kw = dict(masks=raw_m, weights=weights, device=device, offsets=train_off)
    if isolate:  # each fit in a fresh process: its peak memory is not hidden by memory an earlier run freed
        emb_fit, emb_cost = measured_isolated(fit_convlstm, *emb_args, **emb_kw)
        if raw:
            raw_fit, raw_cost = measured_isolated(fit_convlstm, *raw_args, **raw_kw)
    else:
        emb_fit, emb_cost = measured(lambda: fit_convlstm(*emb_args, **emb_kw), device)
        if raw:
            raw_fit, raw_cost = measured(lambda: fit_convlstm(*raw_args, **raw_kw), device)

    with torch.no_grad():
        z_pred = emb_fit.model(stack(z_norm, test_pairs, True).float(), test_off).numpy() * z_std + z_mean
        raw_pred = normalizer.inverse(raw_fit.model(stack(std_raw.numpy(), test_pairs, True).float(), test_off)).numpy() if raw else None
        z_base = emb_fit.model.baseline(stack(z_norm, test_pairs, True).float(), test_off).numpy() * z_std + z_mean
        z_last = stack(latents, test_pairs, True)[:, config.window - 1].numpy()
    emb_pred = decode_latents(vae, normalizer, z_pred, cube.shape[-2:])
    truth = np.stack([cube[i, t] for i, _, t in test_pairs])
    floor = decode_latents(vae, normalizer, np.stack([latents[i, t] for i, _, t in test_pairs]), cube.shape[-2:])
    persist = np.stack([persistence(cube[i], test_usable, t) for i, _, t in test_pairs])
    interp = [linear_interpolation(cube[i], test_usable, days, t) for i, _, t in test_pairs]
    predictions = {"embeddings": emb_pred, **({"raw": raw_pred} if raw else {}), "persistence": persist}
    if all(p is not None for p in interp):
        predictions["linear"] = np.stack(interp)
    predictions["vae_reconstruction"] = floor  # the decoder's floor: the real date encoded and decoded
    predictions["latent_persistence"] = decode_latents(vae, normalizer, z_last, cube.shape[-2:])
    if config.after:  # the model's own starting point: interpolation of the latent grids, decoded
        predictions["latent_linear"] = decode_latents(vae, normalizer, z_base, cube.shape[-2:])
    fits = {"embeddings": (emb_fit, emb_cost), **({"raw": (raw_fit, raw_cost)} if raw else {})}
    return SeriesResult(
        errors=masked_errors(truth, predictions),
        costs={k: c for k, (_, c) in fits.items()},
        epochs={k: f.epochs for k, (f, _) in fits.items()},
        histories={k: f.history for k, (f, _) in fits.items()},
        n_train=len(train_pairs),
        n_test=len(test_pairs),
        test_dates=[series.dates[t].date().isoformat() for t in heldout],
        shapes={"embeddings": list(emb_x.shape[1:]), "raw": list(raw_x.shape[1:])},
        extra={"models": {k: f.model for k, (f, _) in fits.items()}, "z_mean": z_mean, "z_std": z_std,
               "units": series.units, "window": config.window, "after": config.after},  # fmt: skip
    )
