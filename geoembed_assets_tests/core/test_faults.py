"""Faults (issue #9): killed writes, concurrent runs of one partition, run monitoring, a full disk.

A re-run after each fault leaves the partition's outputs byte-identical to a clean run.
"""

from __future__ import annotations

import errno
import hashlib
import threading
from pathlib import Path

import dagster as dg
import pytest

from geoembed_assets.core import workflow
from geoembed_assets.core.atomic import atomic_path, partition_lock, write_bytes_atomic
from geoembed_assets.core.readers import open_scene
from geoembed_assets.instance_config import ensure_instance_config
from geoembed_assets_tests.conftest import DEFAULT_DESCRIPTOR

REGION, MONTH, PRECISION, SIZE = "dqd", "2016-01-01", 5, 16


def snapshot(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root (lock files excluded: they are empty markers)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".lock-")
    }


def clean_run(chips: Path) -> dict[str, str]:
    """Snapshot of a clean run of the partition into an empty `chips` folder (the folder is left empty again)."""
    import shutil

    shutil.rmtree(chips, ignore_errors=True)
    workflow.chip_partition([open_scene(DEFAULT_DESCRIPTOR)], REGION, MONTH, chips, PRECISION, SIZE, 0.5)
    expected = snapshot(chips)
    shutil.rmtree(chips)
    return expected


def test_rerun_after_a_killed_write_is_byte_identical(tmp_path: Path) -> None:
    chips = tmp_path / "chips"
    expected = clean_run(chips)
    scene = open_scene(DEFAULT_DESCRIPTOR)
    workflow.chip_partition([scene], REGION, MONTH, chips, PRECISION, SIZE, 0.5)
    # what a kill leaves: a temp file of a chip write, and a chip of other settings listed by the index
    own_chip = workflow.chip_path(chips, REGION, "dqdnw", scene.scene_id)
    (own_chip.parent / f".{own_chip.name}.deadbeef.tmp").write_bytes(b"half a chip")
    stray = chips / REGION / "dqdnw" / "other-settings.tif"
    stray.write_bytes(b"chip of another run")
    import pandas as pd

    index_path = chips / REGION / f"index_{MONTH}.parquet"
    index = pd.read_parquet(index_path)
    pd.concat([index, index.iloc[:1].assign(path=str(stray))]).to_parquet(index_path, index=False)
    workflow.chip_partition([scene], REGION, MONTH, chips, PRECISION, SIZE, 0.5)
    assert snapshot(chips) == expected
    assert not list(chips.rglob("*.tmp"))


def test_another_months_write_in_flight_is_left_alone(tmp_path: Path) -> None:
    """Months of one region share its chips folder: a run cleans only its own temp files (a bug found when two
    Celery workers chipped two months at once: one deleted the other's temp chip before its rename)."""
    chips = tmp_path / "chips"
    other = chips / REGION / "dqdnw" / ".sentinel-2a_L1C_20160212T000000_18SVG_0123456789.tif.0badc0de.tmp"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"another month's chip being written")
    workflow.chip_partition([open_scene(DEFAULT_DESCRIPTOR)], REGION, MONTH, chips, PRECISION, SIZE, 0.5)
    assert other.read_bytes() == b"another month's chip being written"


def test_concurrent_runs_of_one_partition_leave_one_set(tmp_path: Path) -> None:
    chips = tmp_path / "chips"
    expected = clean_run(chips)
    scene = open_scene(DEFAULT_DESCRIPTOR)
    inside, overlaps, errors = [], [], []
    real = workflow.write_chip

    def counting_write(chip, path):  # records whether two runs were ever writing at once
        inside.append(1)
        if len(inside) > 1:
            overlaps.append(path)
        try:
            return real(chip, path)
        finally:
            inside.pop()

    def run() -> None:
        try:
            workflow.chip_partition([scene], REGION, MONTH, chips, PRECISION, SIZE, 0.5)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workflow.write_chip = counting_write
    try:
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        workflow.write_chip = real
    assert errors == [] and overlaps == []
    assert snapshot(chips) == expected


def test_partition_lock_times_out_naming_the_partition(tmp_path: Path) -> None:
    with partition_lock(tmp_path, MONTH):
        result: list[BaseException] = []

        def other() -> None:
            try:
                with partition_lock(tmp_path, MONTH, timeout_s=0.3):
                    pass
            except TimeoutError as exc:
                result.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert result and MONTH in str(result[0])


def test_instance_config_enables_run_monitoring_and_one_run_per_partition(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # what `cli` writes
    ensure_instance_config(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_monitoring_enabled
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    assert ensure_instance_config(tmp_path).read_text() == (tmp_path / "dagster.yaml").read_text()  # idempotent


def test_disk_full_names_the_path(tmp_path: Path) -> None:
    final = tmp_path / "embeddings" / "dqd" / "2016-01-01.parquet"
    with pytest.raises(OSError) as err:
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"partial")
            with open("/dev/full", "wb") as full:  # the kernel's own ENOSPC
                full.write(b"x" * 4096)
                full.flush()
    assert err.value.errno == errno.ENOSPC and str(final) in str(err.value)
    assert not final.exists() and not list(final.parent.glob(".*.tmp"))
    write_bytes_atomic(final, b"ok")  # and the next write works
    assert final.read_bytes() == b"ok"


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 64 KiB tmpfs (needs mount rights: root in a container); skipped where the machine refuses."""
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_while_writing_a_chip_names_the_chip(tiny_disk: Path) -> None:
    from geoembed_assets.core.chipping import chip_scene, write_chip

    (chip,) = chip_scene(open_scene(DEFAULT_DESCRIPTOR), ["dqdnw"], 128)
    final = tiny_disk / "chips" / "dqd" / "dqdnw" / "scene.tif"
    with pytest.raises(OSError) as err:
        write_chip(chip, final)
    assert err.value.errno == errno.ENOSPC and str(final) in str(err.value)
    assert not final.exists() and not list(final.parent.glob(".*.tmp"))  # nothing half-written is left
