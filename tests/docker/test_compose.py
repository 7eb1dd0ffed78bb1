"""docker/compose.yaml: vLLM, Redis and two guard replicas. No Docker engine here, so
this checks the file's structure, not that it runs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from guard.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yaml"
REPLICAS = ["guard-a", "guard-b"]


def services() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What guard builds from the service's environment, with compose's defaults."""
    for name in [n for n in os.environ if n.startswith("GUARD_")]:
        monkeypatch.delenv(name)
    for name, value in service["environment"].items():
        monkeypatch.setenv(name, re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value)))
    return Settings()


def seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def test_two_guard_replicas_beside_redis_and_vllm() -> None:
    found = services()
    assert set(found) == {"vllm", "redis", *REPLICAS}
    published = [found[name]["ports"] for name in REPLICAS]
    assert [ports[0].split(":")[1] for ports in published] == ["8080", "8080"]
    assert len({ports[0].split(":")[0] for ports in published}) == 2  # one host port each
    audit = [
        next(v for v in found[name]["volumes"] if v.endswith(":/var/log/guard"))
        for name in REPLICAS
    ]
    assert len(set(audit)) == 2  # one writer per audit log


@pytest.mark.parametrize("replica", REPLICAS)
def test_each_replica_reaches_vllm_and_redis(replica: str, monkeypatch: pytest.MonkeyPatch) -> None:
    found = services()
    service = found[replica]
    known = {f"GUARD_{name.upper()}" for name in Settings.model_fields}
    assert set(service["environment"]) <= known
    settings = settings_of(service, monkeypatch)
    assert urlsplit(settings.upstream_url).hostname == "vllm"
    redis = urlsplit(service["environment"]["GUARD_REDIS_URL"])
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert service["depends_on"]["vllm"]["condition"] == "service_healthy"
    # Compose's SIGKILL must come after guard's drain: requests, then shadow work.
    assert seconds(service["stop_grace_period"]) > 2 * settings.shutdown_timeout_s
