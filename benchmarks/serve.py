"""Latency and throughput of `tansaku serve` on the 132,752 formation energies plus the oxide database.

Run: .venv/bin/python benchmarks/serve.py [--postgres URL]
     (or `TANSAKU_TEST_SLURM=none bash .ci/services.sh .venv/bin/python benchmarks/serve.py`, which starts a
     PostgreSQL server on loopback and passes it through $TANSAKU_TEST_POSTGRES_URL)

For each backend (SQLite, and PostgreSQL when given) the database is built with the CLI's own imports, the
server is started as a user starts it (`tansaku --db ... serve`, its own process), and requests go over loopback:
- the materials page with a filter (elements, a property range, a sort by a property): target p95 < 200 ms;
- a material page (any of the 134,030 materials): target p95 < 100 ms;
- an OPTIMADE filter query with paging (page_offset through the results): target p95 < 300 ms;
- throughput: 8 concurrent clients for 60 s on a mix of the three, no errors.
Each latency is measured by one client at a time (median and 95th percentile of N requests, after 5 warm-ups).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, SHARED, write_results  # noqa: E402

WORK = REPO / "benchmarks" / "work" / "serve"
TARGETS_MS = {"materials page (filtered)": 200, "material page": 100, "OPTIMADE filter with paging": 300}
TANSAKU = str(Path(sys.executable).parent / "tansaku")  # the command a user runs
ELEMENTS = ["O", "Li", "Mg", "Ti", "Fe", "Ba", "Sr", "Zn", "Al", "Si", "N", "S", "Cu", "La", "Nb"]


def tansaku(db: str, *args: str) -> None:
    subprocess.run([TANSAKU, "--db", db, *args], check=True, stdout=subprocess.DEVNULL)


def build(db: str) -> None:
    """The benchmark database, made with the user's commands (skipped when it is already there)."""
    from tansaku.store import open_database
    from tansaku.store.queries import stats

    try:
        with open_database(db, create=False).session() as session:
            if stats(session)["materials"] >= 134_000:
                return
    except Exception:  # noqa: BLE001 - not there yet
        pass
    start = time.perf_counter()
    tansaku(db, "import", "oxi-diel-db", str(SHARED / "datasets" / "oxi_diel_db"))
    tansaku(db, "import", "csv", str(SHARED / "datasets" / "matbench" / "mp_e_form.csv.gz"), "--property", "e_form",
            "--unit", "eV/atom")
    print(f"built {db.split('@')[-1]} in {time.perf_counter() - start:.0f} s", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(db: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([TANSAKU, "--db", db, "serve", "--port", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/optimade/versions", timeout=5).read()
            return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"server did not start: {process.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.3)


def fetch(url: str) -> float:
    """Seconds for one complete GET; raises on any status but 200."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
        if response.status != 200:
            raise urllib.error.HTTPError(url, response.status, "not 200", response.headers, None)
    return time.perf_counter() - start


def workloads(url: str, rng: random.Random, max_id: int):
    """Request generators, one per measured kind: each call gives the next address."""

    def materials():
        a, b = rng.sample(ELEMENTS[1:], 2)
        kind = rng.randrange(3)
        if kind == 0:
            return f"{url}/materials?elements=O,{a}&sort=e_form&columns=e_form,band_gap"
        if kind == 1:
            lo = round(rng.uniform(0, 5), 1)
            return f"{url}/materials?min_band_gap={lo}&max_band_gap={lo + 1}&sort=band_gap&desc=true"
        return f"{url}/materials?elements={a},{b}&offset={rng.randrange(0, 3) * 50}"

    def material():
        return f"{url}/materials/{rng.randrange(1, max_id + 1)}"

    def optimade():
        a = rng.choice(ELEMENTS[1:])
        text = rng.choice([f'elements HAS ALL "O","{a}"', f"_tansaku_band_gap > {rng.uniform(0, 6):.1f}",
                           f'nelements={rng.randrange(2, 5)} AND elements HAS "O"'])
        query = urllib.parse.urlencode({"filter": text, "page_limit": 20, "page_offset": 20 * rng.randrange(0, 5)})
        return f"{url}/optimade/v1/structures?{query}"

    return {"materials page (filtered)": materials, "material page": material,
            "OPTIMADE filter with paging": optimade}


def latency(make, n: int) -> dict:
    for _ in range(5):
        fetch(make())
    times = sorted(fetch(make()) * 1000 for _ in range(n))
    return {"n": n, "median_ms": statistics.median(times), "p95_ms": times[int(0.95 * (n - 1))],
            "max_ms": times[-1]}


def throughput(kinds: dict, clients: int, seconds: float, seed: int) -> dict:
    stop = time.monotonic() + seconds
    counts, errors, lock = [0] * clients, [], threading.Lock()

    def client(i: int) -> None:
        rng = random.Random(seed + i)
        makers = list(kinds.values())
        while time.monotonic() < stop:
            address = rng.choice(makers)()
            try:
                fetch(address)
                counts[i] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    errors.append(f"{address}: {exc}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return {"clients": clients, "seconds": elapsed, "requests": sum(counts), "per_second": sum(counts) / elapsed,
            "errors": len(errors), "first_errors": errors[:5]}


def measure(name: str, db: str, n: int, seconds: float) -> dict:
    from sqlalchemy import func, select

    from tansaku.store import open_database
    from tansaku.store.tables import Material

    build(db)
    with open_database(db, create=False).session() as session:
        max_id = session.scalar(select(func.max(Material.id)))
        count = session.scalar(select(func.count()).select_from(Material))
    process, url = start_server(db)
    try:
        kinds = workloads(url, random.Random(1), max_id)
        result = {"backend": name, "materials": count,
                  "latency": {kind: latency(make, n) for kind, make in kinds.items()}}
        result["throughput"] = throughput(workloads(url, random.Random(2), max_id), 8, seconds, seed=7)
    finally:
        process.terminate()
        process.wait(10)
    print(name, result, flush=True)
    return result


def report(results: list[dict]) -> str:
    lines = ["# tansaku serve: latency and throughput", "",
             "Server started with `tansaku --db ... serve` (one uvicorn worker, its own process); clients on "
             "loopback in the benchmark process. Latency: one client, N requests with varied parameters after 5 "
             "warm-ups. Throughput: 8 concurrent clients for the stated time on a mix of the three.", "",
             "| backend | materials | request | median (ms) | p95 (ms) | target p95 | met |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for kind, m in r["latency"].items():
            target = TARGETS_MS[kind]
            lines.append(f"| {r['backend']} | {r['materials']:,} | {kind} | {m['median_ms']:.1f} | {m['p95_ms']:.1f} "
                         f"| < {target} | {'yes' if m['p95_ms'] < target else '**no**'} |")
    lines += ["", "| backend | clients | seconds | requests | requests/s | errors |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        t = r["throughput"]
        lines.append(f"| {r['backend']} | {t['clients']} | {t['seconds']:.0f} | {t['requests']} | "
                     f"{t['per_second']:.1f} | {t['errors']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default=os.environ.get("TANSAKU_TEST_POSTGRES_URL"),
                        help="An empty PostgreSQL database URL (default $TANSAKU_TEST_POSTGRES_URL)")
    parser.add_argument("-n", type=int, default=100, help="requests per latency measurement")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the throughput run")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results = [measure("SQLite", str(WORK / "serve.db"), args.n, args.seconds)]
    if args.postgres:
        results.append(measure("PostgreSQL", args.postgres, args.n, args.seconds))
    write_results("serve", {"results": results, "targets_ms": TARGETS_MS}, report(results))


if __name__ == "__main__":
    main()
