import json
import shutil
import zipfile

import pytest
from sqlalchemy import func, select

from tansaku import TansakuError
from tansaku.dft.ionic import isotropic_born_charge
from tansaku.download import fetch
from tansaku.sources.oxi_diel_db import SOURCE, import_oxi_diel_db
from tansaku.store.queries import stats
from tansaku.store.tables import Material, Property

FEW = ["mp-1265.json", "mp-2605.json", "mp-2472.json"]  # MgO, CaO, SrO


def test_full_database_counts_and_reimport_is_idempotent(oxide_db, oxi_dir):
    with oxide_db.session() as session:
        first = stats(session)
    assert first["materials"] == 1278
    assert first["properties"]["eps_electronic"] == 1278
    assert first["properties"]["eps_ionic"] == 1278
    assert first["subsets"]["paper"] == 1266
    report = import_oxi_diel_db(oxide_db, oxi_dir)
    assert report.added == 0 and report.existing == 1278 and not report.errors
    with oxide_db.session() as session:
        assert stats(session) == first


def test_mgo_values_match_the_source_file(oxide_db, oxi_dir):
    raw = json.loads((oxi_dir / "data" / "mp-1265.json").read_text())
    with oxide_db.session() as session:
        mgo = session.scalar(select(Material).where(Material.source == SOURCE, Material.source_id == "mp-1265"))
        props = {p.name: p for p in mgo.properties}
    assert mgo.reduced_formula == "MgO" and mgo.spacegroup_number == 225
    assert props["eps_electronic"].value == pytest.approx(raw["dielectric"]["epsilon_electronic_avg"])
    assert props["eps_ionic"].tensor == raw["dielectric"]["epsilon_ionic"]
    assert props["band_gap"].value == pytest.approx(raw["band_gap"])
    assert len(props["born_charges"].tensor) == len(mgo.structure())
    # the source's avg_abs_trace is the definition computed Born charges use too (mean |Tr Z*| / 3)
    assert props["born_charges"].value == pytest.approx(isotropic_born_charge(props["born_charges"].tensor), rel=1e-3)
    assert props["gamma_frequencies"].unit == "THz"


@pytest.fixture
def mini_dir(tmp_path, oxi_dir):
    root = tmp_path / "mini"
    (root / "data").mkdir(parents=True)
    for name in FEW:
        shutil.copy(oxi_dir / "data" / name, root / "data" / name)
    (root / "paper_subset_ids.txt").write_text("mp-1265\nmp-2605\n")
    return root


def test_bad_entries_are_reported_and_leave_nothing(db, mini_dir):
    data = mini_dir / "data"
    (data / "mp-broken.json").write_text('{"mp_id": "mp-broken", "structure": ')
    good = json.loads((data / "mp-1265.json").read_text())
    no_structure = {k: v for k, v in good.items() if k != "structure"}
    no_structure["mp_id"] = "mp-nostruct"
    (data / "mp-nostruct.json").write_text(json.dumps(no_structure))
    unknown = json.loads(json.dumps(good))
    unknown["mp_id"] = "mp-unknown"
    unknown["structure"]["sites"][0]["species"][0]["element"] = "Xx"
    (data / "mp-unknown.json").write_text(json.dumps(unknown))
    malformed = {  # one bad value each: the entry is refused by name, the import goes on
        "ragged": ("dielectric", "epsilon_electronic", [[1.0, 2.0], [3.0]]),
        "nan": ("dielectric", "epsilon_ionic", [[float("nan")] * 3] * 3),
        "born": ("born_effective_charge", "tensors", good["born_effective_charge"]["tensors"][:1]),
        "freqs": ("phonon", "frequency", "11.8 THz"),
        "gap": (None, "band_gap", "wide"),
        "group": ("spacegroup", "number", 999),
    }
    for name, (block, key, value) in malformed.items():
        entry = json.loads(json.dumps(good))
        entry["mp_id"] = f"mp-{name}"
        (entry[block] if block else entry)[key] = value
        (data / f"mp-{name}.json").write_text(json.dumps(entry))

    report = import_oxi_diel_db(db, mini_dir)
    reasons = dict(report.errors)
    assert "malformed JSON" in reasons["mp-broken.json"]
    assert "no 'structure'" in reasons["mp-nostruct.json"]
    assert "unknown element symbol 'Xx'" in reasons["mp-unknown.json"]
    assert "'dielectric.epsilon_electronic' is not a 3x3 array" in reasons["mp-ragged.json"]
    assert "'dielectric.epsilon_ionic' is not a 3x3 array of finite numbers" in reasons["mp-nan.json"]
    assert "'born_effective_charge.tensors' is not a 2x3x3 array" in reasons["mp-born.json"]
    assert "'phonon.frequency' is not a non-empty list" in reasons["mp-freqs.json"]
    assert "'band_gap' is not a number ('wide')" in reasons["mp-gap.json"]
    assert "'spacegroup' needs a number from 1 to 230" in reasons["mp-group.json"]
    assert report.added == 3
    with db.session() as session:
        ids = set(session.scalars(select(Material.source_id)))
        assert ids == {"mp-1265", "mp-2605", "mp-2472"}
        assert session.scalar(select(func.count()).select_from(Property)) == 3 * 6  # eps_total among them
        assert stats(session)["subsets"] == {"paper": 2}


def _zip_repo(src_dir, target):
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(src_dir.rglob("*")):
            if path.is_file():
                archive.write(path, "oxi_diel_db-abc123/" + str(path.relative_to(src_dir)))
    return target


def test_zip_of_the_repository_imports(db, mini_dir, tmp_path):
    archive = _zip_repo(mini_dir, tmp_path / "repo.zip")
    report = import_oxi_diel_db(db, archive)
    assert report.added == 3 and not report.errors


def test_zip_that_is_not_the_database_is_refused(db, tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("project/readme.txt", "hello")
    with pytest.raises(TansakuError, match="not the oxide dielectric database"):
        import_oxi_diel_db(db, archive)


def test_url_is_downloaded_once_into_the_cache(db, mini_dir, http_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TANSAKU_CACHE", str(tmp_path / "cache"))
    root, base = http_server
    _zip_repo(mini_dir, root / "repo.zip")
    report = import_oxi_diel_db(db, f"{base}/repo.zip")
    assert report.added == 3
    cached = tmp_path / "cache" / "oxi_diel_db-repo.zip"
    assert cached.exists() and cached.with_name(cached.name + ".sha256").exists()
    (root / "repo.zip").unlink()  # a second use must come from the cache, not the server
    assert import_oxi_diel_db(db, f"{base}/repo.zip").existing == 3


def test_download_checksum_mismatch_caches_nothing(http_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TANSAKU_CACHE", str(tmp_path / "cache"))
    root, base = http_server
    (root / "f.bin").write_bytes(b"payload")
    with pytest.raises(TansakuError, match="checksum mismatch"):
        fetch(f"{base}/f.bin", "f.bin", sha256="0" * 64)
    assert list((tmp_path / "cache").iterdir()) == []  # neither the file nor a partial download
    import hashlib

    good = hashlib.sha256(b"payload").hexdigest()
    cached = fetch(f"{base}/f.bin", "f.bin", sha256=good)
    assert cached.read_bytes() == b"payload"
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert cached.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # readable like any file, not 0600
