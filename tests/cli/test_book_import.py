"""`loanflow book import` through the real command, against a dev server, a worker and a real
database: loans come in ACTIVE, a second import starts nothing, a bad file imports nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from loanflow.book_import import FIELDS
from loanflow.cli.book_import import PROGRESS_FROM, progress_bar
from loanflow.db import Database
from loanflow.schema import ImportedLoanRow
from tests.cli.conftest import Desk
from tests.cli.support import Cli, application

ROWS = [
    # loan, asset, collateral, principal, accrued interest
    ("A", "BTC", "2", "80000.00", "1250.50"),
    ("B", "ETH", "40.5", "50000.00", ""),
]


def book_csv(desk: Desk, path: Path, rows: list[tuple[str, ...]] = ROWS) -> Path:
    lines = [",".join(FIELDS)]
    for name, asset, amount, principal, accrued in rows:
        lines.append(",".join([
            desk.loan_id(name), "B-7", '"Hopper, Grace"', "grace@example.com", "US", asset,
            amount, principal, accrued, "0.10", "2026-01-15T00:00:00Z", "2027-01-15T00:00:00Z",
        ]))
    path.write_text("\n".join(lines) + "\n")
    return path


async def records(db: Database) -> int:
    async with db.sessions() as s:
        return (await s.execute(select(func.count()).select_from(ImportedLoanRow))).scalar_one()


async def test_import_a_book_then_again(desk: Desk, tmp_path: Path) -> None:
    cli, a, b = desk.cli, desk.loan_id("A"), desk.loan_id("B")
    path = book_csv(desk, tmp_path / "book.csv")

    planned = await cli.json("book", "import", str(path), "--dry-run")
    assert (planned["new"], planned["stored"]) == ([a, b], [])
    assert await records(desk.db) == 0  # a dry run stores nothing

    out = await cli.ok("book", "import", str(path))
    assert f"started {a}" in out and f"started {b}" in out
    assert "2 loan(s): 2 started, 0 already present" in out
    status = await cli.until(a, "ACTIVE")
    assert (status["principal_usd"], status["interest_usd"], status["debt_usd"]) == (
        "80000.00", "1250.50", "81250.50")
    assert status["collateral_amount"] == "2.00000000" and status["kyc_status"] == "migrated"
    assert (await cli.until(b, "ACTIVE"))["collateral_amount"] == "40.500000000000000000"

    again = await cli.json("book", "import", str(path))
    assert (again["started"], again["already_present"]) == ([], [a, b])
    said = await cli.ok("book", "import", str(path))
    assert f"already present {a}: imported before, nothing done" in said
    assert f"already present {b}: imported before, nothing done" in said
    assert await records(desk.db) == 2
    book = await cli.json("book")
    assert {s["state"]: s["loans"] for s in book["states"]}["ACTIVE"] == 2


async def test_a_bad_file_is_one_line_and_imports_nothing(desk: Desk, tmp_path: Path) -> None:
    cli = desk.cli
    bad = book_csv(desk, tmp_path / "bad.csv", [*ROWS, ("C", "BTC", "1", "-5.00", "0")])
    assert await cli.error("book", "import", str(bad)) == "line 4: principal_usd: must be positive"
    assert await records(desk.db) == 0
    assert await cli.error("status", desk.loan_id("A")) == f"unknown loan {desk.loan_id('A')}"
    odd = tmp_path / "book.txt"
    odd.write_text("x")
    assert await cli.error("book", "import", str(odd)) == f"{odd}: must be a .csv or .json file"


def test_a_big_file_on_a_terminal_gets_a_progress_bar(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with progress_bar(10) as advance:  # a small file: no bar
        advance(10)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with progress_bar(PROGRESS_FROM) as advance:
        for done in range(1, PROGRESS_FROM + 1):
            advance(done)
    shown = capsys.readouterr().err
    assert "starting loans" in shown and f"{PROGRESS_FROM}/{PROGRESS_FROM}" in shown


async def test_open_refuses_an_imported_origin(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    path.write_text(json.dumps(application("L-ORIGIN", origin="import")))
    assert "loanflow book import FILE" in await cli.error("open", "--file", str(path))
