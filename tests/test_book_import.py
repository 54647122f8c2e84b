"""Reading a book to import: CSV and JSON, and every refusal with its line and field."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from loanflow.book_import import FIELDS, BookError, read_book
from loanflow.imported import ImportedLoan, mismatch

HEADER = ",".join(FIELDS)
ROW = {
    "loan_id": "MIG-1", "borrower_id": "B-1", "borrower_name": "Ada Lovelace",
    "borrower_email": "ada@example.com", "borrower_country": "GB", "collateral_asset": "BTC",
    "collateral_amount": "1.5", "principal_usd": "60000.00", "accrued_interest_usd": "123.45",
    "annual_rate": "0.12", "originated_at": "2024-01-01T00:00:00Z",
    "maturity_at": "2025-01-01T00:00:00Z",
}


def row(**changes: str) -> dict[str, str]:
    return {**ROW, **changes}


def csv_line(values: dict[str, str]) -> str:
    return ",".join(f'"{values[name]}"' if "," in values[name] else values[name]
                    for name in FIELDS)


def write_csv(tmp_path: Path, rows: list[dict[str, str]], header: str = HEADER) -> Path:
    path = tmp_path / "book.csv"
    path.write_text("\n".join([header, *map(csv_line, rows)]) + "\n")
    return path


def write_json(tmp_path: Path, rows: list[Any]) -> Path:
    path = tmp_path / "book.json"
    path.write_text(json.dumps(rows, indent=2))
    return path


def refusal(path: Path) -> BookError:
    with pytest.raises(BookError) as caught:
        read_book(path)
    return caught.value


def test_a_csv_book_reads_exact_figures(tmp_path: Path) -> None:
    second = row(loan_id="MIG-2", borrower_name="Hopper, Grace", borrower_country="us",
                 collateral_asset="eth", collateral_amount="20.123456789012345678",
                 principal_usd="20000", accrued_interest_usd="",
                 originated_at="2024-02-01T01:00:00+01:00")
    loans = read_book(write_csv(tmp_path, [ROW, second]))
    assert [loan.loan_id for loan in loans] == ["MIG-1", "MIG-2"]
    assert [loan.line for loan in loans] == [2, 3]
    first, eth = loans
    assert first.principal_usd == Decimal("60000.00")
    assert first.accrued_interest_usd == Decimal("123.45")
    assert first.opening_debt == Decimal("60123.45")
    assert first.term_days == 366  # 2024 is a leap year
    assert eth.borrower_name == "Hopper, Grace" and eth.borrower_country == "US"
    assert eth.collateral_asset == "ETH"
    assert eth.collateral_amount == Decimal("20.123456789012345678")  # every wei kept
    assert eth.accrued_interest_usd == 0  # an empty cell: none accrued
    assert eth.originated_at == datetime(2024, 2, 1, tzinfo=timezone.utc)


def test_a_json_book_reads_the_same_loans_with_their_lines(tmp_path: Path) -> None:
    path = write_json(tmp_path, [ROW, row(loan_id="MIG-2")])
    loans = read_book(path)
    # json.dumps(indent=2): "[" on line 1, each object 14 lines long
    assert [loan.line for loan in loans] == [2, 16]
    assert loans[0] == read_book(write_csv(tmp_path, [ROW]))[0]
    # Numbers (not the contract's strings) are still exact: never through float.
    path.write_text('[{"loan_id": "N1", "borrower_id": "B", "borrower_name": "N",'
                    ' "borrower_email": "n@example.com", "borrower_country": "GB",'
                    ' "collateral_asset": "BTC", "collateral_amount": 0.1,'
                    ' "principal_usd": 1000.10, "annual_rate": 0.1,'
                    ' "originated_at": "2024-01-01T00:00:00Z",'
                    ' "maturity_at": "2024-06-01T00:00:00Z"}]')
    (loan,) = read_book(path)
    assert loan.collateral_amount == Decimal("0.1") and loan.principal_usd == Decimal("1000.10")


BAD_ROWS = [
    # (field changed, value, field named, reason contains)
    ("principal_usd", "12x", "principal_usd", "not a number: '12x'"),
    ("principal_usd", "-5", "principal_usd", "must be positive"),
    ("principal_usd", "10.001", "principal_usd", "whole cents"),
    ("collateral_amount", "0", "collateral_amount", "positive"),
    ("collateral_amount", "1.123456789", "collateral_amount", "more decimal places than BTC"),
    ("accrued_interest_usd", "-1", "accrued_interest_usd", "zero or a positive"),
    ("collateral_asset", "DOGE", "collateral_asset", "unknown asset 'DOGE'"),
    ("annual_rate", "12", "annual_rate", "fraction in [0, 1)"),
    ("originated_at", "yesterday", "originated_at", "not an ISO 8601 date-time"),
    ("originated_at", "2024-01-01T00:00:00", "originated_at", "time zone"),
    ("maturity_at", "2023-12-31T00:00:00Z", "maturity_at", "after originated_at"),
    ("maturity_at", "2040-01-01T00:00:00Z", "maturity_at", "at most 3650 days"),
    ("borrower_email", "ada.example.com", "borrower_email", "not an e-mail address"),
    ("borrower_country", "Britain", "borrower_country", "ISO 3166-1 alpha-2"),
    ("loan_id", "MIG 1", "loan_id", "spaces"),
    ("loan_id", "L" * 65, "loan_id", "at most 64"),
    ("borrower_id", "", "borrower_id", "missing"),
]


@pytest.mark.parametrize(("name", "value", "field", "because"), BAD_ROWS,
                         ids=[f"{b[0]}={b[1][:12]}" for b in BAD_ROWS])
@pytest.mark.parametrize("form", ["csv", "json"])
def test_a_bad_row_is_refused_with_its_line_and_field(
    tmp_path: Path, form: str, name: str, value: str, field: str, because: str
) -> None:
    rows = [ROW, row(loan_id="MIG-2"), row(**{"loan_id": "MIG-3", name: value})]
    if form == "csv":
        err, line = refusal(write_csv(tmp_path, rows)), 4
    else:
        if value == "":
            rows[2].pop(name)  # JSON leaves a field out instead
        err, line = refusal(write_json(tmp_path, rows)), 30
    assert (err.line, err.field) == (line, field), str(err)
    assert because in err.reason
    assert str(err) == f"line {line}: {field}: {err.reason}"


def test_the_interface_example_message(tmp_path: Path) -> None:
    rows = [row(loan_id=f"MIG-{n}") for n in range(5)] + [row(loan_id="X", principal_usd="0")]
    assert str(refusal(write_csv(tmp_path, rows))) == "line 7: principal_usd: must be positive"


def test_a_duplicate_loan_id_names_both_lines(tmp_path: Path) -> None:
    err = refusal(write_csv(tmp_path, [ROW, row(loan_id="MIG-2"), ROW]))
    assert str(err) == "line 4: loan_id: MIG-1 appears twice (first on line 2)"


def test_csv_shape_problems(tmp_path: Path) -> None:
    extra = refusal(write_csv(tmp_path, [ROW], header=HEADER + ",notes"))
    assert (extra.line, extra.field) == (1, "notes") and "unknown column" in extra.reason
    missing = refusal(write_csv(tmp_path, [ROW], header=HEADER.replace(",annual_rate", "")))
    assert str(missing) == "line 1: annual_rate: missing column"
    twice = refusal(write_csv(tmp_path, [ROW], header=HEADER + ",loan_id"))
    assert str(twice) == "line 1: loan_id: column named twice"
    path = write_csv(tmp_path, [ROW])
    path.write_text(path.read_text() + csv_line(row(loan_id="MIG-2")) + ",surplus\n")
    cells = refusal(path)
    assert (cells.line, cells.field) == (3, "row") and "13 cells" in cells.reason
    path.write_text(HEADER + "\n" + csv_line(row(loan_id="MIG-0")) + "\n\n"
                    + csv_line(row(loan_id="MIG-1", principal_usd="x")) + "\n")
    assert refusal(path).line == 4  # blank lines count
    path.write_text(HEADER + "\n")
    assert "holds no loans" in str(refusal(path))


def test_json_shape_problems(tmp_path: Path) -> None:
    extra = refusal(write_json(tmp_path, [ROW, row(loan_id="MIG-2", notes="vip")]))
    assert (extra.line, extra.field) == (16, "notes") and "unknown field" in extra.reason
    assert refusal(write_json(tmp_path, [ROW, ["not", "an", "object"]])).field == "row"
    path = tmp_path / "book.json"
    path.write_text('[\n  {"loan_id": "A"},\n  {"loan_id": \n')
    err = refusal(path)
    assert (err.line, err.field) == (2, "borrower_id")  # the first row's first problem
    path.write_text(json.dumps([ROW])[:-1] + ",\n{oops}]")
    assert refusal(path).field == "file" and "not JSON" in refusal(path).reason
    path.write_text(json.dumps(ROW))
    assert "list of loan objects" in str(refusal(path))
    path.write_text("[]")
    assert "holds no loans" in str(refusal(path))


def test_only_csv_and_json_files(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    path.write_text("x")
    assert "must be a .csv or .json file" in str(refusal(path))
    assert "cannot read it" in str(refusal(tmp_path / "absent.csv"))


def test_the_application_names_the_loan_and_the_record_checks_it() -> None:
    loan = ImportedLoan.model_validate(ROW)
    app = loan.application()
    assert app.origin == "import" and app.loan_id == "MIG-1" and app.term_days == 366
    assert app.borrower.email == "ada@example.com"
    assert mismatch(loan, app) is None
    other = app.model_copy(update={"borrower": app.borrower.model_copy(update={"email": "x@y.z"})})
    assert mismatch(loan, other) == "borrower: differs from the migration record"
    more = app.model_copy(update={"principal_usd": Decimal("90000.00")})
    assert mismatch(loan, more) == (
        "principal_usd: 90000.00 differs from the migration record's 60000.00")
