"""Rendering for the CLI: rich tables for people, JSON for scripts.

JSON follows the operations contract: Decimals are strings (never floats) in fixed point, never
with an exponent, each at its unit (`json_amounts`): USD to the cent ("40000.00"), collateral to
the asset's smallest unit (BTC 8 places, ETH 18), LTVs to `LTV_PLACES` places; datetimes are
ISO 8601 UTC with a `Z`. Tables format money for people (`$1,234.56`, `70.13%`) and never cut an
id or an amount (`table`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from decimal import ROUND_CEILING, Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

# `decimal_text` (plain digits, never an exponent) is the core's (`loanflow.money`): the
# workflows write figures into reasons with it too. The CLI imports it from here as before.
from loanflow.money import QUANTUM, USD, WIDE, decimal_text, fmt_ratio, fmt_units, fmt_usd

# Tables go to stdout; errors go to stderr through `loanflow.cli.errors`.
console = Console(highlight=False, soft_wrap=False)

DASH = "-"

# --- JSON -------------------------------------------------------------------------------------

# LTVs in JSON: enough places to compare with any policy level (0.700001 is past 70%), few
# enough to read (the raw ratio can carry 60 digits).
LTV_PLACES = 6

# Which unit a Decimal field is in, by its name (the contract's names, the book's, the CLI's).
PRICE_FIELDS = frozenset({"price", "previous_price", "limit_price", "fill_price"})
UNIT_FIELDS = frozenset({"collateral_amount", "required_collateral", "cure_top_up", "collateral",
                         "amount", "quantity", "debits", "credits", "difference"})
# A record names its asset (or ledger currency) in one of these fields.
ASSET_FIELDS = ("collateral_asset", "asset", "currency")
# Every value of a dict under one of these names is a USD price (trigger prices, venue quotes).
PRICE_MAPS = frozenset({"trigger_prices", "venues"})


def jsonable(value: Any, name: str = "", asset: str | None = None, parent: str = "") -> Any:
    """Turn models, dataclasses, Decimals and datetimes into plain JSON values; a Decimal is
    written at the unit its field `name` holds (see `json_decimal`)."""
    if isinstance(value, BaseModel):
        # Python mode, then the rules below: Decimals print the same from every source.
        return jsonable(value.model_dump(), name, asset, parent)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        record = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return jsonable(record, name, asset, parent)
    if isinstance(value, dict):
        return json_record(value, name, asset)
    if isinstance(value, (list, tuple)):
        return [jsonable(v, name, asset, parent) for v in value]
    if isinstance(value, Decimal):
        return json_decimal(value, name, asset, parent)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def json_record(record: dict[Any, Any], name: str, asset: str | None) -> dict[str, Any]:
    """A dict's fields; its own asset field (if any) sets the unit of its amounts."""
    own = next((record[k] for k in ASSET_FIELDS if isinstance(record.get(k), str)), None)
    unit = own or asset
    if name in PRICE_MAPS:
        return {str(k): json_decimal(v, "price", unit, name) if isinstance(v, Decimal)
                else jsonable(v, "price", unit, name) for k, v in record.items()}
    return {str(k): ratio_string(v) if isinstance(v, str) and is_ratio(str(k), name)
            else jsonable(v, str(k), unit, name) for k, v in record.items()}


def ratio_string(text: str) -> str:
    """An LTV a record holds as text (a decision's audit details keep the workflow's exact,
    up to 60-digit ratio) at LTV_PLACES like every other LTV; text that is no number stays."""
    try:
        value = Decimal(text)
    except ArithmeticError:
        return text
    return ltv_text(value) if value.is_finite() else text


def json_decimal(value: Decimal, name: str, asset: str | None, parent: str = "") -> str:
    """A Decimal field at its unit: LTVs to LTV_PLACES, dollars to the cent, collateral to the
    asset's smallest unit; anything else as plain digits. Never an exponent."""
    if not value.is_finite():
        return str(value)  # an infinite LTV (collateral worth nothing) says so
    if is_ratio(name, parent):
        return ltv_text(value)
    if name.endswith("_usd") or name in PRICE_FIELDS or (name in ("low", "high")):
        return fixed(value, USD)
    if name in UNIT_FIELDS and asset is not None:
        return unit_text(asset, value)
    return decimal_text(value)


def is_ratio(name: str, parent: str) -> bool:
    # The book's LTV histogram has buckets whose bounds (low, high) are LTVs, not prices.
    return name == "ltv" or name.endswith("_ltv") or (parent == "histogram"
                                                      and name in ("low", "high"))


def ltv_text(value: Decimal) -> str:
    """An LTV to LTV_PLACES places, rounded up: against the borrower, like the tables' %."""
    step = Decimal(1).scaleb(-LTV_PLACES)
    return format(value.quantize(step, rounding=ROUND_CEILING, context=WIDE), "f")


def unit_text(asset: str, value: Decimal) -> str:
    """An amount of `asset` (or ledger currency) in fixed point at its smallest unit."""
    if asset == "USD":
        return fixed(value, USD)
    step = QUANTUM.get(asset)
    return decimal_text(value) if step is None else fixed(value, step)


def fixed(value: Decimal, step: Decimal) -> str:
    """Fixed point with at least `step`'s places; more only if the value has significant
    digits there (a price observed to a tenth of a cent keeps it: JSON never rounds a stored
    figure away). PostgreSQL's NUMERIC pads with zeros to its scale: those are not digits."""
    digits = value.normalize(WIDE)
    if digits.as_tuple().exponent < step.as_tuple().exponent:  # type: ignore[operator]
        return format(digits, "f")
    return format(value.quantize(step, context=WIDE), "f")


def print_json(data: Any) -> None:
    blocking_stdio()
    sys.stdout.write(json.dumps(jsonable(data), indent=2) + "\n")


def blocking_stdio() -> None:
    """Make stdout and stderr block again if something left them non-blocking (an event loop
    can): a write a pipe cannot take at once then waits for the reader instead of raising
    BlockingIOError, which lost the end of a long `--json` answer (10,000 imported loans:
    131,072 bytes of it, exit code 0)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            os.set_blocking(stream.fileno(), True)
        except (OSError, ValueError):  # not a file (a test's capture), or already closed
            pass


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`. A naive time is UTC (how the database stores times)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def iso_text(text: str) -> str:
    """A time stored as text (a mail header), normalised to `iso`; as it is if not a time."""
    try:
        return iso(datetime.fromisoformat(text))
    except ValueError:
        return text


# --- formats for people -------------------------------------------------------------------------


def usd(amount: Decimal | None) -> str:
    return DASH if amount is None else fmt_usd(amount)


def ratio(value: Decimal | None) -> str:
    return DASH if value is None else fmt_ratio(value)


def units(asset: str, amount: Decimal | None) -> str:
    return DASH if amount is None else fmt_units(asset, amount)


def money(currency: str, amount: Decimal | None) -> str:
    """An amount in a ledger currency: dollars as dollars, collateral in its units."""
    return usd(amount) if currency == "USD" else units(currency, amount)


def number(value: Decimal | None) -> str:
    """A figure without a unit (a rate, a count) in plain digits: never 1.4E+3."""
    return DASH if value is None else decimal_text(value)


def when(moment: datetime | None, *, seconds: bool = False) -> str:
    if moment is None:
        return DASH
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
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

# Room a lesser column keeps when it wraps; below that it is dropped instead.
WRAP_MIN = 12
# Each column takes its padding (1 a side) and a border; the table one border more.
COLUMN_FRAME = 3


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
          *, right: Iterable[str] = (), keep: Iterable[str] = (),
          drop: Sequence[str] = ()) -> Table:
    """A table that never cuts an id or an amount, whatever the terminal's width.

    The first column (the record's id), the right-aligned ones (amounts, digits lined up)
    and those named in `keep` are whole, on one line. Other columns wrap; when even that
    does not fit, the columns in `drop` are left out, first named first."""
    cells = [[cell_text(cell) for cell in row] for row in rows]
    aligned = set(right)
    whole = {columns[0], *aligned, *keep} if columns else set()
    shown = fitting(list(columns), cells, whole, list(drop), console.width)
    out = Table(title=title, title_justify="left", title_style="bold")
    for name in shown:
        index = columns.index(name)
        widest = max([len(name), *(c[index].cell_len for c in cells)])
        if name in whole:
            out.add_column(name, justify="right" if name in aligned else "left", no_wrap=True,
                           min_width=widest)
        else:
            out.add_column(name, overflow="fold", min_width=min(widest, WRAP_MIN))
    indexes = [columns.index(name) for name in shown]
    for row in cells:
        out.add_row(*(row[i] for i in indexes))
    return out


def fitting(columns: list[str], cells: list[list[Text]], whole: set[str], drop: list[str],
            width: int) -> list[str]:
    """The columns that fit `width`: whole ones at full width, wrapping ones at WRAP_MIN, the
    droppable ones left out in order until the rest fits."""
    def needed(names: list[str]) -> int:
        total = 1
        for name in names:
            index = columns.index(name)
            widest = max([len(name), *(c[index].cell_len for c in cells)])
            total += COLUMN_FRAME + (widest if name in whole else min(widest, WRAP_MIN))
        return total

    shown = list(columns)
    for name in drop:
        if needed(shown) <= width:
            break
        shown.remove(name)
    return shown


def fields(title: str | None, pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column 'name  value' table for one record (values wrap between words)."""
    out = Table(title=title, title_justify="left", title_style="bold", show_header=False)
    out.add_column(style="bold", no_wrap=True)
    out.add_column()
    for name, value in pairs:
        out.add_row(name, cell_text(value))
    return out


def cell_text(value: Any) -> Text:
    """Cells are plain text: brackets in data (a list in a decision's details) are not rich
    markup. Text given already styled is kept as it is; a Decimal is written in plain digits."""
    if isinstance(value, Text):
        return value
    return Text(decimal_text(value) if isinstance(value, Decimal) else str(value))


def show(*renderables: Any) -> None:
    # Not cropped: a table wider than the terminal (its whole columns alone are) is printed
    # whole for the terminal to wrap, rather than cut at the edge.
    for renderable in renderables:
        console.print(Text(renderable) if isinstance(renderable, str) else renderable,
                      crop=False)
