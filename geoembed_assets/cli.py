"""`python -m geoembed_assets.cli run`: materialize the whole graph for every scene in the landing folder.
`catalog` rebuilds the STAC catalog of the outputs; `search` lists the models matching a bbox, period, task, bands.

Runs are real Dagster runs in the instance at $DAGSTER_HOME (default ./.dagster_home), so `dagster dev`
shows them afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd


def _instance():
    import dagster as dg

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.get()


def plan_partitions(landing_dir: Path, precision: int) -> dict[str, set[str]]:
    """{partition key: scene ids} for every readable scene in the landing folder."""
    from geoembed_assets.core import workflow
    from geoembed_assets.core.readers import open_scene
    from geoembed_assets.partitions import REGION_PRECISION, partition_key

    plan: dict[str, set[str]] = {}
    for entry in workflow.landing_entries(landing_dir):
        scene = open_scene(entry)
        for region in workflow.scene_regions(scene, precision, REGION_PRECISION):
            plan.setdefault(str(partition_key(region, workflow.month_of(scene.datetime))), set()).add(scene.scene_id)
    return plan


def _register(landing_dir: Path, precision: int, instance) -> dict[str, set[str]]:
    """Add the region partitions of every landed scene to the instance (what the sensor does on a tick)."""
    from geoembed_assets.partitions import region_partitions

    plan = plan_partitions(landing_dir, precision)
    if not plan:
        print(f"no scene in {landing_dir}", file=sys.stderr)
    instance.add_dynamic_partitions(region_partitions.name, sorted({key.split("|")[1] for key in plan}))
    return plan


def register(args: argparse.Namespace) -> int:
    """Register the landed scenes' partitions, then print the keys for `dagster asset materialize --partition`."""
    from geoembed_assets.resources import GeoembedStorage

    plan = _register(GeoembedStorage(data_dir=args.data_dir).landing_dir, args.precision, _instance())
    for key in sorted(plan):
        print(key)
    return 0 if plan else 1


def run(args: argparse.Namespace) -> int:
    import dagster as dg

    from geoembed_assets.assets.catalog_assets import mlm_stac_items
    from geoembed_assets.definitions import defs
    from geoembed_assets.resources import GeoembedStorage

    storage = GeoembedStorage(data_dir=args.data_dir)
    os.environ["GEOEMBED_DATA_DIR"] = args.data_dir
    instance = _instance()
    plan = _register(storage.landing_dir, args.precision, instance)
    if not plan:
        return 1
    run_config = {
        "ops": {
            "raw_tiles": {"config": {"precision": args.precision}},
            "geohash_chips": {"config": {"precision": args.precision, "min_coverage": args.min_coverage}},
            "complexity_scores": {"config": {"quality": args.quality}},
            "vae_checkpoints": {"config": {"quality": args.quality}},
        }
    }
    job = defs.resolve_job_def("embed_scenes")
    summaries = []
    for key in sorted(plan):
        print(f"materializing partition {key} (scenes: {', '.join(sorted(plan[key]))})", flush=True)
        result = job.execute_in_process(
            partition_key=key, instance=instance, run_config=run_config, resources={"storage": storage}
        )
        if not result.success:
            return 1
        chips = result.output_for_node("geohash_chips")
        ckpts = result.output_for_node("vae_checkpoints")
        emb_path = result.output_for_node("embeddings")
        frame = pd.read_parquet(emb_path, columns=["recon_mse"])
        summaries.append(
            dict(
                partition=key, cells=chips["geohash"].nunique(), chip_bytes=int(chips["bytes"].sum()),
                embedding_bytes=Path(emb_path).stat().st_size, rows=len(frame),
                mean_recon_mse=float(frame["recon_mse"].mean()), mean_holdout_mse=float(ckpts["holdout_mse"].mean()),
                embeddings=str(emb_path),
            )
        )  # fmt: skip
    # the catalog is one unpartitioned asset, rebuilt from everything on disk once all partitions are done
    if not dg.materialize([mlm_stac_items], instance=instance, resources={"storage": storage}).success:
        return 1
    table = pd.DataFrame(summaries)
    print("\nSummary")
    print(table.drop(columns=["embeddings"]).to_string(index=False))
    print(f"\ncells: {table['cells'].sum()}  chips: {table['chip_bytes'].sum():,} B  "
          f"embeddings: {table['embedding_bytes'].sum():,} B  "
          f"(chips/embeddings = {table['chip_bytes'].sum() / table['embedding_bytes'].sum():.1f}x)  "
          f"mean reconstruction MSE: {table['mean_recon_mse'].mean():.5f}")
    print(f"outputs: {Path(args.data_dir).resolve()} (chips/, checkpoints/, embeddings/, catalog/); "
          f"Dagster runs: {os.environ['DAGSTER_HOME']} (see them with `dagster dev -w workspace.yaml`)")
    return 0


def catalog(args: argparse.Namespace) -> int:
    """Rebuild <data_dir>/catalog from the files on disk and validate it offline (same as the Dagster asset)."""
    from geoembed_assets.core.stac.catalog import write_catalog
    from geoembed_assets.core.stac.schemas import validate_tree

    catalog_dir = Path(args.data_dir) / "catalog"
    counts = write_catalog(args.data_dir, catalog_dir)
    invalid = validate_tree(catalog_dir)
    for path, errors in invalid.items():
        print(f"{path}: " + "; ".join(errors), file=sys.stderr)
    print(f"{catalog_dir}: " + ", ".join(f"{k}: {v} items" for k, v in counts.items())
          + f"; {len(invalid)} invalid documents")
    return 1 if invalid else 0


def search(args: argparse.Namespace) -> int:
    """Print the ids of the models matching every given criterion, one per line."""
    from geoembed_assets.core.stac.search import search_models

    catalog_dir = Path(args.catalog or Path(args.data_dir) / "catalog")
    for model in search_models(catalog_dir, args.bbox, args.start, args.end, args.task, args.bands):
        print(model["id"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="geoembed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="materialize every partition of the scenes in the landing folder")
    p_run.add_argument("--data-dir", default=os.environ.get("GEOEMBED_DATA_DIR", "data"))
    p_run.add_argument("--quality", choices=["fast", "best"], default="fast")
    p_run.add_argument("--precision", type=int, default=5)
    p_run.add_argument("--min-coverage", type=float, default=0.5)
    p_run.set_defaults(func=run)
    p_reg = sub.add_parser("register", help="add the partitions of the landed scenes to the Dagster instance")
    p_reg.add_argument("--data-dir", default=os.environ.get("GEOEMBED_DATA_DIR", "data"))
    p_reg.add_argument("--precision", type=int, default=5)
    p_reg.set_defaults(func=register)
    p_cat = sub.add_parser("catalog", help="rebuild and validate the STAC catalog under <data-dir>/catalog")
    p_cat.add_argument("--data-dir", default=os.environ.get("GEOEMBED_DATA_DIR", "data"))
    p_cat.set_defaults(func=catalog)
    p_search = sub.add_parser("search", help="ids of the models matching a bbox, period, task and bands")
    p_search.add_argument("--data-dir", default=os.environ.get("GEOEMBED_DATA_DIR", "data"))
    p_search.add_argument("--catalog", help="catalog folder (default: <data-dir>/catalog)")
    p_search.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"))
    p_search.add_argument("--start", help="ISO date or time; models whose training period ends before are excluded")
    p_search.add_argument("--end", help="ISO date or time; models whose training period starts after are excluded")
    p_search.add_argument("--task", help="an mlm:tasks value, e.g. similarity-search, generative")
    p_search.add_argument("--bands", nargs="+", help="band names every match must take as input, e.g. B04 B08")
    p_search.set_defaults(func=search)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
