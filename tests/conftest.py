"""Shared fixtures: the ../shared data (required in CI), temporary databases."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

# `make test` runs the tests on pytest-xdist workers, one per core (xdist sets this count in each worker)
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
# A library's own threads would fight the other workers for the cores: OpenMP threads (LightGBM, PyTorch) spin
# while they wait, which made those tests 5-15x slower. One thread each; set before numpy, torch or lightgbm
# load, which read these once.
if WORKERS > 1:
    for threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(threads, "1")

from tansaku.store import open_database  # noqa: E402 - after the thread settings

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TANSAKU_SHARED", REPO.parent / "shared"))
OXI_DB = SHARED / "datasets" / "oxi_diel_db"
E_FORM_CSV = SHARED / "datasets" / "matbench" / "mp_e_form.csv.gz"
PSEUDOS = SHARED / "pseudos" / "pseudodojo-nc-sr-pbe-v0.4"
# each worker's pw.x gets its share of the cores (MPI ranks that outnumber the cores spin against each other);
# a run without xdist keeps 2 ranks
MPI_PROCS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory) -> Iterator[Path]:
    """Every test writes its caches (descriptor pools, downloads) into a directory of its own, never the
    user's home. The mat2vec wheel is copied in from where `make setup` put it (or the user's cache), so the
    tests need no network; test_attention checks the download itself against a local server. The xdist workers
    of one run share the directory (tansaku writes its caches atomically), so that a descriptor pool or metal
    screen one worker made serves the other, as it does in a run without workers."""

    from tansaku.features.element_vectors import WHEEL

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        cache = tmp_path_factory.getbasetemp().parent / "cache"  # the run's directory, above each worker's own
        cache.mkdir(exist_ok=True)
    else:
        cache = tmp_path_factory.mktemp("cache")
    for source in (REPO / ".venv" / "wheels" / WHEEL, Path.home() / ".cache" / "tansaku" / WHEEL):
        if source.is_file():
            partial_copy = cache / f".{WHEEL}.{worker or 'main'}"
            shutil.copy(source, partial_copy)
            os.replace(partial_copy, cache / WHEEL)
            break
    before = os.environ.get("TANSAKU_CACHE")
    os.environ["TANSAKU_CACHE"] = str(cache)
    yield cache
    if before is None:
        os.environ.pop("TANSAKU_CACHE", None)
    else:
        os.environ["TANSAKU_CACHE"] = before


def need_quantum_espresso() -> None:
    """Skip without pw.x and ph.x, except in CI, where `make test` installs them and their absence is a failure."""
    if not (shutil.which("pw.x") and shutil.which("ph.x")):
        if os.environ.get("CI"):
            pytest.fail("pw.x/ph.x missing in CI: 'make test' installs Quantum ESPRESSO")
        pytest.skip("Quantum ESPRESSO not installed")


@pytest.fixture
def quantum_espresso():
    need_quantum_espresso()


def need_shared(path: Path) -> Path:
    """The path, or a skip on a developer machine without ../shared; in CI its absence is a failure."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI must have ../shared beside the repository")
        pytest.skip(f"{path} not present")
    return path


def matbench_gap_sample(directory: Path, rows: int = 4000, without: tuple[str, ...] = ("Ti1O1", "TiO")) -> Path:
    """A composition,gap CSV of `rows` random rows of matbench's PBE gaps (seed 0), leaving out `without`: enough
    for a metal screen that has never seen TiO to flag it."""
    import csv
    import gzip
    import random

    with gzip.open(need_shared(SHARED / "datasets" / "matbench" / "matbench_mp_gap.csv.gz"), "rt") as handle:
        table = list(csv.reader(handle))[1:]
    random.Random(0).shuffle(table)
    path = directory / "gaps.csv"
    with open(path, "w", newline="") as out:
        csv.writer(out).writerows([["formula", "gap"], *(r for r in table[:rows] if r[0] not in without)])
    return path


POSTGRES_ENV = "TANSAKU_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


@contextmanager
def fresh_postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database on the test server (dropped afterwards)."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = os.environ.get(POSTGRES_ENV)
    if not admin:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} is not set: .ci/run starts a PostgreSQL server and sets it")
        pytest.skip(f"{POSTGRES_ENV} not set (PostgreSQL tests run in CI)")
    url = make_url(admin)
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"tansaku_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def backend_url(request, tmp_path) -> Iterator[str]:
    """An empty database location on each backend: a SQLite file path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield str(tmp_path / "test.db")
    else:
        with fresh_postgres_url() as url:
            yield url


@pytest.fixture
def db(backend_url):
    database = open_database(backend_url)
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


@pytest.fixture(scope="session")
def served_world(tmp_path_factory, oxide_db):
    """What `tansaku serve` shows, made the way a user makes it: the oxide database, a trained model (file) and
    its stored predictions, a simulated campaign, and a real DFT run of MgO (test preset) with its run directory.
    Yields (database path, models directory)."""
    import shutil

    from tansaku.active.campaign import run_campaign
    from tansaku.active.campaign_config import config_from_dict
    from tansaku.active.oracles import DatasetOracle
    from tansaku.dft.pseudos import load_family
    from tansaku.dft.settings import preset
    from tansaku.store.materials import ImportReport, add_structure_material
    from tansaku.workflows.dielectric import run_dielectric
    from tansaku.workflows.executor import LocalExecutor, QECommands
    from tansaku.workflows.run import RunContext
    from tests.serving import copy_database, cubic_bazrs3
    from tests.test_cli import invoke

    root = tmp_path_factory.mktemp("served")
    path = copy_database(oxide_db.url, root / "served.db")
    models = root / "models"
    models.mkdir()
    train = invoke("--db", str(path), "train", "--property", "eps_electronic", "--model", "et", "--features",
                   "composition", "--subset", "paper", "--cv", "2x1", "--out", str(models / "eps_e.pkl"))
    assert train.exit_code == 0, train.output
    db = open_database(path)
    with db.session() as session:
        add_structure_material(session, cubic_bazrs3(), "file", "BaZrS3.cif", ImportReport())
    predict = invoke("--db", str(path), "predict", "--model", str(models / "eps_e.pkl"), "--db-missing")
    assert predict.exit_code == 0, predict.output
    config = config_from_dict({
        "name": "green", "property": "band_gap", "goal": {"kind": "range", "lo": 2.0, "hi": 3.0},
        "acquisition": {"strategy": "range", "batch": 5}, "budget": {"runs": 10},
        "candidates": {"query": "subset=paper"}, "training": {"init_random": 5},
        "model": {"learner": "et", "trees": 30, "cv_folds": 3},
        "oracle": {"kind": "dataset", "method": "import:oxi_diel_db"}})
    run_campaign(db, config, DatasetOracle(db, "band_gap", "import:oxi_diel_db"), say=lambda _: None)
    if shutil.which("pw.x") and shutil.which("ph.x"):
        ctx = RunContext(db, preset("test", {"relax": False}), "test", load_family(need_shared(PSEUDOS)),
                         LocalExecutor(), QECommands(mpi_procs=MPI_PROCS), root / "runs", poll_seconds=0.2)
        from sqlalchemy import select

        from tansaku.store.tables import Material

        with db.session() as session:
            mgo = session.scalar(select(Material.id).where(Material.source_id == "mp-1265"))
        assert run_dielectric(ctx, mgo).status == "done"
    elif os.environ.get("CI"):
        pytest.fail("pw.x/ph.x missing in CI: 'make test' installs Quantum ESPRESSO")
    db.dispose()
    yield path, models
