"""Seeded VAE training on patches of one or more cells, with held-out patches for an honest reconstruction error.

A cell of the default scene has a single acquisition, so "held out" means patches that training never saw (a
seeded random split of the patch grid), not another date. The loss weights each band by its variance in
reflectance (plus a floor), so training minimises the reflectance MSE that every report measures while the
network still sees standardised inputs; the learning rate decays linearly to 5 % over `max_epochs`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from geoembed_assets.core.indices import index_band_pairs, normalized_difference
from geoembed_assets.core.patches import Patches
from geoembed_assets.core.vae import VAEConfig, build_vae, kl_divergence


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of one cell's training run."""

    latent_dim: int = 4  # spatial: channels per latent position; flat: vector length per patch
    patch_size: int = 48
    base_channels: int = 48
    depth: int = 2  # spatial: latent grid at 1/4 of the pixel grid; flat: the paper's 3
    max_epochs: int = 40
    patience: int = 10  # epochs without improvement of the training loss before stopping
    batch_size: int = 16
    learning_rate: float = 2e-3
    kl_weight: float = 1e-4
    index_weights: dict[str, float] = field(default_factory=lambda: {"ndvi": 0.1})
    holdout_fraction: float = 0.2
    seed: int = 0
    architecture: str = "spatial"  # "spatial" (latent grid) or "flat" (the paper's one vector per patch)
    band_weighting: str = "reflectance"  # "reflectance": loss weights ~ band variance; "uniform": standardised MSE
    max_steps: int | None = 300  # optimizer steps at most (None: max_epochs alone); the learning rate decays over them
    sample_by_variance: bool = True  # draw textured patches more often than flat ones

    def vae_config(self, in_channels: int) -> VAEConfig:
        return VAEConfig(in_channels, self.patch_size, self.latent_dim, self.base_channels, self.depth, self.architecture)


@dataclass
class Normalizer:
    """Per-band standardisation; the network sees (x - mean) / std."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, patches: np.ndarray) -> "Normalizer":
        mean = np.nanmean(patches, axis=(0, 2, 3))
        std = np.nanstd(patches, axis=(0, 2, 3))
        return cls(np.nan_to_num(mean).astype(np.float32), np.maximum(np.nan_to_num(std), 1e-3).astype(np.float32))

    def forward(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised tensor with NaN filled by the band mean (0), and the validity mask (N, 1, p, p)."""
        mask = ~np.isnan(x).any(axis=1, keepdims=True)
        z = (x - self.mean[None, :, None, None]) / self.std[None, :, None, None]
        return torch.from_numpy(np.nan_to_num(z).astype(np.float32)), torch.from_numpy(mask)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        std, mean = torch.from_numpy(self.std).to(z.device), torch.from_numpy(self.mean).to(z.device)
        return z * std[None, :, None, None] + mean[None, :, None, None]

    def band_weights(self, kind: str = "reflectance") -> torch.Tensor:
        """(1, B, 1, 1) loss weights: 0.9 * std^2 / mean(std^2) + 0.1 (reflectance MSE, no band ignored), or ones."""
        if kind == "uniform":
            w = np.ones_like(self.std)
        elif kind == "reflectance":
            var = self.std.astype(np.float64) ** 2
            w = 0.9 * var / var.mean() + 0.1
        else:
            raise ValueError(f"band_weighting must be 'reflectance' or 'uniform', got {kind!r}")
        return torch.from_numpy(w.astype(np.float32))[None, :, None, None]


@dataclass
class TrainResult:
    model: torch.nn.Module
    normalizer: Normalizer
    history: list[float]  # training loss per epoch
    train_mse: float  # reflectance MSE on training patches
    holdout_mse: float  # reflectance MSE on held-out patches (NaN if none were held out)
    holdout_index_errors: dict[str, float]  # mean absolute NDVI/NDWI/NDBI error on held-out patches
    epochs: int
    n_train: int
    n_holdout: int


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def patch_sampling_weights(patches: np.ndarray) -> torch.Tensor:
    """Per-patch drawing weights ~ the patch's mean per-band standard deviation, floored at 20 % of the mean."""
    std = np.nan_to_num(np.nanstd(patches.reshape(len(patches), patches.shape[1], -1), axis=2)).mean(axis=1)
    w = np.maximum(std, 0.2 * std.mean() + 1e-12) if len(std) else std
    return torch.from_numpy(np.asarray(w, np.float64))


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/holdout split of n patch indices; at least one training patch."""
    order = np.random.default_rng(seed).permutation(n)
    n_hold = min(int(round(n * fraction)), n - 1)
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


def vae_loss(
    model: torch.nn.Module,
    x: torch.Tensor,
    mask: torch.Tensor,
    normalizer: Normalizer,
    kl_weight: float,
    index_pairs: dict[str, tuple[int, int]],
    index_weights: dict[str, float],
    band_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked, band-weighted reconstruction MSE + weighted KL + weighted index (NDVI/NDWI/NDBI) MSE on reflectance."""
    recon, mu, logvar = model(x)
    m = mask.expand_as(x).float()
    sq = (recon - x) ** 2 * (band_weights if band_weights is not None else 1.0)
    loss = (sq * m).sum() / m.sum().clamp_min(1) + kl_weight * kl_divergence(mu, logvar)
    if index_weights:
        refl, refl_hat = normalizer.inverse(x), normalizer.inverse(recon)
        m1 = mask[:, 0].float()
        for name, weight in index_weights.items():
            if weight and name in index_pairs:
                a, b = index_pairs[name]
                diff = normalized_difference(refl_hat, a, b) - normalized_difference(refl, a, b)
                loss = loss + weight * (diff**2 * m1).sum() / m1.sum().clamp_min(1)
    return loss


@torch.no_grad()
def reconstruct(model: torch.nn.Module, normalizer: Normalizer, patches: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Latent means (N, latent) and reflectance reconstructions (N, B, p, p) of patches (from their means)."""
    model.eval()
    mus, outs = [], []
    for start in range(0, len(patches), 256):
        x, _ = normalizer.forward(patches[start : start + 256])
        mu, _ = model.encode(x.to(device))
        mus.append(mu.cpu())
        outs.append(normalizer.inverse(model.decode(mu).cpu()))
    if not mus:
        return np.zeros((0, model.config.latent_dim), np.float32), np.zeros((0, *patches.shape[1:]), np.float32)
    return torch.cat(mus).numpy(), torch.cat(outs).numpy()


def masked_mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-patch MSE over pixels valid in `a` (NaN marks no data); (N,)."""
    sq = (a - b) ** 2
    return np.nanmean(sq.reshape(len(sq), -1), axis=1)


def index_errors(sensor: str, band_names: tuple[str, ...], truth: np.ndarray, recon: np.ndarray) -> dict[str, float]:
    """Mean absolute error of each computable index between truth and reconstruction."""
    out = {}
    t, r = torch.from_numpy(truth), torch.from_numpy(recon)
    for name, (a, b) in index_band_pairs(sensor, band_names).items():
        err = (normalized_difference(r, a, b) - normalized_difference(t, a, b)).abs().numpy()
        out[name] = float(np.nanmean(err)) if err.size else float("nan")
    return out


def train_cell_vae(
    patches: Patches,
    band_names: tuple[str, ...],
    sensor: str,
    config: TrainingConfig,
    device: str = "cpu",
    init_state: dict | None = None,
    init_normalizer: Normalizer | None = None,
    target_loss: float | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a VAE on a seeded share of the patches (one cell, or several cells sharing a model); report the
    error on the rest.

    `init_state` warm-starts from another checkpoint's state_dict (transfer or drift retraining) and
    `init_normalizer` keeps that checkpoint's standardisation, so the warm start sees the inputs it was trained on.
    """
    if len(patches) == 0:
        raise ValueError("no patch with valid data to train on")
    seed_everything(config.seed)
    train_idx, hold_idx = split_holdout(len(patches), config.holdout_fraction, config.seed)
    train, hold = patches.data[train_idx], patches.data[hold_idx]
    normalizer = init_normalizer if init_normalizer is not None else Normalizer.fit(train)
    model = build_vae(config.vae_config(len(band_names))).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)
    weights = normalizer.band_weights(config.band_weighting).to(device)
    x_all, mask_all = normalizer.forward(train)
    pairs = index_band_pairs(sensor, band_names)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[float] = []
    best, since_best = float("inf"), 0
    steps_per_epoch = max(1, -(-len(x_all) // config.batch_size))
    total_steps = min(config.max_epochs * steps_per_epoch, config.max_steps or config.max_epochs * steps_per_epoch)
    sampling = patch_sampling_weights(train) if config.sample_by_variance else None
    step = 0
    for epoch in range(config.max_epochs):
        model.train()
        if sampling is None:
            order = torch.randperm(len(x_all), generator=generator)
        else:  # textured patches more often: water and flat fields are learnt in a few steps
            order = torch.multinomial(sampling, len(x_all), replacement=True, generator=generator)
        total, seen = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            if len(idx) < 2 and len(order) >= 2:
                continue  # BatchNorm needs two samples
            for group in optimizer.param_groups:  # linear decay: big steps first, fine detail last
                group["lr"] = config.learning_rate * max(0.05, 1 - step / total_steps)
            x, mask = x_all[idx], mask_all[idx]
            k = int(torch.randint(4, (1,), generator=generator))  # rotations: free augmentation
            x, mask = torch.rot90(x, k, (2, 3)), torch.rot90(mask, k, (2, 3))
            loss = vae_loss(
                model, x.to(device), mask.to(device), normalizer, config.kl_weight, pairs, config.index_weights, weights
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            step += 1
            if step >= total_steps:
                break
        history.append(total / max(seen, 1))
        if progress is not None:
            progress(epoch + 1, history[-1])
        if step >= total_steps:
            break
        if target_loss is not None and history[-1] <= target_loss:
            break  # transfer benchmarks: epochs to a target loss
        if history[-1] < best - 1e-6:
            best, since_best = history[-1], 0
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    model = model.cpu()
    _, train_hat = reconstruct(model, normalizer, train)
    _, hold_hat = reconstruct(model, normalizer, hold)
    return TrainResult(
        model=model,
        normalizer=normalizer,
        history=history,
        train_mse=float(np.nanmean(masked_mse(train, train_hat))),
        holdout_mse=float(np.nanmean(masked_mse(hold, hold_hat))) if len(hold) else float("nan"),
        holdout_index_errors=index_errors(sensor, band_names, hold, hold_hat) if len(hold) else {},
        epochs=len(history),
        n_train=len(train),
        n_holdout=len(hold),
    )
