"""Column types as the revisions spell them: the DDL of `loanflow.db` and `loanflow.schema`'s
types, written out so that a later change to those modules cannot change what an old revision
did. (A revision that needs a different type defines its own; these never change.)"""

from __future__ import annotations

import sqlalchemy as sa

# `loanflow.db.Money`: exact NUMERIC(38, 18) on PostgreSQL, text on SQLite (whose NUMERIC is a
# binary float).
MONEY = sa.Numeric(38, 18).with_variant(sa.String(64), "sqlite")
# `loanflow.db.PRICE`: trigger prices, range-queried.
PRICE = sa.Numeric(20, 2)
# `loanflow.schema.UtcDateTime`.
UTC_TIME = sa.DateTime(timezone=True)
# `loanflow.schema.BigId`: 64-bit on PostgreSQL; on SQLite only INTEGER is an alias of the rowid.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KEY = sa.String(200)
LOAN_ID = sa.String(64)
