"""pystac's own validation (`Catalog.validate_all()`), offline: a validator that resolves every schema URL from
the schemas vendored in `schemas/` instead of fetching it.

    import pystac
    from geoembed_assets.core.stac.offline import OfflineValidator

    pystac.validation.set_validator(OfflineValidator())
    pystac.Catalog.from_file("data/catalog/catalog.json").validate_all()

pystac 1.x validates an object as `pystac.get_stac_version()` (1.1.0), whatever version the file says: it
writes that version into the dict it validates. The catalog is STAC 1.0.0 because the embeddings extension
v0.0.1 embeds the STAC 1.0.0 Item and Collection schemas (`stac_version` must be "1.0.0"), so an emb Item can
never pass as 1.1.0 until an emb release for STAC 1.1 exists. `validate_catalog` therefore runs pystac's
`validate_all()` at the catalog's own version (`pystac.set_stac_version`, as the writer does), and reports the
objects that would not pass as 1.1.0 separately, as a note rather than a failure.
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
    read_as: str = ""
    pystac_version: str = pystac.__version__
    problems: list[str] = field(default_factory=list)
    not_valid_as_latest: list[str] = field(default_factory=list)  # ids that fail as pystac's own STAC version


def _invalid_ids(objects: list[pystac.STACObject]) -> list[str]:
    bad = []
    for obj in objects:
        try:
            obj.validate()
        except pystac.STACValidationError:
            bad.append(obj.id)
    return bad


def validate_catalog(catalog_dir: str | Path) -> ValidationReport:
    """Read the catalog with pystac and `validate_all()` it offline at its own STAC version, then validate every
    file as written; also list the objects that would fail as pystac's latest STAC version.

    Returns the number of objects read and every problem (pystac read/validation errors and schema errors)."""
    report = ValidationReport()
    root = Path(catalog_dir) / "catalog.json"
    previous_validator = pystac.validation.RegisteredValidator.get_validator()
    latest = pystac.get_stac_version()
    pystac.validation.set_validator(OfflineValidator())
    try:
        report.read_as = json.loads(root.read_text()).get("stac_version", latest)
        catalog = pystac.Catalog.from_file(str(root))
        objects: list[pystac.STACObject] = [catalog]
        for _, children, items in catalog.walk():
            objects += list(children) + list(items)
        report.objects = len(objects)
        pystac.set_stac_version(report.read_as)
        try:
            catalog.validate_all()
        except pystac.STACValidationError as exc:
            report.problems.append(f"pystac validate_all: {str(exc).splitlines()[0]}")
        pystac.set_stac_version(latest)
        if latest != report.read_as:
            report.not_valid_as_latest = _invalid_ids(objects)
    except Exception as exc:  # noqa: BLE001 - anything pystac raises while reading is a problem to report
        report.problems.append(f"pystac could not read {catalog_dir}: {type(exc).__name__}: {exc}")
    finally:
        pystac.set_stac_version(latest)
        pystac.validation.set_validator(previous_validator)
    for path, errors in validate_tree(catalog_dir).items():
        report.problems += [f"{path}: {e}" for e in errors]
    return report
