"""/metrics after real requests, the audit log (lines, text opt-in, rotation, failures,
``guard audit``), and shadow policies."""

from __future__ import annotations

import gc
import json
import logging
import logging.config
import time
import warnings
from pathlib import Path

import httpx
import orjson
import pytest

from guard.cli.main import main
from guard.logs import log_config
from guard.policy.load import load_policy_file
from tests.conftest import Fake, guard_app, write_policy
from tests.scrape import metric
from tests.servers import serve_in_thread

CHAT = "/v1/chat/completions"
SECRET = "sk-abcdefghijklmnopqrstuvwxyz0123"

RAILED = """
name: railed
models: {fake-model: null, crash: null, slow: null}
input_rails_mode: sequential
input_rails:
  - kind: regex
    name: secrets
    presets: [secrets]
    action: block
output_rails:
  - kind: regex
    name: email
    presets: [email]
    action: flag
"""

SHADOWED = """
name: lenient
models: {'*': null}
input_rails: []
output_rails: []
shadow: candidate
"""

CANDIDATE = """
name: candidate
keys_only: true
models: {'*': null}
input_rails:
  - kind: regex
    name: secrets
    presets: [secrets]
    action: block
output_rails:
  - kind: regex
    name: email
    presets: [email]
    action: redact
"""


def chat(url: str, text: str, model: str = "fake-model", **extra: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{url}{CHAT}", json=body, timeout=30)


def stream(url: str, text: str) -> list[str]:
    body = {"model": "fake-model", "stream": True, "messages": [{"role": "user", "content": text}]}
    with httpx.stream("POST", f"{url}{CHAT}", json=body, timeout=30) as response:
        return [line for line in response.iter_lines() if line]


def audit_lines(path: Path, count: int) -> list[dict]:
    """The audit lines, once there are ``count`` (bounded wait: shadows write late)."""
    deadline = time.monotonic() + 10
    while True:
        text = path.read_text() if path.exists() else ""
        lines = [json.loads(line) for line in text.splitlines()]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_metrics_count_requests_stages_verdicts_and_errors(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, RAILED)
    with serve_in_thread(guard_app(fake_upstream.url, [policy])) as url:
        assert chat(url, "say: write to bob@example.com").status_code == 200
        assert chat(url, f"my key {SECRET}").json()["guard"]["verdict"] == "block"
        assert stream(url, "say: a streamed answer")[-1] == "data: [DONE]"
        assert chat(url, "hi", model="nope").status_code == 404
        assert chat(url, "hi", model="crash").status_code == 502
        assert chat(url, "hi", model="slow").status_code == 504

        def value(name: str, **labels: str) -> float:
            return metric(url, name, **labels)

        ok = {"policy": "railed", "model": "fake-model", "status": "200", "key": "-"}
        assert value("guard_requests_total", **ok) == 3
        assert value("guard_requests_total", policy="-", status="404") == 1
        assert value("guard_requests_total", model="crash", status="502") == 1
        assert value("guard_stage_duration_seconds_count", stage="input_rails") == 5
        assert value("guard_stage_duration_seconds_count", stage="generation") == 4
        assert value("guard_stage_duration_seconds_count", stage="output_rails") == 2
        assert value("guard_stage_duration_seconds_count", stage="reward") == 0
        assert value("guard_request_duration_seconds_count", stream="true") == 1
        verdicts = {"policy": "railed", "mode": "active"}
        assert value("guard_rail_verdicts_total", rail="secrets", outcome="block", **verdicts) == 1
        assert value("guard_rail_verdicts_total", rail="secrets", outcome="pass", **verdicts) == 4
        assert value("guard_rail_verdicts_total", rail="email", outcome="flag", **verdicts) == 1
        assert value("guard_upstream_errors_total", reason="http_5xx") == 1
        assert value("guard_upstream_errors_total", reason="timeout") == 1
        assert value("guard_tokens_total", policy="railed", kind="completion") == 3 + 3
        assert value("guard_requests_in_flight") == 0
        assert value("guard_candidates_generated_total", policy="railed") == 0
        digest = load_policy_file(policy)[0].digest
        assert value("guard_policy_info", policy="railed", sha256=digest) == 1
        assert value("guard_audit_write_failures_total") == 0


def test_audit_line_per_request_without_text_by_default(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, RAILED)
    log = tmp_path / "audit.log"
    with serve_in_thread(guard_app(fake_upstream.url, [policy], audit_log=log)) as url:
        passed = chat(url, "say: write to bob@example.com")
        blocked = chat(url, f"say: {SECRET}")
        stream(url, "say: streamed words")
        chat(url, "hi", model="nope")
    lines = audit_lines(log, 4)
    assert [line["status"] for line in lines] == [200, 200, 200, 404]
    first, second, third, fourth = lines
    assert first["request_id"] == passed.headers["x-request-id"]
    assert first["policy"] == "railed" and first["key"] is None
    assert first["policy_sha256"] == load_policy_file(policy)[0].digest
    assert first["verdict"] == "flag"
    assert {(v["rail"], v["outcome"]) for v in first["verdicts"]} == {
        ("secrets", "pass"),
        ("email", "flag"),
    }
    assert first["usage"]["completion_tokens"] == 3
    assert set(first["latency_ms"]) == {"total", "input_rails", "generation", "output_rails"}
    assert second["request_id"] == blocked.headers["x-request-id"]
    assert second["verdict"] == "block" and "generation" not in second["latency_ms"]
    assert third["stream"] is True and third["usage"]["completion_tokens"] == 2
    assert fourth["error"] == {"type": "invalid_request_error", "code": "model_not_found"}
    text = log.read_text()
    assert SECRET not in text and "bob@example.com" not in text and "prompt" not in first


def test_audit_text_when_the_policy_opts_in(fake_upstream: Fake, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, RAILED + "audit: {include_text: true}\n")
    log = tmp_path / "audit.log"
    with serve_in_thread(guard_app(fake_upstream.url, [policy], audit_log=log)) as url:
        chat(url, "say: write to bob@example.com")
        stream(url, "say: streamed words")
    plain, streamed = audit_lines(log, 2)
    assert plain["prompt"] == ["say: write to bob@example.com"]
    assert plain["answers"] == ["write to bob@example.com"]
    assert streamed["answers"] == ["streamed words"]


def test_audit_log_rotates(fake_upstream: Fake, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, RAILED)
    log = tmp_path / "audit.log"
    app = guard_app(
        fake_upstream.url, [policy], audit_log=log, audit_max_bytes=1500, audit_backup_count=2
    )
    with serve_in_thread(app) as url:
        for _ in range(12):
            assert chat(url, "say: hello").status_code == 200
    files = sorted(p.name for p in tmp_path.glob("audit.log*"))
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    for path in tmp_path.glob("audit.log*"):
        assert all(json.loads(line)["status"] == 200 for line in path.read_text().splitlines())


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_an_audit_write_failure_is_counted_and_never_fails_the_request(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, RAILED)
    app = guard_app(fake_upstream.url, [policy], audit_log=Path("/dev/full"))
    with serve_in_thread(app) as url:
        responses = [chat(url, "say: hello") for _ in range(3)]
        assert all(r.status_code == 200 for r in responses)
        assert metric(url, "guard_audit_write_failures_total") == 3
    # The lines still buffered for /dev/full fail again on close. Shutdown must neither
    # fail (serve_in_thread checks) nor stop before closing the upstream client: it once
    # did, and the aiohttp session leaked. Once the app is garbage, none may be unclosed.
    del app
    assert unclosed_clients() == []


def unclosed_clients() -> list[str]:
    """aiohttp's warnings for the sessions and connectors garbage-collected unclosed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    return [str(w.message) for w in caught if str(w.message).startswith("Unclosed")]


def test_guard_audit_summarises_a_log(
    fake_upstream: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path, RAILED)
    log = tmp_path / "audit.log"
    with serve_in_thread(guard_app(fake_upstream.url, [policy], audit_log=log)) as url:
        for text in ("say: fine", "say: fine too", f"say: {SECRET}", f"also {SECRET}"):
            chat(url, text)
    audit_lines(log, 4)
    assert main(["audit", str(log), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    railed = summary["policies"]["railed"]
    assert railed["requests"] == 4 and railed["block_rate"] == 0.5
    assert railed["latency_ms"]["input_rails"]["count"] == 4
    assert railed["latency_ms"]["generation"]["p99"] >= railed["latency_ms"]["generation"]["p50"]
    [secrets] = [r for r in summary["rails"] if r["rail"] == "secrets"]
    assert secrets["judged"] == 4 and secrets["block_rate"] == 0.5
    assert main(["audit", str(log)]) == 0
    assert "policy railed: 4 requests, 50.0% blocked" in capsys.readouterr().out


def test_a_shadow_policy_records_what_it_would_do_without_changing_the_answer(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    lenient = write_policy(tmp_path, SHADOWED, "lenient.yaml")
    candidate = write_policy(tmp_path, CANDIDATE, "candidate.yaml")
    plain_policy = write_policy(tmp_path, SHADOWED.replace("shadow: candidate\n", ""), "p.yaml")
    log = tmp_path / "audit.log"
    text = f"say: {SECRET} and bob@example.com"
    with serve_in_thread(guard_app(fake_upstream.url, [plain_policy])) as url:
        unshadowed = chat(url, text, seed=1).json()
    app = guard_app(fake_upstream.url, [lenient, candidate], audit_log=log)
    with serve_in_thread(app) as url:
        shadowed = chat(url, text, seed=1).json()
        streamed = stream(url, "say: mail bob@example.com")
        audit = audit_lines(log, 2)
        for _ in range(100):  # the metrics are counted with the audit line, maybe a moment later
            if metric(url, "guard_shadow_requests_total") == 2:
                break
            time.sleep(0.02)
        judged = metric(url, "guard_shadow_requests_total", policy="lenient", shadow="candidate")
        would_block = metric(
            url, "guard_shadow_requests_total", verdict="pass", shadow_verdict="block"
        )
        shadow_redacts = metric(
            url, "guard_rail_verdicts_total", mode="shadow", rail="email", outcome="redact"
        )
    for answer in (shadowed, unshadowed):
        answer.pop("created")
        answer["guard"].pop("policy_sha256")  # the two policy files differ by the shadow line
    assert shadowed == unshadowed  # same answer, and nothing about the shadow in it
    chunks = [orjson.loads(line.removeprefix("data: ")) for line in streamed[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == (
        "mail bob@example.com"
    )
    assert judged == 2 and would_block == 1 and shadow_redacts == 2
    plain, streamed_line = audit
    assert plain["verdict"] == "pass" and plain["shadow"]["policy"] == "candidate"
    assert plain["shadow"]["verdict"] == "block"
    assert plain["shadow"]["policy_sha256"] == load_policy_file(candidate)[0].digest
    assert streamed_line["shadow"]["verdict"] == "redact"
    stages = {(v["stage"], v["outcome"]) for v in streamed_line["shadow"]["verdicts"]}
    assert stages == {("input", "pass"), ("output", "redact")}
    assert orjson.dumps(audit).count(b"bob@example.com") == 0


def test_shutdown_cancels_shadow_work_still_running_and_leaks_nothing(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    slow_judge = """
name: candidate
keys_only: true
models: {'*': null}
input_rails: []
output_rails:
  - kind: llm_judge
    model: slow
    question: Is this unsafe?
    timeout_s: 60
"""
    lenient = write_policy(tmp_path, SHADOWED, "lenient.yaml")
    candidate = write_policy(tmp_path, slow_judge, "candidate.yaml")
    log = tmp_path / "audit.log"
    app = guard_app(fake_upstream.url, [lenient, candidate], audit_log=log, shutdown_timeout_s=0.2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with serve_in_thread(app) as url:
            assert chat(url, "hello", seed=1).status_code == 200
        del app
        gc.collect()
    leaks = [str(w.message) for w in caught if "Unclosed" in str(w.message)]
    assert leaks == []
    # The judge waits 5 s upstream; shutdown gave it 0.2 s, then cancelled it.
    [line] = [json.loads(text) for text in log.read_text().splitlines()]
    assert line["verdict"] == "pass"
    assert line["shadow"] == {"policy": "candidate", "error": "cancelled: guard shut down"}


def test_best_of_n_candidates_are_counted_and_audited(
    fake_upstream: Fake, tmp_path: Path, tiny_reward: Path
) -> None:
    reward = f"{{kind: hf_reward, model: {tiny_reward}}}"
    text = (
        f"name: bon\nmodels: {{'*': null}}\ninput_rails: []\noutput_rails: []\n"
        f"best_of_n:\n  n: 4\n  reward: {reward}\n"
    )
    log = tmp_path / "audit.log"
    app = guard_app(fake_upstream.url, [write_policy(tmp_path, text)], audit_log=log)
    with serve_in_thread(app) as url:
        assert chat(url, "say: one answer").status_code == 200
        generated = metric(url, "guard_candidates_generated_total", policy="bon")
        scored = metric(url, "guard_candidates_scored_total", policy="bon")
    assert generated == 4 and scored == 4
    [line] = audit_lines(log, 1)
    assert line["best_of_n"]["n"] == 4 and len(line["best_of_n"]["scores"]) == 4


CRITIQUED = """
name: critiqued
models: {'*': null}
input_rails: []
output_rails:
  - {kind: regex, name: pii, presets: [email], action: flag}
constitutional:
  principles:
    - name: kind
      critique: Is it kind?
      revision: Make it kind.
  trigger: always
"""


def test_critique_tokens_are_charged_to_the_key(fake_upstream: Fake, tmp_path: Path) -> None:
    from guard.ops.keys import hash_key

    policy = write_policy(tmp_path, CRITIQUED, "critiqued.yaml")
    body = {"model": "m", "messages": [{"role": "user", "content": "say: hello there"}]}
    with serve_in_thread(guard_app(fake_upstream.url, [policy])) as url:
        first = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).json()
        critique_tokens = metric(url, "guard_tokens_total", kind="completion_critique")
    answer = first["usage"]["total_tokens"]
    extra = sum(first["guard"]["constitutional"]["extra_usage"].values())
    assert extra > 0 and critique_tokens > 0
    # A budget the answer alone leaves room in, the critiques do not: the second request
    # is refused only because the critiques were charged.
    budget = answer + extra // 2
    keys = write_policy(
        tmp_path,
        f"keys:\n  - name: k\n    sha256: {hash_key('sk-k-0123456789abcdef')}\n"
        f"    models: ['*']\n    rate_limit: {{tokens_per_minute: {budget}}}\n",
        "keys.yaml",
    )
    headers = {"authorization": "Bearer sk-k-0123456789abcdef"}
    with serve_in_thread(guard_app(fake_upstream.url, [policy], keys_file=keys)) as url:
        assert (
            httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers).status_code == 200
        )
        second = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers)
    assert second.status_code == 429 and second.json()["error"]["type"] == "tokens"


FORGED_MODEL = "fake-model\n2026-01-01 00:00:00,000 INFO guard.access [x] /v1/chat/completions"


def guard_formatter(log_format: str) -> logging.Formatter:
    """The formatter ``guard serve`` gives its log handler."""
    config = log_config(log_format, "info")
    return logging.config.DictConfigurator(config).configure_formatter(
        config["formatters"]["guard"]
    )


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_access_line_cannot_be_forged_by_a_model_name(
    fake_upstream: Fake,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    log_format: str,
) -> None:
    policy = write_policy(
        tmp_path, "name: open\nmodels: {'*': null}\ninput_rails: []\noutput_rails: []\n"
    )
    hi = [{"role": "user", "content": "hi"}]
    body = {"model": FORGED_MODEL + "\x1b[2J\u202e", "messages": hi}
    app = guard_app(fake_upstream.url, [policy])
    with caplog.at_level(logging.INFO, logger="guard.access"), serve_in_thread(app) as url:
        response = httpx.post(f"{url}/v1/chat%0a/completions", json=body)  # a 404
        httpx.post(f"{url}{CHAT}", json=body)
    assert response.status_code == 404
    records = [r for r in caplog.records if r.name == "guard.access"]
    assert len(records) == 2
    assert records[0].getMessage().startswith('"/v1/chat\\n/completions" - -> 404')
    assert records[1].getMessage().startswith(f'{CHAT} "fake-model\\n2026-01-01')
    # As guard's log handler writes them, in either format: one line each.
    formatter = guard_formatter(log_format)
    for record in records:
        record.request_id = "r-1"
        line = formatter.format(record)
        assert "\n" not in line and "\x1b" not in line and "\u202e" not in line, line
    line = formatter.format(records[1])
    message = json.loads(line)["message"] if log_format == "json" else line
    assert '"fake-model\\n2026-01-01 00:00:00,000 INFO' in message


def test_a_shadow_rail_with_parts_judges_only_those_parts(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    scoped = CANDIDATE.replace("    action: block\n", "    action: block\n    parts: [tool]\n")
    lenient = write_policy(tmp_path, SHADOWED, "lenient.yaml")
    write_policy(tmp_path, scoped, "candidate.yaml")
    log = tmp_path / "audit.log"
    tool_turn = [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": f"found {SECRET}"},
    ]  # fmt: skip
    app = guard_app(fake_upstream.url, [lenient, tmp_path / "candidate.yaml"], audit_log=log)
    with serve_in_thread(app) as url:
        assert chat(url, f"my key {SECRET}").status_code == 200
        body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}, *tool_turn]}
        assert httpx.post(f"{url}{CHAT}", json=body, timeout=30).status_code == 200
        in_user, in_tool = audit_lines(log, 2)
    assert in_user["shadow"]["verdict"] == "pass"
    assert [v["part"] for v in in_user["shadow"]["verdicts"] if v["stage"] == "input"] == []
    assert in_tool["shadow"]["verdict"] == "block"
    inputs = [v for v in in_tool["shadow"]["verdicts"] if v["stage"] == "input"]
    assert [(v["part"], v["outcome"]) for v in inputs] == [("messages[2]", "block")]
