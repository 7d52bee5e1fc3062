"""Write docs/campaign.md, the reference of the campaign file's keys, from the pydantic model
`gapfill run` validates it with (generator.campaign.CampaignConfig and the sections it nests).

The doc is generated, never edited by hand: tests/test_campaign.py checks that the committed
file is what this script writes now, so a field added or changed without rerunning it fails the
tests. `python scripts/campaign_reference.py` rewrites the file; `--stdout` prints it instead.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, StringConstraints
from pydantic.fields import FieldInfo

from generator.campaign import CampaignConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "campaign.md"

HEADER = """\
# The campaign file

`gapfill run CONFIG.yaml` reads a YAML mapping with the keys below. Paths are relative to the
config file. A key the tables do not list is an error (one line naming the file, the line and the
key, with the closest known key as a hint), and so is a value out of its range.
`gapfill run --schema` prints the same as a JSON schema. `examples/demo/campaign.yaml` is a
complete example.

This file is generated from the pydantic models (`python scripts/campaign_reference.py`); do not
edit it by hand.
"""


def type_name(annotation: Any) -> str:
    """A field's type in words: ``path or null``, ``one of 'sft', 'preference'``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"'{arg}'" for arg in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if arg is type(None) else type_name(arg) for arg in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


SIGNS = {Ge: ">=", Gt: ">", Le: "<=", Lt: "<"}


def constraints(field: FieldInfo) -> str:
    """The field's range or pattern, as pydantic checks it."""
    parts = []
    for rule in field.metadata:
        if type(rule) in SIGNS:  # Ge(ge=1): the bound is the field named like the class
            parts.append(f"{SIGNS[type(rule)]} {getattr(rule, type(rule).__name__.lower())}")
        elif isinstance(rule, StringConstraints) and rule.pattern:
            parts.append(f"matches `{rule.pattern}`, {rule.min_length}-{rule.max_length} chars")
    return ", ".join(parts)


def default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{json.dumps(value)}`"


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell (one line, no column break)."""
    return " ".join(text.split()).replace("|", "\\|")


def section(title: str, model: type[BaseModel], path: str = "") -> list[str]:
    """One table per model; a nested section's key links to its own table (``path``: where
    the model sits, ``review.`` for the review section's keys)."""
    lines = [f"## {title}", ""]
    if model.__doc__ and model is not CampaignConfig:
        lines += [cell(model.__doc__), ""]
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        kind = type_name(field.annotation)
        limits = constraints(field)
        if section_model(field.annotation) is not None:
            anchor = (path + name).replace(".", "")  # GitHub drops the dots of `a.b:`
            kind = f"{kind}, see [`{path}{name}:`](#{anchor})"
        elif limits:
            kind = f"{kind} ({limits})"
        row = [f"`{name}`", kind, default(field), field.description or ""]
        lines.append("| " + " | ".join(cell(part) for part in row) + " |")
    return [*lines, ""]


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The section a field holds: its model, also where it may be null (``Model | None``)."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def nested(model: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    return [
        (name, found)
        for name, field in model.model_fields.items()
        if (found := section_model(field.annotation)) is not None
    ]


def reference() -> str:
    """The whole doc: the top-level keys, then each nested section's (and theirs)."""
    lines = [HEADER, *section("Top-level keys", CampaignConfig)]
    todo = [(name, model) for name, model in nested(CampaignConfig)]
    while todo:
        name, model = todo.pop(0)
        lines += section(f"`{name}:`", model, f"{name}.")
        todo += [(f"{name}.{inner}", found) for inner, found in nested(model)]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    text = reference()
    if "--stdout" in argv:
        sys.stdout.write(text)
    else:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
