"""The drafted spec as YAML text, with a comment beside each choice saying why it was made and
commented lines for what a person should decide (time-ordered validation, as_of, suspects)."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field

COMMENT_COLUMN = 58
"""Where comments beside a line start (longer lines put them one space after)."""


@dataclass
class SpaceDraft:
    """One space as it will be written."""

    name: str
    table: str
    """The table's address (`schema.table`)."""
    key: list[str]
    key_note: str
    note: str = ""
    spec_table: str = ""
    """How `table:` spells it (`pipeline.discovery.draft._spec_table`); the address if unset."""
    time_column: str | None = None
    root_time: str | None = None
    """The root's time column: proposed, commented, as `time_column` and `as_of`."""
    columns: list[tuple[str, dict, str]] = field(default_factory=list)
    """(column, its settings, comment) per column the spec sets."""
    commented_columns: list[tuple[str, dict, str]] = field(default_factory=list)
    """Column settings proposed but left for a person to uncomment, with why."""
    notes: list[str] = field(default_factory=list)
    """Lines of comment under the space (what profiling will leave out, and why)."""
    children: list[tuple[dict, str]] = field(default_factory=list)
    references: list[tuple[dict, str]] = field(default_factory=list)


def scalar(value) -> str:
    """A YAML scalar that reads back as `value` (strings quoted only where YAML needs it)."""
    plain = (
        isinstance(value, str)
        and value
        and all(ch.isalnum() or ch in "_./-" for ch in value)
        and value.lower() not in YAML_WORDS
        and not value[0].isdigit()
        and value[0] not in "-."
    )
    return value if plain else json.dumps(value)


YAML_WORDS = {"true", "false", "yes", "no", "null", "on", "off", "y", "n", "~"}
"""Words YAML reads as something other than a string."""


def flow(mapping: dict) -> str:
    """`{a: 1, b: [x, y]}` on one line."""

    return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in mapping.items()) + "}"


def value_text(value) -> str:
    """A scalar, a list or a mapping in YAML's one-line form."""
    if isinstance(value, list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return flow(value)
    return scalar(value)


def _line(text: str, comment: str = "") -> str:
    """`text` with `comment` beside it, or on the line above where both do not fit."""
    if not comment:
        return text
    if max(len(text), COMMENT_COLUMN - 1) + len(comment) + 3 <= WIDTH:
        return f"{text.ljust(COMMENT_COLUMN - 1)} # {comment}"
    indent = " " * (len(text) - len(text.lstrip()))
    wrapped = textwrap.wrap(comment, WIDTH - len(indent) - 2)
    return "\n".join(f"{indent}# {part}" for part in wrapped) + "\n" + text


WIDTH = 100
"""Line width the comments are wrapped to."""


def spec_text(header: list[str], settings: list[tuple[str, str]], spaces: list[SpaceDraft]) -> str:
    """The whole spaces.yaml: header comments, top-level settings, then each space."""
    lines = []
    for line in header:
        indent = " " * (len(line) - len(line.lstrip(" -")))
        wrapped = textwrap.wrap(line, WIDTH - 2, subsequent_indent=indent) or [""]
        lines += [f"# {part}".rstrip() for part in wrapped]
    lines += [f"{key}: {value}" for key, value in settings]
    lines.append("spaces:")
    for space in spaces:
        lines.append(_line(f"  {space.name}:", space.note))
        lines.append(f"    table: {scalar(space.spec_table or space.table)}")
        key = space.key[0] if len(space.key) == 1 else space.key
        lines.append(_line(f"    key: {value_text(key)}", space.key_note))
        if space.time_column:
            lines.append(_line(f"    time_column: {scalar(space.time_column)}", "its rows' time"))
        if space.root_time:
            lines.append(
                f"    # time_column: {scalar(space.root_time)}   # uncomment: predictors "
                "validate on the latest rows"
            )
            if space.children:
                lines.append(
                    f"    # as_of: {scalar(space.root_time)}   # uncomment: only child rows "
                    "before this row's time are read"
                )
        if space.columns or space.commented_columns:
            lines.append("    columns:")
            for column, settings, comment in space.columns:
                lines.append(_line(f"      {scalar(column)}: {flow(settings)}", comment))
            for column, settings, comment in space.commented_columns:
                lines.append(_line(f"      # {scalar(column)}: {flow(settings)}", comment))
        lines += [f"    # {note}" for note in space.notes]
        for kind, entries in (("children", space.children), ("references", space.references)):
            if entries:
                lines.append(f"    {kind}:")
                lines += [_line(f"      - {flow(entry)}", comment) for entry, comment in entries]
    return "\n".join(lines) + "\n"
