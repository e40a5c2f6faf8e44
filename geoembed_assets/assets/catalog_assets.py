"""The STAC catalog of every model (MLM), source scene and embeddings file, rebuilt from disk and validated offline."""

import dagster as dg

from geoembed_assets.core.stac.catalog import write_catalog
from geoembed_assets.core.stac.schemas import validate_tree
from geoembed_assets.resources import GeoembedStorage

STAC_VALID_CHECK = dg.AssetCheckSpec(
    "stac_items_validate", asset="mlm_stac_items", blocking=True,
    description="Every Item, Collection and Catalog of the STAC catalog validates against the vendored schemas "
    "(STAC core, MLM v1.5.2, embeddings v0.0.1, eo, file, processing).",
)  # fmt: skip


INPUTS_READABLE_CHECK = dg.AssetCheckSpec(
    "catalog_inputs_readable", asset="mlm_stac_items", blocking=False,
    description="Every checkpoint and embeddings file on disk could be read and catalogued; an unreadable one is "
    "left out of the catalog and named here.",
)  # fmt: skip


def inputs_readable(problems: list[str]) -> dg.AssetCheckResult:
    """Fails naming each checkpoint/embeddings file the catalog had to leave out."""
    return dg.AssetCheckResult(
        check_name=INPUTS_READABLE_CHECK.name,
        passed=not problems,
        metadata={"unreadable_files": len(problems), "problems": dg.MetadataValue.json(problems)},
        description="\n".join(problems) or None,
    )


def stac_valid(catalog_dir) -> dg.AssetCheckResult:
    """Fails with each invalid document's schema messages."""
    invalid = validate_tree(catalog_dir)
    return dg.AssetCheckResult(
        check_name=STAC_VALID_CHECK.name,
        passed=not invalid,
        metadata={"invalid_documents": len(invalid), "errors": dg.MetadataValue.json(invalid)},
        description="\n".join(f"{path}: {msg}" for path, errors in invalid.items() for msg in errors) or None,
    )


@dg.asset(
    deps=[dg.AssetKey("embeddings")],
    group_name="catalog",
    kinds={"stac"},
    check_specs=[STAC_VALID_CHECK, INPUTS_READABLE_CHECK],
    description="Static STAC catalog under <data_dir>/catalog (relative links: valid on the store too): a Collection per model family with one MLM Item per "
    "model, source scene Items, and embeddings Items (emb extension) linked to the models that made them. A full, "
    "idempotent rebuild from the files on disk (every partition's outputs).",
)
def mlm_stac_items(context: dg.AssetExecutionContext, storage: GeoembedStorage):
    catalog_dir = storage.path("catalog")
    problems: list[str] = []
    if storage.remote:  # every partition's outputs, whichever worker made them (changed files only)
        storage.fetch_tree("checkpoints", "embeddings", "chips", "thumbnails")
        storage.sync_landing()
    counts = write_catalog(storage.local_dir, catalog_dir, problems)
    for problem in problems:
        context.log.warning(f"left out of the catalog: {problem}")
    storage.commit(storage.path("thumbnails"))
    storage.store.mirror(catalog_dir)  # a full rebuild: Items gone from it are deleted from the store too
    yield dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(storage.url(catalog_dir)),
            "items": sum(counts.values()),
            "items_per_collection": dg.MetadataValue.json(counts),
        }
    )
    yield stac_valid(catalog_dir)
    yield inputs_readable(problems)
