"""Guarded streaming: no unchecked text is ever released, and a block stops generation."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from hypothesis import example, given, settings
from hypothesis import strategies as st

from guard.components.base import Verdict
from guard.pipeline.rails import Judgement, RailReport
from guard.pipeline.streaming import StreamGuard, chunk_fields
from guard.policy.models import Streaming
from tests.conftest import Fake, guard_app, listing_rails, write_policy
from tests.servers import serve_in_thread

CHAT = "/v1/chat/completions"
PHRASE = "zebra quokka narwhal"  # three words, none of them in the filler
FILLER = "the cat sat on a mat and then it ran far away from home"


def forbidding(phrase_pattern: str, window: int = 4, chunk: int = 2, extra: str = "") -> str:
    return f"""
streaming:
  window_tokens: {window}
  chunk_tokens: {chunk}
  context_tokens: 8
output_rails:
  - kind: regex
    name: forbidden
    patterns: ["{phrase_pattern}"]
{extra}"""


@contextmanager
def guarded(upstream: Fake, tmp_path: Path, rails: str) -> Iterator[str]:
    text = listing_rails(f"name: streamed\nmodels: {{'*': null}}\n{rails}")
    policy = write_policy(tmp_path, text)
    with serve_in_thread(guard_app(upstream.url, [policy])) as url:
        yield url


def stream(url: str, text: str, path: str = CHAT, **extra: object) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"model": "m", "stream": True, **extra}
    if path == CHAT:
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = text
    with httpx.stream("POST", f"{url}{path}", json=body, timeout=30) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    return [orjson.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def released_text(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(
        (c.get("delta") or {}).get("content") or c.get("text") or ""
        for chunk in chunks
        for c in chunk["choices"]
        if c["index"] == index
    )


def finish_of(chunks: list[dict[str, Any]], index: int = 0) -> str | None:
    reasons = [
        c["finish_reason"]
        for chunk in chunks
        for c in chunk["choices"]
        if c["index"] == index and c.get("finish_reason")
    ]
    return reasons[-1] if reasons else None


def wait_for_cancel(upstream: Fake, before: int, url: str) -> int:
    streams = upstream.app.state.streams
    for _ in range(300):  # bounded wait for the cancellation to reach the upstream
        if streams.count("cancelled") > before:
            break
        httpx.get(f"{url}/health")
    return streams.count("cancelled")


def test_split_phrase_is_never_released_and_generation_stops(
    paced_upstream: Fake, tmp_path: Path
) -> None:
    answer = f"say: {FILLER} {FILLER} {PHRASE} {FILLER} {FILLER}"
    before = paced_upstream.app.state.streams.count("cancelled")
    with guarded(paced_upstream, tmp_path, forbidding(PHRASE)) as url:
        chunks = stream(url, answer)
        cancelled = wait_for_cancel(paced_upstream, before, url)
    text = released_text(chunks)
    for word in PHRASE.split():
        assert word not in orjson.dumps(chunks).decode()
    assert text and (FILLER + " " + FILLER).startswith(text.strip())
    assert finish_of(chunks) == "content_filter"
    assert chunks[-1]["guard"]["verdicts"][0]["outcome"] == "block"
    assert cancelled == before + 1


def test_clean_answer_streams_whole_with_usage(fake_upstream: Fake, tmp_path: Path) -> None:
    with guarded(fake_upstream, tmp_path, forbidding(PHRASE)) as url:
        chunks = stream(url, f"say: {FILLER}", stream_options={"include_usage": True})
        plain = stream(url, f"say: {FILLER}")
    assert released_text(chunks) == FILLER
    assert finish_of(chunks) == "stop"
    assert chunks[0]["guard"]["stream_checks"] >= 1 or chunks[0]["guard"]["verdict"] == "pass"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 14
    assert all("usage" not in c for c in plain)  # usage only when the client asked


def test_blocked_stream_reports_usage_of_what_was_generated(
    paced_upstream: Fake, tmp_path: Path
) -> None:
    # Paced: an instant upstream has generated all of it before the first check ends.
    with guarded(paced_upstream, tmp_path, forbidding(PHRASE)) as url:
        chunks = stream(
            url, f"say: {FILLER} {PHRASE} {FILLER}", stream_options={"include_usage": True}
        )
    usage = chunks[-1]["usage"]
    assert 14 < usage["completion_tokens"] < 31  # cut short after the phrase, not at the end


def test_each_choice_is_guarded_on_its_own(fake_upstream: Fake, tmp_path: Path) -> None:
    with guarded(fake_upstream, tmp_path, forbidding(PHRASE)) as url:
        clean = stream(url, f"say: {FILLER}", n=2)
        dirty = stream(url, f"say: {FILLER} {PHRASE}", n=2)
    assert released_text(clean, 0) == released_text(clean, 1) == FILLER
    assert finish_of(dirty, 0) == finish_of(dirty, 1) == "content_filter"


def test_text_completions_stream_is_guarded(fake_upstream: Fake, tmp_path: Path) -> None:
    with guarded(fake_upstream, tmp_path, forbidding(PHRASE)) as url:
        chunks = stream(url, f"say: {FILLER} {PHRASE}", path="/v1/completions")
    assert PHRASE.split()[0] not in released_text(chunks)
    assert finish_of(chunks) == "content_filter"


def test_redaction_while_streaming(fake_upstream: Fake, tmp_path: Path) -> None:
    rails = """
streaming: {window_tokens: 3, chunk_tokens: 2}
output_rails:
  - kind: regex
    presets: [email]
    action: redact
"""
    with guarded(fake_upstream, tmp_path, rails) as url:
        chunks = stream(url, f"say: {FILLER} write to bob@example.com soon {FILLER}")
    assert released_text(chunks) == f"{FILLER} write to [REDACTED] soon {FILLER}"
    assert "bob@" not in orjson.dumps(chunks).decode()


def test_final_check_judges_the_whole_answer(fake_upstream: Fake, tmp_path: Path) -> None:
    """A phrase longer than the window passes every window check; the final check sees it."""
    rails = forbidding("cat sat on a mat and then it ran", window=1, chunk=1)
    with guarded(fake_upstream, tmp_path, rails) as url:
        chunks = stream(url, f"say: {FILLER}")
    assert finish_of(chunks) == "content_filter"


def test_disconnect_cancels_the_upstream(paced_upstream: Fake, tmp_path: Path) -> None:
    before = paced_upstream.app.state.streams.count("cancelled")
    with guarded(paced_upstream, tmp_path, forbidding(PHRASE)) as url:
        body = {
            "model": "m",
            "stream": True,
            "messages": [{"role": "user", "content": "say: " + "word " * 100}],
        }
        with httpx.stream("POST", f"{url}{CHAT}", json=body) as response:
            next(response.iter_lines())
        cancelled = wait_for_cancel(paced_upstream, before, url)
    assert cancelled == before + 1


def test_disconnect_leaves_no_task_running_in_the_server(
    paced_upstream: Fake, tmp_path: Path
) -> None:
    """guard served in this test's own event loop, on a real socket, so that its tasks
    can be counted: after a client hangs up mid-stream, none of the stream's is left."""
    text = listing_rails(f"name: streamed\nmodels: {{'*': null}}\n{forbidding(PHRASE)}")
    policy = write_policy(tmp_path, text)
    app = guard_app(paced_upstream.url, [policy])
    streams = paced_upstream.app.state.streams

    def body(words: int) -> dict[str, Any]:
        content = "say: " + "word " * words
        return {"model": "m", "stream": True, "messages": [{"role": "user", "content": content}]}

    async def scenario() -> tuple[set[asyncio.Task[Any]], int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        for _ in range(3000):  # bounded wait for start-up
            if server.started or serving.done():
                break
            await asyncio.sleep(0.01)
        assert server.started
        try:
            async with httpx.AsyncClient(timeout=30) as client:  # a whole stream first
                assert (await client.post(f"{url}{CHAT}", json=body(6))).status_code == 200
            baseline = asyncio.all_tasks()
            before = streams.count("cancelled")
            async with (
                httpx.AsyncClient(timeout=30) as client,
                client.stream("POST", f"{url}{CHAT}", json=body(100)) as response,
            ):
                async for line in response.aiter_lines():
                    if '"content":"word' in line:
                        break  # text is flowing, checks are running: hang up
            for _ in range(1000):  # bounded wait for the server to wind the stream down
                left = asyncio.all_tasks() - baseline
                if not left and streams.count("cancelled") > before:
                    break
                await asyncio.sleep(0.01)
            return left, streams.count("cancelled") - before
        finally:
            server.should_exit = True
            await serving
            sock.close()

    left, cancelled = asyncio.run(scenario())
    assert not left, left
    assert cancelled == 1


# -- the guarantee, over random chunkings -------------------------------------------


def _judgement(blocked: bool) -> Judgement:
    verdict = Verdict(flagged=blocked)
    report = RailReport("r", "regex", "output", "block" if blocked else "pass", verdict, 0.1)
    return Judgement((report,))


async def _run(
    pieces: list[str], window: int, chunk: int, forbidden: str, delay: int = 0
) -> tuple[str, list[tuple[int, str]]]:
    """Released text, and each passing check as (released length then, text judged).

    ``delay``: the judge lets the loop run that many times before it answers, while the
    upstream yields to the loop after every piece, so chunks arrive during checks.
    """
    checked: list[tuple[int, str]] = []
    settings_ = Streaming(
        window_tokens=window, chunk_tokens=chunk, context_tokens=0, final_check=False
    )
    running = 0

    async def judge(text: str, index: int) -> Judgement:
        nonlocal running
        running += 1
        assert running == 1  # never two checks of one choice at once
        released = "".join(guard.choices[index].released)
        for _ in range(delay):
            await asyncio.sleep(0)
        running -= 1
        blocked = forbidden in text
        if not blocked:
            checked.append((len(released), text))
        return _judgement(blocked)

    async def upstream() -> AsyncIterator[bytes]:
        head = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        for piece in pieces:
            choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            yield b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"
            if delay:
                await asyncio.sleep(0)
        yield b"data: [DONE]\n\n"

    guard = StreamGuard(settings_, judge, dict)
    out = [event async for event in guard.run(upstream())]
    chunks = [orjson.loads(e[6:]) for e in out if e != b"data: [DONE]\n\n"]
    return released_text(chunks), checked


def _pieces(text: str, cuts: list[int]) -> list[str]:
    pieces, position, turn = [], 0, 0
    while position < len(text):
        cut = cuts[turn % len(cuts)]
        pieces.append(text[position : position + cut])
        position, turn = position + cut, turn + 1
    return pieces


def _assert_guarantee(
    text: str, forbidden: str, released: str, checked: list[tuple[int, str]]
) -> None:
    assert text.startswith(released)
    if forbidden in text:
        assert len(released) <= text.find(forbidden)  # no part of the phrase went out
    else:
        assert released == text
    covered = 0
    for start, judged in checked:  # each passing check covers text[start:start + len]
        assert text[start : start + len(judged)] == judged
        assert start <= covered
        covered = max(covered, start + len(judged))
    assert covered >= len(released)


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(st.sampled_from(["a", "b", "c", "X", "Y", " ", "."]), min_size=1, max_size=40),
    cuts=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=40),
    window=st.integers(min_value=2, max_value=6),
    chunk=st.integers(min_value=1, max_value=6),
)
def test_released_text_was_checked_and_never_holds_the_phrase(
    words: list[str], cuts: list[int], window: int, chunk: int
) -> None:
    text = "".join(words)
    pieces = _pieces(text, cuts)
    forbidden = "XY"  # spans at most 2 pieces: always inside a window of 2 or more
    released, checked = asyncio.run(_run(pieces, window, chunk, forbidden))
    _assert_guarantee(text, forbidden, released, checked)


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(st.sampled_from(["a", "X", "X", " "]), min_size=1, max_size=60),
    cuts=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=40),
    window=st.integers(min_value=1, max_value=6),
    chunk=st.integers(min_value=1, max_value=6),
    delay=st.integers(min_value=0, max_value=12),
)
@example(words=["a", "X", "X"], cuts=[1], window=2, chunk=1, delay=0)  # the tightest case
def test_a_phrase_as_long_as_the_window_never_goes_out_in_part_with_slow_rails(
    words: list[str], cuts: list[int], window: int, chunk: int, delay: int
) -> None:
    """The tight case: a phrase of exactly ``window_tokens`` one-character chunks, and
    rails slow enough that checks coalesce whatever arrived while they ran."""
    text = "".join(words)
    forbidden = "X" * window
    released, checked = asyncio.run(_run(list(text), window, chunk, forbidden, delay))
    _assert_guarantee(text, forbidden, released, checked)
    released, checked = asyncio.run(_run(_pieces(text, cuts), window, chunk, forbidden, delay))
    _assert_guarantee(text, forbidden, released, checked)


# -- when checks run ------------------------------------------------------------------


def _events(pieces: list[str]) -> list[bytes]:
    head = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    out = [b"data: " + orjson.dumps({**head, "choices": [role]}) + b"\n\n"]
    for piece in pieces:
        choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
        out.append(b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n")
    return out


@pytest.mark.parametrize("role", [True, False], ids=["chat", "no-role-chunk"])
def test_first_release_comes_as_soon_as_a_window_is_held(role: bool) -> None:
    """A chat stream starts with a text-less role chunk, a text completion's does not."""
    pieces = [f"w{i} " for i in range(40)]
    judged: list[str] = []
    out_before: list[str] = []

    async def judge(text: str, index: int) -> Judgement:
        judged.append(text)
        out_before.append("".join(guard.choices[index].released))
        return _judgement(False)

    async def upstream() -> AsyncIterator[bytes]:
        for event in _events(pieces)[0 if role else 1 :]:
            yield event
        yield b"data: [DONE]\n\n"

    guard = StreamGuard(Streaming(window_tokens=8, chunk_tokens=4, context_tokens=0), judge, dict)

    async def first_release() -> str:
        async for event in guard.run(upstream()):
            text = released_text([orjson.loads(event[6:])])
            if text:
                return text
        raise AssertionError("nothing released")

    assert asyncio.run(first_release()) == pieces[0]
    assert judged[0] == "".join(pieces[:8])  # the first check: exactly one window
    assert out_before[:2] == ["", pieces[0]]  # which released exactly the first piece


async def _count_checks(pieces: list[str], lag: int) -> tuple[str, list[str]]:
    """Released text and the texts judged, when each check takes as long as the
    upstream needs for ``lag`` more pieces."""
    produced = 0
    progress = asyncio.Condition()
    judged: list[str] = []

    async def judge(text: str, index: int) -> Judgement:
        judged.append(text)
        target = min(produced + lag, len(pieces))
        async with progress:
            await progress.wait_for(lambda: produced >= target)
        return _judgement(False)

    async def upstream() -> AsyncIterator[bytes]:
        nonlocal produced
        for event in _events(pieces):
            yield event
            async with progress:
                produced += 1
                progress.notify_all()
            await asyncio.sleep(0)
        yield b"data: [DONE]\n\n"

    settings_ = Streaming(window_tokens=4, chunk_tokens=2, context_tokens=0, final_check=False)
    out = [e async for e in StreamGuard(settings_, judge, dict).run(upstream())]
    return released_text([orjson.loads(e[6:]) for e in out[:-1]]), judged


def test_slow_rails_check_less_often_and_cover_what_arrived_meanwhile() -> None:
    pieces = [f"w{i} " for i in range(200)]
    fast_text, fast = asyncio.run(_count_checks(pieces, lag=0))
    slow_text, slow = asyncio.run(_count_checks(pieces, lag=8))
    assert fast_text == slow_text == "".join(pieces)
    # Rails that keep up: the first window, then one check per chunk_tokens new pieces,
    # each judging them and the 3 kept back.
    assert [len(t.split()) for t in fast] == [4] + [3 + 2] * 98
    # Slow rails: fewer, longer checks, each at most the kept-back window and
    # 4 x chunk_tokens new pieces.
    slow_sizes = [len(t.split()) for t in slow]
    assert slow_sizes[0] == 4 and set(slow_sizes[1:-1]) == {3 + 4 * 2}
    assert len(slow) * 3 <= len(fast)


def test_closing_the_stream_cancels_a_pending_check() -> None:
    async def scenario() -> tuple[bool, set[asyncio.Task[Any]]]:
        before = asyncio.all_tasks()
        started, cancelled = asyncio.Event(), False

        async def judge(text: str, index: int) -> Judgement:
            nonlocal cancelled
            started.set()
            try:
                await asyncio.Event().wait()  # a classifier that never answers
            except asyncio.CancelledError:
                cancelled = True
                raise
            return _judgement(False)

        async def upstream() -> AsyncIterator[bytes]:
            for event in _events(["a ", "b ", "c "]):
                yield event
            await asyncio.Event().wait()  # the upstream keeps the stream open

        settings_ = Streaming(window_tokens=2, chunk_tokens=1, context_tokens=0)
        events = StreamGuard(settings_, judge, dict).run(upstream())
        consumer = asyncio.create_task(anext(events))
        await started.wait()
        consumer.cancel()  # the client went away while a check was pending
        await asyncio.gather(consumer, return_exceptions=True)
        await events.aclose()
        for _ in range(100):  # bounded: let the cancelled tasks finish
            if asyncio.all_tasks() <= before:
                break
            await asyncio.sleep(0)
        return cancelled, asyncio.all_tasks() - before

    cancelled, left = asyncio.run(scenario())
    assert cancelled
    assert not left


# -- redaction on a stream --------------------------------------------------------------


async def _run_redacting(
    pieces: list[str], window: int, chunk: int, secret: str, delay: int, final_check: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """The released chunks (each one's choice), and every text judged, when the judge redacts
    each ``secret`` it finds (to ``#``) and the upstream yields to the loop after each
    piece, so that checks cut the held text at many places."""
    judged: list[str] = []

    async def judge(text: str, index: int) -> Judgement:
        judged.append(text)
        for _ in range(delay):
            await asyncio.sleep(0)
        spans, start = [], text.find(secret)
        while start >= 0:
            spans.append((start, start + len(secret), "#"))
            start = text.find(secret, start + len(secret))
        report = RailReport("r", "regex", "output", "redact" if spans else "pass", None, 0.1)
        return Judgement((report,), tuple(spans))

    async def upstream() -> AsyncIterator[bytes]:
        head = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        for piece in pieces:
            logprobs = {"content": [{"token": piece, "logprob": -0.1}]}
            choice = {"index": 0, "delta": {"content": piece}, "logprobs": logprobs}
            yield b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"
            await asyncio.sleep(0)
        yield b"data: [DONE]\n\n"

    settings_ = Streaming(
        window_tokens=window, chunk_tokens=chunk, context_tokens=4, final_check=final_check
    )
    out = [e async for e in StreamGuard(settings_, judge, dict).run(upstream())]
    return [orjson.loads(e[6:])["choices"][0] for e in out[:-1]], judged


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(
        st.sampled_from(["a", "b", " ", "XYZ", "XYZ", "XY", "Z"]), min_size=1, max_size=30
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=20),
    window=st.integers(min_value=3, max_value=6),
    chunk=st.integers(min_value=1, max_value=4),
    delay=st.integers(min_value=0, max_value=6),
    final_check=st.booleans(),
)
@example(words=["XYZ"], cuts=[1], window=3, chunk=1, delay=0, final_check=False)
def test_a_redacted_span_goes_out_replaced_and_never_in_part(
    words: list[str], cuts: list[int], window: int, chunk: int, delay: int, final_check: bool
) -> None:
    """``XYZ`` spans at most three pieces, so a window of three or more holds it whole
    before any of it goes out; wherever a check's cut falls, the released chunks spell
    the text with every ``XYZ`` replaced, and no chunk carries a piece of one. A chunk the
    redaction rewrote loses its logprobs (they spell what it said); the others keep theirs.
    The final check reads the whole answer as the client got it (what was held, raw);
    without it, what a redacting check held back is judged again before it goes out."""
    text = "".join(words)
    pieces = _pieces(text, cuts)
    chunks, judged = asyncio.run(_run_redacting(pieces, window, chunk, "XYZ", delay, final_check))
    released = "".join(c["delta"]["content"] for c in chunks)
    assert released == text.replace("XYZ", "#")
    assert len(chunks) == len(pieces)
    for piece, sent in zip(pieces, chunks, strict=True):
        assert (sent["logprobs"] is None) == (sent["delta"]["content"] != piece)
    if final_check:
        assert judged[-1].replace("XYZ", "#") == released


async def _judged_texts(
    pieces: list[str], settings_: Streaming, redact: str | None = None
) -> tuple[str, list[str]]:
    """Released text and every text judged; the judge redacts ``redact`` (to ``#``). The
    upstream waits for the checks between pieces and sends no finish chunk, only
    ``[DONE]``, so nothing may be held at the end."""
    judged: list[str] = []

    async def judge(text: str, index: int) -> Judgement:
        judged.append(text)
        at = text.find(redact) if redact else -1
        spans = ((at, at + len(redact), "#"),) if redact and at >= 0 else ()
        report = RailReport("r", "regex", "output", "redact" if spans else "pass", None, 0.1)
        return Judgement((report,), spans)

    async def upstream() -> AsyncIterator[bytes]:
        for event in _events(pieces):
            yield event
            for _ in range(20):  # the check of what came runs before the next piece
                await asyncio.sleep(0)
        yield b"data: [DONE]\n\n"

    async def run() -> list[bytes]:
        return [e async for e in StreamGuard(settings_, judge, dict).run(upstream())]

    out = await asyncio.wait_for(run(), timeout=30)  # a guard against a hang, not a measure
    assert out[-1] == b"data: [DONE]\n\n"
    return released_text([orjson.loads(e[6:]) for e in out[:-1]]), judged


def test_the_final_check_reads_the_whole_answer_even_when_nothing_is_held() -> None:
    """Window 1: each chunk goes out once judged, so nothing is held when the stream ends;
    the final check still reads the whole answer."""
    settings_ = Streaming(window_tokens=1, chunk_tokens=1, context_tokens=0)
    released, judged = asyncio.run(_judged_texts(["a", "b", "c"], settings_))
    assert released == "abc"
    assert judged[-1] == "abc"


def test_without_final_check_a_stream_ends_after_a_redaction_released_everything() -> None:
    settings_ = Streaming(window_tokens=1, chunk_tokens=1, context_tokens=0, final_check=False)
    released, _ = asyncio.run(_judged_texts(["a ", "XYZ"], settings_, redact="XYZ"))
    assert released == "a #"


@pytest.mark.parametrize(
    ("pieces", "released"),
    [
        (["Q", "1", "2", "Z", " ok"], "Q12# ok"),
        # the span grows from the context check after check: one replacement
        (["Q", "Z", "Z", "Z", " ok"], "Q# ok"),
        # ... with white space after each piece, as words stream
        (["Q ", "Z ", "Z ", "Z", " ok"], "Q #   ok"),
    ],
)
def test_a_span_that_began_in_text_already_sent_is_replaced_where_it_goes_on(
    pieces: list[str], released: str
) -> None:
    """A span can start in the context, text already released: a second reading's span
    covers its whole stretch (rails.py). What is still held of it goes out as the
    replacement, once, not silently cut."""

    async def judge(text: str, index: int) -> Judgement:
        start, end = text.find("Q"), text.rfind("Z") + 1
        spans = ((start, end, "#"),) if 0 <= start < end else ()
        report = RailReport("r", "regex", "output", "redact" if spans else "pass", None, 0.1)
        return Judgement((report,), spans)

    async def upstream() -> AsyncIterator[bytes]:
        for event in _events(pieces):
            yield event
            for _ in range(20):
                await asyncio.sleep(0)
        yield b"data: [DONE]\n\n"

    async def run() -> list[bytes]:
        settings_ = Streaming(window_tokens=1, chunk_tokens=1, context_tokens=4)
        return [e async for e in StreamGuard(settings_, judge, dict).run(upstream())]

    out = asyncio.run(asyncio.wait_for(run(), timeout=30))  # a guard against a hang
    assert released_text([orjson.loads(e[6:]) for e in out[:-1]]) == released


@pytest.mark.parametrize(
    ("chunk", "ends"),
    [(1, list(range(2, 12))), (2, [2, 4, 6, 8, 10, 11]), (3, [2, 5, 8, 11])],
)
def test_without_final_check_text_a_check_covered_is_not_judged_again(
    chunk: int, ends: list[int]
) -> None:
    """With rails that keep up, the first check judges the first window and each next one
    the chunk_tokens pieces that arrived since (the last check: what is left); the end of
    the answer, covered by a passing check, goes out without another."""
    pieces = [f"w{i} " for i in range(12)]
    settings_ = Streaming(window_tokens=3, chunk_tokens=chunk, context_tokens=0, final_check=False)
    released, judged = asyncio.run(_judged_texts(pieces, settings_))
    assert released == "".join(pieces)
    assert [int(text.split()[-1][1:]) for text in judged] == ends, judged


def test_check_at_sentence_checks_at_sentence_ends_at_most_four_chunks_apart() -> None:
    """``check_at: sentence``: a check runs when the text held ends a sentence (its
    punctuation, then perhaps whitespace in a chunk of its own), or as soon as 4 x
    chunk_tokens new chunks wait; never more often than every chunk_tokens. Each check is
    recorded with the number of pieces the upstream had sent when it ran."""
    pieces = ["Hi", " there.", "Two.", " ", *[f"{c} " for c in "abcdefghi"], "j"]
    sent = 0
    checks: list[tuple[int, str]] = []

    async def judge(text: str, index: int) -> Judgement:
        checks.append((sent, text))
        return _judgement(False)

    async def upstream() -> AsyncIterator[bytes]:
        nonlocal sent
        for number, event in enumerate(_events(pieces)):
            sent = number  # the role chunk first, then the pieces
            yield event
            for _ in range(20):  # the check of what came runs before the next piece
                await asyncio.sleep(0)
        yield b"data: [DONE]\n\n"

    settings_ = Streaming(
        window_tokens=2, chunk_tokens=2, context_tokens=0, check_at="sentence", final_check=False
    )

    async def run() -> list[bytes]:
        return [e async for e in StreamGuard(settings_, judge, dict).run(upstream())]

    out = asyncio.run(asyncio.wait_for(run(), timeout=30))  # against a hang, not a measure
    assert released_text([orjson.loads(e[6:]) for e in out[:-1]]) == "".join(pieces)
    assert checks == [
        (2, "Hi there."),  # the first window ends a sentence
        (4, " there.Two. "),  # "Two." is one new chunk (fewer than chunk_tokens); " " ends it
        (12, " a b c d e f g h "),  # no sentence end: a check once 8 new chunks wait
        (14, "h i j"),  # what is left, at the end
    ]


def test_every_text_a_streamed_choice_adds_is_read() -> None:
    """Reasoning, content, refusal and each tool call's name and arguments, with where each
    lies in the choice (so a redaction rewrites it in place); a text completion's text."""
    choice = {
        "index": 0,
        "delta": {
            "reasoning_content": "r",
            "content": "c",
            "refusal": "no",
            "tool_calls": [
                {"index": 0, "function": {"name": "lookup", "arguments": "{}"}},
                {"index": 1, "function": {"arguments": '{"q": 1}'}},
            ],
        },
    }
    assert chunk_fields(choice) == [
        ("r", ("delta", "reasoning_content")),
        ("c", ("delta", "content")),
        ("no", ("delta", "refusal")),
        ("lookup", ("delta", "tool_calls", 0, "function", "name")),
        ("{}", ("delta", "tool_calls", 0, "function", "arguments")),
        ('{"q": 1}', ("delta", "tool_calls", 1, "function", "arguments")),
    ]
    assert chunk_fields({"index": 0, "text": "t"}) == [("t", ("text",))]
    assert chunk_fields({"index": 0, "text": None}) == [("", ("text",))]
    assert chunk_fields({"index": 0, "delta": {"role": "assistant"}}) == []


@pytest.mark.parametrize("final_check", [True, False])
def test_a_choice_a_rail_stopped_is_never_judged_again_while_another_streams(
    final_check: bool,
) -> None:
    """Choice 0 is blocked early while choice 1 streams on, and both end: choice 0 sends
    one ``content_filter`` chunk and asks the rails nothing more (no check of what it
    released, nor a final one); choice 1 is judged and released to its end."""
    first = ["a ", "b ", "BAD ", "c ", "d ", "e ", "f "]
    second = [f"w{i} " for i in range(12)]
    judged: list[tuple[int, str]] = []

    async def judge(text: str, index: int) -> Judgement:
        judged.append((index, text))
        return _judgement("BAD" in text)

    def event(index: int, piece: str, finish: str | None = None) -> bytes:
        head = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        choice = {"index": index, "delta": {"content": piece}, "finish_reason": finish}
        return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

    async def upstream() -> AsyncIterator[bytes]:
        for position in range(len(second)):
            for index, pieces in enumerate((first, second)):
                if position < len(pieces):
                    yield event(index, pieces[position])
                for _ in range(20):  # the check of what came runs before the next piece
                    await asyncio.sleep(0)
        yield event(0, "", "stop")
        yield event(1, "", "stop")
        yield b"data: [DONE]\n\n"

    settings_ = Streaming(
        window_tokens=2, chunk_tokens=1, context_tokens=2, final_check=final_check
    )

    async def run() -> list[bytes]:
        return [e async for e in StreamGuard(settings_, judge, dict).run(upstream())]

    out = asyncio.run(asyncio.wait_for(run(), timeout=30))  # against a hang, not a measure
    chunks = [orjson.loads(e[6:]) for e in out[:-1]]
    stops = [
        c for chunk in chunks for c in chunk["choices"] if c["finish_reason"] == "content_filter"
    ]
    assert [c["index"] for c in stops] == [0]
    assert "BAD" not in released_text(chunks, 0)
    checks_of_first = [text for index, text in judged if index == 0]
    assert "BAD" in checks_of_first[-1] and sum("BAD" in t for t in checks_of_first) == 1
    assert released_text(chunks, 1) == "".join(second) and finish_of(chunks, 1) == "stop"
    if final_check:  # which reads choice 1's whole answer
        assert [text for index, text in judged if index == 1][-1] == "".join(second)


def test_a_failing_check_ends_the_stream_with_an_error_event() -> None:
    """An unexpected exception (a bug) while a stream is guarded is reported to the
    client as an error event and the stream still ends with [DONE], nothing released
    unchecked."""

    async def judge(text: str, index: int) -> Judgement:
        raise RuntimeError("a bug in a check")

    async def upstream() -> AsyncIterator[bytes]:
        head = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        for piece in ["Hello ", "there, ", "how are ", "you today?"]:
            choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            yield b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def run() -> list[bytes]:
        settings_ = Streaming(window_tokens=2, chunk_tokens=1, context_tokens=0)
        guard = StreamGuard(settings_, judge, dict)
        return [event async for event in guard.run(upstream())]

    events = asyncio.run(run())
    assert events[-1] == b"data: [DONE]\n\n"
    payloads = [orjson.loads(e[6:]) for e in events[:-1]]
    assert [p["error"]["type"] for p in payloads if "error" in p] == ["internal_error"]
    assert released_text([p for p in payloads if "choices" in p]) == ""
