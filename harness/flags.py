"""Command-line parsing for the scripts: tyro, with each flag's help joined into paragraphs."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TypeVar

import tyro

Config = TypeVar("Config")


def parse_flags(config_class: type[Config], argv: Sequence[str] | None) -> Config:
    """Parse ``argv`` into ``config_class`` with tyro; ``--help`` prints the field docstrings."""
    _dedent_help_before_joining()
    return tyro.cli(config_class, args=argv)


def _dedent_help_before_joining() -> None:
    """Make tyro remove a docstring's indentation before it joins the docstring's lines.

    tyro 1.0.17 joins a help text's lines into one paragraph, but keeps a line break before
    every line that starts with a space. A field docstring's second and later lines start
    with the class body's indentation, so ``--help`` broke every long entry where its source
    line ended. tyro has no public setting for this, so this wraps its private
    ``_strings.remove_single_line_breaks`` and leaves tyro as it is when that is missing.
    """
    try:
        from tyro import _strings
    except ImportError:
        return
    join = getattr(_strings, "remove_single_line_breaks", None)
    if join is None or getattr(join, "dedents_first", False):
        return

    def dedent_then_join(text: str) -> str:
        return join(inspect.cleandoc(text))

    dedent_then_join.dedents_first = True
    _strings.remove_single_line_breaks = dedent_then_join
