"""What every command shares: the database option, progress bars, error display."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tansaku.numbers import is_finite_number
from tansaku.store import Database, open_database

T = TypeVar("T")

STRUCTURE_FILES = ("CIF, POSCAR/CONTCAR, pymatgen JSON, extended XYZ (.gz too) or pw.x input, output or XML; a "
                   "CIF's data blocks, a JSON list's items and an XYZ file's frames are one structure each, and a "
                   "directory stands for the CIF, POSCAR, JSON and XYZ files under it")
console = Console()
err_console = Console(stderr=True)


class State:
    """Global options parsed by the top-level callback."""

    db: str | None = None


def database(create: bool = True) -> Database:
    return open_database(State.db, create=create)


def finite(value: float | tuple[float, ...] | None):
    """Option callback for numbers: 'nan' and 'inf' read as floats, and neither is a diversity, a price or a
    window edge; refused with the value named (exit status 2), as a wrong type would be."""
    if value is not None and not all(map(is_finite_number, value if isinstance(value, tuple) else (value,))):
        raise typer.BadParameter(f"{value!r} is not a finite number")
    return value


def progress_bar(description: str):
    """A function that wraps a list in a rich progress bar (silent when stderr is not a terminal); its optional
    second argument says what the items are, for a command with several long loops."""

    def track(items: Iterable[T], what: str | None = None) -> Iterator[T]:
        items = list(items)
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err_console, transient=False, disable=not sys.stderr.isatty(),
        ) as progress:
            label = f"{description} {what}" if what else description
            yield from progress.track(items, description=label, total=len(items))

    return track


def finish_batch(done: int, skipped: int) -> None:
    """The exit status of every batch command: 0 when every item was done, 1 when some were skipped (each with
    its reason on stderr), 2 when nothing was done (2 is also what a usage or input error exits with)."""
    if skipped and not done:
        raise typer.Exit(2)
    if skipped:
        raise typer.Exit(1)


def print_report(report, what: str) -> None:
    console.print(
        f"{what}: [green]{report.added} added[/], {report.existing} already present, "
        f"{report.linked} linked to an identical structure, {report.properties} properties"
    )
    for item, reason in report.errors:
        err_console.print(f"[red]skipped[/] {item}: {reason}", soft_wrap=True)
    for message in report.warnings:
        err_console.print(f"[yellow]note[/] {message}", soft_wrap=True)
