"""The `tansaku` command: a thin shell over the Python API."""

from __future__ import annotations

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


def main() -> None:
    """Entry point: user-facing errors become one red line and exit status 2."""
    try:
        app()
    except TansakuError as exc:
        err_console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        raise SystemExit(2) from None
