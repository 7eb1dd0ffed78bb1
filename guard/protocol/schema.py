"""OpenAI wire models for the requests guard reads.

Only the fields guard interprets are declared and checked; every other field is
kept (``extra="allow"``) and forwarded untouched, so vLLM extras such as ``top_k``
or ``guided_json`` reach the upstream. The upstream keeps the last word on fields
guard does not interpret.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(WireModel):
    role: str
    content: str | list[Any] | None = None


class StreamOptions(WireModel):
    include_usage: bool | None = None


def named_model(model: str) -> str:
    """A model name must say something: vLLM answers an empty name with its default
    model, which no routing chose."""
    if not model.strip():
        raise ValueError("the model name is empty")
    return model


ModelName = Annotated[str, AfterValidator(named_model)]


class ModelRequest(WireModel):
    """Fields every generating request has: the model that routes it, and whether it
    streams."""

    model: ModelName
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


class ModerationRequest(WireModel):
    """``/v1/moderations``: ``input`` is read by ``guard.server.moderation``."""

    model: ModelName | None = None
    input: Any = None


class PoolingRequest(WireModel):
    """Embeddings and vLLM's pooling family: guard needs the model name, to route; the
    upstream checks the rest."""

    model: ModelName


class EmbeddingRequest(PoolingRequest):
    input: Any = None
    messages: list[Any] | None = None
    """vLLM's chat-style embeddings; it reads ``messages`` when both are given."""

    @field_validator("input")
    @classmethod
    def _text_or_list(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str | list):
            raise ValueError("must be a text, a list of texts, token ids or messages")
        return value


class ResponsesRequest(ModelRequest):
    """``POST /v1/responses``. ``input`` is a string or a list of items (each an object);
    vLLM requires it, and so does guard."""

    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    previous_response_id: str | None = None
    store: bool | None = None
