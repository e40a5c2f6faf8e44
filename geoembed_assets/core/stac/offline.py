"""pystac's own validation (`Catalog.validate_all()`), offline: a validator that resolves every schema URL from
the schemas vendored in `schemas/` instead of fetching it.

    import pystac
    from geoembed_assets.core.stac.offline import OfflineValidator

    pystac.validation.set_validator(OfflineValidator())
    pystac.Catalog.from_file("data/catalog/catalog.json").validate_all()

pystac 1.x reads the catalog's STAC 1.0.0 documents as STAC 1.1.0 (it migrates them on read), so this checks
that the catalog is also valid as pystac understands it, not only as written (`schemas.validate_tree`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac
from pystac.validation.local_validator import get_local_schema_cache
from pystac.validation.stac_validator import GetSchemaError, JsonSchemaSTACValidator
from referencing import Registry, Resource

from geoembed_assets.core.stac.schemas import schema_index, validate_tree


class OfflineValidator(JsonSchemaSTACValidator):
    """pystac's JSON-schema validator with every schema read from the vendored copies (never the network)."""

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        if schema_uri not in self.schema_cache:
            index = schema_index()
            if schema_uri in index:
                self.schema_cache[schema_uri] = json.loads(index[schema_uri].read_text())
            elif schema_uri not in get_local_schema_cache():
                raise GetSchemaError(schema_uri, FileNotFoundError(f"{schema_uri} is not vendored in {index and 'schemas/'}"))
        return self.schema_cache[schema_uri]

    @property
    def registry(self) -> Any:
        def retrieve(schema_uri: str) -> Resource[dict[str, Any]]:
            return Resource.from_contents(self._get_schema(schema_uri))

        resources = [(url, Resource.from_contents(self._get_schema(url))) for url in schema_index()]
        resources += [(k, Resource.from_contents(v)) for k, v in self.schema_cache.items() if k not in schema_index()]
        return Registry(retrieve=retrieve).with_resources(resources)  # type: ignore[call-arg]


@dataclass
class ValidationReport:
    objects: int = 0
    read_as: str = pystac.get_stac_version()
    pystac_version: str = pystac.__version__
    problems: list[str] = field(default_factory=list)


def validate_catalog(catalog_dir: str | Path) -> ValidationReport:
    """Read the catalog with pystac and `validate_all()` it offline, then validate every file as written.

    Returns the number of objects read and every problem (pystac read/validation errors and schema errors)."""
    report = ValidationReport()
    previous = pystac.validation.RegisteredValidator.get_validator()
    pystac.validation.set_validator(OfflineValidator())
    try:
        catalog = pystac.Catalog.from_file(str(Path(catalog_dir) / "catalog.json"))
        for _, children, items in catalog.walk():
            report.objects += len(children) + len(list(items))
        report.objects += 1
        try:
            catalog.validate_all()
        except pystac.STACValidationError as exc:
            report.problems.append(f"pystac validate_all: {exc}")
    except Exception as exc:  # noqa: BLE001 - anything pystac raises while reading is a problem to report
        report.problems.append(f"pystac could not read {catalog_dir}: {type(exc).__name__}: {exc}")
    finally:
        pystac.validation.set_validator(previous)
    for path, errors in validate_tree(catalog_dir).items():
        report.problems += [f"{path}: {e}" for e in errors]
    return report
