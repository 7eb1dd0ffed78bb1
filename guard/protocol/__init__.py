"""The OpenAI wire protocol: request models, server-sent events, the text inside
messages and choices, relays of events, the paths of embeddings and vLLM's pooling
family, and the one client that talks HTTP to vLLM.
"""

from guard.protocol.messages import (
    CHAT,
    COMPLETIONS,
    as_events,
    choice_text,
    chunk_head,
    message_text,
    set_choice_text,
)
from guard.protocol.pooling import EMBEDDINGS
from guard.protocol.relay import Relay, passed_through, replay
from guard.protocol.schema import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    GenerationRequest,
    PoolingRequest,
)
from guard.protocol.sse import DONE, EVENT_END, data_event, error_event, split_events
from guard.protocol.upstream import Upstream

__all__ = [
    "CHAT",
    "COMPLETIONS",
    "DONE",
    "EMBEDDINGS",
    "EVENT_END",
    "ChatCompletionRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "GenerationRequest",
    "PoolingRequest",
    "Relay",
    "Upstream",
    "as_events",
    "choice_text",
    "chunk_head",
    "data_event",
    "error_event",
    "message_text",
    "passed_through",
    "replay",
    "set_choice_text",
    "split_events",
]
