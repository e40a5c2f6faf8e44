"""Files of the downstream models: `<data_dir>/checkpoints/models/<family>/<family>-<variant>-<sha256 prefix>.pt`.

They sit under `checkpoints/` because the catalog only accepts model assets there; `models` cannot be a geohash
(no "l" in base32), so the VAE checkpoints' `checkpoints/<owner>/` folders never collide with it.

Like VAE checkpoints they are content-addressed, written atomically, never overwritten, and loaded with
`weights_only=True`: the payload is a state_dict (float16) plus plain data (the constructor arguments and a meta
dict naming the decoder checkpoint, cells, bands, training period, settings and scores).
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geoembed_assets.core.atomic import write_bytes_atomic
from geoembed_assets.core.models.gan import LatentGenerator, RawGenerator
from geoembed_assets.core.models.timeseries import ConvLSTM

FAMILIES = ("timeseries", "gan")
VARIANTS = ("embeddings", "raw")
MODEL_ID = re.compile(r"(timeseries|gan)-(embeddings|raw)-[0-9a-f]{12}")


@dataclass
class StoredModel:
    model_id: str
    path: Path
    family: str
    variant: str
    model: nn.Module
    meta: dict[str, Any]


def _build(family: str, variant: str, arch: dict[str, Any]) -> nn.Module:
    if family == "timeseries":
        return ConvLSTM(arch["channels"], arch["hidden"], arch["kernel"], arch.get("window"), int(arch.get("after", 0)),
                        bool(arch.get("time_channel", False)))  # fmt: skip
    if variant == "embeddings":
        c = arch["latent_shape"][0]
        return LatentGenerator(arch["noise_dim"], tuple(arch["latent_shape"]), arch["width"], np.zeros(c), np.ones(c))
    return RawGenerator(arch["noise_dim"], arch["bands"], arch["size"], arch["width"])


def save_model(data_dir: str | Path, family: str, variant: str, model: nn.Module, arch: dict[str, Any], meta: dict[str, Any]) -> tuple[str, Path]:
    """Write the model file; returns (id, path). Idempotent for equal bytes. For the embedding GAN, `model` is the
    latent generator alone (the decoder is the checkpoint named in meta["decoder"])."""
    if family not in FAMILIES or variant not in VARIANTS:
        raise ValueError(f"unknown model {family}/{variant}")
    payload = {
        "state_dict": {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()) for k, v in model.state_dict().items()},
        "family": family,
        "variant": variant,
        "arch": arch,
        "meta": meta,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    model_id = f"{family}-{variant}-{hashlib.sha256(data).hexdigest()[:12]}"
    path = models_dir(data_dir, family) / f"{model_id}.pt"
    if not path.exists():
        write_bytes_atomic(path, data)
    return model_id, path


def load_model(path: str | Path) -> StoredModel:
    """Rebuild a stored model (weights_only=True: no pickled code runs); ValueError naming the file otherwise."""
    path = Path(path)
    if not MODEL_ID.fullmatch(path.stem):
        raise ValueError(f"{path}: not a downstream model file name (<family>-<variant>-<12 hex>.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model = _build(payload["family"], payload["variant"], payload["arch"])
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    except Exception as e:  # noqa: BLE001 - one error naming the file
        raise ValueError(f"{path}: not a readable downstream model: {type(e).__name__}: {str(e)[:200]}") from e
    return StoredModel(path.stem, path, payload["family"], payload["variant"], model.eval(), dict(payload["meta"]))


def models_dir(data_dir: str | Path, family: str) -> Path:
    return Path(data_dir) / "checkpoints" / "models" / family


def model_files(data_dir: str | Path, family: str) -> list[Path]:
    return sorted(models_dir(data_dir, family).glob("*.pt"))


def decoders_in_use(data_dir: str | Path) -> set[str]:
    """Checkpoint ids whose decoder a stored downstream model needs (unreadable model files are skipped here;
    the catalog reports them)."""
    used = set()
    for family in FAMILIES:
        for path in model_files(data_dir, family):
            try:
                decoder = torch.load(path, map_location="cpu", weights_only=True)["meta"].get("decoder")
            except Exception:  # noqa: BLE001 - reported by the catalog's model Items
                continue
            if decoder:
                used.add(str(decoder))
    return used
