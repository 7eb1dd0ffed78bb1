"""The rows ``guard train-attack-head`` learns from, and its settings.

Only sets whose licence allows training, plus the frames written for guard in
``guard/train/data/authored_attacks.json``, ``authored_documentation.json`` and
``authored_personas.json``: jailbreak positives (JailbreakBench attack artifacts,
in-the-wild jailbreaks, GPTFuzz templates filled with GPTFuzz questions, authored short
persona set-ups), prompt-injection positives (CyberSecEval, authored injected
instructions alone and inside authored documents), and negatives of both (every
trainable request and text set, HH-RLHF's first human turns, the authored benign texts,
documentation and role-play requests, installed code and docs), and harmful requests with
a drawn optimised-suffix stand-in after them (jailbreaks) or an authored technical text
(neither; ``suffixed_requests``). Each row carries its group for the goal split and its
template for the template split.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from guard import datasets
from guard.components.embedding import file_sha256
from guard.components.minilm import PACKAGED_BACKBONE, backbone_path
from guard.components.specs import ATTACK_LABELS
from guard.datasets.readers import Example, text_group
from guard.train.embedding_head import (
    AUTHORED,
    GROUP_SEPARATOR,
    LOOKALIKES,
    TRAIN_DATA,
    authored_benign,
)
from guard.train.embedding_head import Config as HeadConfig
from guard.train.installed_text import (
    AUTHORED_DOCUMENTATION,
    documentation_examples,
    installed_examples,
    training_data_hashes,
)
from guard.train.instructed import AUTHORED_INSTRUCTED
from guard.train.suffixes import suffix, vocabulary_words

AUTHORED_ATTACKS = TRAIN_DATA / "authored_attacks.json"
AUTHORED_PERSONAS = TRAIN_DATA / "authored_personas.json"

JAILBREAK_SETS = ("jbb_artifacts", "inthewild_jailbreaks")
INJECTION_SETS = ("prompt_injection",)
NEGATIVE_SETS = (
    "xstest",
    "jbb_benign",
    "jbb_harmful",
    "mitre_frr",
    "openai_moderation",
    "hatecheck",
    "harmbench",
    "advbench",
    "simplesafetytests",
    "gptfuzz_questions",
    "prompt_injection_benign",
)
HH_RLHF = "hh_rlhf_harmless/harmless-base/test.dev.jsonl.gz"
"""Anthropic HH-RLHF (MIT): the first human turn of each red-team dialogue, a real
person's plain request, harmful or not but never an attack on the model's instructions."""

SUFFIXED_SETS = ("harmbench", "advbench", "gptfuzz_questions")
"""Harmful requests that get drawn suffixes or technical texts after them. Not
JailbreakBench's own behaviours: its attack artifacts wrap those very goals."""
DRAWN_SUFFIX = "attack:drawn_suffix"
PERSONA = "attack:authored_persona"

EVAL_ONLY_SETS = ("toxicchat_human", "do_not_answer")
"""Scored by the fold models; never trained on (non-commercial licences)."""


@dataclass(frozen=True)
class Config:
    """The settings of ``guard train-attack-head``: the data it draws, and the fit."""

    regularisation: float = 10.0
    """scikit-learn's ``C``: larger fits the training rows more closely."""
    embedding_weight: float = 0.5
    """Scale of the embedding features next to the unit-length n-gram vector."""
    fills: int = 3
    """How many GPTFuzz questions fill each GPTFuzz template."""
    injected_per_document: int = 4
    suffixes: int = 300
    """How many harmful requests also train as jailbreaks with a drawn optimised-suffix
    stand-in after them (``guard.train.suffixes``), and how many, drawn again, train as
    neither with an authored technical text after them (``suffixed_requests``)."""
    composed: int = 240
    """How many injected instructions to compose from the authored parts."""
    installed: int = 800
    """How many chunks of installed code, headers, data, descriptions and licences train
    as neither (``guard.train.installed_text``); every third asked about."""
    documentation: tuple[str, ...] = ("jailbreak", "prompt_injection")
    """The labels whose fits learn from the authored documentation and markup (Markdown,
    reStructuredText, HTML, CSS, JavaScript, templates, configuration), as neither: the
    installed packages hold little of it, and the head took it for attacks. ``()``, with
    ``personas`` false, trains the head shipped before them."""
    personas: bool = True
    """Train on the authored short jailbreak set-ups (one attack kind for the template
    split) and the honest role-play requests worded like them; false trains the head
    shipped before them (the documentation head)."""
    rules: bool = False
    """With ``personas``, train on the authored honest requests that set rules the way
    the set-ups do too (forced openings and reply formats, cipher and word games, claimed
    roles, opposite-day games), as neither; false trains the persona head."""
    folds: int = 5
    draws: int = 10
    """How many times cross-validation deals the groups into folds (seeds ``seed``,
    ``seed + 1``...). The thresholds and the cross-validation tables pool every draw's
    out-of-fold scores; one draw alone moves them with the luck of which groups share a
    fold (docs/safety.md, "Folds drawn again"). 10 since 2026-12-07; 1 gives the head
    shipped before, thresholds and tables of one draw."""
    seed: int = 0
    backbone: str = PACKAGED_BACKBONE
    tuned_states: bool = True
    """Read texts through the fine-tuned encoder of the shipped ``embedding`` head, not
    the plain backbone: a policy with both rails then runs one encoder pass per short
    text, and the head does better (docs/safety.md). The instruction-aware layer's
    similarities always come from the plain backbone."""


@dataclass(frozen=True)
class Row:
    example: Example
    labels: tuple[bool, bool]
    """(jailbreak, prompt_injection)"""
    template: str
    """The group of the template split."""
    trains: tuple[bool, bool] = (True, True)
    """Which labels' fits learn from the row (jailbreak, prompt_injection); neither: only
    measured. An authored document with an instruction injected is scored whole, as at
    run time, but trains nothing: its benign text would teach the head that documents
    are injections. Its payload, alone, trains; its document, clean, too."""

    @property
    def trained(self) -> bool:
        """Whether any label's fit learns from the row."""
        return any(self.trains)


def attack(example: Example, label: str, template: str) -> Row:
    return Row(example, (label == "jailbreak", label == "prompt_injection"), template)


def benign(example: Example) -> Row:
    return Row(replace(example, unsafe=False), (False, False), example.group)


def template_of(example: Example) -> str:
    """JailbreakBench's templated attacks share one group per attack kind; a written
    template (in-the-wild, GPTFuzz) is known by its opening words."""
    if example.source == "jbb_artifacts":
        return example.group if example.subset == "PAIR" else f"attack:{example.subset}"
    if example.source in ("inthewild_jailbreaks", "gptfuzz_templates"):
        return "template:" + " ".join(re.findall(r"\w+", example.text.lower())[:8])
    return example.group


def filled_templates(config: Config, root: Path | None) -> list[Row]:
    questions = datasets.load("gptfuzz_questions", root)
    rng = random.Random(config.seed)
    rows = []
    for template in datasets.load("gptfuzz_templates", root):
        for question in rng.sample(questions, config.fills):
            text = template.text.replace("[INSERT PROMPT HERE]", question.text)
            example = replace(template, text=text, group=f"{template.group}|{question.group}")
            rows.append(attack(example, "jailbreak", template_of(template)))
    return rows


def composed_payloads(data: dict[str, Any], config: Config) -> list[tuple[str, str]]:
    """Injected instructions composed from the authored openers, verbs, targets and goals,
    ``composed`` of them drawn with the seed; each is grouped by its goal, so that the
    cross-validation tests a goal's wording that no training row had."""
    parts = data["compose"]
    every = [
        (opener, verb, target, goal)
        for opener in parts["openers"]
        for verb in parts["verbs"]
        for target in parts["targets"]
        for goal in range(len(parts["goals"]))
    ]
    chosen = random.Random(config.seed).sample(every, config.composed)
    return [
        (f"{opener}{verb} {target} {parts['goals'][goal]}", f"goal:{goal}")
        for opener, verb, target, goal in chosen
    ]


def authored_attack_rows(config: Config) -> list[Row]:
    """Benign documents, and the same documents with an instruction injected. The whole
    injected document is only measured; what trains is the instruction with the text
    around it (about a window's worth), and the clean document."""
    data = json.loads(AUTHORED_ATTACKS.read_text())
    rng = random.Random(config.seed)
    rows = []

    def add(text: str, source: str, group: str, trained: bool = True) -> None:
        injected = source.startswith("authored_injected")
        example = Example(text, injected, (), source, group)
        row = attack(example, "prompt_injection", group) if injected else benign(example)
        rows.append(replace(row, trains=(trained, trained)))

    inserts = data["benign_inserts"]
    payloads = [(text, f"payload:{i}") for i, text in enumerate(data["payloads"])]
    payloads += composed_payloads(data, config)
    for i, document in enumerate(data["documents"]):
        # All of a document's rows share its group: a fold tests documents it never saw.
        group = f"document:{i}"
        add(re.sub(r" ?\{slot\}", "", document), "authored_documents", group)
        before, after = document.split("{slot}")
        for b in rng.sample(range(len(inserts)), 2):
            add(document.replace("{slot}", inserts[b]), "authored_documents", group)
        for p in rng.sample(range(len(payloads)), config.injected_per_document):
            text = payloads[p][0]
            add(before + text + after, "authored_injected_documents", group, trained=False)
            add(before[-60:] + text + after[:60], "authored_injected_snippets", group)
    for text, group in payloads:
        add(text, "authored_injected_instructions", group)
    for kind in ("benign_inserts", "system_prompts", "roleplay", "chat", "technical"):
        for i, text in enumerate(data[kind]):
            group = f"insert:{i}" if kind == "benign_inserts" else f"{kind}:{i}"
            add(text, f"authored_{kind}", group)
    return rows


def training_rows(config: Config, root: Path | None = None) -> list[Row]:
    for name in (*JAILBREAK_SETS, *INJECTION_SETS, *NEGATIVE_SETS, "gptfuzz_templates"):
        if not datasets.trainable(name):
            raise ValueError(f"{name} may not be trained on ({datasets.LICENCES[name].name})")
    rows = [
        attack(example, "jailbreak", template_of(example))
        for name in JAILBREAK_SETS
        for example in datasets.load(name, root)
    ]
    rows += filled_templates(config, root)
    rows += [
        attack(example, "prompt_injection", example.group)
        for name in INJECTION_SETS
        for example in datasets.load(name, root)
    ]
    rows += [benign(example) for name in NEGATIVE_SETS for example in datasets.load(name, root)]
    # The harm head's authored benign prompts, without its secrets texts: the rows (and so
    # the folds) stay what they were when the secrets joined the harm head.
    everyday = authored_benign(HeadConfig(seed=config.seed, secrets=False))
    rows += [benign(example) for example in everyday]
    lookalikes = json.loads(LOOKALIKES.read_text())["benign"]
    rows += [
        benign(Example(text, False, (), "authored_lookalikes", f"lookalike:{i}"))
        for i, text in enumerate(lookalikes)
    ]
    rows += hh_rlhf_requests(root) + authored_attack_rows(config)
    rows += suffixed_requests(rows, config)
    return rows + installed_rows(config) + documentation_rows(config) + persona_rows(config)


def installed_rows(config: Config) -> list[Row]:
    """Installed technical text, neither label (``installed_examples``); a fold keeps a
    folder's chunks."""
    return [benign(example) for example in installed_examples(config.installed, config.seed)]


def documentation_rows(config: Config) -> list[Row]:
    """The authored documentation snippets, neither label, one group each, learnt by the
    labels ``config.documentation`` names; every third after a request to explain or
    review it, as the installed chunks."""
    if unknown := set(config.documentation) - set(ATTACK_LABELS):
        raise ValueError(f"documentation names no such label: {sorted(unknown)}")
    if not config.documentation:
        return []
    trains = ("jailbreak" in config.documentation, "prompt_injection" in config.documentation)
    return [replace(benign(row), trains=trains) for row in documentation_examples(config.seed)]


def persona_rows(config: Config) -> list[Row]:
    """The authored short jailbreak set-ups (jailbreaks, one group each, one attack kind
    for the template split), and the role-play requests worded like them and the honest
    rule-setting requests (``config.rules``) as neither."""
    if not config.personas:
        return []
    data = json.loads(AUTHORED_PERSONAS.read_text())
    jailbreaks = [
        attack(Example(text, True, (), "authored_personas", f"persona:{i}"), "jailbreak", PERSONA)
        for i, text in enumerate(data["jailbreaks"])
    ]
    return (
        jailbreaks
        + [
            benign(Example(text, False, (), "authored_persona_roleplay", f"persona_roleplay:{i}"))
            for i, text in enumerate(data["roleplay"])
        ]
        + [
            benign(Example(text, False, (), "authored_rules", f"rules:{i}"))
            for i, text in enumerate(data["rules"] if config.rules else [])
        ]
    )


def suffixed_requests(rows: list[Row], config: Config) -> list[Row]:
    """``config.suffixes`` harmful requests drawn with the seed, each with a drawn suffix
    (jailbreaks, one attack kind for the template split), and as many followed by an
    authored technical text (code, commands, markup: neither label), so that the head
    learns what a suffix is, not that symbols are attacks. A row is in its request's
    group, and one with a technical text in that text's group too."""
    if not config.suffixes:
        return []
    requests = [row.example for row in rows if row.example.source in SUFFIXED_SETS]
    technical = [row.example for row in rows if row.example.source == "authored_technical"]
    vocab = (Path(backbone_path(config.backbone)) / "vocab.txt").read_text(encoding="utf-8")
    words = vocabulary_words(vocab.splitlines())
    rng = random.Random(config.seed)
    suffixed = [
        attack(
            replace(
                request, text=f"{request.text} {suffix(words, rng)}", source="authored_suffixed"
            ),
            "jailbreak",
            DRAWN_SUFFIX,
        )
        for request in rng.sample(requests, config.suffixes)
    ]
    followed = []
    for request in rng.sample(requests, config.suffixes):
        code = rng.choice(technical)
        group = f"{request.group}{GROUP_SEPARATOR}{code.group}"
        text = f"{request.text} {code.text}"
        example = replace(request, text=text, source="authored_code_after", group=group)
        followed.append(benign(example))
    return suffixed + followed


def hh_rlhf_requests(root: Path | None) -> list[Row]:
    path = (root or datasets.data_root()) / HH_RLHF
    first: dict[str, None] = {}
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            found = re.search(r"Human: (.*?)\n\nAssistant:", json.loads(line)["chosen"], re.S)
            if found:
                first.setdefault(found.group(1).strip())
    return [
        benign(Example(text, False, (), "hh_rlhf_requests", text_group(text))) for text in first
    ]


def dataset_hashes(config: Config, root: Path | None) -> dict[str, str]:
    names = (*JAILBREAK_SETS, *INJECTION_SETS, *NEGATIVE_SETS, "gptfuzz_templates")
    hashes = {name: datasets.sha256(name, root) for name in sorted(set(names))}
    hh_rlhf = (root or datasets.data_root()) / HH_RLHF
    hashes["hh_rlhf_requests"] = file_sha256(hh_rlhf)
    for file in (AUTHORED, LOOKALIKES, AUTHORED_ATTACKS, AUTHORED_INSTRUCTED):
        hashes[file.name] = file_sha256(file)
    if config.documentation:
        hashes[AUTHORED_DOCUMENTATION.name] = file_sha256(AUTHORED_DOCUMENTATION)
    if config.personas:
        hashes[AUTHORED_PERSONAS.name] = file_sha256(AUTHORED_PERSONAS)
    hashes["vocab.txt"] = file_sha256(Path(backbone_path(config.backbone)) / "vocab.txt")
    return hashes | training_data_hashes(config.installed, config.seed)
