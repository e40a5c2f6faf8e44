"""The quality an embedding must keep, in the units a remote-sensing user reads.

Default: per-cell reflectance RMSE <= 0.015 (MSE 2.25e-4) over all bands and NDVI mean absolute error <= 0.05,
judged on land cells (water cells are dark and smooth; they meet it by a wide margin and would hide land errors
in a mean). Why these numbers, measured on the default scene's seven land cells (`benchmarks/bench_embeddings.py`):
- at about 100x smaller than the uint16 chip, block averaging reaches RMSE 0.021 (MSE 4.6e-4) and 13-band
  JPEG2000 0.015-0.018 (MSE 2.4-3.4e-4): the bound asks for at least JPEG2000 quality at that rate;
- 0.015 is about the absolute radiometric uncertainty of Sentinel-2 L1C (3-5 %) at the 0.3-0.4 reflectance
  of vegetation in the near infrared, so a user cannot tell the decoded cell from another acquisition's noise;
- NDVI 0.05 is half the step between the usual sparse (0.2-0.3) and dense (>0.6) vegetation class boundaries.
The paper's MSE 0.002 (RMSE 0.045) is larger than the red reflectance of vegetation; it is not the default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class QualityTarget:
    max_rmse: float = 0.015
    max_ndvi_mae: float = 0.05

    def __post_init__(self) -> None:
        if not (self.max_rmse > 0 and self.max_ndvi_mae > 0):
            raise ValueError(f"quality bounds must be positive, got rmse {self.max_rmse}, ndvi {self.max_ndvi_mae}")

    @property
    def max_mse(self) -> float:
        return self.max_rmse**2

    def psnr_db(self) -> float:
        """The bound as PSNR for reflectance in [0, 1]."""
        return -10 * math.log10(self.max_mse)

    def failing_cells(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Land-cell rows (cover 'land') whose RMSE or NDVI error exceeds the bound."""
        land = rows[rows["cover"] == "land"]
        bad = (land["recon_rmse"] > self.max_rmse) | (land["ndvi_mae"].fillna(0) > self.max_ndvi_mae)
        return land[bad]


def quality_by_cover(rows: pd.DataFrame) -> pd.DataFrame:
    """Cells, mean/max RMSE, mean MSE and NDVI MAE per cover class (never one scene mean)."""
    return (
        rows.groupby("cover")
        .agg(cells=("geohash", "nunique"), mean_mse=("recon_mse", "mean"), mean_rmse=("recon_rmse", "mean"),
             max_rmse=("recon_rmse", "max"), mean_ndvi_mae=("ndvi_mae", "mean"))  # fmt: skip
        .reset_index()
    )
