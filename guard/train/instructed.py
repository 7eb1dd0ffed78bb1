"""Train and measure the instruction-aware layer of the ``prompt_injection`` label.

The layer (``guard.components.instructions``) reads a message against the system prompt
it was sent to. It learns from pairs of instructions and a message:

* attacks: every CyberSecEval prompt injection with its own instructions, and the
  authored requests for what an authored application forbids
  (``guard/train/data/authored_instructed.json``);
* honest messages: the authored requests each application is meant to answer, and
  everyday requests (authored, HH-RLHF, XSTest's and JailbreakBench's benign ones), each
  paired with one of the applications' instructions in turn.

Each pair's ``injection_logit`` is the message's own score: out of fold for training
rows, by the final head for the authored messages (it never saw them). Folds are
grouped by the instructions' opening words, so a fold is scored by a layer that never
saw that kind of application. The layer's threshold is the lowest at which honest
messages are flagged no more than ``EVERYDAY_FPR`` (everyday requests) and
``ALLOWED_FPR`` (the authored in-scope requests), counting the message's own score too;
its bias is then shifted so that the label's one threshold applies to both.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from guard.components.attacks import EMBEDDING_TOKENS, AttackModel, logit
from guard.components.instructions import FEATURES, similarities
from guard.components.minilm import fit_length
from guard.datasets.readers import Example
from guard.reading import normalized_text
from guard.train.embedding_head import TRAIN_DATA, folds_by_group

AUTHORED_INSTRUCTED = TRAIN_DATA / "authored_instructed.json"
EVERYDAY_SOURCES = (
    "authored_benign",
    "authored_chat",
    "hh_rlhf_requests",
    "xstest",
    "jbb_benign",
)
EVERYDAY_PAIRS = 400
EVERYDAY_FPR = 0.02
ALLOWED_FPR = 0.05


@dataclass(frozen=True)
class Trained:
    layer: dict[str, Any]
    """For the head's JSON: weights, bias shifted onto the label's threshold, the
    cross-validated table."""
    wrong: list[str]
    """Every pair it gets wrong out of fold (Markdown)."""
    injections_caught: list[bool]
    """Per CyberSecEval injection sent with instructions (``sent_with_instructions``), in
    order: flagged out of fold as the policy reads it with them, by its own score or, where
    the instructions forbid something, by the instruction-aware layer."""


@dataclass(frozen=True)
class Pair:
    instructions: str
    text: str
    attack: bool
    kind: str
    """``prompt_injection``, ``authored_forbidden``, ``authored_allowed`` or ``everyday``"""
    logit: float
    """The message's own ``prompt_injection`` logit."""


def family(instructions: str) -> str:
    """The opening words of instructions: applications of one kind share them."""
    return " ".join(re.findall(r"[a-z']+", instructions.lower())[:3])


def sent_with_instructions(example: Example) -> bool:
    """A CyberSecEval injection with the application's instructions it was sent to."""
    return example.source == "prompt_injection" and bool(example.instructions)


def pairs(
    examples: Sequence[Example],
    logits: Sequence[float],
    score: Callable[[list[str]], list[float]],
    seed: int,
) -> list[Pair]:
    """The training pairs. ``examples`` and ``logits``: the attack head's rows and their
    out-of-fold injection logits; ``score``: the final head's logits for new texts."""
    found = [
        Pair(e.instructions or "", e.text, True, "prompt_injection", own)
        for e, own in zip(examples, logits, strict=True)
        if sent_with_instructions(e)
    ]
    apps = json.loads(AUTHORED_INSTRUCTED.read_text())["apps"]
    for app in apps:
        for kind, attack in (("allowed", False), ("forbidden", True)):
            texts = list(app[kind])
            found += [
                Pair(app["system"], text, attack, f"authored_{kind}", own)
                for text, own in zip(texts, score(texts), strict=True)
            ]
    told = sorted({p.instructions for p in found if p.kind == "prompt_injection"})
    told += [app["system"] for app in apps]
    everyday = [
        (e.text, own)
        for e, own in zip(examples, logits, strict=True)
        if e.source in EVERYDAY_SOURCES and not e.unsafe
    ]
    random.Random(seed).shuffle(everyday)
    found += [
        Pair(told[i % len(told)], text, False, "everyday", own)
        for i, (text, own) in enumerate(everyday[:EVERYDAY_PAIRS])
    ]
    return found


def feature_matrix(model: AttackModel, found: Sequence[Pair]) -> NDArray[np.float64]:
    """One row of ``FEATURES`` per pair, as the detector computes them at run time; NaN
    after ``injection_logit`` when the instructions forbid nothing (the layer is not used)."""
    read = [normalized_text(p.text) for p in found]
    cut = [fit_length(ids, EMBEDDING_TOKENS) for ids in model.encode(read)]
    embed = model.similarity_embeddings
    vectors = np.concatenate([embed(cut[i : i + 64]) for i in range(0, len(cut), 64)])
    rows = []
    for pair, vector in zip(found, vectors, strict=True):
        features = similarities(vector, model.instruction_vectors(pair.instructions))
        rows.append([pair.logit, *(features or [np.nan] * (len(FEATURES) - 1))])
    return np.array(rows)


def fit_layer(x: NDArray[np.float64], y: NDArray[np.bool_]) -> tuple[NDArray[np.float64], float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(x, y)
    return model.coef_[0], float(model.intercept_[0])


def out_of_fold(
    x: NDArray[np.float64], y: NDArray[np.bool_], groups: Sequence[str], folds: int, seed: int
) -> NDArray[np.float64]:
    fold = folds_by_group(groups, folds, seed)
    logits = np.zeros(len(y))
    for k in range(folds):
        weights, bias = fit_layer(x[fold != k], y[fold != k])
        logits[fold == k] = x[fold == k] @ weights + bias
    return logits


def flagged_share(fired: NDArray[np.bool_], kinds: NDArray[np.str_], kind: str) -> float:
    chosen = kinds == kind
    return float(fired[chosen].mean()) if chosen.any() else 0.0


def choose_threshold(
    own: NDArray[np.float64], aware: NDArray[np.float64], kinds: NDArray[np.str_], label: float
) -> float:
    """The lowest threshold for the layer's logits ``aware`` at which everyday and in-scope
    messages stay within their false-positive bounds, either score firing (``own``
    against the label's threshold ``label``)."""
    own_fires = own >= logit(label)
    for threshold in [round(0.05 + 0.01 * i, 2) for i in range(91)]:
        fired = own_fires | (aware >= logit(threshold))
        if (
            flagged_share(fired, kinds, "everyday") <= EVERYDAY_FPR
            and flagged_share(fired, kinds, "authored_allowed") <= ALLOWED_FPR
        ):
            return threshold
    return 0.95


def train(
    model: AttackModel,
    examples: Sequence[Example],
    logits: Sequence[float],
    score: Callable[[list[str]], list[float]],
    label_threshold: float,
    folds: int,
    seed: int,
) -> Trained:
    """The layer, trained on every pair, and what it does out of fold."""
    found = pairs(examples, logits, score, seed)
    x = feature_matrix(model, found)
    y = np.array([p.attack for p in found])
    kinds = np.array([p.kind for p in found])
    read = np.asarray(~np.isnan(x).any(axis=1), dtype=bool)
    groups = [family(found[i].instructions) for i in np.flatnonzero(read)]
    aware = np.full(len(found), -np.inf)
    aware[read] = out_of_fold(x[read], y[read], groups, folds, seed)
    threshold = choose_threshold(x[:, 0], aware, kinds, label_threshold)
    own_fires = x[:, 0] >= logit(label_threshold)
    either = own_fires | (aware >= logit(threshold))
    table = {
        kind: {
            "rows": int((kinds == kind).sum()),
            "read_with_instructions": int((read & (kinds == kind)).sum()),
            "flagged_alone": round(flagged_share(own_fires, kinds, kind), 4),
            "flagged_with_instructions": round(flagged_share(either, kinds, kind), 4),
        }
        for kind in sorted(set(kinds))
    }
    weights, bias = fit_layer(x[read], y[read])
    layer = {
        "features": list(FEATURES),
        "weights": [round(float(w), 6) for w in weights],
        "bias": round(bias - logit(threshold) + logit(label_threshold), 6),
        "threshold": threshold,
        "cv": table,
    }
    caught = [bool(f) for p, f in zip(found, either, strict=True) if p.kind == "prompt_injection"]
    return Trained(layer, wrong_pairs(found, either), caught)


def wrong_pairs(found: Sequence[Pair], fired: NDArray[np.bool_]) -> list[str]:
    """Markdown: the injections missed and the honest messages flagged, read with their
    instructions; texts cut to 120 characters, instructions to 80."""

    def cell(text: str, length: int) -> str:
        return " ".join(text.split())[:length].replace("|", "\\|")

    lines = ["", "## Read with the application's instructions"]
    for title, attack in (("Missed injections", True), ("Honest messages flagged", False)):
        wrong = [p for p, f in zip(found, fired, strict=True) if p.attack == attack and f != attack]
        lines += ["", f"### {title} ({len(wrong)})", "", "| kind | instructions | message |"]
        lines.append("|---|---|---|")
        lines += [f"| {p.kind} | {cell(p.instructions, 80)} | {cell(p.text, 120)} |" for p in wrong]
    return lines
