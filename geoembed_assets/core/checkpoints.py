"""VAE checkpoints: a state_dict plus the plain-data config needed to rebuild and use the network.

Files are content-addressed (the id is a hash of the bytes), never overwritten: an embedding row names its
checkpoint id, so old embeddings stay decodable after a model is retrained. Weights are stored as float16 (half
the bytes; decoding error changes by well under 1 %) and widened to float32 on load.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoembed_assets.core.atomic import write_bytes_atomic
from geoembed_assets.core.training import Normalizer
from geoembed_assets.core.vae import VAEConfig, build_vae


@dataclass
class Checkpoint:
    checkpoint_id: str
    path: Path
    model: torch.nn.Module
    normalizer: Normalizer
    meta: dict[str, Any]  # geohash, sensor, bands, parent checkpoint, training settings and scores

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(self.meta["bands"])


def _stored(tensor: torch.Tensor) -> torch.Tensor:
    t = tensor.detach().cpu()
    return t.half() if t.is_floating_point() else t


def serialize_checkpoint(model: torch.nn.Module, normalizer: Normalizer, meta: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint file (also what decoding costs in storage)."""
    payload = {
        "state_dict": {k: _stored(v) for k, v in model.state_dict().items()},
        "vae_config": model.config.to_dict(),
        "norm_mean": normalizer.mean.tolist(),
        "norm_std": normalizer.std.tolist(),
        "meta": meta,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_checkpoint(
    directory: str | Path, model: torch.nn.Module, normalizer: Normalizer, meta: dict[str, Any]
) -> tuple[str, Path]:
    """Write the checkpoint under `directory/<owner>/<id>.pt`; returns (id, path). Idempotent for equal bytes.

    The owner is `meta["owner"]` (a region for a model shared by a partition's cells) or `meta["geohash"]`.
    """
    data = serialize_checkpoint(model, normalizer, meta)
    owner = meta.get("owner") or meta["geohash"]
    checkpoint_id = f"{owner}-{hashlib.sha256(data).hexdigest()[:12]}"
    path = Path(directory) / owner / f"{checkpoint_id}.pt"
    if not path.exists():
        write_bytes_atomic(path, data)
    return checkpoint_id, path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Rebuild the network from a checkpoint file (loaded with weights_only=True: no pickled code runs)."""
    path = Path(path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = build_vae(VAEConfig(**payload["vae_config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    model.eval()
    normalizer = Normalizer(np.asarray(payload["norm_mean"], np.float32), np.asarray(payload["norm_std"], np.float32))
    return Checkpoint(path.stem, path, model, normalizer, payload["meta"])


def checkpoint_path(directory: str | Path, checkpoint_id: str) -> Path:
    geohash = checkpoint_id.rsplit("-", 1)[0]
    return Path(directory) / geohash / f"{checkpoint_id}.pt"
