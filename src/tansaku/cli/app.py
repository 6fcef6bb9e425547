"""The `tansaku` command: a thin shell over the Python API."""

from __future__ import annotations

import warnings

import typer

from tansaku import TansakuError, __version__
from tansaku.cli import (
    al_cmd,
    campaign_cmd,
    db_cmd,
    generate_cmd,
    import_cmd,
    jobs_cmd,
    ml_cmd,
    pseudos_cmd,
    run_cmd,
    serve_cmd,
)
from tansaku.cli.common import State, err_console
from tansaku.cli.help_text import reflow_helps

app = typer.Typer(
    help="tansaku (探索): find materials with wanted properties by joining DFT, a database, "
    "machine learning and active learning.\n\nThe database is ./tansaku.db unless --db or $TANSAKU_DB "
    "names another file or SQLAlchemy URL (postgresql://...).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(import_cmd.app, name="import")
app.add_typer(db_cmd.app, name="db")
app.add_typer(run_cmd.app, name="run")
app.add_typer(pseudos_cmd.app, name="pseudos")
app.add_typer(al_cmd.app, name="al")
app.add_typer(generate_cmd.app, name="generate")
app.add_typer(campaign_cmd.app, name="campaign")
ml_cmd.register(app)
jobs_cmd.register(app)
serve_cmd.register(app)


def _version(value: bool) -> None:
    if value:
        print(f"tansaku {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    db: str = typer.Option(None, "--db", help="Database file or SQLAlchemy URL (default $TANSAKU_DB or ./tansaku.db)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    State.db = db


reflow_helps(app)  # after every command is registered


SKLEARN_THREAD_RACE = "`sklearn.utils.parallel.delayed` should be used with"


def hide_sklearn_thread_race_warning() -> None:
    """Show every warning but one. scikit-learn's threaded Parallel resets the warning filters inside its worker
    threads, and in a race (Python's warnings state is global; scikit-learn issue 32631) the filters can be left
    empty, after which each of its tasks warns that `delayed` should be used with `Parallel` (1,212 times in one
    test run of the multi-fidelity simulations here). The results are right; the message is noise. Filters cannot
    hide it (they are what the race empties), so the CLI drops it where warnings are shown."""
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not (issubclass(category, UserWarning) and str(message).startswith(SKLEARN_THREAD_RACE)):
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning


def main() -> None:
    """Entry point: user-facing errors become one red line and exit status 2."""
    hide_sklearn_thread_race_warning()
    try:
        app()
    except TansakuError as exc:
        err_console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        raise SystemExit(2) from None
