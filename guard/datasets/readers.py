"""Readers: each labelled safety set, read from its original files into one row type.

Every set becomes a list of ``Example``: a text, whether it is unsafe, the
categories the set gives it, and a ``group`` key that ties related rows together
(an XSTest prompt id, a HateCheck template, a JailbreakBench goal with its benign
twin and its attacks). Grouped cross-validation must keep a group on one side.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Role = Literal["user", "system", "assistant"]


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
    """``assistant`` for sets of model answers (then ``prompt`` is what was asked);
    ``system`` for an application's own instructions, judged as a system message is."""
    prompt: str | None = None
    instructions: str | None = None
    """The application's own instructions the text was sent to (a system message before
    it), for sets that give them: what an instruction-aware detector reads it against."""


Reader = Callable[[Path], list[Example]]


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


def read_openai_moderation(path: Path) -> list[Example]:
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


def read_xstest(path: Path) -> list[Example]:
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


def read_toxicchat(path: Path) -> list[Example]:
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


def read_harmbench(path: Path) -> list[Example]:
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


def read_advbench(path: Path) -> list[Example]:
    return [
        Example(row["goal"], True, (), "advbench", text_group(row["goal"]))
        for row in _csv_rows(path)
    ]


def read_advbench_strings(path: Path) -> list[Example]:
    return [
        Example(row["target"], True, (), "advbench_strings", text_group(row["target"]))
        for row in _csv_rows(path)
    ]


def read_simplesafetytests(path: Path) -> list[Example]:
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


def read_jbb(unsafe: bool, source: str) -> Reader:
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


def read_jbb_judge(path: Path) -> list[Example]:
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


def read_jbb_artifacts(root: Path) -> list[Example]:
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


def read_hatecheck(path: Path) -> list[Example]:
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


def read_gptfuzz_questions(path: Path) -> list[Example]:
    return [
        Example(row["text"], True, (), "gptfuzz_questions", f"gptfuzz:q{row['index']}")
        for row in _csv_rows(path)
    ]


def read_gptfuzz_templates(path: Path) -> list[Example]:
    return [
        Example(row["text"], True, ("jailbreaking",), "gptfuzz_templates", f"gptfuzz:t{row['id']}")
        for row in _csv_rows(path)
    ]


def read_gptfuzz_responses(path: Path) -> list[Example]:
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


def read_inthewild(path: Path) -> list[Example]:
    return [
        Example(text, True, ("jailbreaking",), "inthewild_jailbreaks", text_group(text))
        for text in _json(path)
    ]


def read_mitre_frr(path: Path) -> list[Example]:
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


def read_prompt_injection(path: Path) -> list[Example]:
    return [
        Example(
            row["user_input"],
            True,
            ("prompt_injection",),
            "prompt_injection",
            f"injection:{row['prompt_id']}",
            row["injection_type"],
            instructions=row["test_case_prompt"],
        )
        for row in _json(path)
    ]


def read_prompt_injection_benign(path: Path) -> list[Example]:
    """The applications' own instructions of the prompt-injection set, each once: what an
    injection detector must not flag."""
    first: dict[str, str] = {}
    for row in _json(path):
        first.setdefault(row["test_case_prompt"], f"injection:{row['prompt_id']}")
    return [
        Example(text, False, (), "prompt_injection_benign", group, role="system")
        for text, group in first.items()
    ]


def read_do_not_answer(root: Path) -> list[Example]:
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


_TEXT_KEYS = ("text", "prompt", "input")


_LABEL_KEYS = ("unsafe", "label", "flagged")


_UNSAFE_VALUES = {"1", "true", "unsafe", "yes", "toxic", "harmful", "hateful", "flagged"}


def read_generic(path: Path) -> list[Example]:
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
