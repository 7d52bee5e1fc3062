"""Reading a YAML file a user wrote: every way it can be unreadable is one error naming it."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from generator.errors import GapfillError


def read_yaml(path: Path, error: type[GapfillError]) -> Any:
    """The file's content (``safe_load``), or ``error`` with one line saying why not.

    PyYAML's composer recurses once per nesting level, so a file nested thousands deep would
    end in a RecursionError: that is bad input, said as such.
    """
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise error(f"{path}: is a directory, not a YAML file") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    except RecursionError as exc:
        raise error(f"{path}: nested too deeply") from exc


def validation_message(
    path: Path,
    exc: ValidationError,
    model: type[BaseModel],
    within: tuple[str, ...] = (),
    *,
    keys_listed_by: str = "`gapfill run --schema`",
) -> str:
    """``FILE:LINE: key.path: reason`` for the first problem in a file validated as ``model``
    (found at key path ``within`` in the file); an unknown key first (a typo of a required key
    is also that key "missing", and the typo is the news), with the closest known key at its
    level as a hint."""
    errors = exc.errors()
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = (*within, *error["loc"])
    line = line_of(path, loc)
    where = f"{path}:{line}" if line else str(path)
    dotted = ".".join(str(part) for part in loc) or "file"
    if error["type"] != "extra_forbidden":
        return f"{where}: {dotted}: {str(error['msg']).removeprefix('Value error, ')}"
    known = _keys_at(model, error["loc"][:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"{keys_listed_by} lists the keys"
    return f"{where}: {dotted}: unknown key; {hint}"


def _keys_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the model nested at ``loc`` (a key path of sections and list
    positions: ``cells.3`` is the model of the list ``cells``' items)."""
    annotation: Any = model
    for part in loc:
        if isinstance(part, int):
            args = get_args(annotation) if get_origin(annotation) is list else ()
            annotation = args[0] if args else None
            continue
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        field = annotation.model_fields.get(part)
        annotation = field.annotation if field else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def line_of(path: Path, loc: tuple[int | str, ...]) -> int | None:
    """The line of the YAML key at ``loc`` (None: a key the file does not hold, e.g. one left
    out, or one set by an override)."""
    node: yaml.Node | None = yaml.compose(path.read_text(encoding="utf-8"))
    line = None
    for part in loc:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
            continue
        if not isinstance(node, yaml.MappingNode):
            return None
        pairs = [(k, v) for k, v in node.value if getattr(k, "value", None) == str(part)]
        if not pairs:
            return None
        line, node = pairs[0][0].start_mark.line + 1, pairs[0][1]
    return line
