import csv
import io
import json

from typer.testing import CliRunner

from tansaku.cli.app import app
from tansaku.cli.common import State

runner = CliRunner()


def invoke(*args):
    State.db = None
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_import_stats_show_export(tmp_path, oxi_dir):
    db = str(tmp_path / "cli.db")
    mini = tmp_path / "mini" / "data"
    mini.mkdir(parents=True)
    for name in ("mp-1265.json", "mp-2605.json"):
        (mini / name).write_bytes((oxi_dir / "data" / name).read_bytes())
    result = invoke("--db", db, "import", "oxi-diel-db", str(mini.parent), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["added"] == 2

    stats = json.loads(invoke("--db", db, "db", "stats", "--json").output)
    assert stats["materials"] == 2 and stats["properties"]["eps_ionic"] == 2 and stats["subsets"] == {}

    shown = json.loads(invoke("--db", db, "db", "show", "1", "--json").output)
    assert shown["reduced_formula"] == "MgO"
    assert {p["name"] for p in shown["properties"]} >= {"eps_electronic", "eps_ionic", "band_gap"}

    out_csv = tmp_path / "out.csv"
    assert invoke("--db", db, "db", "export", str(out_csv), "--property", "eps_electronic",
                  "--structures", "cif").exit_code == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["formula"] for r in rows] == ["MgO", "CaO"]
    assert float(rows[0]["eps_electronic"]) > 2 and rows[0]["structure"].startswith("# generated using pymatgen")
    out_json = tmp_path / "out.json"
    invoke("--db", db, "db", "export", str(out_json))
    assert set(json.loads(out_json.read_text())[1]) >= {"eps_ionic", "band_gap", "formula"}
    piped = invoke("--db", db, "db", "export", "-", "--query", "formula=CaO", "--property", "band_gap")
    assert piped.exit_code == 0 and [r["formula"] for r in csv.DictReader(io.StringIO(piped.stdout))] == ["CaO"]
    assert piped.stderr.strip() == "wrote 1 row"
    piped = invoke("--db", db, "db", "export", "-", "--format", "json", "--query", "formula=MgO")
    assert [r["formula"] for r in json.loads(piped.stdout)] == ["MgO"]
    assert not list(tmp_path.glob(".*partial"))
    # structures out as files a code reads (POSCAR as .vasp), and back in: the same cells
    from tansaku.chemistry.structures import read_structure
    from tansaku.store import Material, open_database

    assert invoke("--db", db, "db", "structures", str(tmp_path / "cells"), "--format", "poscar").exit_code == 0
    written = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert written == ["1_MgO.vasp", "2_CaO.vasp"]
    with open_database(db).session() as session:
        stored = session.get(Material, 1).structure()
    assert read_structure(tmp_path / "cells" / "1_MgO.vasp").matches(stored)


def test_user_errors_exit_with_a_message(tmp_path):
    import subprocess
    import sys

    junk = tmp_path / "junk.db"
    junk.write_text("not a database" * 50)
    proc = subprocess.run(
        [sys.executable, "-c", "from tansaku.cli.app import main; main()", "--db", str(junk), "db", "stats"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "is not a tansaku database" in proc.stderr


def test_db_delete_plans_counts_and_refuses_referenced_data(tmp_path, oxi_dir):
    import pytest
    from sqlalchemy import func, select, text

    from tansaku import TansakuError
    from tansaku.store import Calculation, Material, Property, Subset, open_database
    from tansaku.store.materials import add_to_subset, set_property

    db = str(tmp_path / "del.db")
    mini = tmp_path / "mini" / "data"
    mini.mkdir(parents=True)
    for name in ("mp-1265.json", "mp-2605.json", "mp-2472.json"):  # MgO, CaO, SrO
        (mini / name).write_bytes((oxi_dir / "data" / name).read_bytes())
    assert invoke("--db", db, "import", "oxi-diel-db", str(mini.parent)).exit_code == 0
    store = open_database(db)
    with store.session() as session:
        by_formula = {m.reduced_formula: m for m in session.scalars(select(Material))}
        mgo, cao, sro = by_formula["MgO"], by_formula["CaO"], by_formula["SrO"]
        set_property(session, mgo, "eps_electronic", 3.0, "ml:et-x")
        set_property(session, sro, "eps_electronic", 4.0, "ml:et-x")
        session.add(Calculation(material_id=cao.id, workflow="dielectric", step="scf", preset="test", engine="qe",
                                status="done", attempts=1))
        add_to_subset(session, "next", [mgo.id, sro.id])
        ids = (mgo.id, cao.id, sro.id)

    def count(table, *where):
        with store.session() as session:
            return session.scalar(select(func.count()).select_from(table).where(*where))

    before = count(Property)
    dry = json.loads(invoke("--db", db, "db", "delete", "--method", "ml:et-x", "--dry-run", "--json").output)
    assert dry["properties"] == 2 and dry["dry_run"] and count(Property) == before
    assert invoke("--db", db, "db", "delete", "--method", "ml:et-x", "--property", "eps_electronic",
                  str(ids[0])).exit_code == 0  # only MgO's prediction
    assert count(Property, Property.method == "ml:et-x") == 1 and count(Property) == before - 1
    # a material a calculation refers to is refused, then deleted when asked again with --force
    with pytest.raises(TansakuError, match="calculations or campaigns refer to .*nothing was deleted"):
        invoke("--db", db, "db", "delete", str(ids[1]))
    assert count(Material) == 3
    assert invoke("--db", db, "db", "delete", str(ids[1]), "--force").exit_code == 0
    assert count(Material) == 2 and count(Calculation) == 0 and count(Property, Property.material_id == ids[1]) == 0
    # a subset goes, its materials stay; an unknown id names itself
    assert invoke("--db", db, "db", "delete", "--subset", "next").exit_code == 0
    assert count(Subset) == 0 and count(Material) == 2
    with pytest.raises(TansakuError, match="no material with id 99"):
        invoke("--db", db, "db", "delete", "99")
    assert invoke("--db", db, "db", "delete", "--query", "formula=SrO").exit_code == 0
    assert count(Material) == 1
    with store.session() as session:
        assert session.execute(text("PRAGMA foreign_key_check")).all() == []
        assert session.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    shown = invoke("--db", db, "db", "show", "MgO")
    assert shown.exit_code == 0 and "born_charges: mean over atoms of |Tr Z*| / 3" in shown.output


def test_no_traceback_for_common_mistakes(tmp_path):
    """Each mistake ends in one line naming the input and the problem, exit status 2, never a traceback."""
    import subprocess
    import sys

    table = tmp_path / "gaps.csv"
    table.write_text("formula,gap\nMgO,7.8\nCaO,6.1\nSrO,5.3\n")
    db = str(tmp_path / "t.db")
    assert invoke("--db", db, "import", "csv", str(table), "--property", "band_gap").exit_code == 0

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "from tansaku.cli.app import main; main()", *args],
                              capture_output=True, text=True)

    cases = [
        (("--db", db, "train", "--property", "band_gap", "--model", "rf", "--out", str(tmp_path / "m.pkl")),
         "3 materials are too few for 5-fold cross-validation"),
        (("--db", db, "train", "--property", "band_gap", "--model", "rf", "--cv", "abc", "--out",
          str(tmp_path / "m.pkl")), "--cv 'abc': give KxR"),
        (("--db", db, "train", "--property", "band_gap", "--model", "rf", "--features", "structure", "--cv", "0",
          "--out", str(tmp_path / "m.pkl")), "none of those selected has a crystal structure"),
        (("--db", "mysql://me@localhost/x", "db", "stats"), "no database driver for 'mysql'"),
        (("--db", "postgresql+psycopg://me@127.0.0.1:1/x", "db", "stats"),
         "cannot connect to the database server at 127.0.0.1:1/x"),
        (("--db", db, "db", "show", "NotAFormula!"), "is neither a material id nor a formula"),
        (("--db", db, "db", "export", str(tmp_path / "out.xlsx")), "by the suffix (.csv or .json) or by --format"),
        (("--db", db, "db", "structures", str(tmp_path / "cells"), "--format", "xyz"), "--format takes cif, poscar"),
        # 'nan' and 'inf' read as floats: a number option refuses them before anything runs
        (("--db", db, "al", "simulate", "--property", "band_gap", "--range", "2", "3", "--diversity", "nan"),
         "'--diversity': nan is not a finite number"),
        (("--db", db, "import", "optimade", "http://127.0.0.1:1", "--delay", "inf"),
         "'--delay': inf is not a finite number"),
    ]
    for args, message in cases:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    assert not (tmp_path / "m.pkl").exists() and not (tmp_path / "out.xlsx").exists()
    assert not (tmp_path / "cells").exists()
    for command in (("predict",), ("al", "suggest"), ("db", "export"), ("import", "structures")):
        shown = invoke(*command, "--help").output
        assert "<bool>" not in shown, command  # flags read as flags, not as options taking a value
    assert "mp-5020" in invoke("generate", "substitute", "--help").output  # an example the oxide database holds


def test_run_dielectric_refuses_an_unknown_element_before_storing_it(tmp_path):
    """The file is refused when read: no material is stored, no calculation starts, the rest of a batch goes on."""
    from pathlib import Path

    from sqlalchemy import func, select

    from tansaku.store import Material, open_database
    from tests.conftest import PSEUDOS, need_shared

    bad = Path(__file__).parent / "data" / "fuzz" / "structures" / "unknown_element.cif"
    db = str(tmp_path / "run.db")
    result = invoke("--db", db, "run", "dielectric", str(bad), "--preset", "test", "--pseudo-dir",
                    str(need_shared(PSEUDOS)), "--run-dir", str(tmp_path / "runs"), "--json",
                    str(tmp_path / "out.json"))
    assert result.exit_code == 2  # nothing was done
    report = json.loads((tmp_path / "out.json").read_text())
    assert report[str(bad)]["status"] == "failed" and "unknown element symbol(s) 'Xx'" in report[str(bad)]["reason"]
    with open_database(db).session() as session:
        assert session.scalar(select(func.count()).select_from(Material)) == 0
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_help_wraps_whole_paragraphs_and_keeps_examples_apart():
    """Typer keeps a docstring's line breaks and rich wraps each line again: sentences came out cut in the
    middle. On a wide terminal a paragraph must come out as one line, each example command on its own."""
    wide = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "300", "TERM": "dumb"})
    assert wide.exit_code == 0, wide.output
    text = " ".join(wide.output.split("│"))  # no box characters in the description, but be safe
    assert "single 80/20 split, and K-fold splits that hold out whole chemical systems (grouped: no element" in text
    simulate = runner.invoke(app, ["al", "simulate", "--help"], env={"COLUMNS": "300", "TERM": "dumb"}).output
    examples = [line.strip() for line in simulate.splitlines() if line.strip().startswith("tansaku al simulate")]
    assert len(examples) == 4 and all("--init" in line for line in examples)  # each example whole, on its own line


def test_the_cli_hides_only_scikit_learns_thread_race_warning():
    """With the filters emptied, as scikit-learn's race leaves them, its 'delayed' warning is dropped and any other
    warning is still shown."""
    import subprocess
    import sys

    script = ("import warnings\n"
              "from tansaku.cli.app import SKLEARN_THREAD_RACE, hide_sklearn_thread_race_warning\n"
              "hide_sklearn_thread_race_warning()\n"
              "warnings.filters[:] = []\n"
              "warnings.warn(SKLEARN_THREAD_RACE + ' `sklearn.utils.parallel.Parallel`', UserWarning)\n"
              "warnings.warn('something else went oddly', UserWarning)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "something else went oddly" in proc.stderr and "sklearn.utils.parallel" not in proc.stderr, proc.stderr
