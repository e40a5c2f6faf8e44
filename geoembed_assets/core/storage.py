"""Durable store + local scratch: where the pipeline's files live when the data root is an fsspec URL.

GDAL, torch and the partition locks need local files, so every step writes under a local scratch folder with
the layout of the data root (README "Output layout") and then *commits* the files it wrote to the store; a step
*fetches* the inputs it lacks from the store into its scratch first, so a step on another worker (Celery, a k8s
pod) with an empty scratch works. A single S3 put is atomic: readers never see half an object, the store's
counterpart of write-then-rename. Unchanged files (same size and MD5, an S3 single-part upload's ETag) are
neither uploaded nor downloaded again.

With a local data root the scratch *is* the data root and every operation here is a no-op.

Paths kept in tables passed between steps (the chip index's and the checkpoints table's `path` columns) name the
store (`s3://bucket/prefix/chips/...`) when the root is remote, so they resolve on any worker: `to_store` and
`to_local` translate between the two spellings.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from upath import UPath

from geoembed_assets.core.atomic import atomic_path
from geoembed_assets.core.safe_paths import UnsafePathError

LOCAL_PROTOCOLS = ("", "file", "local")


def is_remote(url: str | Path) -> bool:
    """True for an fsspec URL other than a local path (`s3://`, `gs://`, `memory://`, ...)."""
    text = str(url)
    return "://" in text and text.split("://", 1)[0] not in LOCAL_PROTOCOLS


def default_cache_dir(url: str) -> Path:
    """`~/.cache/geoembed/<hash of the URL>`: the same on every worker of one deployment, one per data root."""
    return Path("~/.cache/geoembed").expanduser() / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


def s3_options(endpoint_url: str | None) -> dict[str, Any]:
    """fsspec options for an S3-compatible server at `endpoint_url` (MinIO, Ceph, moto); {} for AWS itself."""
    return {"client_kwargs": {"endpoint_url": endpoint_url}} if endpoint_url else {}


def md5(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def same_file(local: Path, info: dict) -> bool:
    """Does the store object (`info` from fs.info / fs.find(detail=True)) hold the bytes of `local`?"""
    if not local.is_file() or info.get("size") != local.stat().st_size:
        return False
    etag = str(info.get("ETag", info.get("etag", ""))).strip('"')
    if not etag or "-" in etag:  # no ETag, or a multipart upload's (not an MD5): sizes only
        return True
    return etag == md5(local)


class Store:
    """A data root (local folder or fsspec URL) and the local scratch that mirrors it."""

    def __init__(self, root: str | Path, scratch: str | Path | None = None, storage_options: dict | None = None):
        text = str(root)
        self.remote = is_remote(text)
        if not self.remote:
            text = text.split("://", 1)[1] if "://" in text else text
        self.root = text.rstrip("/") if self.remote else text
        self.storage_options = dict(storage_options or {}) if self.remote else {}
        if self.remote:
            self.scratch = Path(scratch).expanduser().resolve() if scratch else default_cache_dir(self.root)
        else:
            self.scratch = Path(text)  # the data root itself, spelled as given (relative paths stay relative)

    # -- names ---------------------------------------------------------------------------------------------
    def upath(self, *parts: str) -> UPath:
        """The data root (or a path under it) as a UPath carrying the store's options."""
        base = UPath(self.root, **self.storage_options)
        return base.joinpath(*parts) if parts else base

    def relative(self, local: str | Path) -> str:
        """`chips/dqd/...` of a path under the scratch (posix); refuses anything outside it."""
        path = Path(local)
        base = self.scratch
        if path.is_absolute() != base.is_absolute():
            path, base = path.absolute(), base.absolute()
        try:
            rel = path.relative_to(base)
        except ValueError as e:
            raise UnsafePathError(f"{local} is not under the data root's scratch {self.scratch}") from e
        if ".." in rel.parts:
            raise UnsafePathError(f"{local} leaves the data root")
        return rel.as_posix()

    def url(self, local: str | Path) -> str:
        """Where a scratch file lives in the store (its local path when the root is local)."""
        return f"{self.root}/{self.relative(local)}" if self.remote else str(local)

    def to_store(self, value: str) -> str:
        """A path string naming scratch files (also inside a GDAL /vsizip/ path) respelled with the store's URL."""
        if not self.remote or not isinstance(value, str):
            return value
        prefix = f"{self.scratch}/"
        return value.replace(prefix, f"{self.root}/", 1) if prefix in value else value

    def to_local(self, value: str) -> str:
        """The inverse of :meth:`to_store`; the relative part must stay inside the root."""
        if not self.remote or not isinstance(value, str):
            return value
        prefix = f"{self.root}/"
        at = value.find(prefix)
        if at < 0:
            return value
        rel = value[at + len(prefix):]
        if ".." in Path(rel.split("/vsi", 1)[0]).parts:
            raise UnsafePathError(f"{value} leaves the data root")
        return value[:at] + f"{self.scratch}/" + rel

    # -- transfers -------------------------------------------------------------------------------------------
    def _files(self, paths: Iterable[str | Path]) -> list[Path]:
        found: list[Path] = []
        for p in paths:
            p = Path(p)
            if p.is_dir():
                found += sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            elif p.is_file():
                found.append(p)
        return found

    def commit(self, paths: Iterable[str | Path]) -> list[str]:
        """Upload scratch files (folders: every file under them) to the store unless unchanged; the URLs written."""
        if not self.remote:
            return []
        written = []
        fs = self.upath().fs
        for local in sorted(set(self._files(paths))):
            dest = self.upath(self.relative(local))
            try:
                info = fs.info(dest.path)
            except FileNotFoundError:
                info = None
            if info is not None and same_file(local, info):
                continue
            fs.put_file(str(local), dest.path)  # one object, visible only once complete
            written.append(str(dest))
        return written

    def remove(self, paths: Iterable[str | Path]) -> list[str]:
        """Delete the store objects of these scratch paths (outputs a step replaced), where they exist."""
        if not self.remote:
            return []
        fs, removed = self.upath().fs, []
        for local in paths:
            dest = self.upath(self.relative(local))
            if fs.exists(dest.path):
                fs.rm_file(dest.path)
                removed.append(str(dest))
        return removed

    def _download(self, fs, remote_path: str, local: Path, info: dict | None) -> bool:
        if info is not None and same_file(local, info):
            return False
        with atomic_path(local) as tmp:  # a reader of the scratch never sees half a download either
            fs.get_file(remote_path, str(tmp))
        return True

    def fetch(self, paths: Iterable[str | Path]) -> list[Path]:
        """Bring these scratch paths (files) from the store where missing or changed; returns those downloaded.

        A path the store does not hold is left alone (it may be an optional input, or local only)."""
        if not self.remote:
            return []
        fs, fetched = self.upath().fs, []
        for local in sorted({Path(p) for p in paths}):
            src = self.upath(self.relative(local))
            try:
                info = fs.info(src.path)
            except FileNotFoundError:
                continue
            if info.get("type") == "directory":
                fetched += self.fetch_tree(self.relative(local))
            elif self._download(fs, src.path, local, info):
                fetched.append(local)
        return fetched

    def fetch_tree(self, *prefixes: str) -> list[Path]:
        """Mirror every object under these relative prefixes (`checkpoints`, `landing`) into the scratch."""
        if not self.remote:
            return []
        fs, fetched = self.upath().fs, []
        for prefix in prefixes:
            src = self.upath(prefix)
            fs.invalidate_cache(src.path)  # another worker may have written since this process listed it
            if not fs.exists(src.path):
                continue
            base = src.path.rstrip("/")
            for key, info in sorted(fs.find(src.path, detail=True).items()):
                if info.get("type") == "directory" or not key.startswith(base + "/"):
                    continue
                rel = key[len(base) + 1:]
                if ".." in Path(rel).parts:
                    continue
                local = self.scratch / prefix / rel
                if self._download(fs, key, local, info):
                    fetched.append(local)
        return fetched

    def mirror(self, local_dir: str | Path) -> tuple[list[str], list[str]]:
        """Make the store's copy of a scratch folder equal to it: upload changes, delete objects it no longer
        holds (a full rebuild such as the catalog). Returns (written, deleted)."""
        if not self.remote:
            return [], []
        written = self.commit([local_dir])
        fs = self.upath().fs
        target = self.upath(self.relative(local_dir))
        fs.invalidate_cache(target.path)
        base = target.path.rstrip("/")
        keep = {self.relative(f) for f in self._files([local_dir])}
        prefix = self.relative(local_dir)
        deleted = []
        for key in sorted(fs.find(target.path)) if fs.exists(target.path) else []:
            rel = f"{prefix}/{key[len(base) + 1:]}"
            if rel not in keep:
                fs.rm_file(key)
                deleted.append(f"{self.root}/{rel}")
        return written, deleted


def env_store(root: str, scratch: str | None = None, endpoint_url: str | None = None) -> Store:
    """A Store from settings, falling back to $GEOEMBED_CACHE_DIR and $GEOEMBED_S3_ENDPOINT_URL."""
    endpoint = endpoint_url or os.environ.get("GEOEMBED_S3_ENDPOINT_URL") or None
    options = s3_options(endpoint) if str(root).startswith(("s3://", "s3a://")) else {}
    return Store(root, scratch or os.environ.get("GEOEMBED_CACHE_DIR") or None, options)
