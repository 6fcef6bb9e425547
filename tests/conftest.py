"""Shared fixtures: the ../shared data (required in CI), temporary databases."""

from __future__ import annotations

import http.server
import os
import threading
from functools import partial
from pathlib import Path

import pytest

from tansaku.store import open_database

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TANSAKU_SHARED", REPO.parent / "shared"))
OXI_DB = SHARED / "datasets" / "oxi_diel_db"
E_FORM_CSV = SHARED / "datasets" / "matbench" / "mp_e_form.csv.gz"
PSEUDOS = SHARED / "pseudos" / "pseudodojo-nc-sr-pbe-v0.4"


def need_shared(path: Path) -> Path:
    """The path, or a skip on a developer machine without ../shared; in CI its absence is a failure."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI must have ../shared beside the repository")
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture
def db(tmp_path):
    database = open_database(tmp_path / "test.db")
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def oxi_dir() -> Path:
    return need_shared(OXI_DB)


@pytest.fixture(scope="session")
def oxide_db(tmp_path_factory, oxi_dir):
    """The whole published oxide database imported once (about 20 s) for all tests that read it."""
    from tansaku.sources.oxi_diel_db import import_oxi_diel_db

    database = open_database(tmp_path_factory.mktemp("oxides") / "oxides.db")
    report = import_oxi_diel_db(database, oxi_dir)
    assert not report.errors
    yield database
    database.dispose()


@pytest.fixture
def http_server(tmp_path):
    """A file server on loopback (the machine has no internet; the download code is the same)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def oxide_db_copy(oxide_db, tmp_path):
    """A private copy of the imported oxide database, for tests that add to it."""
    import sqlite3

    target = tmp_path / "copy.db"
    source = sqlite3.connect(oxide_db.url.removeprefix("sqlite:///"))
    with sqlite3.connect(target) as destination:
        source.backup(destination)
    source.close()
    database = open_database(target)
    yield database
    database.dispose()
