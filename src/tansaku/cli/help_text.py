"""Command help laid out for the terminal: docstring paragraphs rewrapped, examples and list items kept apart.

Typer (0.28) keeps every line break of a docstring and rich then wraps each line at the terminal's width, so a
docstring written at 110 columns showed as lines cut in mid-sentence. Here a paragraph's lines are joined into one,
which rich wraps cleanly, except where a line starts something of its own: a list item or an example command.
"""

from __future__ import annotations

import inspect
import re

import typer

_OWN_LINE = re.compile(r"(- |\* |• |\d+[.)] |tansaku |\$ )")


def reflow(text: str) -> str:
    """Each paragraph's lines joined with spaces, but for lines that start a list item or an example command; a
    paragraph starting with \\b (click's "keep as is") stays as written."""
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        if paragraph.startswith("\b"):
            paragraphs.append(paragraph)
            continue
        lines: list[str] = []
        for line in paragraph.splitlines():
            stripped = line.strip()
            if lines and not _OWN_LINE.match(stripped):
                lines[-1] += " " + stripped
            else:
                lines.append(("  " if stripped.startswith("tansaku ") else "") + stripped)  # examples indented
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def reflow_helps(app: typer.Typer) -> None:
    """Rewrap the help of every command and group under `app` (before typer builds the click commands)."""
    if app.info.help and isinstance(app.info.help, str):
        app.info.help = reflow(app.info.help)
    for command in app.registered_commands:
        text = command.help or inspect.getdoc(command.callback)
        if text:
            command.help = reflow(text)
    for group in app.registered_groups:
        if isinstance(group.help, str):
            group.help = reflow(group.help)
        if group.typer_instance is not None:
            reflow_helps(group.typer_instance)
