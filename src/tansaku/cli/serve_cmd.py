"""`tansaku serve`: browse the database in a web browser, and answer OPTIMADE clients."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tansaku import TansakuError
from tansaku.cli.common import State, console

TOKEN_VARIABLE = "TANSAKU_TOKEN"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on. Anything but loopback needs a token."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
    models: Path = typer.Option(None, help="Directory of saved models (*.pkl) for the Models pages."),
    token: str = typer.Option(None, help=f"Access token every request must carry (?token=..., a cookie set from "
                              f"it, or 'Authorization: Bearer ...'); default ${TOKEN_VARIABLE}."),
) -> None:
    """Serve the database read-only: materials (filter, sort, page, CSV), each material with the provenance of
    every value, models, campaigns (refreshing while they run) and jobs, each page with a JSON twin (/api), and
    the OPTIMADE API under /optimade/v1 (filters such as elements HAS ALL "Ti","O" AND _tansaku_band_gap > 3).

    The database is opened so that no request can change it. On loopback (the default) no token is needed;
    on any other address the server refuses to start without one.

    Example: tansaku --db oxides.db serve --models models/ then open http://127.0.0.1:8000
    """
    import uvicorn

    from tansaku.serve.app import create_app, is_loopback
    from tansaku.store import open_database

    token = token or os.environ.get(TOKEN_VARIABLE) or None
    if not is_loopback(host) and not token:
        raise TansakuError(f"--host {host} is reachable from other machines: give an access token (--token or "
                           f"${TOKEN_VARIABLE}), or serve on 127.0.0.1")
    if models is not None and not models.is_dir():
        raise TansakuError(f"--models {models}: no such directory")
    db = open_database(State.db, create=False, read_only=True)
    app = create_app(db, models_dir=models, token=token)
    console.print(f"serving {db.url.split('@')[-1]} read-only on http://{host}:{port}"
                  + (" (token required)" if token else "") + "; Ctrl-C stops")
    uvicorn.run(app, host=host, port=port, log_level="warning")
