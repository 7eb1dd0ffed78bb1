"""Policy files: every shipped one loads, and every mistake is explained with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.cli.main import main
from guard.components.registry import REWARDS
from guard.errors import PolicyError
from guard.pipeline.checks import check_runnable
from guard.policy.load import load_policy_file
from guard.policy.routing import PolicySet
from guard.server.app import create_app
from guard.settings import Settings
from tests.conftest import listing_rails, write_policy

POLICIES = sorted((Path(__file__).resolve().parents[2] / "policies").glob("*.yaml"))
REGEX_RAIL = "name: p\nmodels: {m: null}\noutput_rails: []\ninput_rails:\n  - kind: regex\n"
"""A policy whose one input rail is a regex rail; its settings follow."""


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policy_file(write_policy(tmp_path, text))
    return caught.value.problems


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_every_shipped_policy_loads_and_runs(path: Path) -> None:
    loaded = load_policy_file(path)
    assert loaded
    check_runnable(loaded)
    assert main(["check", str(path)]) == 0


def test_shipped_policies_can_be_served_together() -> None:
    PolicySet.from_files(POLICIES)


def test_unknown_key_names_file_line_and_suggests(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path,
        "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails: []\nstreaming:\n  windw: 3\n",
    )
    assert problem.startswith(f"{tmp_path / 'policy.yaml'}:6: streaming.windw: unknown key")
    assert "Did you mean 'window_tokens'?" in problem


def test_unknown_component_kind_lists_known_kinds(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path, "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails:\n  - kind: nope\n"
    )
    assert ":5: output_rails[0]: there is no component kind 'nope'" in problem
    assert "'regex'" in problem and "'llama_guard'" in problem


def test_wrong_type_and_wrong_choice(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        (
            "name: p\nmodels: {m: null}\noutput_rails: []\ninput_rails:\n"
            "  - kind: regex\n    action: blok\n    timeout_s: soon\n"
        ),
    )
    assert ":6: input_rails[0].action: 'blok' is not allowed here" in problems[0]
    assert ":7: input_rails[0].timeout_s:" in problems[1] and "'soon'" in problems[1]


def test_missing_key_and_bad_regex(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        "models: {m: null}\ninput_rails:\n  - kind: regex\n    patterns: ['(']\noutput_rails: []\n",
    )
    assert any("the required key 'name' is missing" in p for p in problems)
    assert any(
        ":4: input_rails[0].patterns:" in p and "not a valid regular expression" in p
        for p in problems
    )


def test_policy_list_and_yaml_syntax_error(tmp_path: Path) -> None:
    listed = write_policy(
        tmp_path,
        "- name: a\n  models: {a: null}\n  input_rails: []\n  output_rails: []\n"
        "- name: b\n  models: {b: x}\n  input_rails: []\n  output_rails: []\n",
    )
    assert [p.policy.name for p in load_policy_file(listed)] == ["a", "b"]
    [problem] = problems_of(tmp_path, "name: p\nmodels: [\n")
    assert "not valid YAML" in problem


def test_section_rules(tmp_path: Path) -> None:
    [problem] = problems_of(
        tmp_path,
        "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails: []\nconstitutional:\n"
        "  trigger: low_reward\n  principles_file: c.yaml\n",
    )
    assert "needs both 'reward' and 'reward_threshold'" in problem


def test_model_claimed_twice_is_refused(tmp_path: Path) -> None:
    a = write_policy(
        tmp_path, "name: a\nmodels: {m: null}\ninput_rails: []\noutput_rails: []\n", "a.yaml"
    )
    b = write_policy(
        tmp_path, "name: b\nmodels: {m: null}\ninput_rails: []\noutput_rails: []\n", "b.yaml"
    )
    with pytest.raises(PolicyError, match="model 'm' is served by policy 'a'"):
        PolicySet.from_files([a, b])
    assert main(["check", str(a), str(b)]) == 1


def test_server_refuses_an_invalid_policy(tmp_path: Path) -> None:
    bad = write_policy(
        tmp_path,
        "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails: []\nrefusal: {mesage: no}\n",
    )
    with pytest.raises(PolicyError):
        create_app(Settings(policies=[bad]))
    assert main(["serve", "--policy", str(bad), "--port", "0"]) == 2


def test_server_refuses_a_stage_it_cannot_run_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never serve a policy while silently skipping one of its steps (here: a build
    whose reward registry lacks a kind that the policy file format knows)."""
    monkeypatch.delitem(REWARDS, "embedding_reward")
    policy = write_policy(
        tmp_path,
        "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails: []\n"
        "best_of_n: {n: 2, reward: {kind: embedding_reward}}\n",
    )
    with pytest.raises(PolicyError, match="cannot run yet"):
        create_app(Settings(policies=[policy]))
    assert main(["check", str(policy)]) == 1


def test_check_explains_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_policy(
        tmp_path,
        "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails: []\nbest_of_n: {n: 1}\n",
    )
    assert main(["check", str(bad), str(POLICIES[0])]) == 1
    captured = capsys.readouterr()
    assert "best_of_n.n: input should be greater than or equal to 2" in captured.err
    assert f"ok: {POLICIES[0]}" in captured.out


def test_check_names_the_regex_feature_re2_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(
        tmp_path,
        "name: p\nmodels: {m: null}\ninput_rails:\n"
        "  - kind: regex\n    patterns: ['(?i)secret(?!ary)', 'ok']\n",
    )
    assert main(["check", str(policy)]) == 1
    err = capsys.readouterr().err
    assert ":5: input_rails[0].patterns: pattern '(?i)secret(?!ary)' uses lookahead or " in err
    assert "which RE2 does not have" in err


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARD_UPSTREAM_URL", "http://10.0.0.1:9000")
    monkeypatch.setenv("GUARD_POLICIES", "a.yaml, b.yaml")
    settings = Settings()
    assert settings.upstream_url == "http://10.0.0.1:9000"
    assert settings.policies == [Path("a.yaml"), Path("b.yaml")]


def test_a_component_that_cannot_load_stops_start_up(tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path,
        "name: p\nmodels: {m: null}\noutput_rails: []\ninput_rails:\n"
        "  - kind: hf_classifier\n    model: /nonexistent/model\n"
        "    thresholds: {unsafe: 0.5}\n",
    )
    with pytest.raises(PolicyError, match=r"input_rails\[0\] \(hf_classifier\) could not be built"):
        create_app(Settings(policies=[policy]))


def test_parallel_input_rails_cannot_redact(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        "name: p\nmodels: {m: null}\noutput_rails: []\ninput_rails_mode: parallel\n"
        "input_rails:\n  - kind: regex\n    action: redact\n",
    )
    assert "cannot be used with an input rail that redacts" in problems[0]


def test_a_policy_lists_its_rails(tmp_path: Path) -> None:
    """A file cut short before its rails must not load as a policy without rails."""
    whole = "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails:\n  - kind: regex\n"
    assert load_policy_file(write_policy(tmp_path, whole))[0].policy.output_rails
    problems = problems_of(tmp_path, whole[: whole.index("output_rails")])
    assert len(problems) == 1
    assert "the required key 'output_rails' is missing: every policy lists its rails" in problems[0]


def test_a_file_cut_mid_line_is_refused(tmp_path: Path) -> None:
    """Cut inside a comment, what is left parses as the same policy minus its last
    rail; without its final newline, the file is refused."""
    whole = (
        "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails:\n"
        "  - {kind: regex, name: a, presets: [email]}   # mail\n"
        "  - {kind: regex, name: b, presets: [secrets]}   # keys\n"
    )
    cut = whole[: whole.index("# keys") + 3]
    assert len(load_policy_file(write_policy(tmp_path, whole))[0].policy.output_rails) == 2
    [problem] = problems_of(tmp_path, cut)
    assert "does not end with a newline" in problem
    assert len(load_policy_file(write_policy(tmp_path, cut + "\n"))[0].policy.output_rails) == 2


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_no_cut_of_a_shipped_policy_loads_without_rails(path: Path, tmp_path: Path) -> None:
    """Cut at every byte, a shipped policy either is refused or keeps at least one rail
    in each of its lists that had one (docs/operations.md, "Hot reload")."""
    raw = path.read_bytes()
    whole = load_policy_file(path)[0].policy
    cut_file = tmp_path / path.name
    for end in range(1, len(raw)):
        cut_file.write_bytes(raw[:end])
        try:
            [item] = load_policy_file(cut_file)
        except PolicyError:
            continue
        assert raw[:end].endswith(b"\n")
        assert bool(item.policy.input_rails) == bool(whole.input_rails), end
        assert bool(item.policy.output_rails) == bool(whole.output_rails), end


def test_endpoints_switch_on_off_or_with_settings(tmp_path: Path) -> None:
    [default] = load_policy_file(
        write_policy(tmp_path, listing_rails("name: p\nmodels: {m: null}\n"))
    )
    endpoints = default.policy.endpoints
    assert endpoints.enabled("embeddings") and not endpoints.judges_input("embeddings")
    assert not any(endpoints.enabled(e) for e in ("pooling", "score", "rerank", "tokenize"))
    text = (
        "name: p\nmodels: {m: null}\nendpoints:\n  embeddings: false\n  rerank: true\n"
        "  score: {input_rails: false}\n  tokenize: {}\n  detokenize: true\n"
    )
    [loaded] = load_policy_file(write_policy(tmp_path, listing_rails(text), "q.yaml"))
    endpoints = loaded.policy.endpoints
    assert not endpoints.enabled("embeddings")
    assert endpoints.enabled("rerank") and endpoints.judges_input("rerank")
    assert endpoints.enabled("score") and not endpoints.judges_input("score")
    assert endpoints.enabled("tokenize") and not endpoints.judges_input("tokenize")
    assert endpoints.enabled("detokenize") and not endpoints.judges_input("detokenize")


def test_endpoint_mistakes_are_explained(tmp_path: Path) -> None:
    [typo] = problems_of(
        tmp_path, listing_rails("name: p\nmodels: {m: null}\nendpoints:\n  rerenk: true\n")
    )
    assert ":4: endpoints.rerenk: unknown key" in typo and "Did you mean 'rerank'?" in typo
    [detokenize] = problems_of(
        tmp_path,
        listing_rails(
            "name: p\nmodels: {m: null}\nendpoints:\n  detokenize: {input_rails: true}\n"
        ),
    )
    assert ":4: endpoints.detokenize.input_rails: unknown key" in detokenize


WITH_PRINCIPLES = (
    "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails: []\n"
    "constitutional:\n  trigger: always\n  principles_file: c.yaml\n"
)


def test_a_principles_file_s_problems_name_both_files_and_the_line(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, WITH_PRINCIPLES)
    principles = tmp_path / "c.yaml"
    where = f"{policy}: policy 'p': {principles}"
    cases = [
        (None, f"{where}: cannot read the principles file: No such file or directory"),
        ("\n", f"{where}: the principles file is empty; it should hold a list of principles"),
        ("- name: a\n  critique: c\n", f"{where}:1: [0]: the required key 'revision' is missing"),
    ]
    for text, expected in cases:
        if text is not None:
            principles.write_text(text)
        with pytest.raises(PolicyError) as found:
            load_policy_file(policy)
        assert found.value.problems == [expected]
    principles.write_text("- name: a\n  critque: c\n  revision: r\n")
    with pytest.raises(PolicyError) as found:
        load_policy_file(policy)
    assert found.value.problems[-1] == (
        f"{where}:2: [0].critque: unknown key 'critque'. Did you mean 'critique'? "
        "Allowed keys here: name, critique, revision."
    )


def test_principles_already_read_are_loaded_as_read(tmp_path: Path) -> None:
    """A reload hands over the bytes it saw settle, the principles file's too."""
    policy = write_policy(tmp_path, WITH_PRINCIPLES)
    principles = write_policy(tmp_path, "- {name: on-disk, critique: c, revision: r}\n", "c.yaml")
    read = b"- {name: as-read, critique: c, revision: r}\n"
    [loaded] = load_policy_file(policy, {principles: read})
    assert loaded.policy.constitutional is not None
    assert [p.name for p in loaded.policy.constitutional.principles] == ["as-read"]
    assert loaded.principles_file == principles


SCOPED = "name: p\nmodels: {m: null}\ninput_rails:\n  - kind: regex\n    patterns: ['x']\n"


def test_an_unknown_part_is_explained_with_a_suggestion(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path, SCOPED + "    parts: [tool, documnets]\noutput_rails: []\n")
    assert ":6: input_rails[0].parts[1]: 'documnets' is not allowed here" in problem
    assert "'tool_definitions'" in problem and problem.endswith("Did you mean 'documents'?")


def test_parts_that_judge_nothing_are_refused(tmp_path: Path) -> None:
    [empty] = problems_of(tmp_path, SCOPED + "    parts: []\noutput_rails: []\n")
    assert ":6: input_rails[0].parts: 'parts: []' judges nothing" in empty
    trusted = "inputs: {trusted_roles: [system, tool, function]}\n"
    [all_trusted] = problems_of(
        tmp_path, trusted + SCOPED + "    parts: [system, tool]\noutput_rails: []\n"
    )
    assert "judges only the parts ['system', 'tool']" in all_trusted
    assert "would never judge anything" in all_trusted
    function_untrusted = "inputs: {trusted_roles: [system, tool]}\n"
    assert load_policy_file(
        write_policy(
            tmp_path, function_untrusted + SCOPED + "    parts: [system, tool]\noutput_rails: []\n"
        )
    )


def test_parts_belong_to_input_rails_only(tmp_path: Path) -> None:
    [output] = problems_of(
        tmp_path,
        "name: p\nmodels: {m: null}\ninput_rails: []\noutput_rails:\n"
        "  - kind: regex\n    name: out\n    patterns: ['x']\n    parts: [user]\n",
    )
    assert ":4: output_rails: output_rails[0] ('out') has 'parts'" in output
    [escalation] = problems_of(
        tmp_path,
        SCOPED + "    escalate:\n      between: [0.1, 0.2]\n"
        "      to: {kind: regex, patterns: ['y'], parts: [user]}\noutput_rails: []\n",
    )
    assert ":8: input_rails[0].escalate.to: an escalation target judges the texts" in escalation


def test_a_rail_s_own_refusal_needs_a_rail_that_blocks(tmp_path: Path) -> None:
    rail = REGEX_RAIL
    flagging = problems_of(tmp_path, rail + "    action: flag\n    refusal: No.\n")
    assert "this rail's action is 'flag', so it never blocks" in flagging[0]
    empty = problems_of(tmp_path, rail + "    refusal: ''\n")
    assert "input_rails[0].refusal" in empty[0]


def test_a_refusal_by_category_names_categories_the_rail_reports(tmp_path: Path) -> None:
    rail = REGEX_RAIL
    typo = rail + "    presets: [pii]\n    refusal: {emial: No.}\n"
    with pytest.raises(PolicyError) as caught:
        create_app(Settings(policies=[write_policy(tmp_path, typo)]))
    assert "input_rails[0] (regex) could not be built" in str(caught.value)
    assert "refusal names categories this rail never reports: emial" in str(caught.value)
    assert "(it reports: email, phone, credit_card)" in str(caught.value)
    empty = problems_of(tmp_path, rail + "    refusal: {email: ' '}\n")
    assert "a refusal says something" in empty[0]
    sectioned = problems_of(tmp_path, rail + "    refusal: {message: No.}\n")
    assert "'message' and 'http_error' belong to the policy's refusal section" in sectioned[0]
    [loaded] = load_policy_file(
        write_policy(tmp_path, rail + "    presets: [pii]\n    refusal: {email: A, '*': B}\n")
    )
    spec = loaded.policy.input_rails[0]
    assert spec.refusal_for(("phone", "email")) == "A"
    assert spec.refusal_for(("phone",)) == "B"
    assert spec.refusal_for(()) == "B"


def test_a_refusal_may_name_the_categories_of_the_rail_it_escalates_to(tmp_path: Path) -> None:
    """An escalated verdict is the second classifier's: its categories are known too."""
    text = (
        REGEX_RAIL
        + "    presets: [secrets]\n    escalate: {between: [0.2, 0.8], to: {kind: regex, "
        "presets: [email]}}\n    refusal: {email: No addresses., secrets: No keys.}\n"
    )
    create_app(Settings(policies=[write_policy(tmp_path, text)]))
    with pytest.raises(PolicyError, match="never reports: phone"):
        create_app(Settings(policies=[write_policy(tmp_path, text.replace("email:", "phone:"))]))


def test_check_build_builds_every_rail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``guard check`` reads the files; ``--build`` also builds the rails as start-up does,
    so what only building finds (a refusal key the rail never reports) fails it too."""
    typo = write_policy(
        tmp_path,
        REGEX_RAIL + "    presets: [pii]\n    refusal: {emial: No.}\n"
        "  - kind: regex\n    presets: [secrets]\n    refusal: {secret: No.}\n",
    )
    assert main(["check", str(typo)]) == 0
    assert main(["check", "--build", str(typo)]) == 1
    said = capsys.readouterr().err  # every rail that could not be built, not the first
    assert "input_rails[0] (regex)" in said and "never reports: emial" in said
    assert "input_rails[1] (regex)" in said and "never reports: secret" in said
    with pytest.raises(PolicyError) as caught:  # start-up names both too
        create_app(Settings(policies=[typo]))
    assert len(caught.value.problems) == 2
    assert main(["check", "--build", *map(str, POLICIES[:1])]) == 0


def test_a_rail_that_names_no_category_takes_one_refusal(tmp_path: Path) -> None:
    """An ``llm_judge`` answers a yes/no question: no category to key a refusal by."""
    judge = (
        "name: p\nmodels: {m: null}\noutput_rails: []\ninput_rails:\n  - kind: llm_judge\n"
        "    model: judge\n    question: Is this unsafe?\n    refusal: {KEY: Not that.}\n"
    )
    with pytest.raises(PolicyError, match=r"never reports: unsafe \(it reports: none; give one"):
        create_app(Settings(policies=[write_policy(tmp_path, judge.replace("KEY", "unsafe"))]))
    create_app(Settings(policies=[write_policy(tmp_path, judge.replace("KEY", "'*'"))]))


def test_an_escalation_target_takes_no_refusal_of_its_own(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        REGEX_RAIL
        + "    escalate: {between: [0.2, 0.8], to: {kind: regex, patterns: [b], refusal: No.}}\n",
    )
    assert "set 'refusal' on the rail itself" in problems[0]
