"""Database migrations (Alembic), applied by `loanflow db upgrade`.

    loanflow db upgrade                          # operators: the configured database to the latest
    alembic upgrade head                         # developers: the same (alembic.ini at the root)
    alembic revision --autogenerate -m "..."     # a new revision after changing loanflow.schema

A database made before migrations existed (by `Database.create_all`) has the tables of the
first revision but no `alembic_version` table: `upgrade` recognises it, records it as being
at the first revision ("stamps" it) and migrates on from there. So a fresh database and an
existing one both end at the latest schema.

Alembic runs synchronously, on the synchronous twin of the configured driver (sqlite, psycopg);
async code calls `upgrade` in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, pool
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
# The revision whose tables `Database.create_all` made before migrations existed.
BASELINE = "0001"


class MigrationError(RuntimeError):
    """The database is in a state no migration can start from; the message says why."""


@dataclass(frozen=True)
class Upgrade:
    database: str  # the URL, password hidden
    before: str | None
    after: str | None
    adopted: bool  # a database made by create_all, stamped at the baseline first


def sync_url(url: str) -> str:
    """The synchronous URL for any spelling loanflow accepts (async drivers included)."""
    for prefix, replacement in (
        ("sqlite+aiosqlite://", "sqlite://"),
        ("postgres://", "postgresql+psycopg://"),
        ("postgresql://", "postgresql+psycopg://"),
    ):
        if url.startswith(prefix):
            return replacement + url[len(prefix):]
    return url


def shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    # Config is a ConfigParser: a '%' in a password would read as interpolation.
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def head() -> str:
    revision = ScriptDirectory(str(HERE)).get_current_head()
    assert revision is not None, "no migrations found"
    return revision


def baseline_tables() -> frozenset[str]:
    module = ScriptDirectory(str(HERE)).get_revision(BASELINE).module
    return frozenset(module.TABLES)


def current(url: str) -> str | None:
    """The revision the database is at (None: never migrated). A SQLite file that does not
    exist is at none: looking must not create it, nor fail on its missing folder."""
    url = sync_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not Path(parsed.database).exists():
        return None
    return _inspect(url)[0]


def upgrade(url: str, revision: str = "head") -> Upgrade:
    """Migrate the database at `url` to `revision`, adopting a database made by create_all."""
    url = sync_url(url)
    _ensure_sqlite_dir(url)
    before, tables = _inspect(url)
    config = alembic_config(url)
    adopted = before is None and bool(tables & baseline_tables())
    if adopted:
        missing = baseline_tables() - tables
        if missing:
            raise MigrationError(
                f"{shown(url)} has some loanflow tables but not {', '.join(sorted(missing))}: "
                "it is not a loanflow database, or one older than the first revision"
            )
        command.stamp(config, BASELINE)
    command.upgrade(config, revision)
    return Upgrade(shown(url), before, _inspect(url)[0], adopted)


def _inspect(url: str) -> tuple[str | None, set[str]]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
            return revision, set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def _ensure_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
