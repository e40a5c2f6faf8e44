"""Write-then-rename, so a crash never leaves a half-written output where a good one was.

Also: the per-partition lock that serialises concurrent runs of one partition, the clean-up of temp files a
killed write left behind, and a disk-full error that names the file being written.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Collection, Iterator

TEMP_GLOB = ".*.tmp"  # what atomic_path names its temporary siblings
LOW_SPACE_BYTES = 1 << 20


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; rename it over `final` only if the block succeeds.

    A full disk (ENOSPC, EDQUOT, or GDAL's "No space left on device" from rasterio) raises an OSError whose
    message names `final`.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    except Exception as e:
        if _disk_full(e, final.parent):
            code = e.errno if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) else errno.ENOSPC
            raise OSError(code, f"no space left on the device writing {final} ({type(e).__name__}: {e})", str(final)) from e
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _disk_full(error: BaseException, folder: Path) -> bool:
    """ENOSPC/EDQUOT, also when a library reports it in its own words: GDAL only says "write failed" (its
    "No space left on device" goes to stderr), so a failed write on a file system with under 1 MiB free counts."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = f"{error} {error.__cause__ or ''}".lower()
    if "no space left on device" in text or "disk quota exceeded" in text:
        return True
    try:
        nearly_full = shutil.disk_usage(folder).free < LOW_SPACE_BYTES
    except OSError:
        return False
    return nearly_full and ("write" in text or isinstance(error, OSError))


def write_bytes_atomic(final: str | Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def final_name(tmp: Path) -> str | None:
    """The name of the file a temp file of `atomic_path` was going to become (None for other names)."""
    match = re.fullmatch(r"\.(.+)\.[0-9a-f]{8}\.tmp", tmp.name)
    return match.group(1) if match else None


def remove_stale_temp_files(folder: str | Path, older_than_s: float = 0.0, finals: Collection[str] | None = None) -> list[Path]:
    """Delete the temp files of atomic writes under `folder` (a kill between write and rename leaves them).

    Call it while holding the partition's lock (then no write of this partition is in flight). `finals`: only
    temp files of these final names (the partition's own outputs) are removed, so that a partition sharing the
    folder with others (months of one region) never deletes another run's in-flight write. Files younger than
    `older_than_s` are kept. Returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now, removed = time.time(), []
    for tmp in folder.rglob(TEMP_GLOB):
        if finals is not None and final_name(tmp) not in finals:
            continue
        try:
            if tmp.is_file() and now - tmp.stat().st_mtime >= older_than_s:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:
            continue
    return removed


@contextmanager
def partition_lock(folder: str | Path, key: str, timeout_s: float | None = None) -> Iterator[Path]:
    """An exclusive lock on `folder/.lock-<key>` (fcntl: released by the OS if the process dies).

    Two runs of one partition wait for each other here instead of writing the same outputs at once.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".lock-{key}"
    start = time.monotonic()
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    raise TimeoutError(f"{path}: partition {key} is locked by another run") from None
                time.sleep(0.2)
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
