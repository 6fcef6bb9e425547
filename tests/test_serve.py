"""`tansaku serve` over real HTTP: the materials table against counts made independently, provenance, the JSON
twins, and the security rules (SQL injection, path traversal, oversized input, tokens, read-only)."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from pymatgen.core import Structure
from sqlalchemy.exc import OperationalError

from tansaku import TansakuError
from tansaku.store import open_database
from tansaku.store.tables import Material
from tests.conftest import fresh_postgres_url
from tests.serving import serving
from tests.test_cli import invoke

# one pytest-xdist worker runs these (make test): served_world, a DFT run among it, is built once
pytestmark = pytest.mark.xdist_group("served")


def get(url: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str):
    status, _, body = get(url)
    assert status == 200, (url, status, body[:500])
    return json.loads(body)


def materials_with(path: Path, sql: str, *params) -> set[int]:
    """Material ids by plain SQL on the file: the counts the server must match, made without its code."""
    with sqlite3.connect(path) as connection:
        return {row[0] for row in connection.execute(sql, params)}


@pytest.fixture(scope="module")
def site(served_world):
    path, models = served_world
    with serving(path, models) as url:
        yield url, path


def test_materials_table_filters_sorts_pages_and_downloads(site):
    url, path = site
    everything = get_json(f"{url}/api/materials?limit=1")
    assert everything["total"] == len(materials_with(path, "SELECT id FROM materials"))

    mg_o = materials_with(path, "SELECT id FROM materials WHERE ',' || elements || ',' LIKE '%,Mg,%' "
                                "AND ',' || elements || ',' LIKE '%,O,%'")
    page = get_json(f"{url}/api/materials?elements=Mg,O&limit=500")
    assert page["total"] == len(mg_o) > 5 and {r["id"] for r in page["rows"]} == mg_o

    window = materials_with(path, "SELECT material_id FROM properties WHERE name = 'band_gap' AND method NOT LIKE "
                                  "'ml:%' AND value BETWEEN 2 AND 3")
    first = get_json(f"{url}/api/materials?min_band_gap=2&max_band_gap=3&columns=band_gap&sort=band_gap&limit=100")
    second = get_json(f"{url}/api/materials?min_band_gap=2&max_band_gap=3&columns=band_gap&sort=band_gap"
                      f"&limit=100&offset=100")
    assert first["total"] == len(window) > 100
    values = [r["band_gap"] for r in first["rows"] + second["rows"]]
    assert values == sorted(values) and all(2 <= v <= 3 for v in values)
    assert not {r["id"] for r in first["rows"]} & {r["id"] for r in second["rows"]}

    top = get_json(f"{url}/api/materials?columns=eps_electronic&sort=eps_electronic&desc=true&limit=20")
    eps = [r["eps_electronic"] for r in top["rows"]]
    assert eps == sorted(eps, reverse=True)
    assert eps[0] == pytest.approx(max(materials_with(
        path, "SELECT value FROM properties WHERE name = 'eps_electronic' AND method NOT LIKE 'ml:%'")))

    status, headers, body = get(f"{url}/materials.csv?min_band_gap=2&max_band_gap=3&columns=band_gap,eps_ionic")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert status == 200 and "attachment" in headers["content-disposition"]
    assert len(rows) == len(window) and {int(r["id"]) for r in rows} == window
    assert {"band_gap", "band_gap_method", "eps_ionic", "eps_ionic_method"} <= set(rows[0])

    status, _, html = get(f"{url}/materials?elements=Mg,O")
    assert status == 200 and f"<b>{len(mg_o)}</b> materials" in html.decode()


def test_material_pages_show_where_every_value_came_from(site):
    url, path = site
    (mgo,) = materials_with(path, "SELECT id FROM materials WHERE source_id = 'mp-1265'")
    record = get_json(f"{url}/api/materials/{mgo}")
    computed = {p["name"]: p for p in record["properties"] if p["method"].startswith("dft:qe")}
    assert {"eps_electronic", "eps_ionic", "band_gap", "born_charges"} <= set(computed)
    assert computed["eps_electronic"]["calculation"]["pseudo_sha256"]["Mg"]
    analysis = next(c for c in record["calculations"] if c["id"] == computed["eps_electronic"]["calculation_id"])
    assert analysis["step"] == "analysis" and analysis["outputs"]["kspacing"]
    assert any(p["method"] == "import:oxi_diel_db" for p in record["properties"])

    status, _, html = get(f"{url}/materials/{mgo}")
    page = html.decode()
    assert status == 200 and "computed (dft:qe:test)" in page and "imported from oxi_diel_db" in page
    phonon = next(c for c in record["calculations"] if c["step"] == "phonon")
    link = f"/calculations/{phonon['id']}/files/output.out"
    assert link in page
    status, _, log = get(url + link)
    assert status == 200 and b"PHONON" in log

    (sulfide,) = materials_with(path, "SELECT id FROM materials WHERE source_id = 'BaZrS3.cif'")
    (prediction,) = get_json(f"{url}/api/materials/{sulfide}")["predictions"]
    interval = prediction["interval"]
    assert interval["low"] < prediction["value"] < interval["high"] and prediction["model_id"].startswith("et-")
    assert interval["in_domain"] is False  # no sulfide among the oxides it learned from
    status, _, html = get(f"{url}/materials/{sulfide}")
    assert prediction["model_id"] in html.decode() and "outside what the model has seen" in html.decode()

    status, headers, svg = get(f"{url}/materials/{mgo}/structure.svg")
    assert status == 200 and headers["content-type"].startswith("image/svg+xml") and b"<svg" in svg
    status, _, cif = get(f"{url}/materials/{mgo}/structure.cif")
    assert Structure.from_str(cif.decode(), fmt="cif").composition.reduced_formula == "MgO"


def test_models_campaigns_and_jobs_pages(site):
    url, _ = site
    (model,) = get_json(f"{url}/api/models")["models"]
    assert model["meta"]["property"] == "eps_electronic" and model["predictions"] == 1
    assert model["meta"]["has_parity"] and model["meta"]["has_importance"]
    for plot in ("parity", "importance"):
        status, headers, body = get(f"{url}/models/{model['meta']['id']}/{plot}.svg")
        assert status == 200 and b"<svg" in body
    (campaign,) = get_json(f"{url}/api/campaigns")
    assert campaign["name"] == "green" and campaign["runs"] == 10
    detail = get_json(f"{url}/api/campaigns/green")
    assert sum(len(r["picks"]) for r in detail["rounds"]) == 10
    for plot in ("progress", "cost"):
        status, _, svg = get(f"{url}/campaigns/green/{plot}.svg")
        assert status == 200 and b"<svg" in svg
    assert get_json(f"{url}/api/jobs") == []  # the MgO run finished
    status, _, html = get(f"{url}/api")
    assert status == 200 and b"/api/materials" in html
    spec = get_json(f"{url}/openapi.json")
    assert "/api/materials" in spec["paths"] and "/optimade/v1/structures" in spec["paths"]


def test_hostile_requests_are_refused_and_change_nothing(site, tmp_path):
    url, path = site
    before = len(materials_with(path, "SELECT id FROM materials"))
    injections = {
        "elements": "O') OR 1=1 --", "formula": "MgO' OR '1'='1", "sort": "id; DROP TABLE materials",
        "min_band_gap": "1 OR 1=1", "columns": "band_gap FROM properties --", "method": "x' OR 'a'='a",
    }
    for key, value in injections.items():
        query = {key: value, "min_band_gap": 0} if key == "method" else {key: value}  # a method counts in ranges
        status, _, body = get(f"{url}/api/materials?{urllib.parse.urlencode(query)}")
        if status == 200:  # a value that is merely a string matches nothing
            assert json.loads(body)["total"] == 0, key
        else:
            assert status in (400, 404), (key, status, body)
    status, _, body = get(f"{url}/api/materials?source={urllib.parse.quote(chr(39) + ' OR 1=1 --')}")
    assert status == 200 and json.loads(body)["total"] == 0

    (mgo,) = materials_with(path, "SELECT id FROM materials WHERE source_id = 'mp-1265'")
    phonon = next(c for c in get_json(f"{url}/api/materials/{mgo}")["calculations"] if c["step"] == "phonon")
    run_dir = Path(phonon["work_dir"])
    (run_dir / "escape").symlink_to(path)
    for attempt in ("../../served.db", "..%2F..%2Fserved.db", "%2Fetc%2Fpasswd", "escape", "..", "",
                    "%00input.in"):
        status, _, body = get(f"{url}/calculations/{phonon['id']}/files/{attempt}")
        assert status in (400, 404), (attempt, status)
        assert b"SQLite" not in body and b"root:" not in body
    status, _, _ = get(f"{url}/calculations/999999/files/output.out")
    assert status in (400, 404)

    for query in ("limit=100000", "limit=abc", "offset=-1", f"elements={'O,' * 3000}", "desc=maybe",
                  "min_band_gap=nan"):
        status, _, _ = get(f"{url}/api/materials?{query}")
        assert status in (400, 414, 422), query
    status, _, _ = get(f"{url}/api/materials?{'x' * 5000}=1")
    assert status == 414
    status, _, _ = get(f"{url}/api/materials/notanumber")
    assert status == 422
    for method in ("POST", "PUT", "DELETE"):
        status, _, _ = get(f"{url}/api/materials", method=method)
        assert status == 405
    assert len(materials_with(path, "SELECT id FROM materials")) == before


def test_the_server_cannot_write_and_wants_a_token_off_loopback(served_world, tmp_path):
    path, _ = served_world
    db = open_database(path, create=False, read_only=True)
    with pytest.raises(OperationalError, match="readonly|read-only|query_only"), db.session() as session:
        session.add(Material(source="x", source_id="x", formula="O", reduced_formula="O", elements="O",
                             nelements=1))
    db.dispose()

    with pytest.raises(TansakuError, match="reachable from other machines: give an access token"):
        invoke("--db", str(path), "serve", "--host", "0.0.0.0")

    with serving(path, token="s3cret-token") as url:
        assert get(f"{url}/api/materials?limit=1")[0] == 401
        assert get(f"{url}/api/materials?limit=1", {"Authorization": "Bearer wrong"})[0] == 401
        assert get(f"{url}/api/materials?limit=1", {"Authorization": "Bearer s3cret-token"})[0] == 200
        assert get(f"{url}/optimade/v1/info")[0] == 401

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(f"{url}/materials?token=s3cret-token&elements=O")
        assert redirect.value.code == 303 and redirect.value.headers["location"] == "/materials?elements=O"
        cookie = redirect.value.headers["set-cookie"].split(";")[0]
        assert "httponly" in redirect.value.headers["set-cookie"].lower()
        assert get(f"{url}/materials?elements=O", {"Cookie": cookie})[0] == 200


def test_postgres_backed_server_reads_the_same():
    """The read-only guard also holds on PostgreSQL (CI starts a server)."""
    with fresh_postgres_url() as url:
        db = open_database(url)
        with db.session() as session:
            session.add(Material(source="pg", source_id="1", formula="Mg1O1", reduced_formula="MgO",
                                 elements="Mg,O", nelements=2, formula_alphabetical="MgO", formula_anonymous="AB"))
        db.dispose()
        reader = open_database(url, create=False, read_only=True)
        with pytest.raises(Exception, match="read-only"), reader.session() as session:
            session.add(Material(source="pg", source_id="2", formula="O", reduced_formula="O", elements="O",
                                 nelements=1))
        from tansaku.serve.app import create_app
        from tests.serving import live_server

        with live_server(create_app(reader)) as served:
            page = get_json(f"{served}/api/materials?elements=Mg")
        assert page["total"] == 1 and page["rows"][0]["reduced_formula"] == "MgO"
        reader.dispose()


def test_jobs_page_follows_a_running_step_and_sees_its_process_die(served_world, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import PSEUDOS
    from tests.serving import copy_database

    path, _ = served_world
    copy = copy_database(f"sqlite:///{path}", tmp_path / "jobs.db")
    (cao,) = materials_with(copy, "SELECT id FROM materials WHERE source_id = 'mp-2605'")
    argv = [sys.executable, "-c", "from tansaku.cli.app import main; main()", "--db", str(copy), "run", "dielectric",
            "--ids", str(cao), "--preset", "test", "--set", "relax=false", "--mpi-procs", "1", "--pseudo-dir",
            str(PSEUDOS), "--run-dir", str(tmp_path / "runs")]
    process = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with serving(copy) as url:
            deadline = time.monotonic() + 120
            while not (running := [s for s in get_json(f"{url}/api/jobs") if s["status"] == "running"]):
                assert process.poll() is None and time.monotonic() < deadline, "no step started running"
                time.sleep(0.2)
            (step,) = running
            assert step["formula"] == "CaO" and step["executor"] == "local" and step["process_alive"] is True
            time.sleep(1.0)
            status, _, html = get(f"{url}/jobs")
            assert status == 200 and "CaO" in html.decode() and "running" in html.decode()
            assert get_json(f"{url}/api/jobs")[0]["elapsed_seconds"] >= 1.0
            os.killpg(process.pid, signal.SIGKILL)  # the controller and the step's job die, as on a node failure
            os.killpg(int(step["job_id"]), signal.SIGKILL)
            process.wait()
            deadline = time.monotonic() + 30
            while get_json(f"{url}/api/jobs")[0]["process_alive"] is not False:
                assert time.monotonic() < deadline, "the dead job still looks alive"
                time.sleep(0.2)
            assert "its process is gone" in get(f"{url}/jobs")[2].decode()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
