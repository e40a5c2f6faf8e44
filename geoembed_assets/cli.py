"""`python -m geoembed_assets.cli run`: materialize the whole graph for every scene in the landing folder.

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


def run(args: argparse.Namespace) -> int:
    import dagster as dg

    from geoembed_assets.definitions import defs
    from geoembed_assets.partitions import region_partitions
    from geoembed_assets.resources import GeoembedStorage

    storage = GeoembedStorage(data_dir=args.data_dir)
    os.environ["GEOEMBED_DATA_DIR"] = args.data_dir
    instance = _instance()
    plan = plan_partitions(storage.landing_dir, args.precision)
    if not plan:
        print(f"no scene in {storage.landing_dir}", file=sys.stderr)
        return 1
    regions = sorted({key.split("|")[1] for key in plan})
    instance.add_dynamic_partitions(region_partitions.name, regions)
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
    table = pd.DataFrame(summaries)
    print("\nSummary")
    print(table.drop(columns=["embeddings"]).to_string(index=False))
    print(f"\ncells: {table['cells'].sum()}  chips: {table['chip_bytes'].sum():,} B  "
          f"embeddings: {table['embedding_bytes'].sum():,} B  "
          f"(chips/embeddings = {table['chip_bytes'].sum() / table['embedding_bytes'].sum():.1f}x)  "
          f"mean reconstruction MSE: {table['mean_recon_mse'].mean():.5f}")
    print(f"outputs: {Path(args.data_dir).resolve()} (chips/, checkpoints/, embeddings/); "
          f"Dagster runs: {os.environ['DAGSTER_HOME']} (see them with `dagster dev -w workspace.yaml`)")
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
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
