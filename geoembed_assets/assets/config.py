"""Run configuration of the assets (editable in the launchpad and on the CLI with --config-json)."""

import dagster as dg
from pydantic import Field

from geoembed_assets.core.training import TrainingConfig

# "fast": the default, minutes on 2 CPU cores; "best": longer training, larger model, paper-like patience.
QUALITY_PRESETS: dict[str, dict] = {
    "fast": dict(max_epochs=40, patience=10, base_channels=48, max_steps=300),
    "best": dict(max_epochs=300, patience=50, base_channels=64, max_steps=3000),
}
# Per architecture: latent channels (spatial) or vector length (flat), patch side, downsampling depth.
ARCHITECTURE_DEFAULTS: dict[str, dict] = {
    "spatial": dict(latent_dim=4, patch_size=48, depth=2),
    "flat": dict(latent_dim=32, patch_size=32, depth=3),
}


class ChipsConfig(dg.Config):
    precision: int = Field(5, ge=1, le=12)  # geohash precision of a cell (5: ~5 km x 5 km)
    cell_size_px: int = Field(480, ge=1)  # pixels per cell side (~10 m north-south at precision 5)
    min_coverage: float = Field(0.5, ge=0.0, le=1.0)  # cells with less valid data are skipped


class VAEConfig(dg.Config):
    quality: str = "fast"  # "fast" or "best"
    architecture: str = "spatial"  # "spatial": latent grid (default); "flat": the paper's one vector per patch
    scope: str = "partition"  # "partition": one model shared by the region's cells; "cell": one per cell (paper)
    latent_dim: int | None = Field(None, ge=1)  # None: 4 channels (spatial) / 32 (flat)
    patch_size: int | None = Field(None, ge=1)  # None: 48 (spatial) / 32 (flat)
    depth: int | None = Field(None, ge=1)  # None: 2 (spatial: latent grid at 1/4) / 3 (flat)
    max_epochs: int | None = None  # None: from the quality preset
    max_steps: int | None = None
    patience: int | None = None
    base_channels: int | None = None
    refine_steps: int = 10  # per-cell latent refinement steps when encoding (spatial only)
    ndvi_weight: float = 0.1
    ndwi_weight: float = 0.0  # inter-band metric losses added to the reconstruction loss (paper section 3.2.2)
    ndbi_weight: float = 0.0
    seed: int = 0
    retrain: bool = False  # train a new version from the current model even when it still fits (drift schedule)
    warm_start: bool = True  # reuse / retrain from the latest model of the region (or cell) rather than from scratch
    mode: str = "multi"  # "multi": one VAE per cell; "single": one VAE per cell and band
    latent_dim_from_predictions: bool = True  # scope "cell": each cell's predicted size; else latent_dim

    def index_weights(self) -> dict[str, float]:
        weights = {"ndvi": self.ndvi_weight, "ndwi": self.ndwi_weight, "ndbi": self.ndbi_weight}
        return {k: v for k, v in weights.items() if v}

    def training_config(self) -> TrainingConfig:
        if self.quality not in QUALITY_PRESETS:
            raise ValueError(f"quality must be one of {sorted(QUALITY_PRESETS)}, got {self.quality!r}")
        if self.architecture not in ARCHITECTURE_DEFAULTS:
            raise ValueError(f"architecture must be one of {sorted(ARCHITECTURE_DEFAULTS)}, got {self.architecture!r}")
        if self.scope not in ("partition", "cell"):
            raise ValueError(f"scope must be 'partition' or 'cell', got {self.scope!r}")
        preset = {**QUALITY_PRESETS[self.quality], **ARCHITECTURE_DEFAULTS[self.architecture]}
        for name in ("max_epochs", "max_steps", "patience", "base_channels", "latent_dim", "patch_size", "depth"):
            if getattr(self, name) is not None:
                preset[name] = getattr(self, name)
        return TrainingConfig(
            index_weights=self.index_weights(), seed=self.seed, architecture=self.architecture, **preset
        )
