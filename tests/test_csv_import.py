import csv
import gzip
import itertools

import pytest
from sqlalchemy import func, select

from tansaku import TansakuError
from tansaku.sources.csv_table import import_csv
from tansaku.store.tables import Material, Property
from tests.conftest import E_FORM_CSV, need_shared


def count(db, model):
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_matbench_formation_energies_keep_every_row(db):
    path = need_shared(E_FORM_CSV)
    report = import_csv(db, path, "e_form", "eV/atom")
    assert report.added == 132_752 and not report.errors
    assert count(db, Material) == 132_752 and count(db, Property) == 132_752
    with db.session() as session:
        distinct = session.scalar(select(func.count(func.distinct(Material.formula))))
    assert distinct == 106_250  # polymorphs stay separate entries

def test_importing_the_same_rows_again_adds_nothing(db, tmp_path):
    """A rerun (after a kill, say) skips the rows already stored before parsing their formulas: it pays only for
    the rows it adds."""
    first = tmp_path / "first.csv.gz"

    def write(rows: int) -> int:
        """The header and the first `rows` rows of the formation-energy table; their distinct formulas."""
        with gzip.open(need_shared(E_FORM_CSV), "rt") as source, gzip.open(first, "wt") as out:
            out.writelines(itertools.islice(source, rows + 1))
        with gzip.open(first, "rt") as handle:
            return len({row[0] for row in itertools.islice(csv.reader(handle), 1, None)})

    seen: list[tuple[str, int]] = []

    def progress(chunks: list, what: str):  # as the CLI's progress bar is called: the formulas, then the rows
        seen.append((what, sum(len(chunk) for chunk in chunks)))
        return iter(chunks)

    half = write(1000)
    assert import_csv(db, first, "e_form", "eV/atom", progress=progress).added == 1000
    assert seen == [("formulas", half), ("rows", 1000)] and half < 1000  # each formula parsed once
    whole = write(2000)  # the same file, grown: as if the first import had been killed halfway
    with gzip.open(first, "rt") as handle:
        rest = len({row[0] for row in itertools.islice(csv.reader(handle), 1001, None)})
    seen.clear()
    resumed = import_csv(db, first, "e_form", "eV/atom", progress=progress)
    assert resumed.added == 1000 and resumed.existing == 1000
    assert seen == [("formulas", rest), ("rows", 1000)] and rest < whole  # only the new rows' formulas
    seen.clear()
    again = import_csv(db, first, "e_form", "eV/atom", progress=progress)
    assert again.added == 0 and again.existing == 2000 and seen == [("formulas", 0), ("rows", 0)]
    assert count(db, Material) == 2000 and count(db, Property) == 2000


def test_bad_rows_are_reported_and_the_rest_import(db, tmp_path):
    path = tmp_path / "gaps.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("formula,gap\nMgO,7.8\nCaO,oops\nXx2O3,1.0\nSrTiO3,3.2\n")
    report = import_csv(db, path, "band_gap", "eV")
    assert len(report.errors) == 2 and report.added == 2
    errors = dict(report.errors)
    assert errors["gaps.csv.gz row 2"] == "value 'oops' is not a number"
    assert errors["gaps.csv.gz row 3"].startswith("formula 'Xx2O3' is not a valid composition")
    with db.session() as session:
        rows = session.execute(select(Material.reduced_formula, Property.value).join(Property)).all()
    assert sorted(rows) == [("MgO", 7.8), ("SrTiO3", 3.2)]


def test_empty_csv_is_refused(db, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TansakuError, match="empty.csv: the CSV is empty"):
        import_csv(db, empty, "x")
    header_only = tmp_path / "header.csv"
    header_only.write_text("formula,target\n")
    with pytest.raises(TansakuError, match="header but no rows"):
        import_csv(db, header_only, "x")
    assert count(db, Material) == 0


def test_value_column_is_the_one_numeric_column_or_named(db, tmp_path):
    """An id column is not a value: with two numeric columns the import stops and names them."""
    path = tmp_path / "ids.csv"
    path.write_text("id,formula,e_form\n1,BeO,-3.1\n2,MgO,-3.0\n3,MgO,-2.9\n")
    with pytest.raises(TansakuError, match=r"several numeric columns could hold the values \(id, e_form\)"):
        import_csv(db, path, "e_form")
    assert count(db, Material) == 0
    report = import_csv(db, path, "e_form", value_column="e_form")
    with db.session() as session:
        values = sorted(session.execute(select(Material.reduced_formula, Property.value).join(Property)).all())
    assert values == [("BeO", -3.1), ("MgO", -3.0), ("MgO", -2.9)]
    # the two MgO rows disagree: said, not silent
    assert len(report.warnings) == 1 and "1 formula(s) appear more than once" in report.warnings[0]
    assert "MgO" in report.warnings[0]
    words = tmp_path / "words.csv"
    words.write_text("formula,note\nMgO,cubic\n")
    with pytest.raises(TansakuError, match="no numeric column besides 'formula'"):
        import_csv(db, words, "x")
