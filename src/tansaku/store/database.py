"""Opening a tansaku database: URL resolution, schema creation and the version check."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tansaku import TansakuError, __version__
from tansaku.store.tables import SCHEMA_VERSION, Base, Meta, Property

DEFAULT_DB = "tansaku.db"


def resolve_url(db: str | os.PathLike | None = None) -> str:
    """A file path or SQLAlchemy URL, from the argument, else $TANSAKU_DB, else ./tansaku.db."""
    value = str(db) if db is not None else os.environ.get("TANSAKU_DB") or DEFAULT_DB
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers work beside one writer; busy_timeout makes concurrent writers wait, not fail.
    dbapi_connection.isolation_level = None  # transactions are begun by _sqlite_begin, not by the driver
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 60000")
    cursor.execute("PRAGMA foreign_keys = ON")
    with suppress(Exception):  # a read-only file keeps its journal mode
        cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def _sqlite_begin(connection) -> None:
    # BEGIN IMMEDIATE takes the write lock at the start: a transaction that read first and then writes
    # would otherwise fail with "database is locked" (SQLITE_BUSY_SNAPSHOT, which no timeout waits out)
    # whenever another process committed in between. Readers in WAL mode are not blocked by it.
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except OperationalError as exc:  # a read-only file or directory can still be read
        if "readonly" not in str(exc).replace("-", "").lower():
            raise
        connection.exec_driver_sql("BEGIN")


class Database:
    """An opened tansaku database: an engine plus a session factory, schema checked on open."""

    def __init__(self, url: str, engine: Engine):
        self.url = url
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_read_only(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only = ON")
    cursor.close()


def _sqlite_begin_deferred(connection) -> None:
    # a reader takes no write lock, so it never makes a campaign's writes wait
    connection.exec_driver_sql("BEGIN")


def _postgres_read_only(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    cursor.close()
    dbapi_connection.commit()


def _make_read_only(engine: Engine, is_sqlite: bool) -> None:
    """From now on every connection refuses writes (the server's guarantee, not the pages' good manners)."""
    engine.dispose()  # connections opened for the version check or an upgrade could write
    if is_sqlite:
        event.remove(engine, "begin", _sqlite_begin)
        event.listen(engine, "begin", _sqlite_begin_deferred)
        event.listen(engine, "connect", _sqlite_read_only)
    else:
        event.listen(engine, "connect", _postgres_read_only)


def open_database(db: str | os.PathLike | None = None, create: bool = True, read_only: bool = False) -> Database:
    """Open (and create if new) a database; refuse files that are not tansaku databases of this version.
    `read_only`: the engine refuses every write after the version check (an older schema is still upgraded)."""
    url = resolve_url(db)
    is_sqlite = url.startswith("sqlite")
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists() and not create:
            raise TansakuError(f"{path} has no tansaku database yet; run an import first")
        # a new database in a new folder (`--db results/run1.db`): make the folder, as an output option should
        path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"connect_args": {"timeout": 60}} if is_sqlite else {"pool_pre_ping": True}
    try:
        engine = create_engine(url, **kwargs)
    except (ImportError, NoSuchModuleError, ArgumentError) as exc:
        scheme = url.split("://")[0]
        raise TansakuError(f"{_display(url)}: no database driver for {scheme!r} ({exc}); tansaku stores in SQLite "
                           "(a file path) or PostgreSQL (postgresql+psycopg://..., pip install 'tansaku[postgres]')"
                           ) from None
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    try:
        tables = set(inspect(engine).get_table_names())
    except (DatabaseError, OperationalError) as exc:
        engine.dispose()
        if not is_sqlite:
            raise TansakuError(f"cannot connect to the database server at {_display(url)} (is it running, and "
                               f"are host, port and credentials right?): {exc.orig}") from exc
        raise TansakuError(f"{_display(url)} is not a tansaku database (cannot read it: {exc.orig})") from exc
    if Meta.__tablename__ not in tables:
        if tables:
            engine.dispose()
            raise TansakuError(
                f"{_display(url)} is not a tansaku database: it has tables ({', '.join(sorted(tables)[:5])}) "
                "but no tansaku_meta table"
            )
        if not create:
            engine.dispose()
            raise TansakuError(f"{_display(url)} has no tansaku database yet; run an import first")
        _create_schema(engine)
    else:
        _check_version(engine, url)
    if read_only:
        _make_read_only(engine, is_sqlite)
    return Database(url, engine)


def _create_schema(engine: Engine) -> None:
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        if session.get(Meta, "schema_version") is None:
            session.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
            session.add(Meta(key="created_by", value=f"tansaku {__version__}"))


def _check_version(engine: Engine, url: str) -> None:
    with Session(engine) as session:
        row = session.scalar(select(Meta).where(Meta.key == "schema_version"))
    found = row.value if row else "missing"
    if found in UPGRADABLE:
        _upgrade(engine)
        return
    if found != str(SCHEMA_VERSION):
        engine.dispose()
        raise TansakuError(
            f"{_display(url)} was written with tansaku schema version {found}; this tansaku "
            f"({__version__}) reads schema version {SCHEMA_VERSION}. Use a matching tansaku version "
            "or export and re-import the data."
        )


UPGRADABLE = ("1", "2", "3", "4", "5", "6")  # versions upgraded in place


def _upgrade(engine: Engine) -> None:
    """Bring an older database to this schema: version 1 → 2 added the campaign tables; 2 → 3 recomputes the
    scalar of computed `born_charges` (it was the mean |Tr Z*|, three times the imported values' |Tr Z*|/3) from
    the tensors stored beside it; 3 → 4 added calculations.cpu_seconds (empty for older runs: the cost model then
    uses their wall time); 4 → 5 added the OPTIMADE formula columns of materials, filled here from each row's
    formula; 5 → 6 added campaign_picks.values_by_property (campaigns with several goals); 6 → 7 added
    campaign_picks.level, a material being picked once per level of theory. Idempotent: the value is recomputed
    from the tensor, not scaled."""

    from tansaku.dft.ionic import isotropic_born_charge

    Base.metadata.create_all(engine)
    _add_columns(engine, "calculations", {"cpu_seconds": "FLOAT"})
    _add_columns(engine, "campaign_picks", {"values_by_property": "JSON"})
    _picks_by_level(engine)
    if _add_columns(engine, "materials", {"formula_alphabetical": "VARCHAR(256)", "formula_anonymous": "VARCHAR(256)"}):
        _fill_optimade_formulas(engine)
    with Session(engine) as session, session.begin():
        for prop in session.scalars(select(Property).where(Property.name == "born_charges",
                                                           Property.method.startswith("dft:"),
                                                           Property.tensor.is_not(None))):
            prop.value = isotropic_born_charge(prop.tensor)
        session.merge(Meta(key="schema_version", value=str(SCHEMA_VERSION)))


def _add_columns(engine: Engine, table: str, columns: dict[str, str]) -> bool:
    """ALTER TABLE for the columns the table lacks; True when any was added."""
    from sqlalchemy import inspect, text

    present = {c["name"] for c in inspect(engine).get_columns(table)}
    missing = {name: kind for name, kind in columns.items() if name not in present}
    with engine.begin() as connection:
        for name, kind in missing.items():
            connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))
    return bool(missing)


def _picks_by_level(engine: Engine) -> None:
    """campaign_picks gains `level` and its uniqueness moves from (campaign, material) to (campaign, material,
    level). PostgreSQL swaps the constraint; SQLite cannot drop one, so the table is rebuilt with its rows."""
    from sqlalchemy import inspect, text

    from tansaku.store.tables import CampaignPick

    columns = [c["name"] for c in inspect(engine).get_columns("campaign_picks")]
    if "level" in columns:
        return
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(text("ALTER TABLE campaign_picks RENAME TO campaign_picks_v6"))
            CampaignPick.__table__.create(connection)
            listed = ", ".join(columns)
            connection.execute(text(f"INSERT INTO campaign_picks ({listed}) SELECT {listed} FROM campaign_picks_v6"))
            connection.execute(text("DROP TABLE campaign_picks_v6"))
        else:
            connection.execute(text("ALTER TABLE campaign_picks ADD COLUMN level VARCHAR(16) NOT NULL DEFAULT ''"))
            connection.execute(text("ALTER TABLE campaign_picks DROP CONSTRAINT IF EXISTS uq_campaign_pick"))
            connection.execute(text("ALTER TABLE campaign_picks ADD CONSTRAINT uq_campaign_pick_level "
                                    "UNIQUE (campaign_id, material_id, level)"))


def _fill_optimade_formulas(engine: Engine) -> None:
    from pymatgen.core import Composition
    from sqlalchemy import update

    from tansaku.chemistry.formulas import alphabetical_formula, anonymous_formula
    from tansaku.store.tables import Material

    with Session(engine) as session, session.begin():
        cache: dict[str, tuple[str | None, str | None]] = {}
        rows = []
        for material_id, formula in session.execute(select(Material.id, Material.formula)):
            if formula not in cache:
                composition = Composition(formula)
                cache[formula] = (alphabetical_formula(composition), anonymous_formula(composition))
            rows.append({"id": material_id, "formula_alphabetical": cache[formula][0],
                         "formula_anonymous": cache[formula][1]})
        if rows:
            session.execute(update(Material), rows)


def _display(url: str) -> str:
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url.split("@")[-1]
