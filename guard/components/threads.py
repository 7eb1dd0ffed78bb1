"""Which threads run torch, and on how many OpenMP threads.

torch's OpenMP (libgomp on Linux) gives every thread that runs parallel work a team of
helper threads of its own, for as long as that thread lives. With more of them than
cores, libgomp stops spinning between operators and puts its helpers to sleep, and each
of the hundreds of operators of a forward pass then waits for one to wake: a quarter of a
batch of short prompts here (docs/benchmarks.md, "One thread for torch, and bfloat16").
So guard's in-process models (the MiniLM and Hugging Face kinds) run on one thread,
``model_thread``, shared by all their batchers, and are loaded on any thread with
OpenMP held to that thread alone (``load_alone``), which makes no team. threadpoolctl
and torch are imported only when used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from typing import Any, TypeVar

log = logging.getLogger("guard")
Loaded = TypeVar("Loaded")


@lru_cache(maxsize=1)
def model_thread() -> ThreadPoolExecutor:
    """The one thread every in-process model runs on (a batcher's ``executor``)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-model")


def load_alone(load: Callable[[], Loaded]) -> Loaded:
    """``load()`` (a model's loading) with torch's operators on the calling thread alone:
    it leaves no team of OpenMP threads behind, and the thread that called it waits
    for nothing but the load (a policy reload loads beside the requests being served)."""
    with one_thread():
        return load()


def one_thread() -> AbstractContextManager[object]:
    """While inside, torch runs the calling thread's operators on that thread alone; other
    threads keep their own count (``torch.set_num_threads`` would also change it for every
    thread that starts using torch later).

    Besides loading, int8 runs in it, each text alone: operators on one text are too small
    to be worth waking OpenMP's second thread for (docs/benchmarks.md, "int8 in a worker
    thread").

    Not after ``torch.set_num_threads``: it also sets MKL's count for the whole process,
    and MKL's products (a float32 matrix product, ``exp``) then run on that many threads
    whatever this limit. guard never calls it; scripts that do (the benches) may still
    make a team on a thread that loads a model."""
    import torch

    torch.get_num_threads()  # torch sets a thread's count on its first call: let it, first
    openmp = _openmp()
    if openmp is None:
        return nullcontext()
    limiter: AbstractContextManager[object] = openmp.limit(limits=1)
    return limiter


@lru_cache(maxsize=1)
def _openmp() -> Any:
    """The OpenMP runtime torch loaded (found among the loaded libraries, once); None
    without threadpoolctl (the ``embedding`` extra has it; a bare ``hf_classifier``
    install may not): then nothing is limited, only slower."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        log.warning("threadpoolctl is not installed: models load on every OpenMP thread")
        return None
    return ThreadpoolController().select(user_api="openmp")
