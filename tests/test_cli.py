import csv
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
