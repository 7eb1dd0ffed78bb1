"""What both head trainers share: the trainable top (the encoder's top layers and a
linear head), batches of similar length, frozen states, and writing a head.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from guard.components.embedding import EmbeddingModel, head_meta_path
from guard.components.minilm import (
    PACKAGED_BACKBONE,
    Encoder,
    EncoderLayer,
    Layout,
    mean_pool,
)


@dataclass
class Top:
    """The trained part: the encoder's top layers and the linear head."""

    layers: list[EncoderLayer]
    head_w: torch.Tensor
    head_b: torch.Tensor

    def parameters(self) -> list[torch.Tensor]:
        return [t for layer in self.layers for t in asdict_tensors(layer)] + [
            self.head_w,
            self.head_b,
        ]

    def logits(self, states: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        layout = Layout.of(attention)
        for layer in self.layers:
            states = layer(states, layout)
        return F.linear(mean_pool(states, attention), self.head_w, self.head_b)


def asdict_tensors(layer: EncoderLayer) -> list[torch.Tensor]:
    return [getattr(layer, name) for name in EncoderLayer.__dataclass_fields__]


def new_top(encoder: Encoder, trained_layers: int, seed: int, outputs: int) -> Top:
    """Trainable copies of the encoder's top ``trained_layers`` and a fresh linear head."""
    generator = torch.Generator().manual_seed(seed)
    first = len(encoder.layers) - trained_layers
    layers = [
        EncoderLayer(*(t.detach().clone().requires_grad_() for t in asdict_tensors(layer)))
        for layer in encoder.layers[first:]
    ]
    hidden = encoder.word.shape[1]
    head_w = (torch.randn(outputs, hidden, generator=generator) * 0.02).requires_grad_()
    return Top(layers, head_w, torch.zeros(outputs, requires_grad=True))


def optimiser_for(
    top: Top, lr: float, head_lr: float, weight_decay: float, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (layers at ``lr``, head at ``head_lr``), linear warm-up over the first tenth
    of ``steps``, then linear decay to zero."""
    head = [top.head_w, top.head_b]
    groups = [{"params": head, "lr": head_lr}]
    if top.layers:
        groups.insert(0, {"params": top.parameters()[: -len(head)], "lr": lr})
    optimiser = torch.optim.AdamW(groups, weight_decay=weight_decay)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / steps)
    )
    return optimiser, schedule


def frozen_states_of_ids(
    model: EmbeddingModel, ids: Sequence[list[int]], stop: int
) -> list[torch.Tensor]:
    """Token states after layers ``[0, stop)``, one (length, hidden) tensor per id list."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
    with torch.inference_mode():
        for chunk in length_batches(list(range(len(ids))), [len(i) for i in ids], 64):
            batch, attention = pad([torch.tensor(ids[i]) for i in chunk])
            hidden = model.encoder.hidden(batch, attention, 0, stop)
            for row, i in enumerate(chunk):
                out[i] = hidden[row, : len(ids[i])].clone()
    return out


def pad(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(r.shape[0] for r in rows)
    batch = torch.zeros((len(rows), length, *rows[0].shape[1:]), dtype=rows[0].dtype)
    attention = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        batch[i, : r.shape[0]] = r
        attention[i, : r.shape[0]] = 1
    return batch, attention


def length_batches(
    index: list[int], lengths: Sequence[int], size: int, rng: random.Random | None = None
) -> list[list[int]]:
    """Batches of similar length; shuffled (within pools of 20 batches) when ``rng`` is given."""
    if rng is None:
        ordered = sorted(index, key=lambda i: lengths[i])
        return [ordered[s : s + size] for s in range(0, len(ordered), size)]
    index = index[:]
    rng.shuffle(index)
    batches = []
    for s in range(0, len(index), size * 20):
        pool = sorted(index[s : s + size * 20], key=lambda i: lengths[i])
        batches += [pool[p : p + size] for p in range(0, len(pool), size)]
    rng.shuffle(batches)
    return batches


def write_head(top: Top, path: Path, meta: dict[str, Any], layer_count: int) -> None:
    """The trained layers (half precision, under their place in a ``layer_count``-layer
    encoder) and the head in ``path``; ``meta`` in the ``.json`` beside it."""
    from safetensors.torch import save_file

    first = layer_count - len(top.layers)
    tensors: dict[str, torch.Tensor] = {}
    for offset, layer in enumerate(top.layers):
        prefix = f"encoder.layer.{first + offset}."
        q, k, v = layer.qkv_w.detach().chunk(3)
        qb, kb, vb = layer.qkv_b.detach().chunk(3)
        named = {
            "attention.self.query.weight": q,
            "attention.self.key.weight": k,
            "attention.self.value.weight": v,
            "attention.self.query.bias": qb,
            "attention.self.key.bias": kb,
            "attention.self.value.bias": vb,
            "attention.output.dense.weight": layer.out_w,
            "attention.output.dense.bias": layer.out_b,
            "attention.output.LayerNorm.weight": layer.ln1_w,
            "attention.output.LayerNorm.bias": layer.ln1_b,
            "intermediate.dense.weight": layer.up_w,
            "intermediate.dense.bias": layer.up_b,
            "output.dense.weight": layer.down_w,
            "output.dense.bias": layer.down_b,
            "output.LayerNorm.weight": layer.ln2_w,
            "output.LayerNorm.bias": layer.ln2_b,
        }
        for name, tensor in named.items():
            tensors[prefix + name] = tensor.detach().half().contiguous()
    tensors["head.weight"] = top.head_w.detach().float().contiguous()
    tensors["head.bias"] = top.head_b.detach().float().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    head_meta_path(path).write_text(json.dumps(meta, indent=1) + "\n")


def draw_seeds(seed: int, draws: int) -> range:
    """The seeds of a cross-validation's draws of the folds, ``seed`` first."""
    if draws < 1:
        raise ValueError(f"draws must be 1 or more, not {draws}")
    return range(seed, seed + draws)


def head_parser(prog: str, description: str, head: Path, epochs: int) -> argparse.ArgumentParser:
    """The options every head-training script has: --out, --data, --no-cv, --epochs,
    --threads, --backbone."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--out", type=Path, default=head, help="head file to write (.safetensors)")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="data folder (default: $GUARD_DATA_DIR or ../shared/data)",
    )
    parser.add_argument("--no-cv", action="store_true", help="skip cross-validation")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)"
    )
    parser.add_argument(
        "--backbone",
        default=PACKAGED_BACKBONE,
        help="BERT-architecture encoder: a hub id or a local folder "
        f"(default: {PACKAGED_BACKBONE}, packaged)",
    )
    return parser
