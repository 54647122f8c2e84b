"""Alembic's environment for loanflow. The database URL comes from the Alembic config (set by
`loanflow.migrations.upgrade`) or, for the `alembic` command itself, from the settings
(DATABASE_URL, else the SQLite file under var/); always through a synchronous driver."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

import loanflow.notice_schema  # noqa: F401  (registers its tables on Base.metadata)
import loanflow.schema  # noqa: F401
from loanflow.db import Base
from loanflow.migrations import sync_url

config = context.config
if config.config_file_name:  # the `alembic` command with alembic.ini: show its progress
    fileConfig(config.config_file_name)


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from loanflow.settings import get_settings

    return sync_url(get_settings().db_url)


def configure(url: str, **options: object) -> None:
    context.configure(
        target_metadata=Base.metadata,
        compare_type=True,
        # SQLite cannot ALTER most things: Alembic rebuilds the table instead ("batch" mode).
        render_as_batch=url.startswith("sqlite"),
        **options,
    )


def run_offline(url: str) -> None:
    configure(url, url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online(url: str) -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            configure(url, connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline(database_url())
else:
    run_online(database_url())
