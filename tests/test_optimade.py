"""OPTIMADE out (our server, checked by the official validator and against counts made without our code) and in
(importing from our own server and from optimade-python-tools' reference server, both on loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from sqlalchemy import func, select

from tansaku.interop.optimade_client import import_optimade
from tansaku.store import open_database
from tansaku.store.tables import Material, Meta, Property, Subset
from tests.serving import free_port, serving
from tests.test_serve import get, get_json, materials_with

# one pytest-xdist worker runs these (make test): served_world, a DFT run among it, is built once
pytestmark = pytest.mark.xdist_group("served")


@pytest.fixture(scope="module")
def optimade_site(served_world):
    path, models = served_world
    with serving(path, models) as url:
        yield url, path


def all_ids(url: str, filter_text: str, page_limit: int = 50) -> list[str]:
    """Every entry id a filter returns, following links.next page by page."""
    query = urllib.parse.urlencode({"filter": filter_text, "page_limit": page_limit, "response_fields": "nsites"})
    next_url, ids = f"{url}/optimade/v1/structures?{query}", []
    while next_url:
        body = get_json(next_url)
        ids += [e["id"] for e in body["data"]]
        next_url = body["links"]["next"]
    return ids


def test_the_official_validator_passes(optimade_site):
    from optimade.validator import ImplementationValidator

    url, _ = optimade_site
    for base in (f"{url}/optimade/v1", f"{url}/optimade"):
        validator = ImplementationValidator(base_url=base, verbosity=-1)
        validator.validate_implementation()
        assert validator.valid, (base, validator.results.failure_messages[:5])
        assert validator.results.success_count > 35


def test_filters_match_counts_made_without_our_code(optimade_site):
    url, path = optimade_site
    structures = "SELECT id FROM materials WHERE structure_json IS NOT NULL"
    with_elements = materials_with(path, f"{structures} AND elements = 'Mg,O'")
    ids = all_ids(url, 'elements HAS ALL "Mg","O" AND nelements=2')
    assert sorted(map(int, ids)) == sorted(with_elements) and len(ids) == len(set(ids)) >= 1

    titanates = materials_with(path, f"{structures} AND ',' || elements || ',' LIKE '%,Ti,%' AND nelements = 3")
    assert {int(i) for i in all_ids(url, 'elements HAS "Ti" AND elements LENGTH 3', page_limit=7)} == titanates

    in_window = materials_with(path, "SELECT DISTINCT p.material_id FROM properties p JOIN materials m ON "
                                     "m.id = p.material_id WHERE m.structure_json IS NOT NULL AND p.name = 'band_gap' "
                                     "AND p.method NOT LIKE 'ml:%' AND p.value > 2 AND p.value < 3")
    found = all_ids(url, "_tansaku_band_gap > 2 AND _tansaku_band_gap < 3", page_limit=200)
    assert {int(i) for i in found} == in_window and len(found) == len(in_window) > 100
    outside = all_ids(url, "NOT (_tansaku_band_gap > 2 AND _tansaku_band_gap < 3) AND nsites < 4", page_limit=200)
    assert not {int(i) for i in outside} & in_window

    bto = get_json(f"{url}/optimade/v1/structures?filter=chemical_formula_reduced=%22BaO3Ti%22")["data"]
    assert bto and all(e["attributes"]["chemical_formula_reduced"] == "BaO3Ti" for e in bto)
    assert {"mp-5020", "mp-2998"} & {e["attributes"]["_tansaku_source_id"] for e in bto}
    abc3 = get_json(f"{url}/optimade/v1/structures?filter=chemical_formula_anonymous=%22A3BC%22&page_limit=1")
    assert abc3["meta"]["data_returned"] == len(materials_with(path, f"{structures} AND formula_anonymous = 'A3BC'"))
    either = all_ids(url, 'chemical_formula_reduced="MgO" OR chemical_formula_reduced="CaO"')
    assert {int(i) for i in either} == materials_with(path, f"{structures} AND reduced_formula IN ('MgO', 'CaO')")

    entry = get_json(f"{url}/optimade/v1/structures/{ids[0]}")["data"]
    attributes = entry["attributes"]
    assert attributes["elements"] == ["Mg", "O"] and attributes["nsites"] == len(attributes["species_at_sites"])
    assert attributes["_tansaku_methods"]["eps_electronic"] in ("import:oxi_diel_db", "dft:qe:test")


def test_bad_and_unsupported_filters_say_why(optimade_site, tmp_path):
    url, _ = optimade_site
    from tansaku import TansakuError

    with pytest.raises(TansakuError, match="HTTP 404 .*give the provider's base URL"):
        import_optimade(open_database(tmp_path / "none.db"), f"{url}/materials", delay=0)
    with pytest.raises(TansakuError, match="HTTP 400 the filter 'nsites <' does not parse"):
        import_optimade(open_database(tmp_path / "none.db"), f"{url}/optimade", "nsites <", delay=0)
    for text, status in (("nsites <", 400), ("crazyfield = 2", 400), ("lattice_vectors HAS 1", 501),
                         ('elements HAS ALL "O" AND nsites = "three"', 400)):
        code, _, body = get(f"{url}/optimade/v1/structures?" + urllib.parse.urlencode({"filter": text}))
        error = json.loads(body)["errors"][0]
        assert code == status and error["status"] == str(status) and error["detail"], text
    assert get_json(f"{url}/optimade/v1/structures?filter=_mp_band_gap%3E1")["meta"]["data_returned"] == 0
    assert get(f"{url}/optimade/v1/structures?page_limit=100000")[0] == 403
    assert get(f"{url}/optimade/v1/structures?sort=lattice_vectors")[0] == 400
    assert get(f"{url}/optimade/v9/info")[0] == 553
    assert get_json(f"{url}/optimade/v1/structures/999999999")["data"] is None


def test_import_from_our_own_server_keeps_structures_and_properties_and_resumes(optimade_site, tmp_path):
    url, path = optimade_site
    target = open_database(tmp_path / "copy.db")
    wanted = 'elements HAS ALL "Ba","Ti","O" AND nelements=3'
    expected = materials_with(path, "SELECT id FROM materials WHERE structure_json IS NOT NULL AND elements = "
                                    "'Ba,O,Ti'")
    assert len(expected) >= 3

    class Interrupted(Exception):
        pass

    def stop_after_first_page(done, total):
        assert total == len(expected)
        raise Interrupted

    with pytest.raises(Interrupted):
        import_optimade(target, url + "/optimade", wanted, subset="bto", delay=0, page_limit=2,
                        progress=stop_after_first_page)
    with target.session() as session:
        assert session.scalar(select(func.count()).select_from(Material)) == 2
        (state,) = session.scalars(select(Meta.value).where(Meta.key.startswith("optimade-import:")))
        assert "page_offset=2" in json.loads(state)["next"]
    report = import_optimade(target, url + "/optimade/v1", wanted, subset="bto", delay=0, page_limit=2)
    assert report.added == len(expected) - 2 and not report.errors
    again = import_optimade(target, url + "/optimade/v1", wanted, subset="bto", delay=0)
    assert again.added == 0 and again.existing == len(expected)

    source = open_database(path, create=False, read_only=True)
    matcher = StructureMatcher()
    with target.session() as session, source.session() as original:
        assert session.scalar(select(func.count()).select_from(Meta).where(Meta.key.startswith("optimade-"))) == 0
        copies = session.scalars(select(Material)).all()
        assert len(copies) == len(expected) and session.scalar(
            select(func.count()).select_from(Subset).where(Subset.name == "bto")) == len(expected)
        for copy in copies:
            first = original.get(Material, int(copy.source_id))
            assert copy.source.startswith("optimade:127.0.0.1:") and matcher.fit(copy.structure(), first.structure())
            mine = dict(session.execute(select(Property.name, Property.value).where(
                Property.material_id == copy.id)).all())
            theirs = original.scalar(select(Property.value).where(
                Property.material_id == first.id, Property.name == "eps_electronic",
                Property.method == "import:oxi_diel_db"))
            assert mine["eps_electronic"] == pytest.approx(theirs)
            assert copy.extra["optimade"]["_tansaku_methods"]["eps_electronic"] == "import:oxi_diel_db"
    source.dispose()
    target.dispose()


REFERENCE_CONFIG = {
    "provider": {"name": "reference", "description": "optimade-python-tools' server with its bundled test data",
                 "prefix": "exmpl", "homepage": "https://example.com"},
    "provider_fields": {"structures": ["band_gap"]},
    "aliases": {"structures": {"id": "task_id", "chemical_formula_descriptive": "pretty_formula",
                               "chemical_formula_reduced": "pretty_formula",
                               "chemical_formula_anonymous": "formula_anonymous"}},
    "database_backend": "mongomock", "insert_test_data": True,
}


@pytest.fixture(scope="module")
def reference_server(tmp_path_factory):
    """optimade-python-tools' own server (mongomock, its test structures) on loopback."""
    config = tmp_path_factory.mktemp("reference") / "optimade_config.json"
    config.write_text(json.dumps(REFERENCE_CONFIG))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "optimade.server.main:app", "--port", str(port),
                                "--log-level", "warning"], env={**os.environ, "OPTIMADE_CONFIG_FILE": str(config)},
                               cwd=config.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if get(f"{url}/v1/info")[0] == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the reference server did not start: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(10)


def test_import_from_the_reference_server(reference_server, tmp_path: Path):
    db = open_database(tmp_path / "ref.db")
    total = get_json(f"{reference_server}/v1/structures?page_limit=1")["meta"]["data_returned"]
    report = import_optimade(db, reference_server, delay=0, page_limit=5)
    # its test data holds two cells squeezed to almost no volume: refused with the reason, the rest stored
    assert report.added + len(report.errors) == total and report.added >= total - 2
    assert all("per atom is outside" in reason for _, reason in report.errors)
    with db.session() as session:
        stored = session.scalars(select(Material)).all()
        assert all(m.source == f"optimade:{reference_server.removeprefix('http://')}" for m in stored)
        assert any("_exmpl_band_gap" in m.extra["optimade"] for m in stored)  # an unmapped field is kept
    filtered = import_optimade(open_database(tmp_path / "two.db"), reference_server, "nelements=2", delay=0)
    assert filtered.added + len(filtered.errors) == get_json(
        f"{reference_server}/v1/structures?filter=nelements=2")["meta"]["data_returned"]
    db.dispose()


def test_malformed_entries_from_a_server_are_refused_by_name_and_the_page_goes_on(http_server, tmp_path: Path):
    """A provider's page with one good entry among broken ones (as a buggy or hostile server might send): each
    broken entry is refused naming it and what is wrong, and the good one is stored."""
    root, url = http_server
    mgo = {"lattice_vectors": [[0, 2.1, 2.1], [2.1, 0, 2.1], [2.1, 2.1, 0]],
           "cartesian_site_positions": [[0, 0, 0], [2.1, 2.1, 2.1]], "species_at_sites": ["Mg", "O"],
           "species": [{"name": "Mg", "chemical_symbols": ["Mg"], "concentration": [1.0]},
                       {"name": "O", "chemical_symbols": ["O"], "concentration": [1.0]}],
           "_mp_band_gap": 4.5}

    def entry(entry_id, **changes):
        return {"id": entry_id, "type": "structures", "attributes": {**mgo, **changes}}

    broken = [
        "not an object",
        {"type": "structures", "attributes": mgo},  # no id
        entry("species-not-objects", species=["Mg", "O"]),
        entry("species-without-name", species=[{"chemical_symbols": ["Mg"]}, {"chemical_symbols": ["O"]}]),
        entry("concentration-text", species=[{"name": "Mg", "chemical_symbols": ["Mg"], "concentration": ["all"]},
                                             mgo["species"][1]]),
        entry("sites-not-names", species_at_sites=[12, 8]),
        entry("fewer-sites-than-positions", species_at_sites=["Mg"]),
        entry("ragged-lattice", lattice_vectors=[[0, 2.1], [2.1, 0, 2.1], [2.1, 2.1, 0]]),
        {"id": "attributes-not-an-object", "type": "structures", "attributes": ["Mg", "O"]},
    ]
    good = entry("good", _mp_formation_energy_per_atom=float("nan"))
    page = {"data": [*broken, good], "meta": {"more_data_available": False, "data_returned": 10},
            "links": {"next": None}}
    (root / "v1").mkdir()
    (root / "v1" / "structures").write_text(json.dumps(page))
    db = open_database(tmp_path / "broken.db")
    report = import_optimade(db, url, delay=0)
    reasons = {item.split(" ", 1)[1]: reason for item, reason in report.errors}
    assert report.added == 1 and len(report.errors) == len(broken), report.as_dict()
    assert "not a JSON object" in reasons["entry 1 of the page"]
    assert "no 'id'" in reasons["entry 2 of the page"]
    for name in ("species-not-objects", "species-without-name", "concentration-text"):
        assert "'species'" in reasons[name], (name, reasons[name])
    assert "'species_at_sites'" in reasons["sites-not-names"]
    assert "2 positions but 1 species" in reasons["fewer-sites-than-positions"]
    assert "invalid structure" in reasons["ragged-lattice"]
    assert "'attributes' is not an object" in reasons["attributes-not-an-object"]
    with db.session() as session:
        good = session.scalars(select(Material)).one()
        assert good.source_id == "good" and good.extra["optimade"]["_mp_formation_energy_per_atom"] is None
        assert session.scalars(select(Property.name)).all() == ["band_gap"]  # the NaN formation energy is not one
    db.dispose()
