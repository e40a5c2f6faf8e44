"""Write the static STAC catalog `<data_dir>/catalog/` from the files on disk, as a full rebuild each time.

Layout (self-contained, relative hrefs, so the data folder can move as a whole):
    catalog/catalog.json
    catalog/scenes/...        one Item per readable landing delivery
    catalog/<family>/...      one Collection per model family (`vae` now), one MLM Item per model file
    catalog/embeddings/...    one emb Item per embeddings GeoParquet

Idempotent by construction: Items are derived from what exists (re-running gives the same ids; a model file
that is gone has no Item and no link to it). The new tree is written beside the old one and swapped in by
renames, so readers see either the old or the new catalog, never a half-written one.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pystac

from geoembed_assets.core.embeddings_schema import EmbeddingsSchemaError, check_embeddings_schema
from geoembed_assets.core.readers import open_scene
from geoembed_assets.core.safe_paths import inside
from geoembed_assets.core.scene import SceneError
from geoembed_assets.core.stac import downstream_items
from geoembed_assets.core.stac import items as stac_items
from geoembed_assets.core.stac.items import Built
from geoembed_assets.core.workflow import landing_entries


@dataclass(frozen=True)
class ModelFamily:
    """A Collection of models: `build(data_dir, problems)` returns one Built MLM Item per readable model file
    found, and appends a message naming each model file it had to leave out to `problems`."""

    id: str
    title: str
    description: str
    build: Callable[[Path, list[str]], list[Built]]


MODEL_FAMILIES: dict[str, ModelFamily] = {}
STALE_AFTER_S = 3600.0  # a catalog temp tree older than this is from a killed rebuild, not one in progress


def register_model_family(family: ModelFamily) -> None:
    """Add (or replace) a model family; later model kinds (GAN, time series, ...) register with one call."""
    MODEL_FAMILIES[family.id] = family


register_model_family(
    ModelFamily(
        "vae",
        "Per-cell VAE encoders/decoders",
        "One convolutional VAE per geohash cell; the encoder's latent mean is the cell's patch embedding.",
        stac_items.vae_items,
    )
)
for _fid, _title, _description in downstream_items.FAMILIES:  # issue 12: models trained on embeddings and their raw twins
    register_model_family(ModelFamily(_fid, _title, _description, downstream_items.family_items(_fid)))


@contextmanager
def stac_version(version: str) -> Iterator[None]:
    """Have pystac write `version` as `stac_version` inside the block (pystac keeps it process-wide)."""
    previous = pystac.get_stac_version()
    pystac.set_stac_version(version)
    try:
        yield
    finally:
        pystac.set_stac_version(previous)


def scene_items(landing_dir: Path) -> list[Built]:
    """Every readable landing delivery, once per scene id (unreadable ones are the ingest assets' concern)."""
    found: dict[str, Built] = {}
    for entry in landing_entries(landing_dir):
        try:
            scene = open_scene(entry)
        except SceneError:
            continue
        found.setdefault(scene.scene_id, stac_items.scene_item(scene))
    return list(found.values())


def _collection(collection_id: str, title: str, description: str, built: list[Built]) -> pystac.Collection:
    collection = pystac.Collection(
        id=collection_id,
        title=title,
        description=description,
        extent=pystac.Extent(  # placeholder, replaced from the Items below
            pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]), pystac.TemporalExtent([[None, None]])
        ),
        license="proprietary",
    )
    for b in built:
        collection.add_item(b.item)
    collection.update_extent_from_items()
    return collection


def _link(built: list[Built]) -> None:
    """Resolve (rel, target id) pairs to Item links; `derived_from` a model names it (`mlm:name`)."""
    by_id = {b.item.id: b.item for b in built}
    for b in built:
        for rel, target_id in b.links:
            target = by_id.get(target_id)
            if target is None:
                continue
            name = target.properties.get("mlm:name")
            extra = {"mlm:name": name} if name and rel == pystac.RelType.DERIVED_FROM else None
            b.item.add_link(pystac.Link(rel, target, media_type=pystac.MediaType.GEOJSON, extra_fields=extra))


def build_catalog_object(data_dir: str | Path, problems: list[str] | None = None) -> pystac.Catalog:
    """The in-memory catalog of everything on disk under `data_dir` (landing, checkpoints, embeddings).

    Unreadable model or embeddings files are left out and described in `problems` (when given; else they raise).
    """
    data_dir = Path(data_dir)
    found: list[str] = []
    catalog = pystac.Catalog("geoembed", "Models, source scenes and embeddings of the geoembed pipeline.")
    scenes = scene_items(data_dir / "landing")
    families = {fid: family.build(data_dir, found) for fid, family in MODEL_FAMILIES.items()}
    emb_paths, embeddings = [], []
    for p in sorted(data_dir.glob("embeddings/*/*.parquet")):
        try:
            check_embeddings_schema(p)
            embeddings.append(stac_items.embeddings_item(p))
            emb_paths.append(p)
        except EmbeddingsSchemaError as e:
            found.append(str(e))
    if found and problems is None:
        raise ValueError("cannot build the catalog: " + "; ".join(found))
    if problems is not None:
        problems.extend(found)
    everything = scenes + [b for built in families.values() for b in built] + embeddings
    _link(everything)
    if scenes:
        catalog.add_child(_collection(stac_items.SCENES_COLLECTION, "Source scenes", "Delivered acquisitions.", scenes))
    for fid, built in families.items():
        if built:
            family = MODEL_FAMILIES[fid]
            catalog.add_child(_collection(fid, family.title, family.description, built))
    if embeddings:
        collection = _collection(
            stac_items.EMBEDDINGS_COLLECTION, "Embeddings", "Per-patch VAE embeddings as GeoParquet.", embeddings
        )
        _describe_embeddings(collection, emb_paths, catalog)
        catalog.add_child(collection)
    return catalog


def _describe_embeddings(collection: pystac.Collection, paths: list[Path], catalog: pystac.Catalog) -> None:
    """emb Collection fields and its required emb:model / emb:source-data links (to the model and scene Collections)."""
    fields = stac_items.embedding_collection_fields(paths)
    models = [catalog.get_child(fid) for fid in MODEL_FAMILIES if fid not in downstream_items.FAMILY_IDS]  # encoders only
    sources = catalog.get_child(stac_items.SCENES_COLLECTION)
    models = [m for m in models if m is not None]
    if not fields or not models or sources is None:
        return
    collection.extra_fields.update(fields)
    collection.stac_extensions.append(stac_items.EMB_SCHEMA)
    for model in models:
        collection.add_link(pystac.Link(stac_items.EMB_MODEL_REL, model, media_type=pystac.MediaType.JSON))
    collection.add_link(pystac.Link(stac_items.EMB_SOURCE_REL, sources, media_type=pystac.MediaType.JSON))


def _swap_in(tmp: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}-old-{uuid.uuid4().hex[:8]}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def write_catalog(
    data_dir: str | Path, catalog_dir: str | Path | None = None, problems: list[str] | None = None
) -> dict[str, int]:
    """Rebuild `catalog_dir` (default `<data_dir>/catalog`) from disk; returns {collection id: Item count}.

    With `problems` given, unreadable checkpoints/embeddings are left out and described there instead of raising.
    Every document is checked to be written inside the catalog folder (ids come from file names and deliveries).
    """
    data_dir = Path(data_dir)
    final = Path(catalog_dir) if catalog_dir else data_dir / "catalog"
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}-tmp-{uuid.uuid4().hex[:8]}")  # sibling: same relative asset hrefs
    for stale in [*final.parent.glob(f".{final.name}-tmp-*"), *final.parent.glob(f".{final.name}-old-*")]:
        if time.time() - stale.stat().st_mtime > STALE_AFTER_S:  # left by a killed rebuild
            shutil.rmtree(stale, ignore_errors=True)
    catalog = build_catalog_object(data_dir, problems)
    try:
        with stac_version(stac_items.STAC_VERSION):
            catalog.normalize_hrefs(str(tmp.resolve()))
            for obj in [catalog, *catalog.get_children(), *catalog.get_items(recursive=True)]:
                inside(obj.get_self_href(), tmp, f"STAC document {obj.id!r}")
            catalog.make_all_asset_hrefs_relative()
            catalog.save(pystac.CatalogType.SELF_CONTAINED)
        _swap_in(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {c.id: len(list(c.get_items())) for c in catalog.get_children()}
