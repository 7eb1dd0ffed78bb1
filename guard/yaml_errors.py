"""Turn YAML and pydantic errors into sentences a policy or keys file's author understands.

Each problem reads ``FILE:LINE: where.in.the.file: what is wrong``. The line comes
from the YAML node tree, found by walking the error's location through it.
"""

from __future__ import annotations

import difflib
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from guard.errors import PolicyError

Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class YamlFile:
    raw: bytes
    node: yaml.Node | None
    """The node tree, to find the line of a validation error."""
    data: Any


def read_yaml(path: Path, what: str, expected: str, raw: bytes | None = None) -> YamlFile:
    """Read and parse a YAML file; ``PolicyError`` in words if it cannot be read or parsed,
    is empty, or does not end with a newline (``what``: "the file", "the keys file"...;
    ``expected``: what it should hold). ``raw``: the file's bytes, already read.

    A file whose last line has no newline may have been cut short, mid-line, by a
    writer that has not finished (or died): most such cuts still parse, and some
    would load with less in them (docs/operations.md, "Hot reload")."""
    if raw is None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise PolicyError([f"{path}: cannot read {what}: {exc.strerror or exc}"]) from exc
    if raw.strip() and not raw.endswith(b"\n"):
        raise PolicyError(
            [
                f"{path}: {what} does not end with a newline, so its last line may be cut "
                "short (a file still being written?); end the file with a newline"
            ]
        )
    text = raw.decode("utf-8", errors="replace")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError([explain_yaml_error(path, exc)]) from exc
    if data is None:
        raise PolicyError([f"{path}: {what} is empty; it should hold {expected}"])
    return YamlFile(raw, node, data)


def explain_yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}: this is not valid YAML: {problem}"


def explain_validation_error(
    path: Path,
    root: yaml.Node | None,
    exc: ValidationError,
    schema: Any,
    wrapped_in_list: bool = False,
) -> list[str]:
    """One sentence per error. ``schema``: the type the file was validated as, where the
    hints ("Did you mean ...?", the allowed keys) come from. ``wrapped_in_list``: the file
    held one item of a list schema, not the list."""
    problems = []
    for error in exc.errors():
        loc: Loc = tuple(error["loc"])
        file_loc = loc[1:] if wrapped_in_list else loc
        line, yaml_path = _locate(root, file_loc)
        where = f"{path}:{line}" if line else str(path)
        problems.append(f"{where}: {yaml_path or 'top level'}: {_describe(error, loc, schema)}")
    return problems


def _locate(node: yaml.Node | None, loc: Loc) -> tuple[int | None, str]:
    """The deepest line the location reaches, and the location as a YAML path."""
    line = node.start_mark.line + 1 if node is not None else None
    path = ""
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                continue  # a union branch name, not a key in the file
            key, node = match
            line = key.start_mark.line + 1
            path = f"{path}.{part}" if path else part
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
            path = f"{path}[{part}]"
    return line, path


def _describe(error: ErrorDetails, loc: Loc, schema: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    given = error.get("input")
    last = loc[-1] if loc else ""
    if kind == "missing":
        why = _field_description(loc, schema)
        return f"the required key '{last}' is missing" + (f": {why}" if why else "")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], schema)
        hint = ""
        if close := _closest(str(last), allowed):
            hint = f" Did you mean '{close}'?"
        listing = f" Allowed keys here: {', '.join(allowed)}." if allowed else ""
        return f"unknown key '{last}'.{hint}{listing}"
    if kind == "union_tag_invalid":
        return (
            f"there is no component kind '{ctx.get('tag')}'. "
            f"Known kinds here: {ctx.get('expected_tags')}."
        )
    if kind == "union_tag_not_found":
        return "this component has no 'kind'; every component needs one"
    if kind == "literal_error":
        expected = str(ctx.get("expected"))
        close = _closest(str(given), re.findall(r"'([^']*)'", expected))
        hint = f" Did you mean '{close}'?" if close else ""
        return f"{given!r} is not allowed here; use one of {expected}.{hint}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys to values, got {_shown(given)}"
    if kind == "list_type":
        return f"expected a list, got {_shown(given)}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{message[0].lower()}{message[1:]} (got {_shown(given)})"


def _closest(word: str, options: list[str]) -> str | None:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    if close:
        return close[0]
    prefixed = [option for option in options if option.startswith(word[:3])]
    return prefixed[0] if len(prefixed) == 1 else None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(loc: Loc, schema: Any) -> list[str]:
    target: Any = schema
    for part in loc:
        target = _step(target, part)
        if target is None:
            return []
    target = _unwrap(target)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return list(target.model_fields)
    return []


def _field_description(loc: Loc, schema: Any) -> str | None:
    """The ``description`` of the field at ``loc``: why a required key is required."""
    target: Any = schema
    for part in loc[:-1]:
        target = _step(target, part)
        if target is None:
            return None
    target = _unwrap(target)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        return None
    field = target.model_fields.get(str(loc[-1])) if loc else None
    return field.description if field is not None else None


def _unwrap(target: Any) -> Any:
    while get_origin(target) is Annotated:
        target = get_args(target)[0]
    return target


def _step(target: Any, part: int | str) -> Any:
    """The type found at ``part`` inside ``target``, following lists, dicts and unions."""
    target = _unwrap(target)
    origin = get_origin(target)
    if origin in (Union, types.UnionType):
        members = [_unwrap(m) for m in get_args(target) if m is not type(None)]
        for member in members:
            if _kind_literal(member) == part:
                return member
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        return _step(models[0], part) if len(models) == 1 else None
    if origin is list and isinstance(part, int):
        return get_args(target)[0]
    if origin is dict:
        return get_args(target)[1]
    if isinstance(target, type) and issubclass(target, BaseModel) and part in target.model_fields:
        return target.model_fields[str(part)].annotation
    return None


def _kind_literal(model: Any) -> str | None:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    field = model.model_fields.get("kind")
    if field is None or get_origin(field.annotation) is not Literal:
        return None
    return str(get_args(field.annotation)[0])
