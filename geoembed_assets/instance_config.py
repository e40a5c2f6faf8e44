"""The Dagster instance settings this project needs in `$DAGSTER_HOME/dagster.yaml` (local, SQLite instance).

- run monitoring: a run whose worker was killed (SIGKILL, OOM) is marked FAILURE instead of staying STARTED;
- the run queue admits one run per partition at a time (tag `dagster/partition`), so two runs of one partition
  are serialised and leave one set of outputs; `chip_partition` also takes a per-partition file lock.

`ensure_instance_config(home)` adds these keys to an existing file without touching the others; `make demo`,
`make dev` and `make setup` call `python -m geoembed_assets.instance_config .dagster_home`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from geoembed_assets.core.atomic import write_bytes_atomic

INSTANCE_SETTINGS: dict[str, Any] = {
    "telemetry": {"enabled": False},
    "run_monitoring": {
        "enabled": True,
        "start_timeout_seconds": 180,
        "cancel_timeout_seconds": 180,
        "max_resume_run_attempts": 0,  # the default run launcher cannot resume a run: fail it
        "poll_interval_seconds": 30,
    },
    "concurrency": {
        "runs": {
            "tag_concurrency_limits": [
                {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
            ]
        }
    },
}


def ensure_instance_config(home: str | Path) -> Path:
    """Write or complete `<home>/dagster.yaml` with :data:`INSTANCE_SETTINGS` (existing keys are kept)."""
    path = Path(home) / "dagster.yaml"
    current = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    merged = {**INSTANCE_SETTINGS, **current}
    if merged != current or not path.exists():
        write_bytes_atomic(path, yaml.safe_dump(merged, sort_keys=False).encode())
    return path


if __name__ == "__main__":
    print(ensure_instance_config(sys.argv[1] if len(sys.argv) > 1 else ".dagster_home"))
