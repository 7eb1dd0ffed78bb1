"""The demo: SmolLM2 converted once from its PyPI GGUF file, and a vLLM server
process to serve it. A leaf: standard library only at import.
"""

from guard.demo.model import ensure_demo_model
from guard.demo.vllm_server import DEMO_ARGS, VLLMServer

__all__ = [
    "DEMO_ARGS",
    "VLLMServer",
    "ensure_demo_model",
]
