"""API keys: 401, 403, 429, routing by key, /v1/models per key, keys from env, /metrics auth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from guard.cli.main import main
from guard.errors import PolicyError, RateLimited
from guard.ops.keys import ApiKey, KeyRing, RateLimit, hash_key, load_keys
from guard.ops.limits import RateLimiter
from guard.policy.routing import PolicySet
from tests.conftest import Fake, guard_app, write_policy
from tests.scrape import metric
from tests.servers import serve_in_thread

CHAT = "/v1/chat/completions"
SECRET = "sk-abcdefghijklmnopqrstuvwxyz0123"
KEYS = {name: f"sk-test-{name}-0123456789" for name in ("tenant-a", "tenant-b", "slow", "lean")}

OPEN = (
    "name: open\nmodels: {fake-model: null, other-model: fake-model}\n"
    "input_rails: []\noutput_rails: []\n"
)
STRICT = """
name: strict
keys_only: true
models: {fake-model: null}
input_rails_mode: sequential
input_rails:
  - kind: regex
    name: secrets
    presets: [secrets]
    action: block
output_rails: []
"""


def keys_yaml() -> str:
    return f"""
keys:
  - name: tenant-a
    sha256: {hash_key(KEYS["tenant-a"])}
    models: "*"
    policy: strict
  - name: tenant-b
    sha256: {hash_key(KEYS["tenant-b"])}
    models: [fake-model]
    metrics: true
  - name: slow
    sha256: {hash_key(KEYS["slow"])}
    models: "*"
    rate_limit: {{requests_per_minute: 2}}
  - name: lean
    sha256: {hash_key(KEYS["lean"])}
    models: "*"
    rate_limit: {{tokens_per_minute: 5}}
"""


@pytest.fixture
def keyed(fake_upstream: Fake, tmp_path: Path) -> Iterator[str]:
    policies = [write_policy(tmp_path, OPEN, "open.yaml"), write_policy(tmp_path, STRICT, "s.yaml")]
    keys = write_policy(tmp_path, keys_yaml(), "keys.yaml")
    with serve_in_thread(guard_app(fake_upstream.url, policies, keys_file=keys)) as url:
        yield url


def chat(
    url: str, key: str | None, text: str = "say: hi", model: str = "fake-model"
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{url}{CHAT}", json=body, headers=headers, timeout=30)


def test_moderation_uses_the_keys_own_policy(keyed: str) -> None:
    def moderate(key: str) -> httpx.Response:
        body = {"input": f"my key is {SECRET}", "model": "fake-model"}
        headers = {"authorization": f"Bearer {key}"}
        return httpx.post(f"{keyed}/v1/moderations", json=body, headers=headers, timeout=30)

    pinned, routed = moderate(KEYS["tenant-a"]), moderate(KEYS["tenant-b"])
    assert pinned.status_code == 200 and pinned.headers["x-guard-policy"] == "strict"
    assert pinned.json()["results"][0]["flagged"] is True
    # tenant-b's model routes to the policy 'open', which has no input rails to moderate with.
    assert routed.status_code == 400 and "no input rails" in routed.json()["error"]["message"]


def test_missing_or_wrong_key_gets_401_shaped_like_openai(keyed: str) -> None:
    for response in (chat(keyed, None), chat(keyed, "sk-wrong"), chat(keyed, "Basic")):
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
        assert "sk-wrong" not in response.text
    assert chat(keyed, KEYS["tenant-b"]).status_code == 200
    assert metric(keyed, "guard_rejections_total", reason="unauthorized") == 3
    assert httpx.get(f"{keyed}/health").status_code == 200
    assert httpx.get(f"{keyed}/metrics").status_code == 200


def test_a_model_the_key_may_not_use_gets_403(keyed: str) -> None:
    response = chat(keyed, KEYS["tenant-b"], model="other-model")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"
    assert response.json()["error"]["param"] == "model"
    assert chat(keyed, KEYS["slow"], model="other-model").status_code == 200


def test_the_same_model_gets_each_keys_policy(keyed: str) -> None:
    strict = chat(keyed, KEYS["tenant-a"], f"say: {SECRET}")
    lenient = chat(keyed, KEYS["tenant-b"], f"say: {SECRET}")
    assert strict.headers["x-guard-policy"] == "strict"
    assert strict.json()["choices"][0]["finish_reason"] == "content_filter"
    assert lenient.headers["x-guard-policy"] == "open"
    assert lenient.json()["choices"][0]["message"]["content"] == SECRET
    # The key's own policy serves only its own model names.
    assert chat(keyed, KEYS["tenant-a"], model="other-model").status_code == 404
    # Without a key, a keys_only policy is never reached (and here, no key is refused).
    assert chat(keyed, None).status_code == 401


def test_a_restricted_key_learns_no_other_model_name(fake_upstream: Fake, tmp_path: Path) -> None:
    """403 for every name outside a key's list, served or not; a 404 (a name in its list
    that nothing serves) lists only what the key may use."""
    hidden = "name: hidden\nmodels: {hidden-model: fake-model}\ninput_rails: []\noutput_rails: []\n"
    policies = [write_policy(tmp_path, OPEN, "open.yaml"), write_policy(tmp_path, hidden, "h.yaml")]
    keys = write_policy(
        tmp_path,
        f"""keys:
  - name: narrow
    sha256: {hash_key("sk-narrow-0123456789")}
    models: [fake-model, retired-model]
  - name: open-only
    sha256: {hash_key("sk-open-only-0123456789")}
    models: "*"
    policies: [open]
""",
        "keys.yaml",
    )
    with serve_in_thread(guard_app(fake_upstream.url, policies, keys_file=keys)) as url:
        served = chat(url, "sk-narrow-0123456789", model="hidden-model")
        unknown = chat(url, "sk-narrow-0123456789", model="no-such-model")
        retired = chat(url, "sk-narrow-0123456789", model="retired-model")
        open_only = chat(url, "sk-open-only-0123456789", model="no-such-model")
    assert served.status_code == unknown.status_code == 403
    assert served.json()["error"]["code"] == unknown.json()["error"]["code"] == "model_not_allowed"
    assert retired.status_code == 404
    assert retired.json()["error"]["message"].endswith("Models served here: fake-model.")
    assert open_only.status_code == 404
    message = open_only.json()["error"]["message"]
    assert "fake-model, other-model." in message and "hidden-model" not in message


def test_a_key_must_say_which_models_it_may_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An entry cut short before its ``models`` is refused, never read as 'any model'."""
    policies = PolicySet.from_files([write_policy(tmp_path, OPEN)])
    cut = write_policy(
        tmp_path,
        f"keys:\n  - name: a\n    sha256: {hash_key('a')}\n    models: '*'\n"
        f"  - name: b\n    sha256: {hash_key('b')}\n",
        "keys.yaml",
    )
    with pytest.raises(PolicyError) as caught:
        load_keys(cut, None, policies)
    [problem] = caught.value.problems
    assert problem.startswith(f"{cut}:5: keys[1]: the required key 'models' is missing: ")
    assert "'*' for any" in problem
    assert main(["check", str(tmp_path / "policy.yaml"), "--keys", str(cut)]) == 1
    assert "the required key 'models' is missing" in capsys.readouterr().err
    # A list, [] for none, or "*": nothing else reads as a choice of models.
    for given in ("[]", "[fake-model]", "'*'", "['*']"):
        text = f"keys:\n  - name: a\n    sha256: {hash_key('a')}\n    models: {given}\n"
        load_keys(write_policy(tmp_path, text, "k.yaml"), None, policies)
    for wrong in ("any", "null", "''"):
        text = f"keys:\n  - name: a\n    sha256: {hash_key('a')}\n    models: {wrong}\n"
        with pytest.raises(PolicyError, match=r"keys\[0\]\.models"):
            load_keys(write_policy(tmp_path, text, "k.yaml"), None, policies)


def test_a_keys_file_without_its_final_newline_is_refused(tmp_path: Path) -> None:
    """A file whose last line has no newline may be cut mid-line: refused, even when
    what is left parses (here, the second key's name cut from 'b-long' to 'b')."""
    policies = PolicySet.from_files([write_policy(tmp_path, OPEN)])
    whole = (
        f"keys:\n  - name: a\n    sha256: {hash_key('a')}\n    models: [fake-model]\n"
        f"  - name: b-long\n    sha256: {hash_key('b')}\n    models: []\n"
    )
    assert len(load_keys(write_policy(tmp_path, whole, "k.yaml"), None, policies).names) == 2
    cut = write_policy(tmp_path, whole[: whole.index("b-long") + 1], "cut.yaml")
    with pytest.raises(PolicyError, match="does not end with a newline"):
        load_keys(cut, None, policies)


def test_models_are_listed_per_key(keyed: str) -> None:
    def listed(key: str) -> set[str]:
        response = httpx.get(f"{keyed}/v1/models", headers={"authorization": f"Bearer {key}"})
        return {m["id"] for m in response.json()["data"]}

    assert listed(KEYS["tenant-b"]) == {"fake-model"}
    assert listed(KEYS["slow"]) == {"fake-model", "other-model"}
    assert listed(KEYS["tenant-a"]) == {"fake-model"}
    assert httpx.get(f"{keyed}/v1/models").status_code == 401


def test_requests_per_minute_limit_answers_429_with_retry_after(keyed: str) -> None:
    statuses = [chat(keyed, KEYS["slow"]) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    limited = statuses[-1]
    assert 1 <= int(limited.headers["retry-after"]) <= 30
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert limited.json()["error"]["type"] == "requests"
    assert chat(keyed, KEYS["tenant-b"]).status_code == 200  # other keys are not affected
    assert metric(keyed, "guard_rejections_total", reason="rate_limit_requests", key="slow") == 1


def test_tokens_per_minute_limit_charges_the_reported_usage(keyed: str) -> None:
    first = chat(keyed, KEYS["lean"])
    assert first.status_code == 200 and first.json()["usage"]["total_tokens"] > 5
    second = chat(keyed, KEYS["lean"])
    assert second.status_code == 429
    assert second.json()["error"]["type"] == "tokens"
    assert int(second.headers["retry-after"]) >= 1


def test_streams_are_charged_too_without_showing_usage_unasked(keyed: str) -> None:
    body = {
        "model": "fake-model",
        "stream": True,
        "messages": [{"role": "user", "content": "say: one two"}],
    }
    headers = {"authorization": f"Bearer {KEYS['lean']}"}
    with httpx.stream("POST", f"{keyed}{CHAT}", json=body, headers=headers) as response:
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert not any('"usage"' in event for event in events)
    assert chat(keyed, KEYS["lean"]).status_code == 429


def test_rate_limit_buckets_refill_over_time() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limit = RateLimit(requests_per_minute=60)
    key = ApiKey(name="k", sha256=hash_key("x"), models="*", rate_limit=limit)
    for _ in range(60):
        limiter.admit(key)
    with pytest.raises(RateLimited) as caught:
        limiter.admit(key)
    assert caught.value.retry_after == 1
    now[0] = 1.0  # one second refills one request
    limiter.admit(key)


def test_keys_from_the_environment(fake_upstream: Fake, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, OPEN)
    env = f"ci:{hash_key('sk-ci-1')}, ops:{hash_key('sk-ops-2')}"
    with serve_in_thread(guard_app(fake_upstream.url, [policy], api_keys=env)) as url:
        assert chat(url, "sk-ops-2").status_code == 200
        assert chat(url, "sk-nope").status_code == 401
        # Env keys have no entry to restrict them in: every model, by construction.
        assert chat(url, "sk-ci-1", model="other-model").status_code == 200
        listed = httpx.get(f"{url}/v1/models", headers={"authorization": "Bearer sk-ci-1"})
        assert {m["id"] for m in listed.json()["data"]} == {"fake-model", "other-model"}


def test_metrics_can_require_a_metrics_key(fake_upstream: Fake, tmp_path: Path) -> None:
    policies = [write_policy(tmp_path, OPEN, "open.yaml"), write_policy(tmp_path, STRICT, "s.yaml")]
    keys = write_policy(tmp_path, keys_yaml(), "keys.yaml")
    app = guard_app(fake_upstream.url, policies, keys_file=keys, metrics_auth=True)
    with serve_in_thread(app) as url:
        assert httpx.get(f"{url}/metrics").status_code == 401
        denied = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {KEYS['slow']}"})
        assert denied.status_code == 403
        allowed = {"authorization": f"Bearer {KEYS['tenant-b']}"}
        assert metric(url, "guard_requests_in_flight", headers=allowed) == 0


def test_keys_file_mistakes_are_explained(tmp_path: Path) -> None:
    policies = PolicySet.from_files([write_policy(tmp_path, OPEN)])
    bad = write_policy(tmp_path, "keys:\n  - nmae: a\n    sha256: abc\n", "keys.yaml")
    with pytest.raises(PolicyError) as caught:
        load_keys(bad, None, policies)
    text = "\n".join(caught.value.problems)
    assert f"{bad}:2: keys[0]: the required key 'name' is missing" in text
    assert f"{bad}:2: keys[0].nmae: unknown key 'nmae'" in text
    assert f"{bad}:3: keys[0].sha256:" in text
    typo = f"keys:\n  - name: a\n    sha256: {hash_key('a')}\n    models: '*'\n    polcy: open\n"
    with pytest.raises(PolicyError) as caught:
        load_keys(write_policy(tmp_path, typo, "typo.yaml"), None, policies)
    assert "unknown key 'polcy'. Did you mean 'policy'?" in caught.value.problems[0]
    unknown = (
        f"keys:\n  - name: a\n    sha256: {hash_key('a')}\n    models: '*'\n    policy: nope\n"
    )
    with pytest.raises(PolicyError, match="names policy 'nope', which is not loaded"):
        load_keys(write_policy(tmp_path, unknown, "k2.yaml"), None, policies)
    with pytest.raises(PolicyError, match="GUARD_API_KEYS entry 1"):
        load_keys(None, "no-hash-here", policies)
    assert not KeyRing({}).enabled


def test_check_command_checks_a_keys_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policies = [write_policy(tmp_path, OPEN, "open.yaml"), write_policy(tmp_path, STRICT, "s.yaml")]
    keys = write_policy(tmp_path, keys_yaml(), "keys.yaml")
    assert main(["check", *map(str, policies), "--keys", str(keys)]) == 0
    assert f"ok: {keys} (4 keys)" in capsys.readouterr().out
    # Without the policy 'strict', tenant-a's pinned policy is unknown.
    assert main(["check", str(policies[0]), "--keys", str(keys)]) == 1
    assert "key 'tenant-a' names policy 'strict', which is not loaded" in capsys.readouterr().err


def test_hash_key_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hash-key", "sk-123"]) == 0
    assert capsys.readouterr().out.strip() == hash_key("sk-123")
    assert main(["hash-key", "--new"]) == 0
    key_line, hash_line = capsys.readouterr().out.splitlines()
    assert hash_line.split()[-1] == hash_key(key_line.split()[-1])


def test_the_example_keys_file_loads_with_the_shipped_policies() -> None:
    root = Path(__file__).resolve().parents[2]
    policies = PolicySet.from_files(sorted((root / "policies").glob("*.yaml")))
    ring = load_keys(root / "docker" / "keys.example.yaml", None, policies)
    assert set(ring.names) == {"tenant-a", "tenant-b", "ci", "prometheus"}
    for name in ring.names:  # the comments tell the truth about the example keys
        assert ring.find(f"sk-example-{name}") is not None
