"""Routing by model name cannot be steered around a policy: a ``"*": null`` policy
never serves, by its upstream name, a model that another policy serves only under an
alias, unless it says ``raw_names: true``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from guard.cli.main import main
from guard.errors import ModelNotFound, PolicyError
from guard.policy.routing import PolicySet
from tests.conftest import Fake, guard_app, write_policy
from tests.servers import serve_in_thread

ALIASING = """
name: aliasing
models: {demo: fake-model}
input_rails:
  - kind: regex
    name: secrets
    presets: [secrets]
output_rails: []
"""
CATCH_ALL = "name: catch-all\nmodels: {'*': null}\ninput_rails: []\noutput_rails: []\n"
SECRET = "sk-abcdefghijklmnopqrstuvwxyz0123"


def files(tmp_path: Path, aliasing: str = ALIASING, catch_all: str = CATCH_ALL) -> list[Path]:
    return [
        write_policy(tmp_path, aliasing, "aliasing.yaml"),
        write_policy(tmp_path, catch_all, "catch-all.yaml"),
    ]


def test_exact_name_beats_wildcard(tmp_path: Path) -> None:
    a = write_policy(
        tmp_path, "name: a\nmodels: {m: up-m, up-m: null}\ninput_rails: []\noutput_rails: []\n"
    )
    policies = PolicySet.from_files([a, *files(tmp_path)[1:]])
    assert policies.route("m").policy.policy.name == "a"
    assert policies.route("m").upstream_model == "up-m"
    assert policies.route("up-m").policy.policy.name == "a"
    assert policies.route("other").policy.policy.name == "catch-all"
    assert policies.route("other").upstream_model == "other"
    with pytest.raises(ModelNotFound, match=r"Models served here: m, up-m\.$"):
        PolicySet.from_files([a]).route("other")


def test_a_null_wildcard_beside_an_alias_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Policy A serves fake-model as 'demo' with rails; a '*': null policy would serve
    it to a client sending 'fake-model', without them."""
    paths = files(tmp_path)
    with pytest.raises(PolicyError) as caught:
        PolicySet.from_files(paths)
    [problem] = caught.value.problems
    assert "serves the upstream model 'fake-model' as 'demo'" in problem
    assert "a client sending 'fake-model' would get policy 'catch-all'" in problem
    assert "'raw_names: true'" in problem and "'fake-model: null'" in problem
    assert main(["check", *map(str, paths)]) == 1
    assert "cannot be served together" in capsys.readouterr().err
    assert main(["serve", *(f"--policy={p}" for p in paths), "--port", "0"]) == 2
    assert "guard cannot start" in capsys.readouterr().err


def test_either_fix_serves_the_raw_name_as_its_policy_says(
    fake_upstream: Fake, tmp_path: Path
) -> None:
    """Serving the target by name in the aliasing policy gives the raw name its rails;
    raw_names: true lets it through the wildcard, on purpose."""
    body = {"model": "fake-model", "messages": [{"role": "user", "content": f"say: {SECRET}"}]}
    own_name = ALIASING.replace("{demo: fake-model}", "{demo: fake-model, fake-model: null}")
    with serve_in_thread(guard_app(fake_upstream.url, files(tmp_path, aliasing=own_name))) as url:
        guarded = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert guarded.headers["x-guard-policy"] == "aliasing"
    assert guarded.json()["choices"][0]["finish_reason"] == "content_filter"
    raw = CATCH_ALL + "raw_names: true\n"
    with serve_in_thread(guard_app(fake_upstream.url, files(tmp_path, catch_all=raw))) as url:
        passed = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert passed.headers["x-guard-policy"] == "catch-all"
    assert passed.json()["choices"][0]["message"]["content"] == SECRET


@pytest.mark.parametrize(
    ("aliasing", "catch_all"),
    [
        # The target is served by name elsewhere: that file says so.
        (ALIASING, CATCH_ALL.replace("{'*': null}", "{'*': null, fake-model: null}")),
        # A catch-all to one named model: its file names the model.
        (ALIASING, CATCH_ALL.replace("{'*': null}", "{'*': fake-model}")),
        # Only keys pinned to it reach a keys_only policy, and they cannot leave it.
        (ALIASING + "keys_only: true\n", CATCH_ALL),
        (ALIASING, CATCH_ALL + "keys_only: true\n"),
        # Aliases inside the catch-all itself stay in the same policy.
        (
            ALIASING.replace("demo: fake-model", "demo: null"),
            CATCH_ALL.replace("null}", "null, x: y}"),
        ),
    ],
    ids=[
        "served-by-name",
        "catch-all-to-a-model",
        "aliasing-keys-only",
        "wildcard-keys-only",
        "own-aliases",
    ],
)
def test_combinations_that_are_allowed(tmp_path: Path, aliasing: str, catch_all: str) -> None:
    PolicySet.from_files(files(tmp_path, aliasing, catch_all))


def test_raw_names_is_about_a_null_wildcard(tmp_path: Path) -> None:
    for models in ("{m: null}", "{'*': upstream}"):
        text = f"name: p\nmodels: {models}\nraw_names: true\ninput_rails: []\noutput_rails: []\n"
        with pytest.raises(PolicyError, match="raw_names applies to a policy serving"):
            PolicySet.from_files([write_policy(tmp_path, text)])


def test_without_keys_a_404_lists_every_model(fake_upstream: Fake, tmp_path: Path) -> None:
    two = write_policy(
        tmp_path, "name: two\nmodels: {a: x, b: null}\ninput_rails: []\noutput_rails: []\n"
    )
    with serve_in_thread(guard_app(fake_upstream.url, [two])) as url:
        body = {"model": "c", "messages": [{"role": "user", "content": "hi"}]}
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 404
    assert response.json()["error"]["message"].endswith("Models served here: a, b.")


def test_an_api_key_s_policy_routes_and_its_404_names_only_its_models(tmp_path: Path) -> None:
    """``route`` with a key's policy: that policy serves the name, whatever another policy
    says of it, and a name it does not serve is refused listing only its own models."""
    rails = "input_rails: []\noutput_rails: []\n"
    pinned = f"name: pinned\nkeys_only: true\nmodels: {{m: up-pinned}}\n{rails}"
    other = f"name: other\nmodels: {{m: up-other, n: null}}\n{rails}"
    paths = [write_policy(tmp_path, pinned, "p.yaml"), write_policy(tmp_path, other, "o.yaml")]
    policies = PolicySet.from_files(paths)
    assert policies.route("m").upstream_model == "up-other"
    route = policies.route("m", "pinned")
    assert route.policy.policy.name == "pinned" and route.upstream_model == "up-pinned"
    with pytest.raises(ModelNotFound) as refused:
        policies.route("n", "pinned")
    assert str(refused.value) == "The model 'n' does not exist. Models served here: m."


def test_a_404_with_no_model_to_offer_says_none(tmp_path: Path) -> None:
    only_for_keys = (
        "name: k\nkeys_only: true\nmodels: {m: null}\ninput_rails: []\noutput_rails: []\n"
    )
    policies = PolicySet.from_files([write_policy(tmp_path, only_for_keys)])
    with pytest.raises(ModelNotFound) as refused:
        policies.route("m")
    assert str(refused.value) == "The model 'm' does not exist. Models served here: none."
