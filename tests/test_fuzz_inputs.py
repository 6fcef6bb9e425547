"""Every importer fed a corpus of broken and hostile inputs (tests/data/fuzz): each ends with a clear message
naming the input, nothing is half-written, and the database's row counts and integrity are unchanged."""

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from tansaku import TansakuError
from tansaku.active.campaign_config import load_config
from tansaku.sources.csv_table import import_csv
from tansaku.sources.oxi_diel_db import import_oxi_diel_db
from tansaku.sources.structures import import_structure_files
from tansaku.store import Calculation, Material, Property, Subset

CORPUS = Path(__file__).parent / "data" / "fuzz"
TABLES = (Material, Property, Subset, Calculation)


def snapshot(db) -> dict:
    with db.session() as session:
        counts = {t.__tablename__: session.scalar(select(func.count()).select_from(t)) for t in TABLES}
        if db.engine.dialect.name == "sqlite":
            counts["integrity"] = session.execute(text("PRAGMA integrity_check")).scalar()
            counts["foreign_keys"] = session.execute(text("PRAGMA foreign_key_check")).all()
    return counts


def files(kind: str) -> list[Path]:
    found = sorted((CORPUS / kind).iterdir())
    assert len(found) >= 5, f"the {kind} corpus is missing"
    return found


@pytest.mark.filterwarnings("ignore")
def test_structure_files(db):
    before = snapshot(db)
    for path in files("structures"):
        report = import_structure_files(db, [path])
        assert report.added == 0 and len(report.errors) == 1, (path.name, report.as_dict())
        item, reason = report.errors[0]
        assert item == str(path) and reason and "\x00" not in reason and len(reason) < 600, (path.name, reason)
        assert "Traceback" not in reason
    assert snapshot(db) == before


def test_csv_tables(db):
    before = snapshot(db)
    for path in files("csv"):
        try:
            report = import_csv(db, path, "x")
        except TansakuError as exc:  # the whole file refused: the message names it
            assert str(path) in str(exc), (path.name, str(exc))
            continue
        assert report.added == 0 and report.errors, (path.name, report.as_dict())
        assert all(item.startswith(path.name) for item, _ in report.errors), report.errors
    assert snapshot(db) == before


def test_oxide_database_directory(db, tmp_path):
    before = snapshot(db)
    report = import_oxi_diel_db(db, CORPUS / "oxi")
    assert report.added == 0
    assert sorted(item for item, _ in report.errors) == sorted(p.name for p in files("oxi/data"))
    assert snapshot(db) == before
    # a file that cannot be read (the kernel refuses /proc/self/mem at offset 0) refuses only itself
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mp-0.json").symlink_to("/proc/self/mem")
    report = import_oxi_diel_db(db, tmp_path)
    assert report.errors == [("mp-0.json", "cannot be read (Input/output error)")] and snapshot(db) == before


def test_campaign_files():
    for path in [*files("campaign"), Path("/proc/self/mem")]:  # the last exists but cannot be read
        with pytest.raises(TansakuError) as caught:
            load_config(path)
        assert str(caught.value).startswith(str(path)), (path.name, str(caught.value))
