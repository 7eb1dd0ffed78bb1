"""What a policy file may say about a component, one frozen model per ``kind``.

A component is either a classifier (used in input and output rails) or a reward
(used by best-of-n and the ``low_reward`` trigger). ``kind`` picks the model through
a pydantic discriminated union, so an unknown kind is reported with the list of
known ones. Whether this build can *run* a kind is a separate question, answered by
``guard.components.registry``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar, Final, Literal

import re2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Precision = Literal["int8", "float32", "bfloat16"]
"""How the built-in MiniLM kinds compute: int8 weights (about twice as fast on a CPU, scores
within a few hundredths), float32 (the precision they were trained and calibrated in), or
bfloat16 matrix products (about twice as fast where the CPU has bfloat16 instructions,
scores within about a hundredth; float32 elsewhere, said in the log)."""

SharedPrecision = Literal["float32", "bfloat16"]
"""The precisions in which the ``attacks`` kind can share the ``embedding`` kind's encoder:
a policy running both runs it once per short text when both name the same one."""


LongTexts = Literal["windows", "head_and_tail"]
"""How the built-in model reads a text longer than its 128-token window: all of it, in
overlapping windows (the highest score wins), or only its start and end (how the head was
trained; offline tools only: a rail must never leave the middle of a text unread)."""


PartKind = Literal[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "custom_role",
    "tool_definitions",
    "documents",
    "template_kwargs",
    "prompt",
    "input",
]
"""The parts of a request an input rail can be set to judge (``parts``). Messages count by
their role (a Responses item by the role of the chat message vLLM makes of it: a tool
call is ``assistant``, its output ``tool``; ``instructions`` are ``system``); the rest by
field. docs/safety.md, "Which parts a rail judges", lists each."""


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClassifierSpec(Spec):
    """Settings every rail has, whatever its kind."""

    kind: str
    name: str | None = None
    """Shown in verdicts and metrics; defaults to the kind."""
    action: Literal["block", "redact", "flag"] = "block"
    timeout_s: float = Field(default=5.0, gt=0)
    """How long the classifier's own work may take (for in-process kinds, from the moment
    it starts, not counting the wait for a busy worker)."""
    queue_timeout_s: float = Field(default=10.0, gt=0)
    """In-process kinds: how long a text may wait for the busy worker to start it. Past
    it the rail is overloaded: load, never a verdict (503 with Retry-After when fail-closed)."""
    on_error: Literal["allow", "block"] = "block"
    """What happens when the classifier times out, fails or is overloaded: fail open (the
    text passes, the verdict says error) or fail closed (the request stops, as an error)."""
    escalate: Escalation | None = None
    """Ask a second classifier when this one's score is uncertain (a cascade)."""
    parts: list[PartKind] | None = None
    """Input rails: the parts of a request this rail judges (e.g. ``[tool, documents]``, where
    indirect injections arrive); unset, every part. Other rails judge what this one skips."""
    refusal: str | dict[str, str] | None = None
    """What the client is told when this rail blocks, in place of the policy's
    ``refusal.message`` (when several rails block, the first blocked part's first
    blocking rail, in policy order, speaks).
    A mapping answers by category: the first entry, in the order written, whose category
    the verdict names (``"*"``: any other); none, the policy's message."""

    can_redact: ClassVar[bool] = False
    """Whether the kind locates what it found, so that ``action: redact`` can work."""

    @property
    def display_name(self) -> str:
        return self.name or self.kind

    @field_validator("parts")
    @classmethod
    def _judges_something(cls, parts: list[PartKind] | None) -> list[PartKind] | None:
        if parts is not None and not parts:
            raise ValueError("'parts: []' judges nothing; leave 'parts' out to judge every part")
        return parts

    @model_validator(mode="after")
    def _redact_needs_spans(self) -> ClassifierSpec:
        if self.action == "redact" and not self.can_redact:
            raise ValueError(
                f"action 'redact' needs a classifier that locates what it found (regex); "
                f"kind '{self.kind}' can only block or flag"
            )
        if self.refusal is not None and self.action != "block":
            raise ValueError(
                f"'refusal' is what a blocked client is told; this rail's action is "
                f"'{self.action}', so it never blocks"
            )
        return self

    @field_validator("refusal")
    @classmethod
    def _says_something(cls, refusal: str | dict[str, str] | None) -> str | dict[str, str] | None:
        said = [refusal] if isinstance(refusal, str) else list((refusal or {}).values())
        if refusal == {} or any(not text.strip() for text in said):
            raise ValueError("a refusal says something: give the message, or leave it out")
        if isinstance(refusal, dict) and any(not key.strip() for key in refusal):
            raise ValueError("a refusal's keys are category names (or '*' for any other)")
        if isinstance(refusal, dict) and {"message", "http_error"} & set(refusal):
            raise ValueError(
                'a rail\'s refusal is the message itself (refusal: "..."), or one message '
                "per category; 'message' and 'http_error' belong to the policy's refusal section"
            )
        return refusal

    def refusal_for(self, categories: Sequence[str]) -> str | None:
        """This rail's own refusal of a verdict naming ``categories``, if it has one."""
        if not isinstance(self.refusal, dict):
            return self.refusal
        named = next((key for key in self.refusal if key in categories), "*")
        return self.refusal.get(named)


class RemoteModel(Spec):
    """A model behind an OpenAI-compatible URL; ``base_url`` defaults to guard's upstream."""

    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    """Name of the environment variable holding that endpoint's API key."""


RE2_OPTIONS: Final = re2.Options()
"""How guard compiles regex rails: RE2's defaults (UTF-8, leftmost-first), quiet."""
RE2_OPTIONS.log_errors = False

_RE2_LACKS: Final = (
    (("(?=", "(?!", "(?<"), "lookahead or lookbehind ((?=...), (?!...), (?<=...), (?<!...))"),
    (("\\1", "\\2", "\\3", "\\4", "\\5", "\\6", "\\7", "\\8", "\\9", "(?P="), "backreferences"),
    (
        ("(?>", "*+", "++", "?+", "}+"),
        "an atomic group or a possessive quantifier (RE2 never backtracks: write the plain one)",
    ),
    (("\\Z",), "\\Z (write \\z for the end of the text)"),
    (("\\u", "\\U", "\\N"), "a \\u, \\U or \\N escape (write \\x{00e9} for a code point)"),
    (("(?x",), "verbose mode (?x)"),
    (("(?#",), "a comment (?#...)"),
    (("(?a", "(?u", "(?L"), "the flag a, u or L (RE2's \\w, \\d, \\s and \\b are ASCII)"),
    (("\\G",), "\\G"),
    (("repetition size",), "a counted repeat over 1000 ({n,m}; nested counts multiply)"),
)
"""What RE2's error says -> the feature it lacks, in words."""


def re2_refusal(pattern: str, error: Exception) -> str:
    """Why ``pattern`` cannot be a regex rail, in words: the feature RE2 lacks, if that is it."""
    detail = error.args[0] if error.args else ""
    said = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
    for marks, feature in _RE2_LACKS:
        if any(mark in said for mark in marks):
            return (
                f"pattern {pattern!r} uses {feature}, which RE2 does not have; regex rails "
                f"run on RE2 so that matching takes linear time (RE2 says: {said})"
            )
    return f"pattern {pattern!r} is not a valid regular expression (RE2 says: {said})"


class RegexSpec(ClassifierSpec):
    kind: Literal["regex"]
    can_redact: ClassVar[bool] = True
    presets: list[Literal["secrets", "email", "phone", "credit_card", "pii"]] = []
    patterns: list[str] = []
    """RE2 syntax (matching in linear time): no lookaround, no backreferences."""
    replacement: str = "[REDACTED]"

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re2.compile(pattern, RE2_OPTIONS)
            except re2.error as exc:
                raise ValueError(re2_refusal(pattern, exc)) from None
        return patterns


class Windowed(Spec):
    window_chars: int = Field(default=6000, ge=200)
    """The longest text sent to the model at once; a longer text is judged in overlapping
    windows of this many characters (the worst one decides). Keep a window, with the
    judge's own prompt, inside the served model's context: a text it cannot take is an
    error (the rail's on_error), never cut."""


class LlamaGuardSpec(ClassifierSpec, RemoteModel, Windowed):
    kind: Literal["llama_guard"]
    categories: list[str] = []
    """Standard codes S1..S14 to enforce; empty means all of them."""
    custom_categories: dict[str, str] = {}
    """Extra categories, code -> description; they need ``prompt: guard``."""
    prompt: Literal["chat_template", "guard"] = "chat_template"
    """chat_template: the served model's own template; guard: guard writes the task."""

    @model_validator(mode="after")
    def _known_categories(self) -> LlamaGuardSpec:
        unknown = [c for c in self.categories if c not in [f"S{i}" for i in range(1, 15)]]
        if unknown:
            raise ValueError(f"unknown Llama Guard categories {unknown}; use S1 to S14")
        if self.custom_categories and self.prompt != "guard":
            raise ValueError(
                "custom_categories need 'prompt: guard' (a chat template "
                "cannot take new categories)"
            )
        return self


def probabilities(thresholds: dict[str, float]) -> dict[str, float]:
    """``thresholds`` unchanged, if every value is a probability."""
    outside = [label for label, value in thresholds.items() if not 0 <= value <= 1]
    if outside:
        raise ValueError(f"thresholds must lie between 0 and 1; check {outside}")
    return thresholds


class LabelThresholds(Spec):
    thresholds: dict[str, float] = Field(min_length=1)
    """Label -> probability at or above which the text is unsafe. Other labels are ignored."""

    @field_validator("thresholds")
    @classmethod
    def _probabilities(cls, thresholds: dict[str, float]) -> dict[str, float]:
        return probabilities(thresholds)


class HFClassifierSpec(ClassifierSpec, LabelThresholds):
    kind: Literal["hf_classifier"]
    model: str
    """Hub id or local path of an AutoModelForSequenceClassification."""
    max_batch_size: int = Field(default=32, ge=1)
    max_length: int = Field(default=512, ge=8)
    """The model's window in tokens; longer texts are read whole, in overlapping windows."""
    labels: list[str] = []
    """Label names by class index, in place of the model config's ``id2label`` (which may say
    only ``LABEL_0``, ``LABEL_1``); ``thresholds`` then name these. The model must have as
    many classes."""

    @model_validator(mode="after")
    def _thresholds_name_labels(self) -> HFClassifierSpec:
        unknown = [label for label in self.thresholds if self.labels and label not in self.labels]
        if unknown:
            raise ValueError(f"thresholds name {unknown}, which 'labels' {self.labels} lacks")
        return self


class VLLMClassifySpec(ClassifierSpec, RemoteModel, LabelThresholds, Windowed):
    kind: Literal["vllm_classify"]
    window_chars: int = Field(default=1500, ge=200)
    """As for the other remote kinds, smaller by default: classifiers such as Prompt Guard
    read 512 tokens."""
    labels: list[str] = []
    """Label names by class index, where the served model's config has none."""


class LLMJudgeSpec(ClassifierSpec, RemoteModel, Windowed):
    kind: Literal["llm_judge"]
    question: str
    """A yes/no question about the text; 'yes' means unsafe."""
    threshold: float = Field(default=0.5, ge=0, le=1)


SENTENCE_MARGIN: Final = 1.5
"""``EmbeddingSpec.sentence_margin``'s default (docs/embedding-classifier.md, "Sentences
alone")."""

SENTENCE_MIN_WORDS: Final = 3
"""``EmbeddingSpec.sentence_min_words``'s default (docs/embedding-classifier.md,
"Fragments are not sentences")."""


class EmbeddingSpec(ClassifierSpec):
    kind: Literal["embedding"]
    threshold: float | None = Field(default=None, ge=0, le=1)
    """None uses the threshold calibrated with the shipped head."""
    head: str | None = None
    """Path of a trained head; None uses the one shipped with guard."""
    precision: Precision = "float32"
    long_texts: Literal["windows"] = "windows"
    """Rails read a long text whole, in overlapping windows; there is no other choice."""
    sentence_margin: float = Field(default=SENTENCE_MARGIN, ge=0)
    """How much lower, in logit space, a long text's sentence read alone scores than a
    window does: the head learnt from whole texts, and a sentence out of its context reads
    as less benign than it is (docs/embedding-classifier.md, "Sentences alone")."""
    sentence_min_words: int = Field(default=SENTENCE_MIN_WORDS, ge=1)
    """A long text's sentence is read alone only with at least this many words (runs of
    characters with a letter): a fragment of code or an abbreviation ("str,", "e.g.")
    alone reads as nothing the head learnt from, and its window still reads it."""


ATTACK_LABELS: Final = ("jailbreak", "prompt_injection")
AttackLabel = Literal["jailbreak", "prompt_injection"]


class AttacksSpec(ClassifierSpec):
    """The built-in jailbreak and prompt-injection detector (``guard.components.attacks``)."""

    kind: Literal["attacks"]
    labels: list[AttackLabel] = Field(default=list(ATTACK_LABELS), min_length=1)
    """Which attacks this rail looks for; the verdict names the ones that fired."""
    thresholds: dict[AttackLabel, float] | None = None
    """Per label, the probability at or above which the text is flagged; a label left
    out keeps the threshold calibrated with the shipped head."""
    head: str | None = None
    """Path of a head trained with ``guard train-attack-head``; None uses the shipped one."""
    instructions: bool = True
    """``prompt_injection`` also reads a message against the system and developer messages
    before it: a request for what the application's instructions forbid is an injection
    (``guard.components.instructions``). False judges each message alone."""
    precision: SharedPrecision = "float32"
    """How the encoder it reads texts through computes (``Precision``): name the same as
    the policy's ``embedding`` rails, so that both rails run it once per short text."""

    @field_validator("thresholds")
    @classmethod
    def _probabilities(cls, thresholds: dict[str, float] | None) -> dict[str, float] | None:
        return None if thresholds is None else probabilities(thresholds)


class LanguageSpec(ClassifierSpec):
    """Which language a text is in (``guard.components.language``): flags a text, or a
    window of one, written in a language outside ``languages``."""

    kind: Literal["language"]
    languages: list[Annotated[str, Field(pattern="^[a-z]{2,3}$")]] = Field(
        default=["en"], min_length=1
    )
    """ISO 639-1 codes (``de``, ``ja``) of the languages this policy's other rails read."""


AnyClassifier = Annotated[
    RegexSpec
    | LlamaGuardSpec
    | HFClassifierSpec
    | VLLMClassifySpec
    | LLMJudgeSpec
    | EmbeddingSpec
    | AttacksSpec
    | LanguageSpec,
    Field(discriminator="kind"),
]


class Escalation(Spec):
    """When the score falls within ``between``, the verdict of ``to`` replaces this one's."""

    between: tuple[float, float]
    to: AnyClassifier

    @field_validator("to")
    @classmethod
    def _judges_what_it_is_given(cls, target: ClassifierSpec) -> ClassifierSpec:
        if target.parts is not None:
            raise ValueError(
                "an escalation target judges the texts its rail hands it; set 'parts' on "
                "the rail itself"
            )
        if target.refusal is not None:
            raise ValueError(
                "an escalation target's verdict is its rail's, answered with its rail's "
                "'refusal'; set 'refusal' on the rail itself (keyed by either's categories)"
            )
        return target

    @field_validator("between")
    @classmethod
    def _ordered(cls, band: tuple[float, float]) -> tuple[float, float]:
        low, high = band
        if not 0 <= low <= high <= 1:
            raise ValueError("'between' must be [low, high] with 0 <= low <= high <= 1")
        return band


ClassifierSpec.model_rebuild()
for _spec in (
    RegexSpec,
    LlamaGuardSpec,
    HFClassifierSpec,
    VLLMClassifySpec,
    LLMJudgeSpec,
    EmbeddingSpec,
    AttacksSpec,
):
    _spec.model_rebuild()


class RewardSpec(Spec):
    kind: str
    name: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)


class HFRewardSpec(RewardSpec):
    kind: Literal["hf_reward"]
    model: str
    max_batch_size: int = Field(default=16, ge=1)


class VLLMRewardSpec(RewardSpec, RemoteModel):
    kind: Literal["vllm_reward"]


class LLMJudgeRewardSpec(RewardSpec, RemoteModel):
    kind: Literal["llm_judge"]
    question: str = "How helpful and harmless is this answer, from 1 (worst) to 9 (best)?"


class EmbeddingRewardSpec(RewardSpec):
    kind: Literal["embedding_reward"]
    head: str | None = None
    precision: Precision = "float32"


AnyReward = Annotated[
    HFRewardSpec | VLLMRewardSpec | LLMJudgeRewardSpec | EmbeddingRewardSpec,
    Field(discriminator="kind"),
]
