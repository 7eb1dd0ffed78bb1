"""The fake upstream's scripted answers: what each choice says, and the tokens it streams.

The last user message (or the prompt) scripts the answer with markers, in this order:

* ``think: R`` gives the chat answer the reasoning ``R`` (vLLM's ``reasoning`` field);
* ``call: NAME ARGS`` makes it call the tool ``NAME`` with the arguments ``ARGS``;
* ``say: A`` makes it answer ``A``; ``a | b | c`` gives choice i the i-th option
  (cycling), so that ``n`` samples differ, streamed or not; a prefill
  (``continue_final_message``) continues the option it begins.

Without a marker the answer is ``tokens`` words of ``"tok "``. A token is a word with its
trailing space, or, with ``chunk_chars``, a piece of at most that many characters, as a
subword tokenizer splits words (and secrets) across chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

HEAD_MARKERS = re.compile(r"(think|call):(.*?)(?=think:|call:|$)", re.S)


@dataclass(frozen=True)
class Token:
    """One streamed token: which field it extends and with what text."""

    field: str
    """``reasoning``, ``content``, ``call`` (the call's head: its name) or ``arguments``."""
    text: str


@dataclass
class Answer:
    reasoning: str = ""
    content: str = ""
    call: tuple[str, str] | None = None
    tokens: list[Token] = field(default_factory=list)


def script(text: str, index: int, tokens: int, prefill: str | None = None) -> Answer:
    """Choice ``index``'s answer to ``text``, untokenised. With a ``prefill`` (the final
    assistant message continued), it continues the option that the prefill begins."""
    say = text.rfind("say:")
    if say < 0:
        return Answer(content="tok " * tokens)
    options = text[say + 4 :].strip().split(" | ")
    answer = Answer(content=options[index % len(options)])
    if prefill is not None:
        option = next((o for o in options if o.startswith(prefill)), prefill)
        answer.content = option[len(prefill) :]
    for match in HEAD_MARKERS.finditer(text[:say]):
        value = match.group(2).strip()
        if match.group(1) == "think":
            answer.reasoning = value
        else:
            name, _, arguments = value.partition(" ")
            answer.call = (name, arguments.strip())
    return answer


def tokenize(answer: Answer, limit: int | None, chunk_chars: int | None) -> Answer:
    """``answer`` with its tokens, cut at ``limit`` (``max_tokens``); the fields keep only
    what the tokens say."""
    out: list[Token] = [Token("reasoning", t) for t in pieces(answer.reasoning, chunk_chars)]
    out += [Token("content", t) for t in pieces(answer.content, chunk_chars)]
    if answer.call is not None:
        out.append(Token("call", answer.call[0]))
        out += [Token("arguments", t) for t in pieces(answer.call[1], chunk_chars)]
    if limit is not None:
        out = out[:limit]

    def said(name: str) -> str:
        return "".join(t.text for t in out if t.field == name)

    call = (answer.call[0], said("arguments")) if answer.call and said("call") else None
    return Answer(said("reasoning"), said("content"), call, out)


def pieces(text: str, chunk_chars: int | None) -> list[str]:
    if chunk_chars:
        return [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]
    return re.findall(r"\s*\S+\s*", text) if text.startswith(" ") else re.findall(r"\S+\s*", text)


def message(answer: Answer) -> dict[str, Any]:
    """The chat message of a finished answer, with the fields vLLM 0.32 sends."""
    calls = []
    if answer.call is not None:
        calls.append(
            {
                "id": "call-1",
                "type": "function",
                "function": {"name": answer.call[0], "arguments": answer.call[1]},
            }
        )
    return {
        "role": "assistant",
        "content": answer.content if answer.content or not calls else None,
        "refusal": None,
        "annotations": None,
        "audio": None,
        "function_call": None,
        "tool_calls": calls,
        "reasoning": answer.reasoning or None,
    }


def delta(token: Token) -> dict[str, Any]:
    """The streamed delta of one token."""
    if token.field in ("reasoning", "content"):
        return {token.field: token.text}
    call: dict[str, Any] = {"index": 0, "function": {"arguments": token.text}}
    if token.field == "call":
        call = {
            "index": 0,
            "id": "call-1",
            "type": "function",
            "function": {"name": token.text, "arguments": ""},
        }
    return {"tool_calls": [call]}
