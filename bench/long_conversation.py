"""Long conversations: what judging turn k of a chat costs, with the verdict cache and without.

The input rails of ``policies/offline.yaml`` are built in this process as guard builds
them (``guard.pipeline.runner.Pipeline``: the built-in ``embedding`` classifier and a
regex rail, each with its ``VerdictCache``; the upstream is never called). A chat is
alternating user and assistant messages of 40 to 80 words, authored below (sentences
drawn from two pools, every message unique in the run). The request of turn k holds k
user messages and the k - 1 answers between them: 2k - 1 texts for the input rails.

For each repeat a new conversation runs turn by turn: turn k's request is read with
``read_input`` and judged with ``judge(rails, subjects, "input")`` after turns 1..k-1
were judged, as guard would (with the cache, only the last answer and the new message
are new to it). At each ``--turns`` value the same request is also judged by the same
rails without a cache (``dataclasses.replace(rail, cache=None)``), in alternating
order. The table gives the median over ``--repeats`` of each time, their ratio, and the
cached time against turn 1's (one new message). Each cached and uncached judgement is
checked to give the same outcomes.

    .venv/bin/python -m bench.long_conversation [--turns 1 5 10 20 30] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: python bench/long_conversation.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    ROOT,
    command_line,
    fmt,
    guard_revision,
    load_average,
    machine_info,
    machine_line,
    ratio,
    run_async,
)

POLICY = ROOT / "policies" / "offline.yaml"

USER_SENTENCES = (
    "We finally cleared the patch of lawn behind the garage and I want to turn it into a "
    "vegetable garden this spring.",
    "It gets sun from about ten in the morning until late afternoon, but the far corner "
    "stays shady under the old maple.",
    "The soil is heavy clay that stays wet for days after it rains, and it cracks badly in August.",
    "My budget is modest, so I would rather build the raised beds myself from untreated "
    "pine boards.",
    "I mostly cook Italian food at home, so tomatoes, basil, peppers and zucchini are at "
    "the top of my list.",
    "My partner would like some salad greens too, ideally something we can keep picking "
    "for most of the summer.",
    "We have two young kids who want their own small corner, probably with sunflowers and "
    "strawberries.",
    "I travel for work one week each month, so whatever we plant has to survive a few days "
    "without attention.",
    "Last year I tried tomatoes in pots on the balcony and the leaves turned yellow from "
    "the bottom up.",
    "Our town collects garden waste, but I would like to start a compost bin if it does not smell.",
    "There are a lot of slugs around here, especially after rain, and they ate every "
    "lettuce seedling I planted.",
    "How far apart should the beds be so that a wheelbarrow fits between them without "
    "scraping the sides?",
    "Is it worth buying a soil test kit, or can I just add compost and hope for the best?",
    "I read that marigolds keep pests away from tomatoes, but I am not sure whether that "
    "is a myth.",
    "Could you suggest a simple watering schedule for the hottest weeks of July and early August?",
    "We get late frosts here, sometimes even in the middle of May, which has caught me out before.",
    "I would like to grow garlic as well, but I have no idea when it should go in the ground.",
    "The neighbours have a tall hedge on the north side that might block some light in "
    "the evening.",
    "What is the easiest way to start seeds indoors without buying expensive grow lights?",
    "I also want to keep a notebook of what works, so next year I can plan the rotation properly.",
    "Thanks, that makes sense, and it is much simpler than the guides I found online.",
    "One more thing I forgot to mention is that the rain barrel by the garage holds about "
    "two hundred litres.",
    "Do you think drip irrigation is overkill for four small beds, or would a hose and a timer do?",
    "I would love a few herbs near the kitchen door, like thyme, parsley and chives, for "
    "everyday cooking.",
)
ASSISTANT_SENTENCES = (
    "That sounds like a great project, and a sunny spot with six hours of light is plenty "
    "for most summer vegetables.",
    "Raised beds are a good answer to heavy clay, because you control the soil mix and it "
    "drains much better.",
    "A mix of roughly half topsoil and half compost works well, and you can top it up with "
    "more compost each spring.",
    "Untreated pine will last a few seasons; lining the inside with cardboard is not "
    "needed, but it helps a little.",
    "Tomatoes and peppers want the sunniest part of the garden, so keep the shady corner "
    "for lettuce and herbs.",
    "Cut-and-come-again lettuce and rocket can be sown every three weeks to keep a steady "
    "supply of leaves.",
    "Strawberries are perfect for children, since they fruit quickly and are easy to pick "
    "without damaging the plants.",
    "Mulching with straw keeps the soil moist for several days, which helps a lot while "
    "you are away.",
    "Yellowing lower leaves on potted tomatoes usually mean the plant ran short of "
    "nitrogen or was watered unevenly.",
    "A closed compost bin with a good balance of green and brown material should not smell at all.",
    "Beer traps, copper tape and evening walks with a torch are the usual ways to keep "
    "slugs under control.",
    "Paths of about sixty centimetres are comfortable for a wheelbarrow and leave room to "
    "kneel beside the beds.",
    "A basic soil test is cheap and tells you the pH, which is useful before you add lime "
    "or anything else.",
    "Marigolds do attract hoverflies that eat aphids, so they are a nice companion, even if "
    "the evidence is mixed.",
    "In hot weather, water deeply in the early morning two or three times a week rather "
    "than a little every day.",
    "Wait until the risk of frost has passed before planting tomatoes out, and keep a "
    "fleece handy just in case.",
    "Garlic goes in during autumn, about a month before the ground freezes, and is ready "
    "to lift the next summer.",
    "A tall hedge to the north will not shade the beds much, because the sun is mostly to "
    "the south.",
    "A bright windowsill and a small fan to strengthen the stems are enough for most "
    "seedlings to grow well.",
    "Keeping a garden journal is an excellent habit, and a simple sketch of each bed makes "
    "rotation easy.",
    "A rain barrel of that size will cover a good share of the watering for four beds in a "
    "normal summer.",
    "For four beds, a soaker hose on a cheap timer gives most of the benefit of drip "
    "irrigation for far less money.",
    "Herbs by the kitchen door get used far more often, and thyme and chives come back every year.",
    "Let me know how the first season goes, and we can adjust the plan once you see what "
    "grows best.",
)


def message(rng: random.Random, pool: tuple[str, ...], seen: set[str]) -> str:
    """40 to 80 words of sentences from ``pool``, not yet used in this run."""
    while True:
        sentences = rng.sample(pool, len(pool))
        words: list[str] = []
        for sentence in sentences:
            if len(words) >= 40:
                break
            if len(words) + len(sentence.split()) <= 80:
                words += sentence.split()
        text = " ".join(words)
        if text not in seen:
            seen.add(text)
            return text


def conversation(rng: random.Random, turns: int, seen: set[str]) -> list[dict[str, str]]:
    """``turns`` user messages with an assistant answer after each but the last."""
    messages = []
    for turn in range(turns):
        messages.append({"role": "user", "content": message(rng, USER_SENTENCES, seen)})
        if turn < turns - 1:
            messages.append(
                {"role": "assistant", "content": message(rng, ASSISTANT_SENTENCES, seen)}
            )
    return messages


async def timed_judge(rails: list[Any], subjects: list[Any]) -> tuple[float, list[Any]]:
    from guard.pipeline.rails import judge

    started = time.perf_counter()
    judgements = await judge(rails, subjects, "input")
    return (time.perf_counter() - started) * 1000, judgements


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from guard.components.registry import BuildContext
    from guard.pipeline.inputs import read_input
    from guard.pipeline.runner import Pipeline
    from guard.policy import load_policy_file
    from guard.protocol.messages import CHAT
    from guard.protocol.upstream import Upstream

    loaded = load_policy_file(POLICY)[0]
    upstream = Upstream("http://127.0.0.1:9")  # input rails never call it
    components = BuildContext(upstream)
    started = time.perf_counter()
    pipeline = Pipeline(loaded, upstream, components)
    load_s = time.perf_counter() - started
    cached = pipeline.input_rails
    uncached = [replace(rail, cache=None) for rail in cached]
    inputs = loaded.policy.inputs
    most = max(args.turns)
    rng = random.Random(args.seed)
    seen: set[str] = set()
    rows: dict[int, dict[str, list[float]]] = {
        k: {"cached_ms": [], "uncached_ms": [], "read_ms": [], "fresh": []} for k in args.turns
    }
    mismatches = 0
    try:
        # Warm-up: a conversation of its own, judged both ways.
        warm = conversation(rng, most, seen)
        for k in (1, most):
            body = {"model": "demo-safe", "messages": warm[: 2 * k - 1]}
            subjects = read_input(CHAT, body, inputs).subjects
            await timed_judge(cached, subjects)
            await timed_judge(uncached, subjects)
        for repeat in range(args.repeats):
            messages = conversation(rng, most, seen)
            for k in range(1, most + 1):
                body = {"model": "demo-safe", "messages": messages[: 2 * k - 1]}
                t0 = time.perf_counter()
                subjects = read_input(CHAT, body, inputs).subjects
                read_ms = (time.perf_counter() - t0) * 1000
                if k not in rows:
                    await timed_judge(cached, subjects)
                    continue
                if repeat % 2:
                    cached_ms, with_cache = await timed_judge(cached, subjects)
                    uncached_ms, without = await timed_judge(uncached, subjects)
                else:
                    uncached_ms, without = await timed_judge(uncached, subjects)
                    cached_ms, with_cache = await timed_judge(cached, subjects)
                if [j.outcome for j in with_cache] != [j.outcome for j in without]:
                    mismatches += 1
                fresh = sum(not all(r.cached for r in j.reports) for j in with_cache)
                row = rows[k]
                row["cached_ms"].append(cached_ms)
                row["uncached_ms"].append(uncached_ms)
                row["read_ms"].append(read_ms)
                row["fresh"].append(fresh)
            print(
                f"  repeat {repeat + 1}: turn {most} {rows[most]['cached_ms'][-1]:.1f} ms cached, "
                f"{rows[most]['uncached_ms'][-1]:.1f} ms uncached, load {load_average()}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        await components.aclose()
        await upstream.aclose()
    caches = {rail.name: len(rail.cache) for rail in cached if rail.cache is not None}
    return {"load_s": load_s, "rows": rows, "mismatches": mismatches, "cache_entries": caches}


def report(
    args: argparse.Namespace,
    result: dict[str, Any],
    machine: dict[str, str],
    command: str,
    load_at_end: str,
    threads: int,
) -> str:
    rows = result["rows"]
    first = statistics.median(rows[min(rows)]["cached_ms"])
    lines = [
        f"Command: `{command}`",
        "",
        machine_line({k: v for k, v in machine.items() if k not in ("guard", "client loop")})
        + f", load average at end {load_at_end}",
        "",
        f"guard: {machine['guard']}; input rails of {POLICY.relative_to(ROOT)} (embedding, "
        f"regex), torch threads {threads}; median of {args.repeats} conversations; user and "
        "assistant messages of 40-80 words.",
        "",
        f"| turn k | texts in the request | new to the cache | with cache ms | without cache "
        f"ms | without / with | with cache / turn {min(rows)} | read_input ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, row in rows.items():
        with_cache = statistics.median(row["cached_ms"])
        without = statistics.median(row["uncached_ms"])
        lines.append(
            f"| {k} | {2 * k - 1} | {statistics.median(row['fresh']):.0f} | {fmt(with_cache)} "
            f"| {fmt(without)} | {fmt(ratio(without, with_cache), 2)} "
            f"| {fmt(ratio(with_cache, first), 2)} | {fmt(statistics.median(row['read_ms']), 2)} |"
        )
    lines += [
        "",
        f"Judgements whose outcomes differ with and without the cache: {result['mismatches']}. "
        f"Cache entries at the end: {result['cache_entries']}.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--turns", type=int, nargs="+", default=[1, 5, 10, 20, 30])
    parser.add_argument("--repeats", type=int, default=7, help="conversations (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench" / "results" / "long-conversation.json",
        help="raw numbers",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or any(k < 1 for k in args.turns):
        parser.error("--repeats and --turns must be at least 1")
    args.turns = sorted(set(args.turns))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line("bench/long_conversation.py", argv)
    machine = {**machine_info(), "guard": guard_revision()}
    result = run_async(measure(args))
    import torch

    load_at_end = load_average()
    print(report(args, result, machine, command, load_at_end, torch.get_num_threads()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    raw = {
        "command": command,
        "machine": {**machine, "load average at end": load_at_end},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        **result,
    }
    args.json.write_text(json.dumps(raw, indent=1))
    print(f"raw numbers: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
