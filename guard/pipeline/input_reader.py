"""Reading a request into the parts input rails judge: every text the model will read.

That is every message of every role, with every part vLLM renders as text and the
message keys its chat renderer passes to the template (``name``, ``task``,
``tool_calls``, ``reasoning``, ``tool_call_id``, a developer message's ``tools``, and a
role name that is not a standard one, since vLLM renders any role string); every tool
definition; ``documents``; every value of ``chat_template_kwargs`` (it can override any
template variable, ``tools`` and ``documents`` included); for text completions,
every prompt and the ``suffix``; for the Responses API, the ``instructions`` and every
``input`` item (messages, tool calls and their outputs, reasoning), read as vLLM turns
them into chat messages, and the same tools and template kwargs as chat; for embeddings
and vLLM's pooling family, every text the request carries (``input``, ``messages``, a
score's or rerank's queries and documents, ``instruction``, a tokenize ``prompt``...).
docs/safety.md lists them with vLLM's sources.

Each message (tool, document, prompt...) is one text, judged whole: its pieces joined
in the order the template renders them, so a request split across parts is read as
the model reads it. ``Part.segments`` maps the text back onto the request's fields, so
a redaction rewrites each field at the right place. ``Part.kind`` says which part of the
request it is (a message by its role, ``tool_definitions``, ``documents``...), for input
rails set to judge only some (``parts``).

What no rail can read is refused with a 400 naming the field, unless the policy lets
that kind through by name (``inputs.allow_unjudged``): a client's chat template, token
ids, prompt embeddings, image, audio and video parts, ``kv_transfer_params``, a pooling
plugin's ``data``. A Responses ``previous_response_id`` (history the upstream stored) is
let through and listed as unjudged: its turns were judged when they were sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from guard.components.base import Subject
from guard.components.specs import PartKind
from guard.errors import InvalidRequest
from guard.pipeline.rails import Judgement, Rail, judges
from guard.pipeline.texts import KEY, Part, Path, joined
from guard.policy.models import Inputs, Unjudged

STANDARD_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
TEXT_PARTS = {
    "text": "text",
    "input_text": "text",
    "output_text": "text",
    "refusal": "refusal",
    "thinking": "thinking",
    "tool_reference": "name",
}
"""Content part type -> the key holding its text (vLLM's renderer reads these as text)."""
MEDIA_PARTS: dict[str, Unjudged] = {
    "image_url": "image",
    "input_image": "image",
    "image_pil": "image",
    "image_embeds": "image",
    "audio_url": "audio",
    "input_audio": "audio",
    "audio_embeds": "audio",
    "video_url": "video",
    "video_embeds": "video",
    "prompt_embeds": "prompt_embeds",
}
"""Content part type (or key, for a part without ``type``) -> what kind of input it is."""
ITEM_ROLES = {
    "function_call": "assistant",
    "custom_tool_call": "assistant",
    "reasoning": "assistant",
    "function_call_output": "tool",
    "custom_tool_call_output": "tool",
}
"""A Responses ``input`` item that is not a message -> the role of the chat message vLLM
makes of it (what ``inputs.trusted_roles`` is matched against)."""


@dataclass
class InputPlan:
    """What a request holds for the input rails: the parts judged, and what is let
    through unjudged (a trusted role, or a kind the policy allows) with the reason."""

    parts: list[Part] = field(default_factory=list)
    unjudged: list[dict[str, str]] = field(default_factory=list)

    @property
    def subjects(self) -> list[Subject]:
        return [part.subject() for part in self.parts]

    @property
    def kinds(self) -> list[str]:
        return [part.kind for part in self.parts]

    def summary(self, judgements: Sequence[Judgement], rails: Sequence[Rail]) -> dict[str, Any]:
        """``guard.input``: what was judged, what was not and why, which parts each rail
        with ``parts`` judged, and which rail stopped which part; never the text itself."""
        stopped = [
            {"part": part.where, "rail": report.rail, "outcome": report.outcome}
            for part, judgement in zip(self.parts, judgements, strict=False)
            for report in judgement.reports
            if report.outcome == "block" or report.fail_closed
        ]
        cached = sum(
            all(r.cached for r in judgement.reports) and bool(judgement.reports)
            for judgement in judgements
        )
        info: dict[str, Any] = {"judged": [part.where for part in self.parts]}
        if cached:
            info["cached"] = cached
        if self.unjudged:
            info["unjudged"] = self.unjudged
        scoped = [
            {
                "rail": rail.name,
                "parts": list(rail.spec.parts),
                "judged": [part.where for part in self.parts if judges(rail, part.kind)],
            }
            for rail in rails
            if rail.spec.parts is not None
        ]
        if scoped:
            info["scoped"] = scoped
        if stopped:
            info["stopped"] = stopped
        return info


class Reader:
    """Reads a chat, completion or Responses request into ``plan``."""

    def __init__(self, plan: InputPlan, inputs: Inputs):
        self.plan = plan
        self.inputs = inputs

    def unreadable(self, where: str, kind: Unjudged, what: str) -> None:
        """Refuse, or note as let through when the policy allows ``kind``."""
        if kind in self.inputs.allow_unjudged:
            self.plan.unjudged.append(
                {"field": where, "kind": kind, "reason": "allowed unjudged by the policy"}
            )
            return
        raise InvalidRequest(
            f"The input rails cannot read {what} ({where}), so this model's policy does not "
            f"accept it. A policy can let it through unjudged with inputs.allow_unjudged: "
            f"[{kind}].",
            param=where,
            code="unjudgeable_input",
        )

    def add(
        self,
        where: str,
        kind: PartKind,
        pieces: list[tuple[str, Path]],
        context: tuple[Any, ...] = (),
    ) -> Part | None:
        part = joined(where, pieces, context)
        if part is not None:
            part = replace(part, kind=kind)
            self.plan.parts.append(part)
        return part

    def trusted(self, where: str, role: Any) -> bool:
        """Whether ``role`` is one the policy trusts (then noted as unjudged)."""
        if not isinstance(role, str) or role not in self.inputs.trusted_roles:
            return False
        reason = f"trusted role {role}"
        self.plan.unjudged.append({"field": where, "kind": "message", "reason": reason})
        return True

    # -- what chat and Responses share ----------------------------------------------

    def transfer_params(self, body: Mapping[str, Any]) -> None:
        for key in ("kv_transfer_params", "ec_transfer_params"):
            if body.get(key) is not None:
                self.unreadable(key, "kv_transfer_params", "vLLM transfer parameters")

    def tools(self, body: Mapping[str, Any]) -> None:
        for index, tool in enumerate(body.get("tools") or []):
            self.add(f"tools[{index}]", "tool_definitions", list(_leaves(tool, ("tools", index))))

    def template_kwargs(self, body: Mapping[str, Any]) -> None:
        kwargs = body.get("chat_template_kwargs") or {}
        if isinstance(kwargs, Mapping):
            for key, value in kwargs.items():
                where = f"chat_template_kwargs.{key}"
                if key == "chat_template":
                    self.unreadable(where, "chat_template", "a chat template sent by the client")
                    continue
                pieces = [(str(key), KEY)] if _wordy(key) else []
                pieces += list(_leaves(value, ("chat_template_kwargs", key)))
                self.add(where, "template_kwargs", pieces)

    # -- chat ---------------------------------------------------------------------

    def chat(self, body: Mapping[str, Any]) -> None:
        self.transfer_params(body)
        if body.get("chat_template") is not None:
            self.unreadable("chat_template", "chat_template", "a chat template sent by the client")
        messages = body.get("messages") or []
        for index, message in enumerate(messages):
            if isinstance(message, Mapping):
                self.message(
                    f"messages[{index}]", ("messages", index), message, tuple(messages[:index])
                )
        self.tools(body)
        for index, document in enumerate(body.get("documents") or []):
            pieces = list(_leaves(document, ("documents", index)))
            self.add(f"documents[{index}]", "documents", pieces)
        self.template_kwargs(body)

    def message(
        self, where: str, base: Path, message: Mapping[str, Any], context: tuple[Any, ...]
    ) -> Part | None:
        """A chat message (or a Responses message item) at ``base`` in the body."""
        role = message.get("role")
        if self.trusted(where, role):
            return None
        pieces: list[tuple[str, Path]] = []
        if isinstance(role, str) and role not in STANDARD_ROLES:
            pieces.append((role, (*base, "role")))
        for key in ("name", "task"):
            if isinstance(message.get(key), str):
                pieces.append((message[key], (*base, key)))
        pieces += self.content(f"{where}.content", message.get("content"), (*base, "content"))
        for key in ("reasoning", "reasoning_content", "tool_call_id"):
            if isinstance(message.get(key), str):
                pieces.append((message[key], (*base, key)))
        for number, call in enumerate(message.get("tool_calls") or []):
            pieces += list(_leaves(call, (*base, "tool_calls", number)))
        if message.get("tools") is not None:
            pieces += list(_leaves(message["tools"], (*base, "tools")))
        return self.add(where, role_part(role), pieces, context)

    def content(self, where: str, content: Any, base: Path) -> list[tuple[str, Path]]:
        """The texts of a content field (``where`` names it): a string or a list of parts."""
        if content is None:
            return []
        if isinstance(content, str):
            return [(content, base)]
        if not isinstance(content, list):
            return list(_leaves(content, base))
        pieces: list[tuple[str, Path]] = []
        for number, part in enumerate(content):
            here, path = f"{where}[{number}]", (*base, number)
            if isinstance(part, str):
                pieces.append((part, path))
                continue
            if not isinstance(part, Mapping):
                raise InvalidRequest(f"{here} is neither text nor a content part.", param=here)
            kind = part.get("type") or next((k for k in MEDIA_PARTS if k in part), None)
            if kind in TEXT_PARTS:
                text = part.get(TEXT_PARTS[kind])
                if isinstance(text, str):
                    pieces.append((text, (*path, TEXT_PARTS[kind])))
            elif kind in MEDIA_PARTS:
                self.unreadable(here, MEDIA_PARTS[kind], f"a content part of type {kind!r}")
            else:
                raise InvalidRequest(
                    f"{here} has type {kind!r}, which is not a content part guard can read.",
                    param=here,
                    code="unjudgeable_input",
                )
        return pieces

    # -- text completions ---------------------------------------------------------

    def completion(self, body: Mapping[str, Any]) -> None:
        self.transfer_params(body)
        if body.get("prompt_embeds") is not None:
            self.unreadable("prompt_embeds", "prompt_embeds", "prompt embeddings")
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            self.add("prompt", "prompt", [(prompt, ("prompt",))])
        elif isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
            self.unreadable("prompt", "token_ids", "a prompt given as token ids")
        elif isinstance(prompt, list):
            for index, item in enumerate(prompt):
                if isinstance(item, str):
                    self.add(f"prompt[{index}]", "prompt", [(item, ("prompt", index))])
                else:
                    where = f"prompt[{index}]"
                    self.unreadable(where, "token_ids", "a prompt given as token ids")
        elif prompt is not None:
            self.unreadable("prompt", "token_ids", "a prompt given as token ids")
        if isinstance(body.get("suffix"), str):
            self.add("suffix", "prompt", [(body["suffix"], ("suffix",))])

    # -- the Responses API ----------------------------------------------------------

    def responses(self, body: Mapping[str, Any]) -> None:
        """What vLLM renders from a Responses request: ``instructions`` as a system
        message, then each ``input`` item as the chat message it becomes."""
        self.transfer_params(body)
        if body.get("prompt") is not None:
            self.refuse("prompt", "a stored prompt template, which guard cannot see")
        if body.get("previous_response_id") is not None:
            reason = "history the upstream stored: judged when it was sent"
            self.plan.unjudged.append(
                {"field": "previous_response_id", "kind": "stored_history", "reason": reason}
            )
        conversation: list[dict[str, Any]] = []
        instructions = body.get("instructions")
        if isinstance(instructions, str) and not self.trusted("instructions", "system"):
            self.add("instructions", "system", [(instructions, ("instructions",))])
        if isinstance(instructions, str):
            conversation.append({"role": "system", "content": instructions})
        items = body.get("input")
        if isinstance(items, str):
            if not self.trusted("input", "user"):
                self.add("input", "user", [(items, ("input",))], tuple(conversation))
        elif isinstance(items, list):
            for index, item in enumerate(items):
                if not isinstance(item, Mapping):
                    raise InvalidRequest(
                        f"input[{index}] is not an object.", param=f"input[{index}]"
                    )
                role, part = self.item(index, item, tuple(conversation))
                conversation.append({"role": role, "content": part.text if part else ""})
        self.tools(body)
        self.template_kwargs(body)
        for index, message in enumerate(body.get("previous_input_messages") or []):
            where = f"previous_input_messages[{index}]"
            kind = role_part(_harmony_role(message))
            self.add(where, kind, list(_leaves(message, ("previous_input_messages", index))))

    def item(
        self, index: int, item: Mapping[str, Any], context: tuple[Any, ...]
    ) -> tuple[str, Part | None]:
        """One ``input`` item: the role of the chat message vLLM makes of it, and its part."""
        where, base = f"input[{index}]", ("input", index)
        kind = item.get("type")
        if kind in (None, "message") and "role" in item:
            return str(item["role"]), self.message(where, base, item, context)
        role = ITEM_ROLES.get(str(kind))
        if role is None:
            raise InvalidRequest(
                f"{where} has type {kind!r}, which is not an input item guard can read.",
                param=where,
                code="unjudgeable_input",
            )
        if self.trusted(where, role):
            return role, None
        if item.get("encrypted_content") is not None:
            self.refuse(f"{where}.encrypted_content", "encrypted reasoning")
        pieces: list[tuple[str, Path]] = []
        for key in ("call_id", "namespace", "name", "arguments", "input"):
            if isinstance(item.get(key), str):
                pieces.append((item[key], (*base, key)))
        if "output" in item:
            pieces += self.content(f"{where}.output", item["output"], (*base, "output"))
        for key in ("summary", "content") if kind == "reasoning" else ():
            for number, part in enumerate(item.get(key) or []):
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    pieces.append((part["text"], (*base, key, number, "text")))
        return role, self.add(where, role_part(role), pieces, context)

    def refuse(self, where: str, what: str) -> None:
        raise InvalidRequest(
            f"The input rails cannot read {what} ({where}), so this model's policy does not "
            "accept it.",
            param=where,
            code="unjudgeable_input",
        )


ROLE_PARTS: dict[str, PartKind] = {
    "system": "system",
    "developer": "developer",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}


def role_part(role: Any) -> PartKind:
    """The part a message of ``role`` is: its role, ``tool`` for tool and function results,
    ``custom_role`` for any other role (vLLM renders any role string)."""
    return ROLE_PARTS.get(role, "custom_role") if isinstance(role, str) else "custom_role"


def _harmony_role(message: Any) -> Any:
    """A Harmony message's role: ``author.role`` (or ``role``, as chat writes it)."""
    if not isinstance(message, Mapping):
        return None
    author = message.get("author")
    return author.get("role") if isinstance(author, Mapping) else message.get("role")


def _leaves(value: Any, path: Path) -> Iterator[tuple[str, Path]]:
    """Every string in ``value``, in order, with its path; dict keys that read as words
    too (a template may render them), with the path ``KEY``."""
    if isinstance(value, str):
        yield value, path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if _wordy(key) and key not in _STRUCTURAL_KEYS:
                yield str(key), KEY
            yield from _leaves(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))


_STRUCTURAL_KEYS = frozenset(
    {"type", "function", "name", "description", "parameters", "properties", "required",
     "arguments", "id", "items", "enum", "strict", "title", "content", "text", "default"}
)  # fmt: skip
"""Schema and call keys every tool has: read as structure, not as text worth judging."""


def _wordy(key: Any) -> bool:
    return isinstance(key, str) and any(c.isalpha() for c in key)
