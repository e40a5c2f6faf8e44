"""Everything environment-specific: where data lives, which device trains, and the quality thresholds."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg


class GeoembedStorage(dg.ConfigurableResource):
    """Root of the project's files: landing scenes, chips, checkpoints, embeddings, catalog."""

    data_dir: str = "data"

    def path(self, *parts: str) -> Path:
        return Path(self.data_dir).joinpath(*parts)

    @property
    def landing_dir(self) -> Path:
        return self.path("landing")

    @property
    def chips_dir(self) -> Path:
        return self.path("chips")

    @property
    def checkpoints_dir(self) -> Path:
        return self.path("checkpoints")

    @property
    def embeddings_dir(self) -> Path:
        return self.path("embeddings")

    def size_predictions_path(self, region: str, month: str) -> Path:
        """Per-cell embedding sizes of a partition (embedding_size_predictions), read by vae_checkpoints."""
        return self.path("size_predictions", region, f"{month}.parquet")


class TorchDevice(dg.ConfigurableResource):
    """Picks CUDA when present (or when asked), the CPU otherwise."""

    prefer: str = "auto"  # "auto", "cuda" or "cpu"
    cpu_threads: int = 0  # 0: torch's default

    def device(self) -> str:
        import torch

        if self.cpu_threads:
            torch.set_num_threads(self.cpu_threads)
        if self.prefer == "cpu":
            return "cpu"
        if torch.cuda.is_available():
            return "cuda"
        if self.prefer == "cuda":
            raise RuntimeError("TorchDevice(prefer='cuda') but no CUDA device is visible")
        return "cpu"


class QualityThresholds(dg.ConfigurableResource):
    """The quality target (see `core/quality.py` for why): land-cell reflectance RMSE and NDVI error."""

    max_rmse: float = 0.015  # reflectance RMSE per cell, over all bands (MSE 2.25e-4)
    max_ndvi_mae: float = 0.05

    def target(self):
        from geoembed_assets.core.quality import QualityTarget

        return QualityTarget(self.max_rmse, self.max_ndvi_mae)


def default_resources() -> dict:
    return {
        "storage": GeoembedStorage(data_dir=os.environ.get("GEOEMBED_DATA_DIR", "data")),
        "torch_device": TorchDevice(),
        "thresholds": QualityThresholds(),
    }
