"""Validate STAC objects offline against the JSON schemas vendored in `schemas/` (no network access needed).

`schemas/index.json` maps each canonical schema URL to its file (laid out as `<host>/<path>`); every `$ref`
between them and every `stac_extensions` URL resolves through one `referencing.Registry` built from that index.
The schemas are Apache-2.0 (see `schemas/*-LICENSE`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import validators
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from geoembed_assets.core.safe_paths import UnsafePathError, inside_any, package_data_roots

SCHEMA_DIR = Path(__file__).parent / "schemas"
CORE_SCHEMA = "https://schemas.stacspec.org/v{version}/{kind}-spec/json-schema/{kind}.json"
KINDS = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}


@lru_cache(maxsize=1)
def schema_index() -> dict[str, Path]:
    """{canonical URL: local file} of every vendored schema."""
    index = json.loads((SCHEMA_DIR / "index.json").read_text())
    return {url: SCHEMA_DIR / rel for url, rel in index.items()}


@lru_cache(maxsize=1)
def registry() -> Registry:
    """Every vendored schema under its canonical URL (so relative and absolute `$ref`s resolve locally)."""
    resources = [
        (url, Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT7))
        for url, path in schema_index().items()
    ]
    return Registry().with_resources(resources)


@lru_cache(maxsize=None)
def _validator(url: str):
    schema = registry().contents(url)
    return validators.validator_for(schema)(schema, registry=registry())


def schema_urls(stac: dict[str, Any]) -> list[str]:
    """The core schema of the object's type and STAC version, then its extension schemas."""
    kind = KINDS.get(stac.get("type", ""), "catalog")
    return [CORE_SCHEMA.format(version=stac.get("stac_version", "?"), kind=kind), *stac.get("stac_extensions", [])]


def validate_item(stac: dict[str, Any]) -> list[str]:
    """Error messages ("<schema URL>: <JSON path>: <message>") of a STAC Item, Collection or Catalog dict.

    An empty list means valid. A schema that is not vendored is an error too (it cannot be checked offline).
    """
    errors = []
    for url in schema_urls(stac):
        if url not in schema_index():
            errors.append(f"{url}: schema not available offline")
            continue
        for error in _validator(url).iter_errors(stac):
            detail = best_match([error])  # descend into oneOf/anyOf/if-then to the most specific cause
            path = "/".join(str(p) for p in detail.absolute_path) or "<root>"
            errors.append(f"{url}: {path}: {detail.message}")
    return errors


def asset_href_errors(stac: dict[str, Any], document: Path, data_root: Path) -> list[str]:
    """Assets must point inside the data folder: models inside `<data_root>/checkpoints`, the rest inside
    `data_root` or allow-listed package data (an href edited to `/etc/passwd` is an error naming the asset)."""
    errors = []
    for key, asset in (stac.get("assets") or {}).items():
        href = str(asset.get("href", ""))
        if "://" in href:
            errors.append(f"asset {key!r}: href {href!r} is not a local file of the data folder")
            continue
        target = document.parent / href  # absolute hrefs replace the base
        is_model = "mlm:model" in (asset.get("roles") or [])
        roots = [data_root / "checkpoints"] if is_model else [data_root, *package_data_roots()]
        try:
            inside_any(target, roots, f"asset {key!r}")
        except UnsafePathError as e:
            errors.append(str(e))
    return errors


def validate_tree(root: str | Path, data_root: str | Path | None = None) -> dict[str, list[str]]:
    """{file: errors} for every invalid JSON document under a catalog folder (empty when all validate).

    Besides the schemas, every asset href must lie inside `data_root` (default: the catalog's parent folder).
    """
    data_root = Path(data_root) if data_root is not None else Path(root).resolve().parent
    invalid = {}
    for path in sorted(Path(root).rglob("*.json")):
        stac = json.loads(path.read_text())
        errors = validate_item(stac) + asset_href_errors(stac, path, data_root)
        if errors:
            invalid[str(path)] = errors
    return invalid
