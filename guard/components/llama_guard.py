"""``llama_guard``: a Llama Guard 3/4-format guard model served by vLLM.

Two ways to prompt it (``prompt`` in the policy):

* ``chat_template`` (default): send the conversation through chat completions; the
  served model's own template writes the Llama Guard task with the standard
  S1-S14 taxonomy. Categories left out of ``categories`` are passed as
  ``excluded_category_keys``, which Llama Guard 3's template understands.
* ``guard``: guard writes the Llama Guard 3 task itself (with any
  ``custom_categories``) and sends it as a raw prompt through ``/v1/completions``.

Either way the texts are neutralised first (``guard.components.neutralize``): a forged
``<|eot_id|>`` ... ``safe`` in a user's text reaches the guard model broken.

The answer is ``safe``, or ``unsafe`` and a line of category codes. When the server
returns logprobs, the score is P(unsafe) of the first token.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from guard.components.base import Classifier, Subject, Verdict, all_done
from guard.components.neutralize import neutralize
from guard.components.specs import LlamaGuardSpec
from guard.protocol.messages import message_text
from guard.protocol.upstream import Upstream

STANDARD_CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}

_CODES = re.compile(r"[A-Za-z]*\d+|[A-Za-z][\w-]*")


class MalformedAnswer(ValueError):
    """The guard model answered in a shape that is neither ``safe`` nor ``unsafe``."""


def parse_answer(text: str) -> tuple[bool, list[str]]:
    """``(unsafe, categories)`` from a Llama Guard answer.

    Accepts ``safe``; ``unsafe`` with the codes on the next line or the same line,
    separated by commas or spaces; surrounding whitespace, case and end-of-turn
    markers. Anything else raises ``MalformedAnswer``.
    """
    cleaned = re.sub(r"<\|[^|>]*\|>|</s>", "\n", text).strip()
    lines = [line.strip() for line in cleaned.splitlines() if line.strip()]
    if not lines:
        raise MalformedAnswer("the guard model gave an empty answer")
    first, *rest = lines
    word, _, same_line = first.partition(" ")
    word = word.lower().rstrip(".:,")
    if word == "safe":
        return False, []
    if word != "unsafe":
        raise MalformedAnswer(f"the guard model answered {first[:40]!r}, not safe or unsafe")
    code_line = same_line or (rest[0] if rest else "")
    codes = [code.upper() for code in _CODES.findall(code_line)]
    return True, codes


_LABELS = ("User", "Agent")


def render_prompt(subject: Subject, categories: Mapping[str, str]) -> str:
    """The Llama Guard 3 task for ``subject``, as a raw prompt; every quoted text is
    neutralised, so it cannot close its turn or the conversation and write its own."""
    role = "Agent" if subject.role == "assistant" else "User"
    turns = [
        f"{'Agent' if m.get('role') == 'assistant' else 'User'}: "
        f"{neutralize(message_text(m.get('content')), _LABELS)}"
        for m in subject.context
        if m.get("role") in ("user", "assistant")
    ]
    turns.append(f"{role}: {neutralize(subject.text, _LABELS)}")
    listing = "\n".join(f"{code}: {name}." for code, name in categories.items())
    conversation = "\n\n".join(turns)
    task = (
        f"Task: Check if there is unsafe content in '{role}' messages in conversations "
        "according to our safety policy with the below categories.\n\n"
        f"<BEGIN UNSAFE CONTENT CATEGORIES>\n{listing}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{conversation}\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above "
        "conversation:\n - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated "
        "categories."
    )
    return (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        f"{task}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def _unsafe_probability(top: Sequence[Mapping[str, Any]]) -> float | None:
    safe = unsafe = 0.0
    for candidate in top:
        word = str(candidate.get("token", "")).strip().lower()
        if word in ("safe", "unsafe", "un"):
            probability = math.exp(float(candidate["logprob"]))
            if word == "safe":
                safe += probability
            else:
                unsafe += probability
    return unsafe / (safe + unsafe) if safe + unsafe else None


class LlamaGuardClassifier(Classifier):
    reads_context = True

    def __init__(self, spec: LlamaGuardSpec, endpoint: Upstream):
        self.spec = spec
        self.window_chars = spec.window_chars
        self.endpoint = endpoint
        enforced = spec.categories or list(STANDARD_CATEGORIES)
        self.taxonomy = {
            **{code: STANDARD_CATEGORIES[code] for code in enforced},
            **spec.custom_categories,
        }
        self.enforced = set(self.taxonomy)
        self.categories = tuple(self.taxonomy)

    async def classify(self, subjects: Sequence[Subject]) -> list[Verdict]:
        return await all_done([self._one(subject) for subject in subjects])

    async def _one(self, subject: Subject) -> Verdict:
        if self.spec.prompt == "guard":
            answer = await self.endpoint.post_json(
                "/v1/completions",
                {
                    "model": self.spec.model,
                    "prompt": render_prompt(subject, self.taxonomy),
                    "max_tokens": 20,
                    "temperature": 0,
                    "logprobs": 5,
                },
                "guard-llama-guard",
            )
            choice = answer["choices"][0]
            text = str(choice.get("text") or "")
            top = [
                {"token": t, "logprob": lp}
                for t, lp in ((choice.get("logprobs") or {}).get("top_logprobs") or [{}])[0].items()
            ]
        else:
            answer = await self.endpoint.post_json(
                "/v1/chat/completions", self._chat_body(subject), "guard-llama-guard"
            )
            choice = answer["choices"][0]
            text = str((choice.get("message") or {}).get("content") or "")
            content = (choice.get("logprobs") or {}).get("content") or [{}]
            top = content[0].get("top_logprobs") or []
        unsafe, codes = parse_answer(text)
        matched = tuple(code for code in codes if code in self.enforced)
        flagged = unsafe and (bool(matched) or not codes)
        return Verdict(flagged=flagged, score=_unsafe_probability(top), categories=matched)

    def _chat_body(self, subject: Subject) -> dict[str, Any]:
        """The conversation for the served model's template, each text neutralised: the
        server's tokenizer would read a special token inside a message as the real one."""
        messages: list[dict[str, str]] = []
        turns = [(m["role"], message_text(m.get("content"))) for m in subject.context]
        for role, raw in [*turns, (subject.role, subject.text)]:
            if role not in ("user", "assistant"):
                continue
            text = neutralize(raw)
            if messages and messages[-1]["role"] == role:  # the template wants turns to alternate
                messages[-1]["content"] += "\n\n" + text
            else:
                messages.append({"role": role, "content": text})
        body: dict[str, Any] = {
            "model": self.spec.model,
            "messages": messages,
            "max_tokens": 20,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 5,
        }
        excluded = [code for code in STANDARD_CATEGORIES if code not in self.enforced]
        if excluded:
            body["chat_template_kwargs"] = {"excluded_category_keys": excluded}
        return body
