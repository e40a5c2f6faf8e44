"""Convolutional variational autoencoder for square multi-band patches (paper Figure 1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class VAEConfig:
    """Everything needed to rebuild the network (stored beside its state_dict)."""

    in_channels: int
    patch_size: int = 32
    latent_dim: int = 32
    base_channels: int = 32
    depth: int = 3  # stride-2 convolutions; patch_size must be divisible by 2**depth

    def to_dict(self) -> dict:
        return asdict(self)


class ConvVAE(nn.Module):
    """Conv encoder -> (mu, logvar) -> reparameterised z -> transposed-conv decoder."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        if config.patch_size % 2**config.depth:
            raise ValueError(f"patch_size {config.patch_size} is not divisible by 2**depth={2**config.depth}")
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


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)), averaged over the batch."""
    return -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))
