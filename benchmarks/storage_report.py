"""Print the storage and rate-distortion report of one scene partition from the files the pipeline wrote.

    python benchmarks/storage_report.py [--data-dir data] [--partition 2016-01-01|dqd] [--cells 0] [--steps 300]

Run `make demo` first. Takes several minutes on 2 CPU cores (it trains one shared spatial VAE per rate setting);
the same tables are the `storage_report` asset's metadata. `benchmarks/bench_embeddings.py` adds the timings and
the WorldCereal series.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from geoembed_assets.core.storage_report import ReportConfig, partition_report


def default_partition(data_dir: Path) -> tuple[str, str]:
    """The first (region, month) with a chip index."""
    for index in sorted((data_dir / "chips").glob("*/index_*.parquet")):
        return index.parent.name, index.stem.removeprefix("index_")
    raise SystemExit(f"no chip index under {data_dir / 'chips'}: run `python -m geoembed_assets.cli run` first")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--partition", help="'<month>|<region>', e.g. 2016-01-01|dqd; default: the first found")
    parser.add_argument("--cells", type=int, default=ReportConfig.n_cells, help="0: every well-covered cell")
    parser.add_argument("--steps", type=int, default=ReportConfig.max_steps)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--csv", help="also write the per-cell rate-distortion rows here")
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir)
    if args.partition:
        month, region = args.partition.split("|")
    else:
        region, month = default_partition(data_dir)
    config = ReportConfig(n_cells=args.cells, max_steps=args.steps, cpu_threads=args.threads or None)
    start = time.perf_counter()
    report = partition_report(data_dir, region, month, config)
    pd.set_option("display.width", 200)
    print(f"# Storage report: region {region}, month {month}\n")
    print(report.markdown())
    print(f"\n({time.perf_counter() - start:.0f} s)")
    if args.csv:
        report.rate_distortion.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
