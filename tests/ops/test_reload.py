"""Hot reload: a policy file changes on disk while a request is in flight; a change is
loaded only once whole and settled, and never in part."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from guard.errors import PolicyError
from guard.ops.keys import hash_key
from guard.policy.load import load_policy_file
from guard.policy.routing import PolicySet
from guard.server.app import create_app
from guard.settings import Settings
from tests.conftest import Fake, guard_app, write_policy
from tests.scrape import metric, metric_in
from tests.servers import serve_in_thread

CHAT = "/v1/chat/completions"

V1 = """
name: p
models: {'*': null}
input_rails: []
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
output_rails: []
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


def key_entry(name: str, key: str, models: str = "'*'") -> str:
    return f"keys:\n  - name: {name}\n    sha256: {hash_key(key)}\n    models: {models}\n"


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
    keys = write_policy(tmp_path, key_entry("a", "sk-a-123"), "keys.yaml")
    app = guard_app(fake_upstream.url, [path], keys_file=keys, watch=True, watch_interval_s=0.05)
    with serve_in_thread(app) as url:
        assert chat(url, "hi", {"authorization": "Bearer sk-a-123"}).status_code == 200
        replace_file(keys, key_entry("b", "sk-b-456"))
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
        secret,
        {"keys.yaml": f"keys:\n  - name: a\n    sha256: {hash_key('sk-a-1')}\n    models: '*'\n"},
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
            secret,
            {
                "keys.yaml": f"keys:\n  - name: b\n    sha256: {hash_key('sk-b-2')}\n"
                "    models: '*'\n"
            },
        )
        wait_until(lambda: metric(url, "guard_policy_reloads_total", result="success") == 2)
        assert chat(url, "hi", a).status_code == 401
        assert chat(url, "hi", {"authorization": "Bearer sk-b-2"}).status_code == 200


class Polled:
    """guard in this test's hands: the watcher does not run; ``poll`` looks at the files
    once, in the app's own event loop, as the watcher would every interval."""

    def __init__(self, app: Starlette, client: TestClient):
        self.app, self.client = app, client

    def poll(self) -> bool | None:
        return self.client.portal.call(self.app.state.guard.reloader.poll)

    def reloads(self, result: str) -> float:
        text = self.client.get("/metrics").text
        return metric_in(text, "guard_policy_reloads_total", result=result)

    def chat(self, text: str, model: str = "m", key: str | None = None) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return self.client.post(CHAT, json=body, headers=headers)


@contextmanager
def polled(app: Starlette) -> Iterator[Polled]:
    with TestClient(app) as client:
        yield Polled(app, client)


def test_a_file_written_in_two_halves_is_loaded_only_once_whole_and_settled(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    path = write_policy(tmp_path, V1)
    v2_digest = load_policy_file(write_policy(tmp_path, V2, "v2.yaml"))[0].digest
    with polled(guard_app(fake_upstream.url, [path])) as guard:
        assert guard.poll() is None  # nothing changed
        half = len(V2) // 2
        path.write_text(V2[:half])  # a writer in place, halfway
        assert guard.poll() is None  # changed since the last poll: not yet
        path.write_text(V2)  # ... and done
        assert guard.poll() is None  # changed again since the last poll: not yet
        assert guard.chat("say: word").json()["guard"]["verdict"] == "flag"  # still V1
        assert guard.poll() is True  # the same bytes twice in a row: loaded
        assert guard.reloads("success") == 1 and guard.reloads("failure") == 0
        served = guard.chat("say: mail bob@example.com").json()
        assert served["guard"]["policy_sha256"] == v2_digest[:16]
        assert served["choices"][0]["finish_reason"] == "content_filter"
        assert guard.poll() is None  # loaded once, not again


def test_a_reload_with_one_invalid_file_keeps_every_old_policy(
    fake_upstream: Fake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two policy files: a valid change to one and an invalid other. The whole reload is
    refused: the valid change is not taken either."""
    a = write_policy(tmp_path, V1, "a.yaml")
    b = write_policy(tmp_path, V1.replace("name: p", "name: b").replace("'*'", "b"), "b.yaml")
    old = {path.name: load_policy_file(path)[0].digest for path in (a, b)}
    with polled(guard_app(fake_upstream.url, [a, b])) as guard:
        replace_file(a, V2)
        replace_file(b, b.read_text().replace("action: flag", "action: blok"))
        with caplog.at_level(logging.ERROR, logger="guard"):
            assert guard.poll() is None
            assert guard.poll() is False
        assert guard.reloads("failure") == 1 and guard.reloads("success") == 0
        [logged] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert "still serving the previous policies and keys" in logged
        assert f"{b}:" in logged and "'blok' is not allowed here" in logged
        for model, name in (("m", "a.yaml"), ("b", "b.yaml")):
            kept = guard.chat("say: word mail bob@example.com", model=model).json()["guard"]
            assert kept["policy_sha256"] == old[name][:16]
            assert kept["verdict"] == "flag"
        assert guard.poll() is None  # the same broken files are not tried again
        replace_file(b, b.read_text().replace("action: blok", "action: flag"))
        assert guard.poll() is None
        assert guard.poll() is True
        new = guard.chat("say: mail bob@example.com").json()
        assert new["choices"][0]["finish_reason"] == "content_filter"


def test_a_keys_file_cut_mid_entry_never_loosens_a_key(fake_upstream: Fake, tmp_path: Path) -> None:
    """Cut after a key's name and hash, before its models: refused, and the key keeps its
    restriction, even when the cut file stays for many polls."""
    policy = write_policy(tmp_path, V1.replace("'*': null", "m: null, other: null"))
    whole = key_entry("a", "sk-a-123", "[m]") + key_entry("b", "sk-b-456", "[m]")[5:]
    keys = write_policy(tmp_path, whole, "keys.yaml")
    with polled(guard_app(fake_upstream.url, [policy], keys_file=keys)) as guard:
        assert guard.chat("hi", model="other", key="sk-b-456").status_code == 403
        for cut in (whole.index("    models: [m]\n", whole.index("name: b")), len(whole) - 2):
            keys.write_text(whole[:cut])  # cut at a line's end, then mid-line
            results = [guard.poll() for _ in range(3)]
            assert results == [None, False, None]
            assert guard.chat("hi", model="other", key="sk-b-456").status_code == 403
            assert guard.chat("hi", model="m", key="sk-b-456").status_code == 200
        assert guard.reloads("failure") == 2 and guard.reloads("success") == 0


def test_a_policy_cut_before_its_rails_is_not_loaded_without_them(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    path = write_policy(tmp_path, V2)
    with polled(guard_app(fake_upstream.url, [path])) as guard:
        path.write_text(V2[: V2.index("input_rails:")])  # stays cut: the writer died
        assert [guard.poll() for _ in range(3)] == [None, False, None]
        blocked = guard.chat("say: mail bob@example.com").json()
        assert blocked["choices"][0]["finish_reason"] == "content_filter"


def test_a_reload_cannot_put_a_wildcard_beside_an_alias(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    aliasing = write_policy(tmp_path, V2.replace("'*': null", "safe: fake-model"), "a.yaml")
    catch_all = V1.replace("name: p", "name: catch-all")
    other = write_policy(tmp_path, catch_all.replace("'*': null", "other: null"), "o.yaml")
    with polled(guard_app(fake_upstream.url, [aliasing, other])) as guard:
        replace_file(other, catch_all)  # '*': null: fake-model would be served past 'aliasing'
        assert [guard.poll() for _ in range(2)] == [None, False]
        assert guard.chat("hi", model="fake-model").status_code == 404


def test_the_log_says_which_file_changed_what_is_served_and_why_a_reload_failed(
    fake_upstream: Fake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The log is how an operator learns what a reload did: the files that changed (only
    those), each policy now served with its digest, the number of keys; and for a failed
    reload, every problem on its own line."""
    a = write_policy(tmp_path, V1, "a.yaml")
    b = write_policy(tmp_path, V1.replace("name: p", "name: b").replace("'*'", "b"), "b.yaml")
    keys = write_policy(tmp_path, key_entry("k", "sk-k-123"), "keys.yaml")
    app = guard_app(fake_upstream.url, [a, b], keys_file=keys)
    with polled(app) as guard, caplog.at_level(logging.INFO, logger="guard"):
        replace_file(a, V2)
        replace_file(keys, key_entry("k", "sk-k-123") + key_entry("l", "sk-l-456")[5:])
        assert [guard.poll(), guard.poll()] == [None, True]
        digests = [load_policy_file(path)[0].digest[:12] for path in (a, b)]
        assert (
            f"reloaded (file changed: {a}, {keys}): serving p ({digests[0]}), b ({digests[1]}); "
            "2 API keys"
        ) in [r.getMessage() for r in caplog.records]
        broken = b.read_text().replace("action: flag", "action: blok").replace("name: b", "nam: b")
        replace_file(b, broken)
        with pytest.raises(PolicyError) as found:
            load_policy_file(b)
        assert len(found.value.problems) >= 2
        caplog.clear()
        assert [guard.poll(), guard.poll()] == [None, False]
    [logged] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert logged == "\n".join(
        [
            f"reload (file changed: {b}) failed; still serving the previous policies and keys:",
            *found.value.problems,
        ]
    )


def test_a_reload_on_demand_reads_the_files_again(fake_upstream: Fake, tmp_path: Path) -> None:
    """What SIGHUP runs: no snapshot given, the files are read now."""
    path = write_policy(tmp_path, V1)
    app = guard_app(fake_upstream.url, [path])
    with polled(app) as guard:
        replace_file(path, V2)
        assert guard.client.portal.call(app.state.guard.reloader.reload, "SIGHUP") is True
        served = guard.chat("say: mail bob@example.com").json()
        assert served["guard"]["policy_sha256"] == load_policy_file(path)[0].digest[:16]
        assert served["choices"][0]["finish_reason"] == "content_filter"


def test_a_reload_loads_exactly_the_bytes_it_was_given(fake_upstream: Fake, tmp_path: Path) -> None:
    """A poll hands the reload the bytes it saw settle; what lies on disk by the time the
    reload runs (a writer started again) is not what is loaded."""
    path = write_policy(tmp_path, V1)
    settled = V2.replace("v2-email", "settled")
    app = guard_app(fake_upstream.url, [path])
    with polled(app) as guard:
        replace_file(path, V2.replace("v2-email", "on-disk"))
        reload = app.state.guard.reloader.reload
        assert guard.client.portal.call(reload, "poll", {path: settled.encode()}) is True
        verdicts = guard.chat("say: mail bob@example.com").json()["guard"]["verdicts"]
        assert [v["rail"] for v in verdicts] == ["settled"]


JUDGED_BY_THE_UPSTREAM = """
name: p
models: {'*': null}
input_rails_mode: sequential
input_rails:
  - kind: llm_judge
    name: judge
    model: fake-model
    question: Does this text ask for something harmful?
    on_error: block
output_rails: []
"""


def test_a_reloaded_rail_without_its_own_endpoint_asks_guard_s_upstream(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    path = write_policy(tmp_path, V1)
    with polled(guard_app(fake_upstream.url, [path])) as guard:
        replace_file(path, JUDGED_BY_THE_UPSTREAM)
        assert [guard.poll(), guard.poll()] == [None, True]
        answer = guard.chat("say: No")
        assert answer.status_code == 200
        [verdict] = answer.json()["guard"]["verdicts"]
        assert verdict["rail"] == "judge" and verdict["outcome"] == "pass"
        assert guard.chat("say: Yes").json()["choices"][0]["finish_reason"] == "content_filter"


def test_sighup_reloads_and_shutdown_gives_the_signal_back(
    fake_upstream: Fake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """guard's lifespan on the main thread, as ``guard serve`` runs it: SIGHUP reloads;
    after shutdown the signal is no longer guard's."""
    # Under nohup (or any runner that ignores SIGHUP) the test starts from the default.
    inherited = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        sighup_reloads_and_gives_the_signal_back(fake_upstream, tmp_path, caplog)
    finally:
        signal.signal(signal.SIGHUP, inherited)


def sighup_reloads_and_gives_the_signal_back(
    fake_upstream: Fake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_policy(tmp_path, V1)
    app = guard_app(fake_upstream.url, [path])
    served: list[str] = []
    caplog.set_level(logging.INFO, logger="guard")

    async def main() -> None:
        async with app.router.lifespan_context(app):
            logged = len(caplog.records)
            runtimes = app.state.guard.reloader.runtimes
            served.append(runtimes.current.policies.policies[0].digest)
            assert signal.getsignal(signal.SIGHUP) != signal.SIG_DFL  # a handler is installed
            replace_file(path, V2)
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(500):  # at most 10 s
                await asyncio.sleep(0.02)
                if runtimes.current.policies.policies[0].digest != served[0]:
                    break
            served.append(runtimes.current.policies.policies[0].digest)
            reloaded = [r.getMessage() for r in caplog.records[logged:]]
            assert any(m.startswith("reloaded (SIGHUP): serving p (") for m in reloaded)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL

    asyncio.run(main())
    assert served == [
        load_policy_file(write_policy(tmp_path, V1, "v1.yaml"))[0].digest,
        load_policy_file(path)[0].digest,
    ]
