"""MLM Items of the models trained on embeddings (time series, GAN) and of their raw-pixel twins.

Each Item describes the model file (`checkpoints/models/<family>/<id>.pt`), its inputs and outputs, bands, training period
(`start/end_datetime`) and area (the union of its cells), and links `derived_from` the VAE checkpoint whose decoder
it needs (the catalog resolves the link to that checkpoint's Item) and the scenes it was trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pystac
import shapely
import torch
from shapely.geometry import box
from stac_model.base import ProcessingExpression
from stac_model.input import InputStructure, ModelInput, ValueScalingZScore
from stac_model.output import ModelOutput, ModelResult
from stac_model.schema import MLModelProperties, ModelHyperParameters

from geoembed_assets.core.geohash_grid import cell_bounds
from geoembed_assets.core.models.store import StoredModel, load_model, model_files
from geoembed_assets.core.stac.items import PYTORCH_MEDIA_TYPE, Built, _describe_bands, _describe_file, _geometry, _publish_mlm, as_utc

IMAGE_DIMS = ["batch", "bands", "height", "width"]


def _zscore(mean: list[float], std: list[float]) -> list[ValueScalingZScore]:
    return [ValueScalingZScore(mean=float(m), stddev=float(s)) for m, s in zip(mean, std, strict=True)]


def _timeseries_io(stored: StoredModel) -> tuple[list[ModelInput], list[ModelOutput], str]:
    meta, arch = stored.meta, stored.meta["arch"]
    window, bands = meta["training"]["window"], list(meta["bands"])
    after = int(meta["training"].get("after", 0))
    frames = window + after
    context = f"the {window} previous dates with data" + (f" and the {after} following" if after else "")
    baseline = "linear interpolation in time of its inputs" if after else "persistence of its last input"
    inputs: list[ModelInput] = []
    if stored.variant == "embeddings":
        c, h, w = meta["latent_shape"]
        inputs.append(ModelInput(
            name=f"latent grids of {context}",
            bands=[],
            input=InputStructure(shape=[-1, frames, c, h, w], dim_order=["batch", "time", "channel", "height", "width"], data_type="float32"),
            value_scaling=_zscore(meta["latent_mean"], meta["latent_std"]),
            resize_type=None,
            pre_processing_function=ProcessingExpression(format="python", expression="geoembed_assets.core.codec:encode_chip",
                                                         description="stored int8 embeddings, dequantised, z-scored per channel"),
        ))  # fmt: skip
        output = ModelOutput(
            name="predicted image at the target date",
            tasks={"regression"},
            bands=bands,
            result=ModelResult(shape=[-1, len(bands), -1, -1], dim_order=IMAGE_DIMS, data_type="float32"),
            post_processing_function=ProcessingExpression(format="python", expression="geoembed_assets.core.models.timeseries:decode_latents",
                                                          description=f"predicted latent grid decoded by the frozen decoder of {meta['decoder']}"),
        )  # fmt: skip
        name = f"ConvLSTM on latent grids (window {window}, after {after}, hidden {arch['hidden']}; residual on {baseline}) + frozen VAE decoder"
    else:
        inputs.append(ModelInput(
            name=f"chips of {context}",
            bands=bands,
            input=InputStructure(shape=[-1, frames, len(bands), -1, -1], dim_order=["batch", "time", "bands", "height", "width"], data_type="float32"),
            value_scaling=_zscore(meta["norm_mean"], meta["norm_std"]),
            resize_type=None,
        ))  # fmt: skip
        output = ModelOutput(name="predicted image at the target date", tasks={"regression"}, bands=bands,
                             result=ModelResult(shape=[-1, len(bands), -1, -1], dim_order=IMAGE_DIMS, data_type="float32"))  # fmt: skip
        name = f"ConvLSTM on raw chips (window {window}, after {after}, hidden {arch['hidden']}; residual on {baseline})"
    if arch.get("time_channel"):
        scale = meta["training"].get("time_scale", 30.0)
        inputs.append(ModelInput(
            name=f"time offsets of the input dates to the target (days / {scale:g}, negative before it)",
            bands=[],
            input=InputStructure(shape=[-1, frames], dim_order=["batch", "time"], data_type="float32"),
            resize_type=None,
        ))  # fmt: skip
    return inputs, [output], name


def _gan_io(stored: StoredModel) -> tuple[list[ModelInput], list[ModelOutput], str]:
    meta, arch = stored.meta, stored.meta["arch"]
    bands, size = list(meta["bands"]), meta["size_px"]
    model_input = ModelInput(
        name="standard normal noise",
        bands=[],
        input=InputStructure(shape=[-1, arch["noise_dim"]], dim_order=["batch", "channel"], data_type="float32"),
        resize_type=None,
    )
    output = ModelOutput(
        name="generated chip",
        tasks={"generative"},
        bands=bands,
        result=ModelResult(shape=[-1, len(bands), size, size], dim_order=IMAGE_DIMS, data_type="float32"),
        post_processing_function=ProcessingExpression(
            format="python", expression="geoembed_assets.core.training:Normalizer.inverse",
            description="z-scores back to reflectance with the decoder checkpoint's normalizer",
        ),
    )  # fmt: skip
    if stored.variant == "embeddings":
        return [model_input], [output], f"GAN generator of latent grids {meta['latent_shape']} + frozen VAE decoder {meta['decoder']}"
    return [model_input], [output], "DCGAN generator of raw chips"


def downstream_item(path: str | Path) -> Built:
    """MLM Item of one stored time-series or GAN model."""
    stored = load_model(path)
    meta = stored.meta
    inputs, outputs, architecture = (_timeseries_io if stored.family == "timeseries" else _gan_io)(stored)
    training = {k: v for k, v in meta["training"].items() if isinstance(v, (int, float, str, bool))}
    properties = MLModelProperties(
        name=f"geoembed {stored.family} {stored.variant} {stored.model_id}",
        architecture=architecture,
        tasks={"regression"} if stored.family == "timeseries" else {"generative"},
        framework="pytorch",
        framework_version=torch.__version__,
        total_parameters=sum(p.numel() for p in stored.model.parameters()),
        pretrained=False,
        accelerator="cuda" if str(meta.get("device", "cpu")).startswith("cuda") else "amd64",
        accelerator_constrained=False,
        accelerator_summary=f"trained on {meta.get('device', 'cpu')}",
        hyperparameters=ModelHyperParameters(**training, epochs_run=meta.get("epochs")),
        input=inputs,
        output=outputs,
    )
    geometry, bbox = _geometry(shapely.union_all([box(*cell_bounds(g)) for g in meta["cells"]]))
    extra: dict[str, Any] = {
        "description": f"{'Missing-date ConvLSTM' if stored.family == 'timeseries' else 'GAN'} trained on "
        f"{'embeddings (decoded by ' + meta['decoder'] + ')' if stored.variant == 'embeddings' else 'raw chips'} of "
        f"{len(meta['cells'])} cells ({meta['sensor']}, bands {', '.join(meta['bands'])})",
        "geoembed:family": stored.family,
        "geoembed:variant": stored.variant,
        "geoembed:cells": list(meta["cells"]),
        "geoembed:scores": meta.get("scores", {}),
        "geoembed:cost": meta.get("cost", {}),
    }
    item = pystac.Item(
        id=stored.model_id,
        geometry=geometry,
        bbox=bbox,
        datetime=None,
        start_datetime=as_utc(meta["start_datetime"]),
        end_datetime=as_utc(meta["end_datetime"]),
        properties=extra,
    )
    asset = pystac.Asset(
        href=str(stored.path.resolve()),
        title="state_dict, constructor arguments and meta (torch.save; load with weights_only=True)",
        media_type=PYTORCH_MEDIA_TYPE,
        roles=["mlm:model", "mlm:checkpoint", "checkpoint"],
        extra_fields={"mlm:artifact_type": "torch.save"},
    )
    item.add_asset("model", asset)
    _describe_file(asset, stored.path)
    _describe_bands(asset, list(meta["bands"]), meta["sensor"])
    _publish_mlm(item, properties)
    links = [(pystac.RelType.DERIVED_FROM, meta["decoder"])] if meta.get("decoder") else []
    links += [(pystac.RelType.DERIVED_FROM, s) for s in meta.get("scene_ids", [])]
    return Built(item, links)


def family_items(family: str):
    """The catalog builder of one family: every readable model file under `checkpoints/models/<family>/`."""

    def build(data_dir: Path, problems: list[str]) -> list[Built]:
        built = []
        for p in model_files(data_dir, family):
            try:
                built.append(downstream_item(p))
            except ValueError as e:
                problems.append(str(e))
        return built

    return build


FAMILIES = (
    ("timeseries", "Missing-date ConvLSTMs",
     "ConvLSTMs predicting a cell at a date from its previous (and, gap filling, following) dates: on embeddings (decoded by a frozen VAE decoder) "
     "and on raw chips."),
    ("gan", "Generators of chips",
     "GAN generators: of latent grids decoded by a frozen VAE decoder, and a raw DCGAN twin."),
)  # fmt: skip
FAMILY_IDS = frozenset(fid for fid, _, _ in FAMILIES)  # they consume embeddings; none of them makes any
