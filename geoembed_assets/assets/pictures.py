"""Materialization metadata with pictures (maps, curves) for the assets, built from `core.plots`.

Each function returns a metadata dict to merge into an asset's output metadata with `**`; a picture that cannot
be drawn is left out with a note rather than failing the asset (pictures are for people, not for the pipeline).
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
import pandas as pd

from geoembed_assets.core import plots
from geoembed_assets.core.checkpoints import load_checkpoint
from geoembed_assets.core.chipping import scene_cells
from geoembed_assets.core.scene import Scene


def _picture(name: str, draw: Callable[[], bytes], alt: str) -> dict[str, dg.MetadataValue]:
    try:
        return {name: dg.MetadataValue.md(plots.markdown_image(draw(), alt))}
    except Exception as exc:  # noqa: BLE001 - a broken picture must not fail the data
        return {f"{name}_error": dg.MetadataValue.text(f"{type(exc).__name__}: {exc}")}


def scene_pictures(scenes: list[Scene], precision: int) -> dict[str, dg.MetadataValue]:
    """`footprint_map`: the first scene's footprint with the geohash cells it touches."""
    scene = scenes[0]
    return _picture(
        "footprint_map",
        lambda: plots.footprint_map(scene.footprint_wkt, scene_cells(scene, precision), f"{scene.scene_id}"),
        "scene footprint",
    )


def chip_pictures(index: pd.DataFrame) -> dict[str, dg.MetadataValue]:
    """`coverage_map`: the partition's cells coloured by coverage."""
    return _picture("coverage_map", lambda: plots.coverage_map(index), "cells coloured by coverage")


def checkpoint_pictures(checkpoints: pd.DataFrame, max_epochs: int) -> dict[str, dg.MetadataValue]:
    """`loss_curves` (training loss per epoch of every VAE), `holdout_mse_map` (cells coloured by held-out
    reconstruction MSE, outlined in red where training stopped at the epoch cap) and `at_epoch_cap` (those cells)."""
    capped = plots.at_epoch_cap(checkpoints, max_epochs)
    models = checkpoints.drop_duplicates("checkpoint_id")  # a shared model is one curve, not one per cell
    histories = {
        f"{row.checkpoint_id}" + ("" if row.band == "all" else f" {row.band}"): load_checkpoint(row.path).meta.get("history", [])
        for row in models.itertuples()
    }  # fmt: skip
    mse = checkpoints.groupby("geohash")["holdout_mse"].max().to_dict()
    return {
        **_picture("loss_curves", lambda: plots.loss_curves(histories, max_epochs), "training loss curves"),
        **_picture(
            "holdout_mse_map",
            lambda: plots.cell_map(mse, "held-out reconstruction MSE", "MSE", cmap="magma_r",
                                   flagged=sorted(set(capped["geohash"]))),
            "cells coloured by held-out MSE",
        ),  # fmt: skip
        "cells_at_epoch_cap": len(set(capped["geohash"])),
        "at_epoch_cap": dg.MetadataValue.md(
            "Training stopped at the epoch cap (may improve with more epochs): "
            + (", ".join(sorted(set(capped["geohash"]))) if len(capped) else "none")
        ),
    }
