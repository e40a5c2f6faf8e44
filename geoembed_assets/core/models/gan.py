"""Embedding GAN (paper section 3.5, Figures 7-8 and 10, Table 4) and its raw DCGAN twin.

The embedding GAN's generator produces latent grids; the shared cell model's decoder, frozen, turns them into
images, which a discriminator judges against real chips. The raw twin's generator produces the chips directly;
both discriminators have the same architecture. Images are compared in the cell model's standardised space
(per-band z-scores), so both GANs see exactly the same real data.

Quality, as in the paper: generated images of both go through the *raw* GAN's discriminator and the mean BCE
against the label "real" is compared (ratio embeddings / raw: below 1 means the embedding GAN's images fool the raw
discriminator more); plus per-band mean and std distances to the real chips in reflectance, and a picture.

The ratio is also given per cell and per band (`bce_per_cell`, `bce_per_band`):
- per cell: the GANs are unconditional (one per series, as the shared decoder), so each generated image is
  attributed to the cell of its nearest real chip (Euclidean distance in the standardised pixel space both GANs
  work in); a cell's BCE is the mean BCE of the images attributed to it, its ratio embeddings / raw. A cell no
  image of a generator lands on has no BCE for it (NaN ratio): its count of 0 shows a mode that generator missed.
- per band: band b of randomly drawn real chips is replaced by band b of the generated images (real chip k gets
  generated image k), and the raw discriminator scores these hybrids: how real band b looks in the context of
  real other bands. With one band this is the whole-image BCE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geoembed_assets.core.plots import _png, plt
from geoembed_assets.core.previews import rgb_bands, rgb_image
from geoembed_assets.core.training import Normalizer, seed_everything


@dataclass(frozen=True)
class GANConfig:
    noise_dim: int = 32
    width: int = 64  # channels of the generators' and discriminator's widest layer
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    latent_width: int = 32  # channels of the latent-grid generator (it only makes a 4 x 4 grid: narrower than the DCGAN)


class Discriminator(nn.Module):
    """DCGAN discriminator: stride-2 convolutions down to a 4 x 4 map, then one logit per image."""

    def __init__(self, bands: int, size: int, width: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(bands, width // 2, 4, 2, 1), nn.LeakyReLU(0.2)]
        side, w = size // 2, width // 2
        while side > 4:
            layers += [nn.Conv2d(w, w * 2, 4, 2, 1), nn.BatchNorm2d(w * 2), nn.LeakyReLU(0.2)]
            side, w = side // 2, w * 2
        layers += [nn.Flatten(), nn.Linear(w * side * side, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class RawGenerator(nn.Module):
    """DCGAN generator: noise -> 4 x 4 map -> transposed convolutions up to the chip (standardised bands)."""

    def __init__(self, noise_dim: int, bands: int, size: int, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(noise_dim, width * 16)
        layers: list[nn.Module] = []
        side, w = 4, width
        while side < size:
            out = bands if side * 2 >= size else w // 2
            layers += [nn.ConvTranspose2d(w, out, 4, 2, 1)]
            if out != bands:
                layers += [nn.BatchNorm2d(out), nn.ReLU()]
            side, w = side * 2, out
        self.net = nn.Sequential(*layers)
        self.width = width

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.net(F.relu(self.fc(noise)).view(-1, self.width, 4, 4))


class LatentGenerator(nn.Module):
    """Noise -> a latent grid (C, h, w) in the cell model's latent units (de-standardised by the latents' stats)."""

    def __init__(self, noise_dim: int, latent_shape: tuple[int, int, int], width: int, z_mean: np.ndarray, z_std: np.ndarray) -> None:
        super().__init__()
        c, h, w = latent_shape
        self.shape = latent_shape
        self.fc = nn.Linear(noise_dim, width * h * w)
        self.net = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, c, 3, padding=1))
        self.width = width
        self.register_buffer("z_mean", torch.as_tensor(np.asarray(z_mean, np.float32)).view(1, c, 1, 1))
        self.register_buffer("z_std", torch.as_tensor(np.asarray(z_std, np.float32)).view(1, c, 1, 1))

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        _, h, w = self.shape
        return self.net(F.relu(self.fc(noise)).view(-1, self.width, h, w)) * self.z_std + self.z_mean


class DecodedGenerator(nn.Module):
    """Latent generator followed by the frozen decoder: noise -> standardised image."""

    def __init__(self, latent: LatentGenerator, decoder: nn.Module) -> None:
        super().__init__()
        self.latent = latent
        self.decoder = decoder.eval()
        for p in self.decoder.parameters():
            p.requires_grad_(False)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.decoder.decode(self.latent(noise))

    def train(self, mode: bool = True) -> "DecodedGenerator":
        super().train(mode)
        self.decoder.eval()  # frozen: no dropout/batch-norm updates ever
        return self


@dataclass
class GANResult:
    generator: nn.Module
    discriminator: Discriminator
    history: list[tuple[float, float]]  # (discriminator loss, generator loss) per epoch
    epochs: int


def train_gan(generator: nn.Module, real: torch.Tensor, config: GANConfig, device: str = "cpu") -> GANResult:
    """Seeded non-saturating GAN training of `generator` against a fresh DCGAN discriminator on `real` images."""
    seed_everything(config.seed)
    disc = Discriminator(real.shape[1], real.shape[-1], config.width).to(device)
    generator = generator.to(device)
    trainable = [p for p in generator.parameters() if p.requires_grad]
    opt_g = torch.optim.Adam(trainable, lr=config.learning_rate, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.learning_rate, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(config.seed)
    real = real.to(device)
    history = []
    for _ in range(config.epochs):
        generator.train()
        disc.train()
        order = torch.randperm(len(real), generator=gen).to(device)
        d_sum = g_sum = 0.0
        batches = 0
        for start in range(0, len(order), config.batch_size):
            x = real[order[start : start + config.batch_size]]
            if len(x) < 2:
                continue
            noise = torch.randn(len(x), config.noise_dim, generator=gen).to(device)
            fake = generator(noise)
            ones, zeros = torch.ones(len(x), device=device), torch.zeros(len(x), device=device)
            d_loss = F.binary_cross_entropy_with_logits(disc(x), ones) + F.binary_cross_entropy_with_logits(disc(fake.detach()), zeros)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = F.binary_cross_entropy_with_logits(disc(fake), ones)
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            d_sum, g_sum, batches = d_sum + float(d_loss.detach()), g_sum + float(g_loss.detach()), batches + 1
        history.append((d_sum / max(batches, 1), g_sum / max(batches, 1)))
    return GANResult(generator.cpu().eval(), disc.cpu().eval(), history, len(history))


@torch.no_grad()
def sample(generator: nn.Module, n: int, noise_dim: int, seed: int) -> torch.Tensor:
    """n standardised images from a trained generator (seeded noise)."""
    generator.eval()
    return generator(torch.randn(n, noise_dim, generator=torch.Generator().manual_seed(seed)))


@torch.no_grad()
def mean_bce_real(disc: Discriminator, images: torch.Tensor) -> float:
    """Mean BCE of the discriminator's verdict against the label "real" (lower: looks more real to it)."""
    disc.eval()
    logits = disc(images)
    return float(F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)))


@torch.no_grad()
def bce_real_each(disc: Discriminator, images: torch.Tensor) -> np.ndarray:
    """(N,) BCE of each image against the label "real"."""
    disc.eval()
    logits = disc(images)
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none").numpy()


def nearest_cells(generated: torch.Tensor, real: torch.Tensor, cells: np.ndarray) -> np.ndarray:
    """(N,) the cell of each generated image's nearest real chip (Euclidean, standardised pixels)."""
    d = torch.cdist(generated.flatten(1), real.flatten(1))
    return np.asarray(cells)[d.argmin(dim=1).numpy()]


def bce_per_cell(disc: Discriminator, fakes: dict[str, torch.Tensor], real: torch.Tensor, cells: np.ndarray,
                 names: list[str]) -> list[dict]:  # fmt: skip
    """One row per cell: images attributed (nearest real chip) and mean BCE ("real") of each generator; ratio."""
    per = {}
    for method, images in fakes.items():
        per[method] = (nearest_cells(images, real, cells), bce_real_each(disc, images))
    rows = []
    for c, name in enumerate(names):
        row: dict = {"cell": name}
        for method, (owner, bce) in per.items():
            hit = owner == c
            row[f"n_{method}"] = int(hit.sum())
            row[f"bce_{method}"] = float(bce[hit].mean()) if hit.any() else float("nan")
        e, r = row.get("bce_embeddings", float("nan")), row.get("bce_raw", float("nan"))
        row["ratio"] = float(e / r) if np.isfinite(e) and np.isfinite(r) and r > 0 else float("nan")
        rows.append(row)
    return rows


def bce_per_band(disc: Discriminator, fakes: dict[str, torch.Tensor], real: torch.Tensor, bands: tuple[str, ...],
                 seed: int) -> list[dict]:  # fmt: skip
    """One row per band: mean BCE ("real") of real chips whose band b is the generated band b, per generator; ratio."""
    n = min(len(v) for v in fakes.values())
    pick = torch.from_numpy(np.random.default_rng(seed).choice(len(real), size=n, replace=len(real) < n))
    base = real[pick]
    rows = []
    for b, name in enumerate(bands):
        row: dict = {"band": name}
        for method, images in fakes.items():
            hybrid = base.clone()
            hybrid[:, b] = images[:n, b]
            row[f"bce_{method}"] = float(bce_real_each(disc, hybrid).mean())
        row["ratio"] = row["bce_embeddings"] / row["bce_raw"] if row["bce_raw"] > 0 else float("nan")
        rows.append(row)
    return rows


def band_stat_distance(generated: np.ndarray, real: np.ndarray) -> dict[str, np.ndarray]:
    """Per band |mean_gen - mean_real| and |std_gen - std_real| over all pixels of (N, B, H, W) reflectance."""
    g, r = generated.transpose(1, 0, 2, 3).reshape(generated.shape[1], -1), real.transpose(1, 0, 2, 3).reshape(real.shape[1], -1)
    return {"mean": np.abs(np.nanmean(g, 1) - np.nanmean(r, 1)), "std": np.abs(np.nanstd(g, 1) - np.nanstd(r, 1))}


def samples_png(rows: list[tuple[str, np.ndarray]], sensor: str, bands: tuple[str, ...], dpi: int = 80) -> bytes:
    """A grid, one row per (label, (N, B, H, W) reflectance): RGB with the first row's 2-98 % stretch; PNG bytes."""
    channels = rgb_bands(sensor, bands) or [0, 0, 0]
    limits = tuple(np.nanpercentile(rows[0][1][:, channels], [2, 98]))
    n = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.45 * len(rows)), dpi=dpi, squeeze=False)
    for ax_row, (label, images) in zip(axes, rows):
        for k, ax in enumerate(ax_row):
            if k < len(images):
                ax.imshow(rgb_image(images[k], channels, limits), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        ax_row[0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    return _png(fig)


def to_reflectance(normalizer: Normalizer, images: torch.Tensor) -> np.ndarray:
    return normalizer.inverse(images).numpy()


@dataclass
class GANComparison:
    """Both GANs trained on the same chips, their costs and their quality through the raw discriminator."""

    results: dict[str, GANResult]  # "embeddings" / "raw"
    costs: dict  # method -> Cost
    bce_real_chips: float  # raw discriminator's mean BCE ("real") on real chips: the reference
    bce: dict[str, float]  # method -> mean BCE ("real") of its generated images through the raw discriminator
    bce_ratio: float  # embeddings / raw
    band_distance: dict[str, dict[str, list[float]]]  # method -> {"mean": per band, "std": per band}
    png: bytes
    n_real: int
    per_cell: list[dict] = field(default_factory=list)  # cell, n_/bce_ per method, ratio (see the module doc)
    per_band: list[dict] = field(default_factory=list)  # band, bce_ per method, ratio

    def cell_summary(self) -> dict[str, float]:
        """Median / min / max of the per-cell ratios, and how many cells each generator's images land on."""
        ratios = np.array([r["ratio"] for r in self.per_cell], float)
        ok = ratios[np.isfinite(ratios)]
        out = {"cells": len(self.per_cell), "cells_with_ratio": int(len(ok))}
        out.update({k: float(f(ok)) if len(ok) else float("nan") for k, f in (("median", np.median), ("min", np.min), ("max", np.max))})
        out["cells_below_1"] = int((ok < 1).sum())
        for method in ("embeddings", "raw"):
            out[f"cells_hit_{method}"] = int(sum(r.get(f"n_{method}", 0) > 0 for r in self.per_cell))
        return out


def run_gan_experiment(
    chips: np.ndarray,
    latents: np.ndarray,
    vae: nn.Module,
    normalizer: Normalizer,
    bands: tuple[str, ...],
    sensor: str,
    config: GANConfig,
    device: str = "cpu",
    n_eval: int = 512,
    isolate: bool = False,
    cells: np.ndarray | None = None,
    cell_names: list[str] | None = None,
) -> GANComparison:
    """Train the embedding GAN and the raw DCGAN on the same real chips (N, B, H, W reflectance, no NaN) and score them.

    `latents` are the chips' stored embeddings (N, C, h, w); only their per-channel mean/std are used, to put the
    latent generator's output on the decoder's scale. `cells` (N,) index into `cell_names`: the cell of each real
    chip, for the per-cell BCE (default: one cell).
    """
    from geoembed_assets.core.models.measure import measured, measured_isolated

    if np.isnan(chips).any():
        raise ValueError("GAN training chips must be fully valid (no NaN)")
    real, _ = normalizer.forward(chips)
    c, h, w = latents.shape[1:]
    z_mean, z_std = latents.mean(axis=(0, 2, 3)), latents.std(axis=(0, 2, 3)) + 1e-6
    seed_everything(config.seed)
    emb_gen = DecodedGenerator(LatentGenerator(config.noise_dim, (c, h, w), config.latent_width, z_mean, z_std), vae)
    raw_gen = RawGenerator(config.noise_dim, chips.shape[1], chips.shape[-1], config.width)
    if isolate:  # fresh processes: peak memory not hidden by memory an earlier run freed
        emb, emb_cost = measured_isolated(train_gan, emb_gen, real, config, device, device=device)
        raw, raw_cost = measured_isolated(train_gan, raw_gen, real, config, device, device=device)
    else:
        emb, emb_cost = measured(lambda: train_gan(emb_gen, real, config, device), device)
        raw, raw_cost = measured(lambda: train_gan(raw_gen, real, config, device), device)
    fakes = {
        "embeddings": sample(emb.generator, n_eval, config.noise_dim, config.seed + 1),
        "raw": sample(raw.generator, n_eval, config.noise_dim, config.seed + 1),
    }
    bce = {k: mean_bce_real(raw.discriminator, v) for k, v in fakes.items()}
    refl = {k: to_reflectance(normalizer, v) for k, v in fakes.items()}
    distance = {k: {s: v.tolist() for s, v in band_stat_distance(r, chips).items()} for k, r in refl.items()}
    pick = np.random.default_rng(config.seed).choice(len(chips), size=min(8, len(chips)), replace=False)
    png = samples_png(
        [("real", chips[pick]), ("embedding GAN", refl["embeddings"][:8]), ("raw DCGAN", refl["raw"][:8])], sensor, bands
    )
    cells = np.zeros(len(chips), int) if cells is None else np.asarray(cells)
    cell_names = cell_names or [str(i) for i in range(int(cells.max()) + 1)]
    return GANComparison(
        per_cell=bce_per_cell(raw.discriminator, fakes, real, cells, cell_names),
        per_band=bce_per_band(raw.discriminator, fakes, real, tuple(bands), config.seed + 2),
        results={"embeddings": emb, "raw": raw},
        costs={"embeddings": emb_cost, "raw": raw_cost},
        bce_real_chips=mean_bce_real(raw.discriminator, real),
        bce=bce,
        bce_ratio=bce["embeddings"] / bce["raw"] if bce["raw"] > 0 else float("inf"),
        band_distance=distance,
        png=png,
        n_real=len(chips),
    )
