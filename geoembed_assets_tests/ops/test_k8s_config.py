"""The Kubernetes setup, validated with Dagster's own config validation (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from geoembed_assets_tests.ops import servers

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(scope="module")
def deploy_defs():
    servers.require_module("dagster_k8s")
    servers.require_module("dagster_celery")
    from geoembed_assets.deploy_definitions import defs

    return defs


def test_k8s_executor_run_config_is_valid(deploy_defs) -> None:
    job = deploy_defs.resolve_job_def("embed_scenes_k8s")
    assert job.executor_def.name == "k8s"
    run_config = yaml.safe_load((DEPLOY / "k8s_executor.yaml").read_text())
    resolved = dg.validate_run_config(job, run_config)
    assert resolved["execution"]["k8s"]["job_namespace"] == "geoembed"
    assert set(resolved["execution"]["k8s"]["per_step_k8s_config"]) == {"vae_checkpoints", "embeddings"}
    # a typo is caught by the same validation
    broken = {**run_config, "execution": {"config": {**run_config["execution"]["config"], "max_concurent": 8}}}
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_concurent"):
        dg.validate_run_config(job, broken)


def test_gpu_steps_request_a_gpu_and_the_gpu_queue(deploy_defs) -> None:
    from dagster_k8s.job import get_user_defined_k8s_config

    job = deploy_defs.resolve_job_def("embed_scenes_k8s")
    for step in ("vae_checkpoints", "embeddings"):
        tags = job.graph.node_named(step).tags
        k8s = get_user_defined_k8s_config(tags)
        assert k8s.container_config["resources"]["limits"] == {"nvidia.com/gpu": "1"}
        assert tags["dagster-celery/queue"] == "gpu"
    assert "dagster-celery/queue" not in job.graph.node_named("geohash_chips").tags


def test_k8s_instance_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    servers.require_module("dagster_k8s")
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema
    from dagster_k8s import K8sRunLauncher

    for var in ("HOST", "PORT", "USERNAME", "PASSWORD", "DB"):  # set in the cluster by the config map / secret
        monkeypatch.setenv(f"DAGSTER_PG_{var}", "5432" if var == "PORT" else "x")
    instance = yaml.safe_load((DEPLOY / "dagster-k8s.yaml").read_text())
    assert process_config(dagster_instance_config_schema(), instance).success
    launcher = process_config(K8sRunLauncher.config_type(), instance["run_launcher"]["config"])
    assert launcher.success, launcher.errors
    assert launcher.value["job_namespace"] == "geoembed"
