"""Import speed: the oxide database and the 132,752-row formation-energy CSV, against a parse-only floor.

Run: .venv/bin/python benchmarks/import_bench.py
Target (issue 2): the CSV imports in under 60 s on this machine.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, no_options, write_results  # noqa: E402
from tansaku.sources.csv_table import import_csv, parse_composition  # noqa: E402
from tansaku.sources.oxi_diel_db import import_oxi_diel_db  # noqa: E402
from tansaku.store import open_database  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def parse_only(path: Path) -> int:
    """The floor any importer pays: read the gzip CSV and parse every formula (with the same cache)."""
    seen: dict[str, object] = {}
    with io.TextIOWrapper(gzip.open(path), encoding="utf-8") as handle:
        rows = list(csv.reader(handle))[1:]
    for formula, value in rows:
        if formula not in seen:
            seen[formula] = parse_composition(formula).reduced_formula
        float(value)
    return len(rows)


def main() -> None:
    no_options(__doc__)
    csv_path = SHARED / "datasets" / "matbench" / "mp_e_form.csv.gz"
    oxi_path = SHARED / "datasets" / "oxi_diel_db"
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp) / "bench.db")
        t_oxi, rep_oxi = timed(lambda: import_oxi_diel_db(db, oxi_path))
        t_oxi_again, rep_again = timed(lambda: import_oxi_diel_db(db, oxi_path))
        t_parse, n_rows = timed(lambda: parse_only(csv_path))
        t_csv, rep_csv = timed(lambda: import_csv(db, csv_path, "e_form", "eV/atom"))
        t_csv_again, rep_csv_again = timed(lambda: import_csv(db, csv_path, "e_form", "eV/atom"))
    data = {
        "oxi_diel_db": {"materials": rep_oxi.added, "seconds": t_oxi, "reimport_seconds": t_oxi_again,
                        "reimport_added": rep_again.added},
        "csv_e_form": {"rows": rep_csv.added, "seconds": t_csv, "rows_per_second": rep_csv.added / t_csv,
                       "parse_only_seconds": t_parse, "ratio_to_parse_only": t_csv / t_parse,
                       "reimport_seconds": t_csv_again, "reimport_added": rep_csv_again.added,
                       "target_seconds": 60, "target_met": t_csv < 60},
    }
    md = f"""# Import benchmark

| what | items | seconds | note |
| --- | ---: | ---: | --- |
| oxide dielectric database (directory) | {rep_oxi.added} | {t_oxi:.1f} | structures, 5 properties each, duplicate check |
| same again (idempotent) | {rep_again.added} added | {t_oxi_again:.1f} | |
| mp_e_form.csv.gz, parse only (floor) | {n_rows} | {t_parse:.1f} | csv + pymatgen Composition |
| mp_e_form.csv.gz import | {rep_csv.added} | {t_csv:.1f} | {rep_csv.added / t_csv:,.0f} rows/s, {t_csv / t_parse:.2f}x the parse-only floor |
| same again (idempotent) | {rep_csv_again.added} added | {t_csv_again:.1f} | |

Target: CSV import under 60 s: **{"met" if t_csv < 60 else "missed"}** ({t_csv:.1f} s).
"""
    write_results("import", data, md)


if __name__ == "__main__":
    main()
