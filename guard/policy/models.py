"""What a policy file may say: frozen models that forbid unknown keys.

A typo stops the server at start with file and line (``guard.yaml_errors``); it never
fails a request later.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from guard.components.specs import AnyClassifier, AnyReward, PartKind, RemoteModel
from guard.protocol.pooling import PoolingEndpoint

WILDCARD = "*"

RAILS_REQUIRED = (
    "every policy lists its rails, '[]' for none, so that a file cut short before them "
    "does not load as a policy without rails"
)


TRUSTED_BY: dict[PartKind, set[str]] = {
    "system": {"system"},
    "developer": {"developer"},
    "user": {"user"},
    "assistant": {"assistant"},
    "tool": {"tool", "function"},
}
"""A part that is messages of some roles -> the roles that make it (``inputs.trusted_roles``
leaves a part unjudged only when it trusts all of them)."""


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Prune(Section):
    """Speculative-rejection style pruning of best-of-n candidates."""

    segment_tokens: int = Field(default=32, ge=1)
    keep_fraction: float = Field(default=0.5, gt=0, lt=1)
    rounds: int = Field(default=2, ge=1)


class BestOfN(Section):
    n: int = Field(ge=2, le=64)
    reward: AnyReward
    filter_unsafe: bool = False
    """Judge every candidate with the output rails first; only safe ones compete."""
    on_reward_error: Literal["first_safe", "fail"] = "first_safe"
    """When the reward fails or times out: return the first safe candidate, or 503."""
    min_temperature: float = Field(default=0.7, gt=0, le=2)
    """Candidates must differ: a request asking for less (e.g. greedy) is sampled at this."""
    prune: Prune | None = None


class Principle(Section):
    name: str
    critique: str
    revision: str


class Templates(Section):
    critique: str | None = None
    revision: str | None = None


class Constitutional(Section):
    principles: list[Principle] = []
    principles_file: str | None = None
    """A YAML list of principles, relative to the policy file."""
    trigger: Literal["always", "flagged", "low_reward"] = "flagged"
    reward: AnyReward | None = None
    reward_threshold: float | None = None
    select: Literal["all", "random", "rotate"] = "all"
    per_round: int | None = Field(default=None, ge=1)
    max_rounds: int = Field(default=1, ge=1, le=8)
    critic: RemoteModel | None = None
    """Another endpoint and model to critique with; None uses the request's upstream."""
    show_critiques: bool = True
    templates: Templates = Templates()

    @model_validator(mode="after")
    def _consistent(self) -> Constitutional:
        if not self.principles and self.principles_file is None:
            raise ValueError("give 'principles' or a 'principles_file'")
        if self.trigger == "low_reward" and (self.reward is None or self.reward_threshold is None):
            raise ValueError("trigger 'low_reward' needs both 'reward' and 'reward_threshold'")
        return self


class Streaming(Section):
    window_tokens: int = Field(default=32, ge=1)
    """Text is released only after the output rails passed a window containing it."""
    chunk_tokens: int = Field(default=16, ge=1)
    context_tokens: int = Field(default=64, ge=0)
    check_at: Literal["every_chunk", "sentence"] = "every_chunk"
    final_check: bool = True


class Refusal(Section):
    message: str = "I'm sorry, but I can't help with that."
    http_error: bool = False
    """Answer a block with HTTP 400, code content_filter, instead of a normal completion."""
    on_rail_error: Literal["http_error", "refusal"] = "http_error"
    """When a fail-closed rail could not judge a text (it failed, timed out or was
    overloaded): answer HTTP 503 (``rail_error``, or ``rails_overloaded`` with Retry-After),
    or the refusal above with the verdict ``error``. A refusal from an error is opt-in:
    by default a refusal always means a rail judged the text unsafe."""


Unjudged = Literal[
    "chat_template",
    "token_ids",
    "prompt_embeds",
    "image",
    "audio",
    "video",
    "kv_transfer_params",
    "plugin_data",
]
"""What the model may read that no rail can: a client's own chat template (it can write
any text), prompts given as token ids or embeddings, media parts, vLLM's
``kv_transfer_params`` (its ``prompt_token_ids`` replace the whole prompt), and the
``data`` of a ``/pooling`` request for an IO-processor plugin."""


class Inputs(Section):
    """What the input rails read (docs/safety.md, "What input rails see")."""

    trusted_roles: list[str] = []
    """Message roles not judged, e.g. ``system`` when only the operator writes it."""
    allow_unjudged: list[Unjudged] = []
    """Let these through unjudged instead of refusing the request with a 400; the verdict
    lists them under ``guard.input.unjudged``."""
    max_chars: int = Field(default=262_144, ge=1)
    """The most text the input rails judge for one request; past it, 413."""
    previous_response: Literal["allow", "refuse"] = "allow"
    """A Responses ``previous_response_id``: the upstream's stored conversation, which
    guard cannot see. ``allow``: forward it (its turns were judged when they were sent;
    ``guard.input.unjudged`` lists it); ``refuse``: answer 400, so clients send the whole
    conversation as ``input``, where the input rails read it (docs/safety.md)."""


class Embeddings(Section):
    input_rails: bool = False
    """Judge the texts to embed with the input rails. Off by default: an embedding is a
    vector, not text anyone reads, so the rails would guard against little (a secret
    sent to the model server), while costing as much per text as on a chat."""


class ModelEndpoint(Section):
    """``pooling``, ``classify``, ``score``, ``rerank``: a model reads the texts."""

    input_rails: bool = True
    """Judge every text of the request (inputs, queries, documents, messages...)."""


class Tokenize(Section):
    input_rails: bool = False
    """Judge the prompt or messages. Off by default: only the tokenizer reads them."""


class Detokenize(Section):
    """Token ids in, text out: nothing an input rail could read."""


class Endpoints(Section):
    """What this policy serves beyond chat and text completions. ``true`` enables an
    endpoint with its defaults, ``false`` (or leaving it out) turns it off: a request
    for it gets 404. Embeddings are served unless turned off; vLLM's own endpoints only
    when listed (docs/safety.md, "Embeddings and vLLM's pooling endpoints")."""

    embeddings: Embeddings | None = Embeddings()
    pooling: ModelEndpoint | None = None
    classify: ModelEndpoint | None = None
    score: ModelEndpoint | None = None
    """``/score`` and ``/v1/score``."""
    rerank: ModelEndpoint | None = None
    """``/rerank``, ``/v1/rerank`` and ``/v2/rerank``."""
    tokenize: Tokenize | None = None
    detokenize: Detokenize | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _switch(cls, value: object) -> object:
        if value is True:
            return {}
        return None if value is False else value

    def enabled(self, endpoint: PoolingEndpoint) -> bool:
        return getattr(self, endpoint) is not None

    def judges_input(self, endpoint: PoolingEndpoint) -> bool:
        """Whether the input rails judge this endpoint's requests (when it is enabled)."""
        return bool(getattr(getattr(self, endpoint), "input_rails", False))


class Audit(Section):
    include_text: bool = False
    """Put the prompt and the answers in this policy's audit lines (left out by default)."""


class Policy(Section):
    name: str = Field(min_length=1)
    description: str = ""
    models: dict[str, str | None] = Field(min_length=1)
    """Model name clients send -> upstream model name (null: the same name). '*' catches all."""
    raw_names: bool = False
    """With ``'*': null``: serve by their upstream names even the models that another
    policy serves under an alias (``demo: smollm2``), past that policy. Unset, such a
    combination is refused at load (``guard.policy.routing``)."""
    input_rails: list[AnyClassifier] = Field(description=RAILS_REQUIRED)
    inputs: Inputs = Inputs()
    endpoints: Endpoints = Endpoints()
    input_rails_mode: Literal["parallel", "sequential"] | None = None
    """parallel: generation starts with the input rails and is cancelled if one blocks.
    Unset: parallel, unless an input rail redacts (then generation must wait for it)."""
    output_rails: list[AnyClassifier] = Field(description=RAILS_REQUIRED)
    best_of_n: BestOfN | None = None
    constitutional: Constitutional | None = None
    streaming: Streaming = Streaming()
    refusal: Refusal = Refusal()
    audit: Audit = Audit()
    shadow: str | None = None
    """Another policy whose rails also judge this policy's traffic, in flag mode, off the
    response path: what it would have done goes to the metrics and the audit log."""
    keys_only: bool = False
    """Served only to API keys whose ``policy`` names it, so its model names may also
    belong to another policy (routing by key). Also fits a policy used only as a shadow."""

    @model_validator(mode="after")
    def _raw_names_needs_a_wildcard(self) -> Policy:
        if self.raw_names and self.models.get(WILDCARD, "") is not None:
            raise ValueError(
                "raw_names applies to a policy serving \"'*': null\"; this one does not"
            )
        return self

    @model_validator(mode="after")
    def _flagged_needs_output_rails(self) -> Policy:
        constitution = self.constitutional
        if constitution and constitution.trigger == "flagged" and not self.output_rails:
            raise ValueError(
                "constitutional trigger 'flagged' needs output_rails to flag the draft; "
                "add one, or use trigger 'always' or 'low_reward'"
            )
        return self

    @field_validator("output_rails")
    @classmethod
    def _output_rails_judge_the_answer(cls, rails: list[AnyClassifier]) -> list[AnyClassifier]:
        for index, rail in enumerate(rails):
            if rail.parts is not None:
                raise ValueError(
                    f"output_rails[{index}] ('{rail.display_name}') has 'parts', which picks the "
                    "parts of a request an input rail judges; an output rail judges the answer"
                )
        return rails

    @model_validator(mode="after")
    def _parts_beyond_trusted_roles(self) -> Policy:
        trusted = set(self.inputs.trusted_roles)
        for index, rail in enumerate(self.input_rails):
            if rail.parts is not None and all(
                part in TRUSTED_BY and TRUSTED_BY[part] <= trusted for part in rail.parts
            ):
                raise ValueError(
                    f"input_rails[{index}] ('{rail.display_name}') judges only the parts "
                    f"{rail.parts}, and inputs.trusted_roles leaves every one of them unjudged, "
                    "so the rail would never judge anything"
                )
        return self

    @model_validator(mode="after")
    def _parallel_cannot_redact(self) -> Policy:
        if self.input_rails_mode == "parallel" and any(
            rail.action == "redact" for rail in self.input_rails
        ):
            raise ValueError(
                "input_rails_mode 'parallel' cannot be used with an input rail that redacts: "
                "the model must be sent the redacted prompt. Use 'sequential' or leave it unset."
            )
        return self

    def upstream_model(self, requested: str) -> str:
        target = self.models.get(requested, self.models.get(WILDCARD))
        return target or requested
