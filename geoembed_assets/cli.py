"""`geoembed run` (or `python -m geoembed_assets.cli run`): materialize the whole graph for every scene in the
landing folder, printing a few lines of progress per step and a summary (add -v for Dagster's DEBUG events).
`register` adds the landed scenes' partitions; `catalog` rebuilds the STAC catalog of the outputs; `validate`
checks it offline; `search` tabulates the models matching a bbox, period, task, bands (`--json` for scripts).

Runs are real Dagster runs in the instance at $DAGSTER_HOME (default ./.dagster_home), so `dagster dev`
shows them afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

log = logging.getLogger("geoembed")  # the CLI's lines; geoembed_assets.console forwards Dagster's to it


def configure_cli_logging(verbose: bool = False) -> logging.Logger:
    """The `geoembed` logger writing `HH:MM:SS message` lines to stderr: INFO, or DEBUG with `-v`."""
    log = logging.getLogger("geoembed")
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not any(getattr(h, "_geoembed", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        handler._geoembed = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.propagate = False
    # Python warnings (numpy overflow, ...) as one timestamped line each, not a bare two-line dump
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: log.warning(
        f"{category.__name__}: {message} ({Path(filename).name}:{lineno})"
    )
    return log


def _instance():
    import dagster as dg

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.get()


def plan_partitions(landing_dir: Path, precision: int) -> tuple[dict[str, set[str]], dict[str, str]]:
    """({partition key: scene ids} of every readable scene in the landing folder, {bad entry: error}).

    One bad delivery does not stop the others: it is reported and left out.
    """
    from geoembed_assets.core import workflow
    from geoembed_assets.core.readers import open_scene
    from geoembed_assets.core.scene import SceneError
    from geoembed_assets.partitions import REGION_PRECISION, partition_key

    plan: dict[str, set[str]] = {}
    rejected: dict[str, str] = {}
    for entry in workflow.landing_entries(landing_dir):
        try:
            scene = open_scene(entry)
            regions = workflow.scene_regions(scene, precision, REGION_PRECISION)
        except (SceneError, OSError, ValueError) as exc:
            rejected[str(entry)] = str(exc)
            continue
        for region in regions:
            plan.setdefault(str(partition_key(region, workflow.month_of(scene.datetime))), set()).add(scene.scene_id)
    return plan, rejected


def _register(landing_dir: Path, precision: int, instance) -> dict[str, set[str]]:
    """Add the region and month partitions of every landed scene to the instance (what the sensor does)."""
    from geoembed_assets.partitions import register_keys

    plan, rejected = plan_partitions(landing_dir, precision)
    for entry, error in rejected.items():
        log.warning(f"skipping bad delivery {entry}: {error}")
    if not plan:
        log.error(f"no readable scene in {landing_dir}")
    register_keys(instance, plan)
    return plan


def register(args: argparse.Namespace) -> int:
    """Register the landed scenes' partitions, then print the keys for `dg launch --partition`."""
    from geoembed_assets.resources import GeoembedStorage

    storage = GeoembedStorage(data_dir=args.data_dir)
    storage.sync_landing()  # an s3:// data root: its landing/ into the local scratch (no-op for a folder)
    plan = _register(storage.landing_dir, args.precision, _instance())
    for key in sorted(plan):
        print(key)
    return 0 if plan else 1


def checkpoint_bytes(checkpoints: pd.DataFrame) -> int:
    """Bytes of the distinct checkpoint files a partition's embeddings need to be decoded."""
    return sum(Path(p).stat().st_size for p in set(checkpoints["path"]) if Path(p).exists())


def summary_lines(table: pd.DataFrame) -> list[str]:
    """The closing lines of `geoembed run`: totals and the chips/embeddings ratio without and with checkpoints."""
    chips, emb, ckpt = (int(table[c].sum()) for c in ("chip_bytes", "embedding_bytes", "checkpoint_bytes"))
    uint16 = int(table["uint16_bytes"].sum()) if "uint16_bytes" in table else chips
    return [
        f"cells: {int(table['cells'].sum())}  chips: {chips:,} B  embeddings: {emb:,} B  checkpoints: {ckpt:,} B",
        f"chips/embeddings = {chips / emb:.1f}x without checkpoints, "
        f"{chips / (emb + ckpt):.2f}x counting the checkpoints needed to decode",
        f"uint16 chip arrays/embeddings = {uint16 / emb:.1f}x without checkpoints, {uint16 / (emb + ckpt):.1f}x with them "
        "(chips above: lossless ZSTD GeoTIFF)",
        f"reconstruction RMSE (reflectance): land cells {table['land_rmse'].mean():.4f} ({int(table['land_cells'].sum())}), "
        f"water cells {table['water_rmse'].mean():.4f} ({int(table['water_cells'].sum())}); quality target: land <= 0.015",
    ]


def run(args: argparse.Namespace) -> int:
    """Materialize every partition of the landed scenes, then the catalog; a failed partition does not stop the
    others. Exit status 1 only when no partition succeeded."""
    from geoembed_assets.resources import GeoembedIOManager, GeoembedStorage, QualityThresholds

    os.environ["GEOEMBED_DATA_DIR"] = args.data_dir
    storage = GeoembedStorage(data_dir=args.data_dir)
    resources = {"storage": storage, "io_manager": GeoembedIOManager(storage=storage)}
    if args.max_rmse is not None:
        resources["thresholds"] = QualityThresholds(max_rmse=args.max_rmse)
    instance = _instance()
    storage.sync_landing()
    plan = _register(storage.landing_dir, args.precision, instance)
    if not plan:
        return 1
    from geoembed_assets.core.workflow import raw_chip_bytes
    from geoembed_assets.definitions import defs  # the asset graph (torch and all): only once there is work

    chips_config = {"precision": args.precision, "min_coverage": args.min_coverage}
    if args.cell_size_px:
        chips_config["cell_size_px"] = args.cell_size_px
    vae_config: dict = {"quality": args.quality}
    if args.max_epochs:
        vae_config["max_epochs"] = args.max_epochs
    if args.max_steps:
        vae_config["max_steps"] = args.max_steps
    run_config = {
        "ops": {
            "raw_tiles": {"config": dict(chips_config)},
            "geohash_chips": {"config": dict(chips_config)},
            "complexity_scores": {"config": {"quality": args.quality}},
            "vae_checkpoints": {"config": vae_config},
        },
        "loggers": {"geoembed_console": {"config": {"verbose": args.verbose}}},
    }
    job = defs.resolve_job_def("embed_scenes")
    summaries, failed = [], []
    keys = sorted(plan)
    started = time.monotonic()
    for i, key in enumerate(keys, 1):
        log.info(f"partition {i}/{len(keys)} {key} (scenes: {', '.join(sorted(plan[key]))})")
        result = job.execute_in_process(
            partition_key=key, instance=instance, run_config=run_config, resources=resources, raise_on_error=False
        )
        if not result.success:
            failed.append(key)
            log.error(f"partition {key} failed (run {result.run_id}); going on with the others")
            continue
        chips = result.output_for_node("geohash_chips")
        ckpts = storage.localize(result.output_for_node("vae_checkpoints"))  # local copies (of a URL data root)
        emb_path = storage.local(result.output_for_node("embeddings"))
        frame = pd.read_parquet(emb_path, columns=["recon_mse", "recon_rmse", "cover"])
        summaries.append(
            dict(
                partition=key, cells=chips["geohash"].nunique(), chip_bytes=int(chips["bytes"].sum()),
                uint16_bytes=raw_chip_bytes(chips),
                embedding_bytes=emb_path.stat().st_size, checkpoint_bytes=checkpoint_bytes(ckpts), rows=len(frame),
                mean_recon_mse=float(frame["recon_mse"].mean()), mean_holdout_mse=float(ckpts["holdout_mse"].mean()),
                land_cells=int((frame["cover"] == "land").sum()), water_cells=int((frame["cover"] == "water").sum()),
                land_rmse=float(frame.loc[frame["cover"] == "land", "recon_rmse"].mean()),
                water_rmse=float(frame.loc[frame["cover"] == "water", "recon_rmse"].mean()),
                embeddings=storage.url(emb_path),
            )
        )  # fmt: skip
        elapsed = time.monotonic() - started
        log.info(f"partitions {i}/{len(keys)} done, {elapsed / i:.0f} s per partition"
                 + (f", about {elapsed / i * (len(keys) - i):.0f} s left" if i < len(keys) else ""))
    if not summaries:
        log.error(f"every partition failed: {', '.join(failed)}")
        return 1
    # the catalog is one unpartitioned asset, rebuilt from everything on disk once all partitions are done
    log.info("building the STAC catalog")
    catalog_run = defs.resolve_job_def("build_catalog").execute_in_process(
        instance=instance, resources=resources, raise_on_error=False, run_config={"loggers": run_config["loggers"]}
    )
    if not catalog_run.success:
        log.error("the STAC catalog failed to build or validate")
    table = pd.DataFrame(summaries)
    print("\nSummary")
    print(table.drop(columns=["embeddings"]).to_string(index=False))
    print()
    print("\n".join(summary_lines(table)))
    if failed:
        print(f"failed partitions: {', '.join(failed)} (see `dagster dev` for their logs)")
    print(f"outputs: {args.data_dir if storage.remote else Path(args.data_dir).resolve()} (chips/, checkpoints/, embeddings/, catalog/); "
          f"Dagster runs: {os.environ['DAGSTER_HOME']} (see them with `make dev`)")
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


def validate(args: argparse.Namespace) -> int:
    """Validate the catalog offline twice: pystac's `validate_all` (as pystac 1.x reads it) and every file as
    written, both against the vendored schemas."""
    from geoembed_assets.core.stac.offline import validate_catalog

    catalog_dir = Path(args.catalog or Path(args.data_dir) / "catalog")
    report = validate_catalog(catalog_dir)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    print(f"{catalog_dir}: {report.objects} STAC objects validated offline with pystac {report.pystac_version} "
          f"validate_all() (as STAC {report.read_as}, the catalog's version) and file by file; "
          f"{len(report.problems)} problems")
    if report.not_valid_as_latest:
        print(f"note: {len(report.not_valid_as_latest)} objects ({', '.join(report.not_valid_as_latest)}) cannot "
              "validate as STAC 1.1.0: the embeddings extension v0.0.1 pins the STAC 1.0.0 schemas")
    return 1 if report.problems else 0


def _period(match: dict) -> str:
    start, end = match["start_datetime"][:10], match["end_datetime"][:10]
    return start if start == end else f"{start}..{end}"


def search_table(matches: list[dict], relative_to: Path | None = None) -> str:
    """The matches as a table: id, cell, period, bands, asset path."""
    from tabulate import tabulate

    rows = []
    for m in matches:
        href = m["model_href"] or ""
        if href and relative_to is not None:
            try:
                href = os.path.relpath(href, relative_to)
            except ValueError:
                pass
        rows.append([m["id"], m.get("cell") or "", _period(m), " ".join(m["bands"]), href])
    return tabulate(rows, headers=["id", "cell", "period", "bands", "asset path"], tablefmt="simple")


def search(args: argparse.Namespace) -> int:
    """Print the models matching every given criterion as a table (or JSON with --json); say when none did."""
    from geoembed_assets.core.stac.search import search_models

    catalog_dir = Path(args.catalog or Path(args.data_dir) / "catalog")
    if not (catalog_dir / "catalog.json").exists():
        print(f"no catalog at {catalog_dir}: build it with `geoembed catalog` (or `geoembed run`)", file=sys.stderr)
        return 2
    matches = search_models(catalog_dir, args.bbox, args.start, args.end, args.task, args.bands)
    if args.json:
        print(json.dumps(matches, indent=2))
        return 0
    if not matches:
        criteria = {k: v for k, v in vars(args).items() if k in ("bbox", "start", "end", "task", "bands") and v}
        print(f"no model in {catalog_dir} matched " + (", ".join(f"{k}={v}" for k, v in criteria.items()) or "(no criteria)"))
        return 0
    print(search_table(matches, Path.cwd()))
    print(f"{len(matches)} model{'s' if len(matches) != 1 else ''} matched")
    return 0


def main(argv: list[str] | None = None) -> int:
    data_dir = os.environ.get("GEOEMBED_DATA_DIR", "data")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="DEBUG lines, Dagster's events included")
    common.add_argument("--data-dir", default=data_dir, help=f"data folder (default: $GEOEMBED_DATA_DIR or data; now {data_dir})")
    parser = argparse.ArgumentParser(prog="geoembed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", parents=[common], help="materialize every partition of the scenes in the landing folder")
    p_run.add_argument("--quality", choices=["fast", "best"], default="fast")
    p_run.add_argument("--precision", type=int, default=5)
    p_run.add_argument("--min-coverage", type=float, default=0.5)
    p_run.add_argument("--cell-size-px", type=int, default=None, help="pixels per cell side (default 480)")
    p_run.add_argument("--max-epochs", type=int, default=None, help="epoch cap of the VAEs (default: from --quality)")
    p_run.add_argument("--max-steps", type=int, default=None, help="training steps of the VAEs (default: from --quality)")
    p_run.add_argument("--max-rmse", type=float, default=None,
                       help="quality target: land-cell reflectance RMSE (default: QualityThresholds, 0.015)")
    p_run.set_defaults(func=run)
    p_reg = sub.add_parser("register", parents=[common], help="add the partitions of the landed scenes to the Dagster instance")
    p_reg.add_argument("--precision", type=int, default=5)
    p_reg.set_defaults(func=register)
    p_cat = sub.add_parser("catalog", parents=[common], help="rebuild and validate the STAC catalog under <data-dir>/catalog")
    p_cat.set_defaults(func=catalog)
    p_val = sub.add_parser("validate", parents=[common], help="validate the STAC catalog offline (pystac validate_all)")
    p_val.add_argument("--catalog", help="catalog folder (default: <data-dir>/catalog)")
    p_val.set_defaults(func=validate)
    p_search = sub.add_parser("search", parents=[common], help="the models matching a bbox, period, task and bands")
    p_search.add_argument("--catalog", help="catalog folder (default: <data-dir>/catalog)")
    p_search.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"))
    p_search.add_argument("--start", help="ISO date or time; models whose training period ends before are excluded")
    p_search.add_argument("--end", help="ISO date or time; models whose training period starts after are excluded")
    p_search.add_argument("--task", help="an mlm:tasks value, e.g. similarity-search, generative")
    p_search.add_argument("--bands", nargs="+", help="band names every match must take as input, e.g. B04 B08")
    p_search.add_argument("--json", action="store_true", help="the matches as a JSON list, for scripts")
    p_search.set_defaults(func=search)
    args = parser.parse_args(argv)
    configure_cli_logging(args.verbose)
    return args.func(args)


def console_main() -> None:
    """Entry point of the `geoembed` command ([project.scripts])."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
