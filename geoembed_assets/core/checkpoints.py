"""VAE checkpoints: a state_dict plus the plain-data config needed to rebuild and use the network.

Files are content-addressed (the id is a hash of the bytes), never overwritten: an embedding row names its
checkpoint id, so old embeddings stay decodable after a model is retrained. Weights are stored as float16 (half
the bytes; decoding error changes by well under 1 %) and widened to float32 on load.
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

from geoembed_assets.core.atomic import write_bytes_atomic
from geoembed_assets.core.safe_paths import UnsafePathError, inside
from geoembed_assets.core.training import Normalizer
from geoembed_assets.core.vae import VAEConfig, build_vae


CHECKPOINT_ID = re.compile(r"[0-9b-hjkmnp-z]{1,12}-[0-9a-f]{12}")  # <geohash (base32)>-<sha256 prefix>


class CheckpointError(ValueError):
    """A checkpoint file cannot be loaded; the message names the file."""


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
    path = checkpoint_path(directory, checkpoint_id)
    if not path.exists():
        write_bytes_atomic(path, data)
    return checkpoint_id, path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Rebuild the network from a checkpoint file (loaded with weights_only=True: no pickled code runs).

    A file that is not a readable checkpoint (truncated, overwritten, foreign pickle) raises
    :class:`CheckpointError` naming the file; `weights_only` is never turned off.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model = build_vae(VAEConfig(**payload["vae_config"]))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
        model.eval()
        normalizer = Normalizer(
            np.asarray(payload["norm_mean"], np.float32), np.asarray(payload["norm_std"], np.float32)
        )
        meta = dict(payload["meta"])
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: checkpoint file not found") from e
    except Exception as e:  # torch/pickle/zip errors of every kind: one error naming the file
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        if "weights" in reason.lower():  # torch's advice to turn weights_only off is not ours to give
            reason = "it holds objects other than tensors and plain data"
        raise CheckpointError(f"{path}: not a readable geoembed checkpoint (corrupt or foreign file): {reason}") from e
    return Checkpoint(path.stem, path, model, normalizer, meta)


def checkpoint_path(directory: str | Path, checkpoint_id: str) -> Path:
    """`<directory>/<geohash>/<checkpoint_id>.pt` for an id of the form `<geohash>-<12 hex>`; any other id (it may
    come from an untrusted Parquet file) is refused, and the path must lie inside `directory`."""
    checkpoint_id = str(checkpoint_id)
    if not CHECKPOINT_ID.fullmatch(checkpoint_id):
        raise UnsafePathError(f"checkpoint id {checkpoint_id!r} is not of the form <geohash>-<12 hex digits>")
    geohash = checkpoint_id.rsplit("-", 1)[0]
    path = Path(directory) / geohash / f"{checkpoint_id}.pt"
    inside(path, directory, f"checkpoint {checkpoint_id}")
    return path
