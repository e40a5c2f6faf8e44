"""Out-of-range settings found before any work (not deep in torch or numpy after models were trained)."""

from __future__ import annotations

from typing import Any

MAX_PRECISION = 12  # geohash precision the grid supports


class SettingsError(ValueError):
    """One or more settings are out of range; the message names each setting and its value."""


def settings_problems(settings: dict[str, Any]) -> list[str]:
    """Messages for the settings (by name, any subset) that are out of range or inconsistent with each other."""
    problems = []

    def positive(name: str) -> None:
        value = settings.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            problems.append(f"{name}={value!r}: must be a positive integer")

    for name in ("latent_dim", "patch_size", "cell_size_px", "max_epochs", "patience", "base_channels", "n_cells"):
        positive(name)
    precision = settings.get("precision")
    if precision is not None and not (isinstance(precision, int) and 1 <= precision <= MAX_PRECISION):
        problems.append(f"precision={precision!r}: must be an integer in 1..{MAX_PRECISION}")
    coverage = settings.get("min_coverage")
    if coverage is not None and not 0.0 <= float(coverage) <= 1.0:
        problems.append(f"min_coverage={coverage!r}: must be in [0, 1]")
    patch, cell = settings.get("patch_size"), settings.get("cell_size_px")
    if isinstance(patch, int) and isinstance(cell, int) and patch >= 1 and cell >= 1 and patch > cell:
        problems.append(f"patch_size={patch} is larger than the cell (cell_size_px={cell})")
    for name in ("sizes", "candidate_sizes"):
        values = settings.get(name)
        if values is not None and (not values or any(not isinstance(v, int) or v < 1 for v in values)):
            problems.append(f"{name}={values!r}: must be a non-empty list of positive integers")
    for name in ("ndvi_weight", "ndwi_weight", "ndbi_weight"):
        value = settings.get(name)
        if value is not None and float(value) < 0:
            problems.append(f"{name}={value!r}: must be >= 0")
    if settings.get("mode") not in (None, "multi", "single"):
        problems.append(f"mode={settings['mode']!r}: must be 'multi' or 'single'")
    return problems


def check_settings(settings: dict[str, Any], where: str = "configuration") -> None:
    """Raise :class:`SettingsError` listing every problem of `settings`."""
    problems = settings_problems(settings)
    if problems:
        raise SettingsError(f"{where}: " + "; ".join(problems))
