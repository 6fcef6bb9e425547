"""Concurrent writers: rows per second with 1 and 8 processes, SQLite file against PostgreSQL (issue 7).

Each process writes what a workflow writes per material (a material, a calculation, three properties; one
transaction per material). PostgreSQL: the server named by $TANSAKU_TEST_POSTGRES_URL (a new database is made
and dropped), e.g. the one .ci/postgres.sh starts:

    bash -c 'source .ci/postgres.sh && .venv/bin/python benchmarks/store_concurrency.py'
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sqlalchemy import func, select  # noqa: E402
from tests.conftest import fresh_postgres_url  # noqa: E402
from tests.store_workers import write_materials  # noqa: E402

from _common import no_options, write_results  # noqa: E402
from tansaku.store import open_database  # noqa: E402
from tansaku.store.tables import Property  # noqa: E402

PER_PROCESS = 200


def measure(url: str, processes: int) -> dict:
    open_database(url).dispose()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        pool.starmap(write_materials, [(url, -1, 0)] * processes)  # start-up and imports, not timed
        start = time.perf_counter()
        rows = sum(pool.starmap(write_materials, [(url, w, PER_PROCESS) for w in range(processes)]))
        seconds = time.perf_counter() - start
    db = open_database(url)
    with db.session() as session:
        stored = session.scalar(select(func.count()).select_from(Property))
    db.dispose()
    assert stored == 3 * PER_PROCESS * processes, "rows lost"
    return {"processes": processes, "rows": rows, "seconds": seconds, "rows_per_second": rows / seconds}


def main() -> None:
    no_options(__doc__)
    results: dict = {"per_process_materials": PER_PROCESS, "backends": {}}
    for processes in (1, 8):
        with tempfile.TemporaryDirectory() as tmp:
            results["backends"].setdefault("sqlite", []).append(measure(str(Path(tmp) / "bench.db"), processes))
        with fresh_postgres_url() as url:
            results["backends"].setdefault("postgresql", []).append(measure(url, processes))
        print(results, flush=True)
    md = ["# Concurrent writers: SQLite against PostgreSQL", "",
          f"Each process writes {PER_PROCESS} materials, each with one calculation and three properties (5 rows, "
          "one transaction per material). SQLite: WAL, BEGIN IMMEDIATE, 60 s busy timeout. PostgreSQL 15 on "
          "loopback, default settings (fsync on). No row was lost in any run (checked by counting).", "",
          "| backend | processes | rows | seconds | rows / s |", "| --- | --- | --- | --- | --- |"]
    for backend, runs in results["backends"].items():
        for r in runs:
            md.append(f"| {backend} | {r['processes']} | {r['rows']:,} | {r['seconds']:.1f} | "
                      f"{r['rows_per_second']:.0f} |")
    sqlite8 = results["backends"]["sqlite"][1]["rows_per_second"]
    pg8 = results["backends"]["postgresql"][1]["rows_per_second"]
    md += ["", f"With 8 writers PostgreSQL writes {pg8 / sqlite8:.1f}× the rows per second of SQLite."]
    results["pg_over_sqlite_8"] = pg8 / sqlite8
    write_results("store_concurrency", results, "\n".join(md))


if __name__ == "__main__":
    main()
