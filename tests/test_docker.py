"""docker/: no Docker engine runs here, so the compose file is validated against the official
compose-spec JSON schema (vendored by check-jsonschema) and checked for what gapfill needs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return document


def test_the_compose_file_is_valid_against_the_compose_spec() -> None:
    checker = shutil.which("check-jsonschema") or str(
        Path(sys.executable).parent / "check-jsonschema"
    )
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(DOCKER / "compose.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_redis_keeps_everything_and_evicts_nothing() -> None:
    command = compose()["services"]["redis"]["command"]
    settings = dict(zip(command[1::2], command[2::2], strict=True))
    assert settings["--appendonly"] == "yes"
    assert settings["--appendfsync"] == "always"
    assert settings["--maxmemory-policy"] == "noeviction"


def test_the_worker_gets_a_gpu_and_the_store() -> None:
    worker = compose()["services"]["worker"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["count"] == 1
    assert worker["environment"]["REDIS_URL"].endswith("@redis:6379/0")
    assert worker["command"][:5] == ["worker", "--queues", "generate", "--backend", "vllm"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["build"]["dockerfile"] == "docker/Dockerfile.worker"


def test_a_cpu_worker_scores_beside_the_gpu_worker_and_needs_only_the_store() -> None:
    scorer = compose()["services"]["scorer"]
    assert scorer["command"] == ["worker", "--queues", "score"]
    assert scorer["build"]["dockerfile"] == "docker/Dockerfile.app"
    assert "deploy" not in scorer, "no GPU"
    assert scorer["environment"]["REDIS_URL"].endswith("@redis:6379/0")
    assert all(v.endswith(":/data") for v in scorer["volumes"]), "no host paths to read inputs"


def test_docker_compose_config_accepts_the_file_with_both_worker_kinds() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose v2 is missing: bash scripts/install-compose.sh")
        pytest.skip("docker-compose v2 is not installed (bash scripts/install-compose.sh)")
    result = subprocess.run(
        [binary, "-f", str(DOCKER / "compose.yaml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "REDIS_PASSWORD": "0" * 64},
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"redis", "worker", "scorer", "ui"} <= set(services)
    assert services["worker"]["command"][:3] == ["worker", "--queues", "generate"]
    assert services["scorer"]["command"] == ["worker", "--queues", "score"]
    missing = subprocess.run(
        [binary, "-f", str(DOCKER / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "REDIS_PASSWORD"},
    )
    assert missing.returncode != 0 and "set REDIS_PASSWORD" in missing.stderr


def test_the_dashboard_is_optional() -> None:
    assert compose()["services"]["dashboard"]["profiles"] == ["dashboard"]


def test_the_worker_image_is_built_on_vllm_and_keeps_its_torch() -> None:
    dockerfile = (DOCKER / "Dockerfile.worker").read_text()
    assert "FROM ${VLLM_IMAGE}" in dockerfile and "vllm/vllm-openai" in dockerfile
    assert "--no-deps ." in dockerfile, "installing gapfill's torch pin would replace vLLM's"
    for path in ("generator", "workers", "pyproject.toml"):
        assert f"COPY {path}" in dockerfile
    assert (DOCKER / "Dockerfile.app").is_file()


def test_the_review_ui_is_served_against_the_same_redis() -> None:
    ui = compose()["services"]["ui"]
    assert ui["command"][0] == "ui" and "0.0.0.0" in ui["command"]
    assert ui["environment"]["REDIS_URL"].endswith("@redis:6379/0")
    assert ui["ports"] == ["127.0.0.1:8501:8501"]
    app = (DOCKER / "Dockerfile.app").read_text()
    assert "COPY review_ui ./review_ui" in app and "COPY prompts ./prompts" in app


def test_the_review_ui_bound_to_every_address_names_the_hosts_it_answers() -> None:
    ui = compose()["services"]["ui"]
    assert "0.0.0.0" in ui["command"]  # so gapfill ui needs ui_allowed_hosts, or refuses
    hosts = ui["environment"]["GAPFILL_UI_ALLOWED_HOSTS"]
    default = json.loads(hosts.removeprefix("${GAPFILL_UI_ALLOWED_HOSTS:-").removesuffix("}"))
    assert default == ["localhost", "127.0.0.1"]
    assert all(port.startswith("127.0.0.1:") for port in ui["ports"])
