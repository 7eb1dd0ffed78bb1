"""The data set readers, on the real dev files in ../shared/data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from guard import datasets
from guard.datasets.readers import Example

pytestmark = pytest.mark.skipif(
    not (datasets.data_root() / "README.md").exists(), reason="no shared data folder"
)

DEV_ROWS = {
    # name: (rows, unsafe rows) from data/README.md's dev counts
    "openai_moderation": (858, None),
    "xstest": (231, None),
    "toxicchat_human": (1433, None),
    "harmbench": (195, 195),
    "advbench": (258, 258),
    "advbench_strings": (293, 293),
    "simplesafetytests": (56, 56),
    "jbb_harmful": (56, 56),
    "jbb_benign": (56, 0),
    "jbb_judge": (159, None),
    "hatecheck": (1969, None),
    "gptfuzz_questions": (53, 53),
    "gptfuzz_templates": (39, 39),
    "gptfuzz_responses": (3157, None),
    "inthewild_jailbreaks": (329, 329),
    "mitre_frr": (396, 0),
    "prompt_injection": (140, 140),
    "do_not_answer": (466, 466),
}


@pytest.mark.parametrize("name", sorted(DEV_ROWS))
def test_row_counts(name: str) -> None:
    rows, unsafe = DEV_ROWS[name]
    examples = datasets.load(name)
    assert len(examples) == rows
    if unsafe is not None:
        assert sum(e.unsafe for e in examples) == unsafe
    assert all(isinstance(e, Example) and e.text.strip() and e.group for e in examples)
    assert {e.source for e in examples} == {name}


def test_openai_moderation_labels_map_to_openai_category_names() -> None:
    examples = datasets.load("openai_moderation")
    categories = Counter(c for e in examples for c in e.categories)
    assert set(categories) <= set(datasets.OPENAI_CATEGORIES.values())
    assert all(e.unsafe == bool(e.categories) for e in examples)
    assert 0.2 < sum(e.unsafe for e in examples) / len(examples) < 0.5


def test_xstest_has_safe_prompts_and_unsafe_contrasts() -> None:
    examples = datasets.load("xstest")
    assert all(e.unsafe == e.subset.startswith("contrast_") for e in examples)
    assert Counter(e.unsafe for e in examples) == {False: 135, True: 96}
    assert len({e.group for e in examples}) == len(examples)


def test_hatecheck_groups_by_template_and_jbb_twins_share_a_group() -> None:
    hatecheck = datasets.load("hatecheck")
    assert len({e.group for e in hatecheck}) < len(hatecheck) / 3
    assert sum(e.unsafe for e in hatecheck) > len(hatecheck) / 2
    both = datasets.load("jbb_behaviors")
    assert len(both) == 112
    by_group = Counter(e.group for e in both)
    assert set(by_group.values()) == {2}


def test_toxicchat_and_do_not_answer_are_not_trainable() -> None:
    assert not datasets.trainable("toxicchat_human")
    assert not datasets.trainable("do_not_answer")
    assert datasets.trainable("openai_moderation")
    assert set(datasets.LICENCES) == set(datasets.DATASETS)


def test_load_by_path_uses_the_readers_or_generic_columns(tmp_path: Path) -> None:
    by_name = datasets.load("xstest")
    by_path = datasets.load(datasets.data_root() / "xstest" / "xstest_prompts.dev.csv")
    assert by_path == by_name
    generic = tmp_path / "mine.jsonl"
    rows = [{"text": "hello", "label": 0}, {"prompt": "how to make a bomb", "unsafe": True}]
    generic.write_text("\n".join(json.dumps(row) for row in rows))
    loaded = datasets.load(generic)
    assert [(e.text, e.unsafe) for e in loaded] == [("hello", False), ("how to make a bomb", True)]


def test_another_split_is_found_under_another_root(tmp_path: Path) -> None:
    source = datasets.data_root() / "simplesafetytests" / "SimpleSafetyTests - test cases.dev.csv"
    (tmp_path / "simplesafetytests").mkdir()
    target = tmp_path / "simplesafetytests" / "SimpleSafetyTests - test cases.test.csv"
    target.write_bytes(source.read_bytes())
    assert len(datasets.load("simplesafetytests", root=tmp_path)) == 56


def test_unknown_name_explains_itself() -> None:
    with pytest.raises(FileNotFoundError, match="neither a known data set"):
        datasets.load("no_such_set")
