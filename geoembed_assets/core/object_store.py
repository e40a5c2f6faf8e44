"""Publishing outputs to object storage (any fsspec URL: s3://bucket/prefix, gs://, file://) and reading them back.

The pipeline computes on a local (or shared) data folder; this copies a partition's outputs to the store under
the same relative layout (README "Output layout"). An S3 object only becomes visible once its upload completed,
so readers never see half a file: the object-store counterpart of write-then-rename.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from upath import UPath

from geoembed_assets.core.storage import same_file


def store_path(url: str, storage_options: dict[str, Any] | None = None) -> UPath:
    return UPath(url, **(storage_options or {}))


def publish(local_root: str | Path, relative_paths: Iterable[str | Path], url: str, storage_options: dict | None = None) -> list[str]:
    """Upload `relative_paths` (files under `local_root`) to `url`, keeping their layout; returns the URLs written.

    A file already there with the same size and MD5 (an S3 single-part upload's ETag) is not uploaded again.
    """
    root, target = Path(local_root), store_path(url, storage_options)
    written = []
    for rel in sorted({Path(p) for p in relative_paths}):
        src, dest = root / rel, target / rel.as_posix()
        if dest.exists() and same_file(src, dest.fs.info(dest.path)):
            continue
        dest.fs.put_file(str(src), dest.path)
        written.append(str(dest))
    return written


def duckdb_connection(url: str, storage_options: dict | None = None):
    """A DuckDB connection that reads `url`'s scheme through fsspec (no DuckDB extension download needed)."""
    import duckdb

    con = duckdb.connect()
    con.register_filesystem(store_path(url, storage_options).fs)
    return con
