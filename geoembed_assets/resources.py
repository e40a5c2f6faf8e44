"""Everything environment-specific: where data lives, which device trains, and the quality thresholds."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from upath import UPath

from geoembed_assets.core.atomic import atomic_path


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


class FilesIOManager(dg.UPathIOManager):
    """Outputs as the files they are, under `<base>/<asset>/<month>/<region>.<ext>`:

    - a DataFrame (chip index, scores, checkpoints table) as Parquet, readable by pandas, DuckDB, Spark;
    - a path to a file the asset wrote itself (the embeddings GeoParquet) as a small JSON pointer, so the
      GeoParquet is stored once and the `path` metadata names it, not a pickled copy;
    - anything else (the scenes of raw_tiles) pickled.

    Built on Dagster's UPathIOManager, so the same code writes to object storage (`s3://...`) given such a base.
    """

    def __init__(self, base_path: UPath) -> None:
        super().__init__(base_path=base_path)

    @staticmethod
    def _candidates(path: UPath) -> dict[str, UPath]:
        return {ext: path.with_name(path.name + ext) for ext in (".parquet", ".json", ".pkl")}

    def _write(self, path: UPath, write) -> None:
        if path.protocol in ("", "file"):
            with atomic_path(str(path)) as tmp:  # local files: write then rename
                write(UPath(tmp))
        else:
            write(path)  # object stores put whole objects atomically

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        files = self._candidates(path)
        for stale in files.values():  # a partition re-materialized with another output kind
            if stale.exists():
                stale.unlink()
        if isinstance(obj, pd.DataFrame):
            self._write(files[".parquet"], lambda p: obj.to_parquet(str(p), index=False))
        elif isinstance(obj, Path | UPath):
            self._write(files[".json"], lambda p: p.write_text(json.dumps({"path": str(obj)})))
        else:
            self._write(files[".pkl"], lambda p: p.write_bytes(pickle.dumps(obj)))

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        files = self._candidates(path)
        if files[".parquet"].exists():
            return pd.read_parquet(str(files[".parquet"]))
        if files[".json"].exists():
            return Path(json.loads(files[".json"].read_text())["path"])
        if files[".pkl"].exists():
            return pickle.loads(files[".pkl"].read_bytes())
        raise FileNotFoundError(f"no output stored at {path}.(parquet|json|pkl)")

    def has_output(self, context: dg.OutputContext) -> bool:
        return any(p.exists() for p in self._candidates(self._get_path(context)).values())

    def get_metadata(self, context: dg.OutputContext, obj: Any) -> dict[str, dg.MetadataValue]:
        """`path`: the real file (the GeoParquet for a path output, the Parquet for a table)."""
        path = next(iter(self._get_paths_for_partitions(context).values())) if context.has_asset_partitions \
            else self._get_path(context)  # fmt: skip
        files = self._candidates(path)
        if isinstance(obj, pd.DataFrame):
            return {"path": dg.MetadataValue.path(str(files[".parquet"])), "rows": len(obj)}
        if isinstance(obj, Path | UPath):
            return {"path": dg.MetadataValue.path(str(obj))}
        return {"path": dg.MetadataValue.path(str(files[".pkl"]))}


class GeoembedIOManager(dg.ConfigurableIOManagerFactory):
    """The IO manager of every asset: files under `<storage.data_dir>/dagster` (see FilesIOManager)."""

    storage: GeoembedStorage

    def create_io_manager(self, context) -> FilesIOManager:
        return FilesIOManager(UPath(self.storage.data_dir) / "dagster")


def default_resources() -> dict:
    storage = GeoembedStorage(data_dir=os.environ.get("GEOEMBED_DATA_DIR", "data"))
    return {
        "storage": storage,
        "io_manager": GeoembedIOManager(storage=storage),
        "torch_device": TorchDevice(),
        "thresholds": QualityThresholds(),
    }
