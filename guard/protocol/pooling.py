"""The endpoints guard forwards besides chat and completions: OpenAI's embeddings and
vLLM's pooling family, by name, with every path vLLM 0.32 serves each at.

vLLM serves ``/pooling``, ``/classify``, ``/tokenize`` and ``/detokenize`` without a
``/v1`` prefix, ``/score`` and ``/rerank`` with and without it, and ``/v2/rerank``
(Cohere's shape). guard serves the same paths and forwards each to the same path
upstream. What a policy enables is in ``guard.policy.models.Endpoints``.
"""

from __future__ import annotations

from typing import Literal

EMBEDDINGS = "/v1/embeddings"

PoolingEndpoint = Literal[
    "embeddings", "pooling", "classify", "score", "rerank", "tokenize", "detokenize"
]

PATHS: dict[PoolingEndpoint, tuple[str, ...]] = {
    "embeddings": (EMBEDDINGS,),
    "pooling": ("/pooling",),
    "classify": ("/classify",),
    "score": ("/score", "/v1/score"),
    "rerank": ("/rerank", "/v1/rerank", "/v2/rerank"),
    "tokenize": ("/tokenize",),
    "detokenize": ("/detokenize",),
}

ENDPOINT_OF: dict[str, PoolingEndpoint] = {
    path: name for name, paths in PATHS.items() for path in paths
}
"""Path -> the endpoint it belongs to."""
