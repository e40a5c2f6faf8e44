"""Run configuration of the assets (editable in the launchpad and on the CLI with --config-json)."""

import dagster as dg
from pydantic import Field

from geoembed_assets.core.training import TrainingConfig

# "fast": the default, minutes on 2 CPU cores; "best": longer training, larger model, paper-like patience.
QUALITY_PRESETS: dict[str, dict] = {
    "fast": dict(max_epochs=40, patience=10, base_channels=32),
    "best": dict(max_epochs=300, patience=50, base_channels=64),
}


class ChipsConfig(dg.Config):
    precision: int = Field(5, ge=1, le=12)  # geohash precision of a cell (5: ~5 km x 5 km)
    cell_size_px: int = Field(480, ge=1)  # pixels per cell side (~10 m north-south at precision 5)
    min_coverage: float = Field(0.5, ge=0.0, le=1.0)  # cells with less valid data are skipped


class VAEConfig(dg.Config):
    quality: str = "fast"  # "fast" or "best"
    latent_dim: int = Field(32, ge=1)
    patch_size: int = Field(32, ge=1)
    max_epochs: int | None = None  # None: from the quality preset
    patience: int | None = None
    base_channels: int | None = None
    ndvi_weight: float = 0.1
    ndwi_weight: float = 0.0  # inter-band metric losses added to the reconstruction loss (paper section 3.2.2)
    ndbi_weight: float = 0.0
    seed: int = 0
    warm_start: bool = True  # retrain a cell from its latest checkpoint (drift) rather than from scratch
    mode: str = "multi"  # "multi": one VAE per cell; "single": one VAE per cell and band
    latent_dim_from_predictions: bool = True  # use embedding_size_predictions per cell, latent_dim otherwise

    def index_weights(self) -> dict[str, float]:
        weights = {"ndvi": self.ndvi_weight, "ndwi": self.ndwi_weight, "ndbi": self.ndbi_weight}
        return {k: v for k, v in weights.items() if v}

    def training_config(self) -> TrainingConfig:
        if self.quality not in QUALITY_PRESETS:
            raise ValueError(f"quality must be one of {sorted(QUALITY_PRESETS)}, got {self.quality!r}")
        preset = dict(QUALITY_PRESETS[self.quality])
        for name in ("max_epochs", "patience", "base_channels"):
            if getattr(self, name) is not None:
                preset[name] = getattr(self, name)
        return TrainingConfig(
            latent_dim=self.latent_dim,
            patch_size=self.patch_size,
            index_weights=self.index_weights(),
            seed=self.seed,
            **preset,
        )
