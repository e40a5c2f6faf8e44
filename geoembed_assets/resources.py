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
from geoembed_assets.core.storage import Store, env_store, is_remote


class GeoembedStorage(dg.ConfigurableResource):
    """Root of the project's files: landing scenes, chips, checkpoints, embeddings, catalog.

    `data_dir` is a local folder or an fsspec URL (`s3://bucket/prefix`, README "Running at scale"). Steps read
    and write local files under the scratch (`local_dir`: the data folder itself when it is local) with the
    data root's layout; with a URL root they `fetch` missing inputs from the store first and `commit` what they
    wrote after (both no-ops for a local root).
    """

    data_dir: str = "data"
    cache_dir: str = ""  # local scratch of a URL data_dir; "" = $GEOEMBED_CACHE_DIR or ~/.cache/geoembed/<hash>
    endpoint_url: str = ""  # S3-compatible server (MinIO, moto); "" = $GEOEMBED_S3_ENDPOINT_URL, else AWS
    landing_folder: str = ""  # deliveries; "" = <data_dir>/landing (on the store too when data_dir is a URL)

    @property
    def store(self) -> Store:
        return env_store(self.data_dir, self.cache_dir or None, self.endpoint_url or None)

    @property
    def remote(self) -> bool:
        return is_remote(self.data_dir)

    @property
    def local_dir(self) -> Path:
        """The local folder every step reads and writes: the data folder, or the scratch of a URL data root."""
        return self.store.scratch

    def path(self, *parts: str) -> Path:
        return self.local_dir.joinpath(*parts)

    @property
    def landing_dir(self) -> Path:
        return Path(self.landing_folder) if self.landing_folder else self.path("landing")

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

    # -- the store (each a no-op for a local data_dir) ---------------------------------------------------------
    def url(self, local: str | Path) -> str:
        """Where a file under `local_dir` is kept: its store URL, or the local path itself."""
        return self.store.url(local)

    def upath(self, *parts: str) -> UPath:
        return self.store.upath(*parts)

    def commit(self, *paths: str | Path) -> list[str]:
        """Upload files (or whole folders) this step wrote under `local_dir`; unchanged ones are skipped."""
        return self.store.commit(paths)

    def remove(self, *paths: str | Path) -> list[str]:
        """Delete the store's copies of files under `local_dir` that a step replaced (their local files are gone)."""
        return self.store.remove(paths)

    def stored(self, local: str | Path) -> Path | UPath:
        """A file under `local_dir` as an asset output: its UPath in the store (with the store's options), or itself."""
        return self.upath(self.store.relative(local)) if self.remote else Path(local)

    def fetch(self, *paths: str | Path) -> list[Path]:
        """Download these files under `local_dir` from the store where missing or changed."""
        return self.store.fetch(paths)

    def fetch_tree(self, *prefixes: str) -> list[Path]:
        """Download every file under these relative folders (`checkpoints`, `landing`) where missing or changed."""
        return self.store.fetch_tree(*prefixes)

    def sync_landing(self) -> list[Path]:
        """The store's landing/ into the scratch (a URL data root without its own landing_folder)."""
        return [] if self.landing_folder else self.fetch_tree("landing")

    def portable(self, frame: pd.DataFrame, column: str = "path") -> pd.DataFrame:
        """`frame` with its local paths respelled as store URLs, so another worker can resolve them."""
        if not self.remote or column not in frame:
            return frame
        store = self.store
        return frame.assign(**{column: frame[column].map(store.to_store)})

    def localize(self, frame: pd.DataFrame, column: str = "path") -> pd.DataFrame:
        """`frame` with store URLs respelled as paths under `local_dir`, those files fetched where missing."""
        if not self.remote or column not in frame:
            return frame
        store = self.store
        local = frame[column].map(store.to_local)
        store.fetch(p for p in local.unique() if not Path(p).exists())
        return frame.assign(**{column: local})

    def local(self, path: str | Path | UPath) -> Path:
        """A store URL (or UPath) or local path as a local file under `local_dir`, fetched when missing."""
        text = str(path)
        if not self.remote:
            return Path(text)
        local = Path(self.store.to_local(text))
        if not local.exists():
            self.fetch(local)
        return local

    def portable_scenes(self, scenes: list) -> list:
        """Scenes whose band files lie in the scratch's landing folder, respelled with the store's URL."""
        return [_respell(s, self.store.to_store) for s in scenes] if self.remote else scenes

    def local_scenes(self, scenes: list) -> list:
        """The inverse of `portable_scenes`, after syncing the store's landing folder into the scratch."""
        if not self.remote:
            return scenes
        self.sync_landing()
        return [_respell(s, self.store.to_local) for s in scenes]


def _respell(scene, spell):
    from dataclasses import replace

    return replace(scene, source=spell(scene.source), bands=tuple(replace(b, path=spell(b.path)) for b in scene.bands))


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
            self._write(files[".parquet"], lambda p: _write_parquet(obj, p))
        elif isinstance(obj, Path | UPath):
            self._write(files[".json"], lambda p: p.write_text(json.dumps({"path": str(obj)})))  # a URL for a store
        else:
            self._write(files[".pkl"], lambda p: p.write_bytes(pickle.dumps(obj)))

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        files = self._candidates(path)
        if files[".parquet"].exists():
            with files[".parquet"].open("rb") as f:
                return pd.read_parquet(f)
        if files[".json"].exists():
            target = json.loads(files[".json"].read_text())["path"]
            return UPath(target, **path.storage_options) if is_remote(target) else Path(target)
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


def _write_parquet(frame: pd.DataFrame, path: UPath) -> None:
    with path.open("wb") as f:  # through the path's own file system (and its options: endpoint, credentials)
        frame.to_parquet(f, index=False)


class GeoembedIOManager(dg.ConfigurableIOManagerFactory):
    """The IO manager of every asset: files under `<storage.data_dir>/dagster`, a URL included (see FilesIOManager)."""

    storage: GeoembedStorage

    def create_io_manager(self, context) -> FilesIOManager:
        return FilesIOManager(self.storage.upath("dagster"))


def default_resources() -> dict:
    storage = GeoembedStorage(
        data_dir=os.environ.get("GEOEMBED_DATA_DIR", "data"),
        cache_dir=os.environ.get("GEOEMBED_CACHE_DIR", ""),
        endpoint_url=os.environ.get("GEOEMBED_S3_ENDPOINT_URL", ""),
        landing_folder=os.environ.get("GEOEMBED_LANDING_DIR", ""),
    )
    return {
        "storage": storage,
        "io_manager": GeoembedIOManager(storage=storage),
        "torch_device": TorchDevice(),
        "thresholds": QualityThresholds(),
    }
