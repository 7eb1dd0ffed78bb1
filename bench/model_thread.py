"""Where torch runs, and what it costs: the shipped ``embedding`` model's call on 60
batches of 32 short prompts (XSTest and AdvBench, drawn with seed 0), as a batcher makes
it (``piece_rows``), in three arrangements, each in a fresh interpreter:

* ``main``: loaded and run on the main thread (one thread ever runs torch);
* ``worker``: loaded on the main thread, run on another (how batchers ran before
  ``threads.model_thread``: two threads with OpenMP teams of their own);
* ``model thread``: loaded under ``threads.load_alone``, run on ``threads.model_thread``
  (how guard runs it now).

Each in float32 and in bfloat16: ms per batch, the first pass over the 60 batches
(oneDNN builds its kernels) and the mean of the next three. Then one matrix product of
the encoder's (1536 x 384) on 100 row counts drawn from 300 to 700: float32, bfloat16 on
the row counts as they come, and bfloat16 padded to a multiple of ``minilm.ROWS``.

torch's thread count is left as guard leaves it (``torch.set_num_threads`` also sets
MKL's count for the whole process: ``threads.one_thread``).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/model_thread.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ARRANGEMENTS = ("main", "worker", "model thread")
PRECISIONS = ("float32", "bfloat16")


def batches_ms(arrangement: str, precision: str) -> dict[str, float]:
    """First pass and the mean of three more, ms per batch of 32 (in this interpreter)."""
    from concurrent.futures import ThreadPoolExecutor

    from guard import datasets
    from guard.components.embedding import EmbeddingModel, Piece
    from guard.components.threads import load_alone, model_thread

    def load() -> EmbeddingModel:
        return EmbeddingModel.load(precision=precision)  # type: ignore[arg-type]

    model = load_alone(load) if arrangement == "model thread" else load()
    texts = [row.text for name in ("xstest", "advbench") for row in datasets.load(name)]
    pieces = [Piece(row) for row in model.tokenize(texts)]
    rng = random.Random(0)
    batches = [rng.sample(pieces, 32) for _ in range(60)]

    def one_pass() -> float:
        started = time.perf_counter()
        for batch in batches:
            model.piece_rows(batch)
        return (time.perf_counter() - started) / len(batches) * 1000

    if arrangement == "main":
        first, rest = one_pass(), [one_pass() for _ in range(3)]
    else:
        runner = model_thread() if arrangement == "model thread" else ThreadPoolExecutor(1)
        first = runner.submit(one_pass).result()
        rest = [runner.submit(one_pass).result() for _ in range(3)]
    return {"first_ms": round(first, 2), "then_ms": round(sum(rest) / len(rest), 2)}


def product_ms() -> dict[str, float]:
    """One 1536 x 384 product on 100 row counts from 300 to 700, ms each (the inputs made
    and converted before the clock starts)."""
    import torch
    import torch.nn.functional as F

    from guard.components.minilm import ROWS

    weight = torch.randn(1536, 384)
    half = weight.to(torch.bfloat16)
    rng = random.Random(0)
    rows = [rng.randint(300, 700) for _ in range(100)]
    inputs = [torch.randn(n, 384) for n in rows]
    halves = [x.to(torch.bfloat16) for x in inputs]
    padded = [torch.randn(-(-n // ROWS) * ROWS, 384).to(torch.bfloat16) for n in rows]

    def mean_ms(weights: Any, xs: list[Any]) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            for x in xs:
                F.linear(x, weights)
        return round((time.perf_counter() - started) / len(xs) * 1000, 3)

    return {
        "float32": mean_ms(weight, inputs),
        "bfloat16": mean_ms(half, halves),
        "bfloat16_padded": mean_ms(half, padded),
    }


def fresh(*args: str) -> Any:
    """This script's answer to ``args``, from a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--arrangement", choices=ARRANGEMENTS, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, help=argparse.SUPPRESS)
    parser.add_argument("--product", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.product:
        print(json.dumps(product_ms()))
        return 0
    if args.arrangement:
        print(json.dumps(batches_ms(args.arrangement, args.precision)))
        return 0
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/model_thread.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    started_load = os.getloadavg()
    print(f"$ {command}\nload average {started_load}", flush=True)
    print("\n| arrangement | precision | first pass, ms a batch | then |\n|---|---|---:|---:|")
    rows = []
    for arrangement in ARRANGEMENTS:
        for precision in PRECISIONS:
            found = fresh("--arrangement", arrangement, "--precision", precision)
            rows.append({"arrangement": arrangement, "precision": precision, **found})
            print(
                f"| {arrangement} | {precision} | {found['first_ms']} | {found['then_ms']} |",
                flush=True,
            )
    product = fresh("--product")
    print(
        f"\n1536 x 384 product on 100 row counts (300-700), ms each: float32 "
        f"{product['float32']}, bfloat16 {product['bfloat16']}, bfloat16 padded to a "
        f"multiple of 32 {product['bfloat16_padded']}"
    )
    load = {"start": started_load, "end": os.getloadavg()}
    print(f"load average {load['end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"command": command, "load": load, "batches": rows, "product": product}
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
