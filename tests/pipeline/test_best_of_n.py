"""Best-of-n against the fake upstream, with a real (tiny, random) reward model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from guard.components.base import Candidate
from guard.components.hf_reward import HFReward
from guard.components.llm_judge import expected_rating
from guard.components.specs import HFRewardSpec
from guard.pipeline.best_of_n import rank, top_distinct, upstream_request
from guard.policy.models import BestOfN
from tests.conftest import Fake
from tests.pipeline.test_rails import chat, guard_with

OPTIONS = ["Paris is the capital.", "It is Paris.", "France's capital: Paris!", "Lyon, no Paris."]


def policy(reward: Path, n: int = 4, extra: str = "") -> str:
    return f"best_of_n:\n  n: {n}\n  reward: {{kind: hf_reward, model: {reward}}}\n{extra}"


def scores_of(reward: Path, texts: list[str], question: str) -> list[float]:
    model = HFReward(HFRewardSpec(kind="hf_reward", model=str(reward)))
    conversation = ({"role": "user", "content": question},)

    async def score() -> list[float]:
        try:
            return await model.score([Candidate(t, conversation) for t in texts])
        finally:
            await model.aclose()

    return asyncio.run(score())


def test_rank_and_ties() -> None:
    assert rank([0.1, 0.9, None, 0.5]) == [1, 3, 0]
    assert rank([0.5, 0.5, 0.5]) == [0, 1, 2]  # ties: the earliest first
    assert top_distinct([2, 0, 1, 3], ["a", "b", "a", "c"], 2) == [2, 1]
    assert top_distinct([0, 1], ["a", "a"], 2) == [0, 1]  # padded when too few differ


def test_upstream_request_samples_every_candidate_at_once() -> None:
    spec = BestOfN.model_validate({"n": 8, "reward": {"kind": "hf_reward", "model": "r"}})
    assert upstream_request(spec, {"n": 2, "temperature": 0})["n"] == 8
    assert upstream_request(spec, {"temperature": 0})["temperature"] == 0.7
    assert upstream_request(spec, {"n": 8, "temperature": 1.0}) == {"n": 8, "temperature": 1.0}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("n", [3, 128])
def test_a_client_n_above_the_policy_s_is_refused_before_any_work(
    tiny_reward: Path, fake_upstream: Fake, tmp_path: Path, n: int, stream: bool
) -> None:
    with guard_with(fake_upstream, tmp_path, policy(tiny_reward, n=2)) as url:
        before = fake_upstream.app.state.received.count
        refused = chat(url, "say: one | two", n=n, stream=stream)
        generated = fake_upstream.app.state.received.count - before
        allowed = chat(url, "say: one | two", n=2)
    assert refused.status_code == 400 and generated == 0
    error = refused.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "n"
    assert error["code"] == "integer_above_max_value"
    assert f"Expected a value <= 2, but got {n} instead" in error["message"]
    assert allowed.status_code == 200 and len(allowed.json()["choices"]) == 2
    assert fake_upstream.last_request()["body"]["n"] == 2


def test_expected_rating() -> None:
    import math

    top = [
        {"token": "9", "logprob": math.log(0.5)},
        {"token": "5", "logprob": math.log(0.5)},
        {"token": "x", "logprob": -0.1},
    ]
    assert expected_rating(top) == pytest.approx(7.0)
    with pytest.raises(ValueError):
        expected_rating([{"token": "x", "logprob": -0.1}])


def test_the_argmax_is_returned(tiny_reward: Path, fake_upstream: Fake, tmp_path: Path) -> None:
    question = "say: " + " | ".join(OPTIONS)
    expected = scores_of(tiny_reward, OPTIONS, question)
    with guard_with(fake_upstream, tmp_path, policy(tiny_reward)) as url:
        before = fake_upstream.app.state.received.count
        response = chat(url, question, temperature=0)
        upstream_bodies = [c["body"] for c in fake_upstream.app.state.received.since(before)]
    data = response.json()
    best = max(range(4), key=lambda i: (expected[i], -i))
    assert data["choices"][0]["message"]["content"] == OPTIONS[best]
    assert len(data["choices"]) == 1 and data["choices"][0]["index"] == 0
    info = data["guard"]["best_of_n"]
    assert info["n"] == 4 and info["chosen"] == [best]
    assert info["scores"] == pytest.approx(expected, abs=1e-4)
    assert [b["n"] for b in upstream_bodies] == [4]  # one upstream request for all samples
    assert upstream_bodies[0]["temperature"] == 0.7
    assert data["usage"]["completion_tokens"] == info["generated_tokens"]


def test_client_n_gets_the_top_k_distinct(
    tiny_reward: Path, fake_upstream: Fake, tmp_path: Path
) -> None:
    question = "say: " + " | ".join(OPTIONS[:2])  # 4 samples, 2 distinct texts
    expected = scores_of(tiny_reward, OPTIONS[:2], question)
    with guard_with(fake_upstream, tmp_path, policy(tiny_reward)) as url:
        response = chat(url, question, n=2)
    texts = [c["message"]["content"] for c in response.json()["choices"]]
    assert sorted(texts) == sorted(OPTIONS[:2])
    assert texts[0] == OPTIONS[0 if expected[0] >= expected[1] else 1]
    assert [c["index"] for c in response.json()["choices"]] == [0, 1]


def test_identical_candidates_tie_to_the_first(
    tiny_reward: Path, fake_upstream: Fake, tmp_path: Path
) -> None:
    with guard_with(fake_upstream, tmp_path, policy(tiny_reward)) as url:
        response = chat(url, "say: same answer")
    assert response.json()["guard"]["best_of_n"]["chosen"] == [0]


UNSAFE_FILTER = """  filter_unsafe: true
output_rails:
  - kind: regex
    patterns: ["(?i)lyon"]
"""


def test_unsafe_candidates_do_not_compete(
    tiny_reward: Path, fake_upstream: Fake, tmp_path: Path
) -> None:
    question = "say: " + " | ".join(OPTIONS)
    with guard_with(fake_upstream, tmp_path, policy(tiny_reward, extra=UNSAFE_FILTER)) as url:
        response = chat(url, question)
        refused = chat(url, "say: Lyon | lyon!")
    info = response.json()["guard"]["best_of_n"]
    assert info["unsafe"] == [3] and info["scores"][3] is None
    assert "Lyon" not in response.json()["choices"][0]["message"]["content"]
    # the output rails ran once per candidate, never again on the winner
    assert len(response.json()["guard"]["verdicts"]) == 4
    assert refused.json()["choices"][0]["finish_reason"] == "content_filter"


def test_streamed_best_of_n(tiny_reward: Path, fake_upstream: Fake, tmp_path: Path) -> None:
    question = "say: " + " | ".join(OPTIONS)
    with guard_with(fake_upstream, tmp_path, policy(tiny_reward)) as url:
        plain = chat(url, question).json()["choices"][0]["message"]["content"]
        with httpx.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json={
                "model": "m",
                "stream": True,
                "messages": [{"role": "user", "content": question}],
            },
        ) as response:
            lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert plain in "".join(lines)
    assert '"best_of_n"' in lines[0]


@pytest.mark.parametrize(("on_error", "status"), [("first_safe", 200), ("fail", 503)])
def test_reward_failure_follows_the_policy(
    fake_upstream: Fake, tmp_path: Path, on_error: str, status: int
) -> None:
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    rails = (
        f"best_of_n:\n  n: 3\n  on_reward_error: {on_error}\n"
        f"  reward: {{kind: vllm_reward, model: r, base_url: '{dead}', timeout_s: 2}}\n"
    )
    with guard_with(fake_upstream, tmp_path, rails) as url:
        response = chat(url, "say: a | b | c")
        assert chat(url, "say: again").status_code == status  # still serving
    assert response.status_code == status
    if status == 200:
        info = response.json()["guard"]["best_of_n"]
        assert "unreachable" in info["reward_error"] and info["chosen"] == [0]
    else:
        assert response.json()["error"]["code"] == "reward_unavailable"


LONG = [
    "one two three four five six seven eight",
    "alpha beta gamma delta epsilon zeta eta theta",
    "red green blue cyan magenta yellow black white",
    "north south east west up down left right",
]


def test_pruning_continues_only_survivors(
    tiny_reward: Path, fake_upstream: Fake, tmp_path: Path
) -> None:
    prune = "  prune: {segment_tokens: 2, keep_fraction: 0.5, rounds: 2}\n"
    question = "say: " + " | ".join(LONG)
    with guard_with(fake_upstream, tmp_path, policy(tiny_reward, extra=prune)) as url:
        before = fake_upstream.app.state.received.count
        response = chat(url, question)
        calls = fake_upstream.app.state.received.since(before)
    info = response.json()["guard"]["best_of_n"]
    first, continuations = calls[0]["body"], [c["body"] for c in calls[1:]]
    assert first["n"] == 4 and first["max_tokens"] == 2
    rounds = info["pruning"]["rounds"]
    assert [len(r["kept"]) for r in rounds] == [2, 1]
    survivors_after = [set(r["kept"]) for r in rounds]
    # every continuation extends a draft that was kept in the round before it
    prefixes = [c["messages"][-1]["content"] for c in continuations]
    assert all(
        c["continue_final_message"] and not c["add_generation_prompt"] for c in continuations
    )
    kept_first = {" ".join(LONG[i].split()[:2]) + " " for i in survivors_after[0]}
    assert set(prefixes[:2]) == kept_first
    [winner] = info["chosen"]
    assert winner in survivors_after[1]
    assert response.json()["choices"][0]["message"]["content"] == LONG[winner]
    # 4 drafts x 2 tokens, 2 survivors x 2 more, then 1 finished: 6 more tokens
    assert info["generated_tokens"] == 8 + 4 + 4
    assert response.json()["usage"]["completion_tokens"] == 16 < 4 * 8


def test_pruning_gives_each_continuation_its_own_seed(
    tiny_reward: Path, fake_upstream: Fake, tmp_path: Path
) -> None:
    prune = "  prune: {segment_tokens: 2, keep_fraction: 0.5, rounds: 2}\n"
    question = "say: " + " | ".join(LONG)
    with guard_with(fake_upstream, tmp_path, policy(tiny_reward, extra=prune)) as url:
        before = fake_upstream.app.state.received.count
        response = chat(url, question, seed=7)
        seeded = [c["body"] for c in fake_upstream.app.state.received.since(before)]
        before = fake_upstream.app.state.received.count
        chat(url, question)
        unseeded = [c["body"] for c in fake_upstream.app.state.received.since(before)]
    rounds = response.json()["guard"]["best_of_n"]["pruning"]["rounds"]
    [winner] = rounds[1]["kept"]
    # the 4 samples get 7..10 from vLLM; then seed + n x (requests so far) + candidate
    assert seeded[0]["seed"] == 7 and seeded[0]["n"] == 4
    assert sorted(c["seed"] for c in seeded[1:3]) == [7 + 4 + i for i in rounds[0]["kept"]]
    assert seeded[3]["seed"] == 7 + 8 + winner
    assert all("seed" not in c for c in unseeded)


def test_pruning_drops_unsafe_finished_drafts(
    tiny_reward: Path, fake_upstream: Fake, tmp_path: Path
) -> None:
    extra = "  prune: {segment_tokens: 2, keep_fraction: 0.5, rounds: 1}\n" + UNSAFE_FILTER.replace(
        "(?i)lyon", "(?i)gamma"
    )
    question = "say: " + " | ".join(LONG)
    with guard_with(fake_upstream, tmp_path, policy(tiny_reward, extra=extra)) as url:
        response = chat(url, question)
        refused = chat(url, "say: gamma one | gamma two")
    assert "gamma" not in response.json()["choices"][0]["message"]["content"]
    assert refused.json()["choices"][0]["finish_reason"] == "content_filter"


def test_the_last_survivor_streams_straight_through(
    tiny_reward: Path, fake_upstream: Fake, tmp_path: Path
) -> None:
    from tests.pipeline.test_rails import stream_events

    prune = "  prune: {segment_tokens: 2, keep_fraction: 0.5, rounds: 2}\n"
    rail = "output_rails:\n  - {kind: regex, patterns: ['(?i)purple']}\n"
    question = "say: " + " | ".join(LONG)
    with guard_with(fake_upstream, tmp_path, policy(tiny_reward, extra=prune + rail)) as url:
        before = fake_upstream.app.state.received.count
        events = stream_events(url, question, stream_options={"include_usage": True})
        calls = [c["body"] for c in fake_upstream.app.state.received.since(before)]
    info = next(e["guard"] for e in events if "guard" in e)["best_of_n"]
    winner = info["pruning"]["streamed"]
    assert info["chosen"] == [winner] and [len(r["kept"]) for r in info["pruning"]["rounds"]] == [
        2,
        1,
    ]
    # 4 drafts of 2 tokens, 2 survivors continued by 2, then the winner streamed from the upstream
    assert [c.get("stream", False) for c in calls] == [False, False, False, True]
    assert calls[-1]["messages"][-1]["content"] == " ".join(LONG[winner].split()[:4]) + " "
    texts = [c["delta"].get("content") or "" for e in events for c in e["choices"]]
    assert "".join(texts) == LONG[winner]
    assert len([t for t in texts if t]) > 2  # the continuation came as the upstream's chunks
    assert events[-1]["usage"]["completion_tokens"] == 8 + 4 + 4
    assert [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]] == [
        "stop"
    ]


def test_the_streamed_survivor_passes_the_output_rails(
    tiny_reward: Path, fake_upstream: Fake, tmp_path: Path
) -> None:
    from tests.pipeline.test_rails import stream_events

    prune = "  prune: {segment_tokens: 2, keep_fraction: 0.5, rounds: 2}\n"
    last_words = "|".join(option.split()[-1] for option in LONG)
    rail = f"output_rails:\n  - {{kind: regex, patterns: ['(?i)({last_words})']}}\n"
    with guard_with(fake_upstream, tmp_path, policy(tiny_reward, extra=prune + rail)) as url:
        events = stream_events(url, "say: " + " | ".join(LONG))
    texts = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    assert not any(word in texts for word in last_words.split("|"))
    assert events[-1]["choices"][0]["finish_reason"] == "content_filter"
