"""`make demo`: the system at small scale, from data the user points at (or the official download)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from tansaku.cli.common import progress_bar
from tansaku.sources.oxi_diel_db import DEFAULT_URL, import_oxi_diel_db
from tansaku.store import open_database
from tansaku.store.queries import stats

console = Console()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path("../shared"),
                        help="folder holding datasets/oxi_diel_db (else the official archive is downloaded)")
    parser.add_argument("--out", type=Path, default=Path("demo"), help="where the demo writes its files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    local = args.shared / "datasets" / "oxi_diel_db"
    location = str(local) if local.is_dir() else DEFAULT_URL
    db = open_database(args.out / "tansaku.db")
    console.rule("1. import the oxide dielectric database")
    report = import_oxi_diel_db(db, location, progress=progress_bar("oxi_diel_db"))
    console.print(f"{report.added} added, {report.existing} already present, {len(report.errors)} refused")
    with db.session() as session:
        summary = stats(session)
    console.print_json(json.dumps({k: summary[k] for k in ("materials", "properties", "subsets", "nelements")}))


if __name__ == "__main__":
    main()
