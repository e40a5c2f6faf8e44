"""Convolutional variational autoencoders for multi-band rasters.

Two architectures share one interface (`encode` -> (mu, logvar), `decode`, `latent_shape`):

- `SpatialVAE` (default): fully convolutional, the latent is a grid of `latent_dim` channels at 1/2**depth of the
  pixel grid. A whole cell is encoded at once, so the decoder sees every neighbour and there are no patch seams;
  roads, field edges and coastlines survive because each latent position only has to describe a 4 x 4 (depth 2)
  block, and a linear path (block mean -> 1x1 conv; 1x1 conv -> bilinear upsampling) makes the network start from
  a spectral-PCA-like code that the residual convolutions refine.
- `ConvVAE` ("flat", the paper's Figure 1): one vector per square patch through fully connected layers; kept for
  comparison. Its embedding of a cell is the grid of its patches' vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURES = ("spatial", "flat")


@dataclass(frozen=True)
class VAEConfig:
    """Everything needed to rebuild the network (stored beside its state_dict)."""

    in_channels: int
    patch_size: int = 32  # training patch side; "flat": also the side of the patch one vector embeds
    latent_dim: int = 32  # "flat": vector length; "spatial": latent channels per grid position
    base_channels: int = 32  # network width
    depth: int = 3  # "flat": stride-2 convolutions; "spatial": the latent grid is 1/2**depth of the pixel grid
    architecture: str = "flat"

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        for name in ("in_channels", "patch_size", "latent_dim", "base_channels", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patch_size % 2**self.depth:
            raise ValueError(f"patch_size {self.patch_size} is not divisible by 2**depth={2**self.depth}")

    @property
    def factor(self) -> int:
        """Pixels per latent position along each axis (spatial) or per patch (flat)."""
        return 2**self.depth if self.architecture == "spatial" else self.patch_size

    def to_dict(self) -> dict:
        return asdict(self)


def build_vae(config: VAEConfig) -> nn.Module:
    """The network a config describes."""
    return SpatialVAE(config) if config.architecture == "spatial" else ConvVAE(config)


class ConvVAE(nn.Module):
    """Conv encoder -> (mu, logvar) -> reparameterised z -> transposed-conv decoder (one vector per patch)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.base_channels * 2**i for i in range(config.depth)]
        enc, c_in = [], config.in_channels
        for w in widths:
            enc += [nn.Conv2d(c_in, w, 4, stride=2, padding=1), nn.BatchNorm2d(w), nn.LeakyReLU(0.2)]
            c_in = w
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self._side = config.patch_size // 2**config.depth
        flat = widths[-1] * self._side**2
        self.fc_mu = nn.Linear(flat, config.latent_dim)
        self.fc_logvar = nn.Linear(flat, config.latent_dim)
        self.fc_decode = nn.Linear(config.latent_dim, flat)
        dec = []
        for w_in, w_out in zip(widths[::-1], widths[::-1][1:]):
            dec += [nn.ConvTranspose2d(w_in, w_out, 4, stride=2, padding=1), nn.BatchNorm2d(w_out), nn.LeakyReLU(0.2)]
        dec += [nn.ConvTranspose2d(widths[0], config.in_channels, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self._top = widths[-1]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h).clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc_decode(z).view(-1, self._top, self._side, self._side)
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode(z), mu, logvar


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SpatialVAE(nn.Module):
    """Fully convolutional VAE whose latent is a (latent_dim, H/f, W/f) grid, f = 2**depth.

    The first halving is a pixel unshuffle (space-to-depth: cheap and lossless), the others strided convolutions
    followed by residual blocks; the decoder mirrors it with transposed convolutions and a pixel shuffle.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        bands, width, latent, f = config.in_channels, config.base_channels, config.latent_dim, config.factor
        enc: list[nn.Module] = [nn.PixelUnshuffle(2), nn.Conv2d(bands * 4, width, 3, padding=1), nn.LeakyReLU(0.2)]
        for _ in range(config.depth - 1):
            enc += [nn.Conv2d(width, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2), ResBlock(width)]
        enc += [nn.Conv2d(width, 2 * latent, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        self.encoder_linear = nn.Conv2d(bands, 2 * latent, 1)
        dec: list[nn.Module] = [nn.Conv2d(latent, width, 3, padding=1), nn.LeakyReLU(0.2), ResBlock(width)]
        for _ in range(config.depth - 1):
            dec += [nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2), ResBlock(width)]
        dec += [nn.Conv2d(width, bands * 4, 3, padding=1), nn.PixelShuffle(2)]
        self.decoder = nn.Sequential(*dec)
        self.decoder_linear = nn.Conv2d(latent, bands, 1)
        self._f = f

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x) + self.encoder_linear(F.avg_pool2d(x, self._f))
        latent = self.config.latent_dim
        return h[:, :latent], h[:, latent:].clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        linear = F.interpolate(self.decoder_linear(z), scale_factor=self._f, mode="bilinear", align_corners=False)
        return linear + self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode(z), mu, logvar


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)): summed over latent channels, averaged over the batch (and grid positions)."""
    return -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))
