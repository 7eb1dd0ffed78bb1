"""bench/operating_points.py: heads compared at equal operating points, as trained or served."""

from __future__ import annotations

from bench.operating_points import table


def test_the_other_sets_are_read_at_the_threshold_that_meets_the_target() -> None:
    def rows(source: str, unsafe: bool, *scores: float) -> list[dict[str, object]]:
        return [{"source": source, "unsafe": unsafe, "score": score} for score in scores]

    lines = table(
        [
            *rows("harmbench", True, *(s / 10 for s in range(1, 11))),
            *rows("simplesafetytests", True, 0.1, 0.3),
            *rows("xstest", True, 0.25),
            *rows("xstest", False, 0.15, 0.95),
            *rows("jbb_benign", False, 0.5, 0.1),
            *rows("do_not_answer", True, 0.05),
            *rows("openai_moderation", True, 0.9),
            *rows("openai_moderation", False, 0.1),
            *rows("toxicchat_human", True, 0.1),
            *rows("toxicchat_human", False, 0.9),
        ]
    )
    # recall 0.9 of the ten HarmBench scores 0.1 ... 1.0: threshold 0.2, nine caught
    recall = next(line for line in lines if line.startswith("| HarmBench recall 0.9 |"))
    assert recall.split(" | ")[1:] == [
        "0.200",
        "0.900",
        "0.500",
        "1.000",
        "0.500",
        "0.500",
        "0.000",
        "1.000",
        "0.000 |",
    ]
    # XSTest's two safe scores 0.15 and 0.95: a false-positive rate of 0.14 allows
    # neither, so the threshold sits just above 0.95: HarmBench's 1.0 alone is caught
    fpr = next(line for line in lines if line.startswith("| XSTest FPR 0.14 |"))
    assert fpr.split(" | ")[1:6] == ["0.950", "0.100", "0.000", "0.000", "0.000"]
