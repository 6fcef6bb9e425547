import sqlite3

import pytest
from sqlalchemy import select, update

from tansaku import TansakuError
from tansaku.store import Material, open_database, resolve_url
from tansaku.store.materials import set_property
from tansaku.store.tables import Meta, Property


def test_resolve_url_from_path_env_and_url(tmp_path, monkeypatch):
    monkeypatch.delenv("TANSAKU_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_url() == f"sqlite:///{tmp_path / 'tansaku.db'}"
    monkeypatch.setenv("TANSAKU_DB", str(tmp_path / "env.db"))
    assert resolve_url() == f"sqlite:///{tmp_path / 'env.db'}"
    assert resolve_url("postgresql://u@localhost/x") == "postgresql://u@localhost/x"
    assert resolve_url(tmp_path / "a.db") == f"sqlite:///{tmp_path / 'a.db'}"


def test_new_database_has_schema_and_version(backend_url):
    db = open_database(backend_url)
    with db.session() as session:
        assert session.get(Meta, "schema_version").value == "7"
        assert session.scalars(select(Material)).all() == []
    db.dispose()
    again = open_database(backend_url, create=False)  # reopening checks the version and keeps the data
    assert again.engine.dialect.name == ("sqlite" if "://" not in backend_url else "postgresql")
    again.dispose()


def test_file_that_is_not_a_database_is_refused(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(TansakuError, match="junk.db is not a tansaku database"):
        open_database(junk)


def test_foreign_sqlite_database_is_refused(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("create table customers (id integer)")
    with pytest.raises(TansakuError, match="not a tansaku database.*customers"):
        open_database(other)


def test_foreign_database_is_refused_on_either_backend(backend_url):
    from sqlalchemy import create_engine, text

    from tansaku.store import resolve_url

    engine = create_engine(resolve_url(backend_url))
    with engine.begin() as conn:
        conn.execute(text("create table customers (id integer)"))
    engine.dispose()
    with pytest.raises(TansakuError, match="not a tansaku database.*customers"):
        open_database(backend_url)


def test_incompatible_schema_version_is_refused(backend_url):
    db = open_database(backend_url)
    with db.session() as session:
        session.execute(update(Meta).where(Meta.key == "schema_version").values(value="99"))
    db.dispose()
    with pytest.raises(TansakuError, match="schema version 99"):
        open_database(backend_url)


def test_version_1_database_is_upgraded_in_place(backend_url):
    """Versions 2-5 added tables and columns: an older database gains them, keeps its data and has the OPTIMADE
    formulas of its materials filled in."""
    from sqlalchemy import inspect, text

    db = open_database(backend_url)
    with db.session() as session:
        session.add(Material(source="t", source_id="BTO", formula="Ba2Ti2O6", reduced_formula="BaTiO3",
                             elements="Ba,O,Ti", nelements=3))
        session.execute(update(Meta).where(Meta.key == "schema_version").values(value="1"))
        session.execute(text("ALTER TABLE calculations DROP COLUMN cpu_seconds"))
        session.execute(text("ALTER TABLE materials DROP COLUMN formula_alphabetical"))
        session.execute(text("ALTER TABLE materials DROP COLUMN formula_anonymous"))
        session.execute(text("DROP TABLE campaign_picks"))
        session.execute(text("DROP TABLE campaign_rounds"))
        session.execute(text("DROP TABLE campaigns"))
    db.dispose()
    upgraded = open_database(backend_url)
    assert {"campaigns", "campaign_rounds", "campaign_picks"} <= set(inspect(upgraded.engine).get_table_names())
    assert "cpu_seconds" in {c["name"] for c in inspect(upgraded.engine).get_columns("calculations")}
    with upgraded.session() as session:
        assert session.get(Meta, "schema_version").value == "7"
        formulas = session.execute(select(Material.formula_alphabetical, Material.formula_anonymous)).one()
    assert tuple(formulas) == ("BaO3Ti", "A3BC")
    upgraded.dispose()


def test_version_6_campaign_picks_gain_a_level_and_keep_their_rows(backend_url):
    """Version 6 allowed one pick per material and campaign; 7 allows one per level (cheap, expensive), keeps
    the old picks (level "") and still refuses a second pick at one level."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from tansaku.store.tables import Campaign, CampaignPick, CampaignRound

    db = open_database(backend_url)
    key = "SERIAL PRIMARY KEY" if db.engine.dialect.name == "postgresql" else "INTEGER PRIMARY KEY"
    with db.session() as session:
        material = Material(source="t", source_id="MgS", formula="Mg1S1", reduced_formula="MgS", elements="Mg,S",
                            nelements=2)
        campaign = Campaign(name="old", config={}, status="finished")
        session.add_all([material, campaign])
        session.flush()
        round_ = CampaignRound(campaign_id=campaign.id, number=1, status="done")
        session.add(round_)
        session.flush()
        ids = {"c": campaign.id, "r": round_.id, "m": material.id}
        session.execute(text("DROP TABLE campaign_picks"))
        session.execute(text(
            f"CREATE TABLE campaign_picks (id {key}, campaign_id INTEGER REFERENCES campaigns(id), round_id INTEGER "
            "REFERENCES campaign_rounds(id), material_id INTEGER REFERENCES materials(id), reason VARCHAR(256), "
            "mean FLOAT, std FLOAT, score FLOAT, cost_estimate FLOAT, status VARCHAR(32), value FLOAT, "
            "values_by_property JSON, detail TEXT, cpu_hours FLOAT, "
            "CONSTRAINT uq_campaign_pick UNIQUE (campaign_id, material_id))"))
        session.execute(text("INSERT INTO campaign_picks (campaign_id, round_id, material_id, reason, status, value) "
                             "VALUES (:c, :r, :m, 'initial random', 'done', 4.1)"), ids)
        session.execute(update(Meta).where(Meta.key == "schema_version").values(value="6"))
    db.dispose()
    upgraded = open_database(backend_url)
    with upgraded.session() as session:
        (old,) = session.scalars(select(CampaignPick)).all()
        assert (old.level, old.value, old.reason) == ("", 4.1, "initial random")
        for level in ("cheap", "expensive"):
            session.add(CampaignPick(campaign_id=ids["c"], round_id=ids["r"], material_id=ids["m"], reason="x",
                                     level=level))
    with pytest.raises(IntegrityError), upgraded.session() as session:
        session.add(CampaignPick(campaign_id=ids["c"], round_id=ids["r"], material_id=ids["m"], reason="again",
                                 level="cheap"))
    with upgraded.session() as session:
        assert session.get(Meta, "schema_version").value == "7"
        assert len(session.scalars(select(CampaignPick)).all()) == 3
    upgraded.dispose()


def test_version_2_born_charges_are_recomputed_to_the_one_definition(backend_url):
    """Version 2 stored computed born_charges as mean |Tr Z*| (3x the imported |Tr Z*|/3); opening upgrades."""
    db = open_database(backend_url)
    tensor = [[[2.0, 0.1, 0], [0, 2.0, 0], [0, 0, 2.0]], [[-2.0, 0, 0], [0, -2.0, 0], [0, 0, -2.0]]]
    with db.session() as session:
        material = Material(source="t", source_id="MgO", formula="Mg1O1", reduced_formula="MgO", elements="Mg,O",
                            nelements=2)
        session.add(material)
        session.flush()
        set_property(session, material, "born_charges", 6.0, "dft:qe", tensor=tensor)
        set_property(session, material, "born_charges", 1.962, "import:oxi_diel_db", tensor=tensor)
        session.execute(update(Meta).where(Meta.key == "schema_version").values(value="2"))
    db.dispose()
    upgraded = open_database(backend_url)
    with upgraded.session() as session:
        values = dict(session.execute(select(Property.method, Property.value)).all())
        assert session.get(Meta, "schema_version").value == "7"
    assert values == {"dft:qe": pytest.approx(2.0), "import:oxi_diel_db": pytest.approx(1.962)}
    upgraded.dispose()


def test_missing_database_not_created_when_reading(backend_url):
    with pytest.raises(TansakuError, match="no tansaku database yet"):
        open_database(backend_url, create=False)


def test_new_database_in_a_new_folder(tmp_path):
    with pytest.raises(TansakuError, match="new/run1.db has no tansaku database yet"):
        open_database(tmp_path / "new" / "run1.db", create=False)
    assert not (tmp_path / "new").exists()
    open_database(tmp_path / "new" / "run1.db").dispose()
    assert (tmp_path / "new" / "run1.db").is_file()
