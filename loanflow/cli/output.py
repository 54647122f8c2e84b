"""Rendering for the CLI: rich tables for people, JSON for scripts.

JSON follows the operations contract: Decimals are strings (never floats), datetimes are
ISO 8601 UTC with a `Z`. Tables format money for people (`$1,234.56`, `70.13%`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from loanflow.money import fmt_ratio, fmt_units, fmt_usd

# Tables go to stdout; errors go to stderr through `loanflow.cli.errors`.
console = Console(highlight=False, soft_wrap=False)

DASH = "-"


def jsonable(value: Any) -> Any:
    """Turn models, dataclasses, Decimals and datetimes into plain JSON values."""
    if isinstance(value, BaseModel):
        # Python mode, then the rules below: Decimals print the same from every source.
        return jsonable(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(data), indent=2) + "\n")


def decimal_text(value: Decimal) -> str:
    """A Decimal as the contract sends it: plain digits, no exponent, no trailing zeros."""
    if not value.is_finite():
        return str(value)
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# --- formats for people -------------------------------------------------------------------------


def usd(amount: Decimal | None) -> str:
    return DASH if amount is None else fmt_usd(amount)


def ratio(value: Decimal | None) -> str:
    return DASH if value is None else fmt_ratio(value)


def units(asset: str, amount: Decimal | None) -> str:
    return DASH if amount is None else fmt_units(asset, amount)


def when(moment: datetime | None, *, seconds: bool = False) -> str:
    if moment is None:
        return DASH
    layout = "%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"
    return moment.astimezone(timezone.utc).strftime(layout)


def time_left(deadline: datetime | None, now: datetime) -> str:
    """'1d 4h', '35m', or 'overdue 2h'."""
    if deadline is None:
        return DASH
    seconds = int((deadline - now).total_seconds())
    sign, seconds = ("overdue ", -seconds) if seconds < 0 else ("", seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{sign}{days}d {hours}h"
    return f"{sign}{hours}h {minutes}m" if hours else f"{sign}{minutes}m"


# --- tables -----------------------------------------------------------------------------------


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
          *, right: Iterable[str] = ()) -> Table:
    """A table with the given columns; the columns named in `right` are right-aligned
    (amounts), so digits line up."""
    aligned = set(right)
    out = Table(title=title, title_justify="left", title_style="bold")
    for name in columns:
        out.add_column(name, justify="right" if name in aligned else "left")
    for row in rows:
        out.add_row(*(cell_text(cell) for cell in row))
    return out


def fields(title: str | None, pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column 'name  value' table for one record."""
    out = Table(title=title, title_justify="left", title_style="bold", show_header=False)
    out.add_column(style="bold")
    out.add_column()
    for name, value in pairs:
        out.add_row(name, cell_text(value))
    return out


def cell_text(value: Any) -> Text:
    """Cells are plain text: brackets in data (a list in a decision's details) are not rich
    markup. Text given already styled is kept as it is."""
    return value if isinstance(value, Text) else Text(str(value))


def show(*renderables: Any) -> None:
    for renderable in renderables:
        console.print(Text(renderable) if isinstance(renderable, str) else renderable)
