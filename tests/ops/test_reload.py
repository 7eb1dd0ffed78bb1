"""Hot reload with --watch: a policy file changes on disk while a request is in flight."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from guard.ops.keys import hash_key
from guard.policy.load import load_policy_file
from guard.policy.routing import PolicySet
from guard.server.app import create_app
from guard.settings import Settings
from tests.conftest import Fake, guard_app, write_policy
from tests.scrape import metric
from tests.servers import serve_in_thread

CHAT = "/v1/chat/completions"

V1 = """
name: p
models: {'*': null}
output_rails:
  - kind: regex
    name: v1-words
    patterns: ["word"]
    action: flag
"""
V2 = """
name: p
models: {'*': null}
input_rails:
  - kind: regex
    name: v2-email
    presets: [email]
    action: block
"""


def replace_file(path: Path, text: str) -> None:
    """Write a new version the way editors and config tools do: whole, then rename."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def chat(url: str, text: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{url}{CHAT}", json=body, headers=headers, timeout=30)


def test_in_flight_requests_finish_under_the_old_policy_new_ones_get_the_new(
    paced_upstream: Fake, tmp_path: Path
) -> None:
    path = write_policy(tmp_path, V1)
    v1 = load_policy_file(path)[0].digest
    settings = Settings(
        upstream_url=paced_upstream.url, upstream_timeout_s=10, watch=True, watch_interval_s=0.05
    )
    app = create_app(settings, PolicySet.from_files([path]))
    with serve_in_thread(app) as url:
        old_runtime = app.state.guard.ops.runtimes.current
        in_flight: dict[str, httpx.Response] = {}
        # 30 words at the paced upstream's 50 ms each: 1.5 s of generation.
        thread = threading.Thread(
            target=lambda: in_flight.setdefault("r", chat(url, "say: " + "word " * 30))
        )
        thread.start()
        wait_until(lambda: old_runtime.leases == 1)  # the request is in flight
        replace_file(path, V2)
        wait_until(lambda: metric(url, "guard_policy_reloads_total", result="success") == 1)
        assert thread.is_alive()  # still generating when the new policy took over
        assert not old_runtime.closed  # its components stay up for it
        thread.join(timeout=30)
        old = in_flight["r"].json()
        assert old["guard"]["policy_sha256"] == v1[:16]
        # Its output rails ran after the reload, and were the old policy's.
        assert [v["rail"] for v in old["guard"]["verdicts"]] == ["v1-words"]
        wait_until(lambda: old_runtime.closed)  # closed once its last request finished

        new = chat(url, "say: mail bob@example.com")
        v2 = load_policy_file(path)[0].digest
        assert new.json()["guard"]["policy_sha256"] == v2[:16]
        assert new.json()["choices"][0]["finish_reason"] == "content_filter"
        assert metric(url, "guard_policy_info", policy="p", sha256=v2) == 1
        assert metric(url, "guard_policy_info", policy="p", sha256=v1) == 0


def test_an_invalid_policy_is_rejected_and_the_old_one_stays(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    path = write_policy(tmp_path, V1)
    v1 = load_policy_file(path)[0].digest
    app = guard_app(fake_upstream.url, [path], watch=True, watch_interval_s=0.05)
    with serve_in_thread(app) as url:
        replace_file(path, V1.replace("action: flag", "action: blok"))
        wait_until(lambda: metric(url, "guard_policy_reloads_total", result="failure") == 1)
        kept = chat(url, "say: word")
        assert kept.json()["guard"]["policy_sha256"] == v1[:16]
        assert kept.json()["guard"]["verdict"] == "flag"
        replace_file(path, V2)
        wait_until(lambda: metric(url, "guard_policy_reloads_total", result="success") == 1)
        assert chat(url, "say: word").json()["guard"]["verdict"] == "pass"


def test_the_keys_file_reloads_too(fake_upstream: Fake, tmp_path: Path) -> None:
    path = write_policy(tmp_path, V1)
    keys = write_policy(
        tmp_path, f"keys:\n  - name: a\n    sha256: {hash_key('sk-a-123')}\n", "keys.yaml"
    )
    app = guard_app(fake_upstream.url, [path], keys_file=keys, watch=True, watch_interval_s=0.05)
    with serve_in_thread(app) as url:
        assert chat(url, "hi", {"authorization": "Bearer sk-a-123"}).status_code == 200
        replace_file(keys, f"keys:\n  - name: b\n    sha256: {hash_key('sk-b-456')}\n")
        wait_until(lambda: metric(url, "guard_policy_reloads_total", result="success") == 1)
        assert chat(url, "hi", {"authorization": "Bearer sk-a-123"}).status_code == 401
        assert chat(url, "hi", {"authorization": "Bearer sk-b-456"}).status_code == 200
        # An empty keys file would open guard to everyone: it is refused instead.
        replace_file(keys, "keys: []\n")
        wait_until(lambda: metric(url, "guard_policy_reloads_total", result="failure") == 1)
        assert chat(url, "hi").status_code == 401


def configmap_volume(folder: Path, files: dict[str, str]) -> None:
    """Lay out or update ``folder`` as the kubelet does a ConfigMap or Secret volume:
    the files live in a timestamped folder, ``..data`` links to it, and each name links
    to ``..data/name``. An update writes a new folder and swaps ``..data`` by rename."""
    folder.mkdir(exist_ok=True)
    version = folder / f"..{time.time_ns()}"
    version.mkdir()
    for name, text in files.items():
        (version / name).write_text(text)
    staged = folder / "..data_tmp"
    staged.symlink_to(version.name)
    old = (folder / "..data").resolve() if (folder / "..data").is_symlink() else None
    os.replace(staged, folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")
    if old is not None:
        for stale in old.iterdir():
            stale.unlink()
        old.rmdir()


def test_a_configmap_volume_update_reloads(fake_upstream: Fake, tmp_path: Path) -> None:
    """deploy/k8s mounts policies from a ConfigMap and keys from a Secret as folders;
    the kubelet swaps a symlink, the path guard watches never changes."""
    policies, secret = tmp_path / "policies", tmp_path / "keys"
    configmap_volume(policies, {"guard.yaml": V1})
    configmap_volume(
        secret, {"keys.yaml": f"keys:\n  - name: a\n    sha256: {hash_key('sk-a-1')}\n"}
    )
    path, keys = policies / "guard.yaml", secret / "keys.yaml"
    app = guard_app(fake_upstream.url, [path], keys_file=keys, watch=True, watch_interval_s=0.05)
    with serve_in_thread(app) as url:
        a = {"authorization": "Bearer sk-a-1"}
        assert chat(url, "say: word", a).json()["guard"]["verdict"] == "flag"
        configmap_volume(policies, {"guard.yaml": V2})
        wait_until(lambda: metric(url, "guard_policy_reloads_total", result="success") == 1)
        assert chat(url, "say: word", a).json()["guard"]["verdict"] == "pass"
        assert chat(url, "say: mail bob@example.com", a).json()["guard"]["verdict"] == "block"
        configmap_volume(
            secret, {"keys.yaml": f"keys:\n  - name: b\n    sha256: {hash_key('sk-b-2')}\n"}
        )
        wait_until(lambda: metric(url, "guard_policy_reloads_total", result="success") == 2)
        assert chat(url, "hi", a).status_code == 401
        assert chat(url, "hi", {"authorization": "Bearer sk-b-2"}).status_code == 200
