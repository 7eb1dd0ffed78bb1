"""OpenAI wire models for the requests guard reads.

Only the fields guard interprets are declared and checked; every other field is
kept (``extra="allow"``) and forwarded untouched, so vLLM extras such as ``top_k``
or ``guided_json`` reach the upstream. The upstream keeps the last word on fields
guard does not interpret.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(WireModel):
    role: str
    content: str | list[Any] | None = None


class StreamOptions(WireModel):
    include_usage: bool | None = None


class ModelRequest(WireModel):
    """Fields every generating request has: the model that routes it, and whether it
    streams."""

    model: str
    stream: bool | None = False


class GenerationRequest(ModelRequest):
    """Fields shared by chat and text completions."""

    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=128)


class ChatCompletionRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(GenerationRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=None, ge=0)


class ResponsesRequest(ModelRequest):
    """``POST /v1/responses``. ``input`` is a string or a list of items (each an object);
    vLLM requires it, and so does guard."""

    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    previous_response_id: str | None = None
    store: bool | None = None
