"""A tansaku server on loopback for the tests, and the database it serves, built the way a user builds one."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from pymatgen.core import Lattice, Structure

from tansaku.serve.app import create_app
from tansaku.store import open_database


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(app) -> Iterator[str]:
    """Serve an ASGI app on a free loopback port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def serving(db_path: Path, models: Path | None = None, token: str | None = None) -> Iterator[str]:
    db = open_database(db_path, create=False, read_only=True)
    try:
        with live_server(create_app(db, models_dir=models, token=token)) as url:
            yield url
    finally:
        db.dispose()


def copy_database(source_url: str, target: Path) -> Path:
    source = sqlite3.connect(source_url.removeprefix("sqlite:///"))
    with sqlite3.connect(target) as destination:
        source.backup(destination)
    source.close()
    return target


def cubic_bazrs3() -> Structure:
    """A sulfide perovskite: nothing like it among the oxides the test model learns from."""
    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(4.3), ["Ba", "Zr", "S"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])


def has_chromium() -> bool:
    return shutil.which("chromium") is not None
