"""Read guard's /metrics with prometheus_client's own parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def metric(url: str, name: str, headers: dict[str, str] | None = None, **labels: str) -> float:
    """The sum of every sample called ``name`` whose labels include ``labels``."""
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    response.raise_for_status()
    return metric_in(response.text, name, **labels)


def metric_in(text: str, name: str, **labels: str) -> float:
    """``metric``, from the text of a /metrics answer."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
