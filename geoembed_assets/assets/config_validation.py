"""Validate a whole run's configuration in its first step, before any chip is cut or any model trained.

Dagster builds (and pydantic-validates) an op's config only when that op starts, so an out-of-range
`vae_checkpoints` setting used to fail after chipping and calibration; `raw_tiles` calls this first.
"""

from __future__ import annotations

from typing import Any

from geoembed_assets.assets.config import ChipsConfig
from geoembed_assets.core.settings_check import SettingsError, settings_problems


def validate_run_config(run_config: dict[str, Any]) -> None:
    """Raise a SettingsError naming every out-of-range or inconsistent setting, op by op."""
    ops = (run_config or {}).get("ops") or {}
    chips = {**ChipsConfig().model_dump(), **(((ops.get("geohash_chips") or {}).get("config")) or {})}
    problems = []
    for op, entry in sorted(ops.items()):
        settings = dict((entry or {}).get("config") or {})
        if "patch_size" in settings:  # a patch must fit in the cells geohash_chips cuts
            settings.setdefault("cell_size_px", chips["cell_size_px"])
        problems += [f"{op}: {p}" for p in settings_problems(settings)]
    if problems:
        raise SettingsError("run configuration: " + "; ".join(problems))
