"""``POST /v1/embeddings`` and vLLM's pooling family (``/pooling``, ``/classify``,
``/score``, ``/rerank``, ``/tokenize``, ``/detokenize`` and their other paths).

A request is routed by its ``model``, like a chat request, and served only where that
policy enables the endpoint (``endpoints``; embeddings are on unless turned off): any
other gets 404, so no model-facing endpoint is reached unguarded by accident. The
input rails judge it where the policy says so. The upstream's answer comes back as
sent, ``usage`` included, with guard's ``guard`` object added.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from guard.errors import InvalidRequest, NotFound, UpstreamHTTPError
from guard.pipeline.context import RequestContext
from guard.protocol.pooling import ENDPOINT_OF, PATHS
from guard.protocol.schema import EmbeddingRequest, PoolingRequest
from guard.server.admission import admit, note_result, observe
from guard.server.middleware import record_of
from guard.server.routes import ORJSONResponse, guard_state, read_json_object, validated


async def forward(request: Request) -> Response:
    path = request.url.path
    endpoint = ENDPOINT_OF[path]
    state = guard_state(request)
    body = await read_json_object(request, state.settings.max_body_bytes)
    if endpoint == "embeddings":
        embedding = validated(EmbeddingRequest, body)
        if embedding.input is None and embedding.messages is None:
            raise InvalidRequest(
                "Invalid value for 'input': Field required.", param="input", code="invalid_value"
            )
    model = validated(PoolingRequest, body).model
    pipeline, route = admit(request, model)
    endpoints = pipeline.loaded.policy.endpoints
    if not endpoints.enabled(endpoint):
        raise NotFound(
            f"{path} is not enabled for the model '{model}' (a policy enables it under "
            f"'endpoints: {{{endpoint}: true}}').",
            code="endpoint_not_enabled",
        )
    ctx = RequestContext(request.state.request_id, route.upstream_model, model)
    observe(request, ctx, body, stream=False, path=path)
    record = record_of(request)
    if record.shadow is not None and not record.shadow.loaded.policy.endpoints.judges_input(
        endpoint
    ):
        record.shadow = None  # what the shadow would do here: nothing
    try:
        result = await pipeline.forward(path, body, ctx, endpoints.judges_input(endpoint))
    except UpstreamHTTPError as exc:
        if exc.status_code == 404 and exc.code is None:  # vLLM's unknown model has a code
            exc.message = (
                f"The upstream does not serve {path} ({exc.message}): vLLM serves it only "
                f"for a model that supports {endpoint}."
            )
        raise
    note_result(request, result)
    headers = {"x-guard-policy": pipeline.name, "x-guard-verdict": ctx.verdict}
    return ORJSONResponse(result, headers=headers)


POOLING_ROUTES = [
    Route(path, forward, methods=["POST"]) for paths in PATHS.values() for path in paths
]
