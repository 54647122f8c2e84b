"""Importing a book of loans migrated from another system (`loanflow book import FILE`).

    loans = read_book(Path("book.csv"))          # the whole file validated, or BookError
    report = await import_book(client, db, loans, task_queue="loans")

A file is all or nothing: `read_book` validates every row before anything happens and refuses
the file at its first bad row (`line 7: principal_usd: must be positive`); `import_book`
checks the rows against the database and stores the new migration records in one
transaction, then starts one `LoanWorkflow` per loan (`origin: "import"`), a bounded number at
a time. Each loan reads its own record and starts ACTIVE (`workflows.migration`).

Idempotent by loan id: a loan whose record is stored and whose workflow exists is reported
`already_present` and nothing of it happens again. A loan id imported before with other
figures, or already opened on this desk, refuses the file. If the process stops halfway
through the starts, running the same import again starts the rest.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from loanflow.imported import ImportedLoan
from loanflow.policy import PolicyOverrides

if TYPE_CHECKING:
    from temporalio.client import Client

    from loanflow.db import Database

__all__ = ["BookError", "ImportPlan", "ImportReport", "ImportedLoan", "import_book",
           "plan_book", "read_book"]

FIELDS: tuple[str, ...] = tuple(ImportedLoan.model_fields)
REQUIRED: tuple[str, ...] = tuple(
    name for name, info in ImportedLoan.model_fields.items() if info.is_required()
)
# Workflow starts in flight at once: enough to keep the server busy, few enough not to swamp
# it (or a small dev server) with a 10,000-loan book.
START_CONCURRENCY = 50


class BookError(ValueError):
    """A file refused: where (line, 0 for the file as a whole), which field, and why."""

    def __init__(self, line: int, field: str, reason: str) -> None:
        self.line, self.field, self.reason = line, field, reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.field}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did, per loan id, in the file's order."""

    started: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)


@dataclass
class ImportPlan:
    """What an import would do (`--dry-run`): records it would store, and loans whose
    records are stored already (their workflows are started unless they exist)."""

    new: list[str] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)


# --- reading and validating a file ----------------------------------------------------------------


def read_book(path: Path) -> list[ImportedLoan]:
    """Every loan of a `.csv` (a header row of field names, one loan a row) or `.json` (a list
    of objects) file, validated; BookError at the first problem, so nothing of a bad file is
    imported."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise BookError(0, str(path), "must be a .csv or .json file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is fine
    except OSError as err:
        raise BookError(0, str(path), f"cannot read it: {err.strerror}") from None
    except UnicodeDecodeError:
        raise BookError(0, str(path), "is not UTF-8 text") from None
    rows = csv_rows(text) if suffix == ".csv" else json_rows(text)
    loans = validate_rows(rows)
    if not loans:
        raise BookError(0, str(path), "holds no loans")
    return loans


def validate_rows(rows: Iterable[tuple[int, dict[str, Any]]]) -> list[ImportedLoan]:
    """Each (line, raw row) as a loan; a loan id may appear once."""
    loans = [parse_row(line, raw) for line, raw in rows]
    check_unique(loans)
    return loans


def parse_row(line: int, raw: dict[str, Any]) -> ImportedLoan:
    try:
        return ImportedLoan.model_validate(raw).at_line(line)
    except ValidationError as err:
        first = err.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "row"
        raise BookError(line, name, reason(first)) from None


def reason(error: Any) -> str:
    """Pydantic's complaint about one field, as an operator reads it."""
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return f"unknown field (a loan has: {', '.join(FIELDS)})"
    if kind.startswith("decimal") or kind == "finite_number":
        return f"not a number: {value!r}"
    if kind.startswith("datetime"):
        return f"not an ISO 8601 date-time: {value!r}"
    if kind == "string_type":
        return "must be text"
    return str(error["msg"]).removeprefix("Value error, ")


def csv_rows(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) of a CSV file whose first row names the fields. An empty cell is a missing
    value (accrued_interest_usd may be left empty: zero)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [name.strip() for name in next(reader, [])]
        check_header(header, reader.line_num or 1)
        last = reader.line_num
        for cells in reader:
            line, last = last + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # a blank line
            if len(cells) > len(header):
                raise BookError(line, "row", f"{len(cells)} cells, but the header names "
                                             f"{len(header)} columns")
            yield line, {name: cell for name, cell in zip(header, cells) if cell.strip()}
    except csv.Error as err:
        raise BookError(reader.line_num, "file", f"not valid CSV: {err}") from None


def check_header(header: Sequence[str], line: int) -> None:
    if not any(header):
        raise BookError(line, "header", f"the first row must name the columns: {', '.join(FIELDS)}")
    for position, name in enumerate(header):
        if name not in FIELDS:
            shown = name or f"column {position + 1}"
            raise BookError(line, shown, f"unknown column (a loan has: {', '.join(FIELDS)})")
        if name in header[:position]:
            raise BookError(line, name, "column named twice")
    for name in REQUIRED:
        if name not in header:
            raise BookError(line, name, "missing column")


def json_rows(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, object) of a JSON list of objects; the line is where the object starts. Numbers
    are read as exact decimals (strings are the contract's form; numbers never go through
    float)."""
    decoder = json.JSONDecoder(parse_float=Decimal)
    lines = LineCounter(text)
    pos = skip_space(text, 0)
    if not text.startswith("[", pos):
        raise BookError(lines.at(pos), "file", "must be a JSON list of loan objects")
    pos, first = skip_space(text, pos + 1), True
    while not (first and text.startswith("]", pos)):
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise BookError(err.lineno, "file", f"not JSON: {err.msg}") from None
        if not isinstance(value, dict):
            raise BookError(lines.at(pos), "row", "must be a JSON object")
        yield lines.at(pos), value
        pos, first = skip_space(text, end), False
        if text.startswith(",", pos):
            pos = skip_space(text, pos + 1)
        elif text.startswith("]", pos):
            break
        else:
            raise BookError(lines.at(pos), "file", "not JSON: expected ',' or ']'")
    if skip_space(text, pos + 1) < len(text):
        raise BookError(lines.at(skip_space(text, pos + 1)), "file",
                        "not JSON: more after the list")


def skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


class LineCounter:
    """Line numbers of increasing offsets in a text, counted once (a big file stays linear)."""

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos: int) -> int:
        if pos < self.pos:
            return self.text.count("\n", 0, pos) + 1
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


# --- the database side ------------------------------------------------------------------------


def line_of(loan: ImportedLoan, position: int) -> int:
    """Where a loan was read; its 1-based place in the list for loans not read from a file."""
    return loan.line if loan.line is not None else position + 1


def check_unique(loans: Sequence[ImportedLoan]) -> None:
    seen: dict[str, int] = {}
    for position, loan in enumerate(loans):
        line = line_of(loan, position)
        if loan.loan_id in seen:
            raise BookError(line, "loan_id", f"{loan.loan_id} appears twice (first on line "
                                             f"{seen[loan.loan_id]})")
        seen[loan.loan_id] = line


def changed_field(before: ImportedLoan, now: ImportedLoan) -> str | None:
    old, new = before.model_dump(), now.model_dump()
    return next((name for name in FIELDS if old[name] != new[name]), None)


async def new_records(session: Any, loans: Sequence[ImportedLoan]) -> list[ImportedLoan]:
    """The loans whose migration records are not stored yet. BookError for a loan imported
    before with other figures, or a loan id the desk already has (opened, not imported)."""
    from loanflow.store.imported import imported_loans, known_loans

    check_unique(loans)
    ids = [loan.loan_id for loan in loans]
    stored = await imported_loans(session, ids)
    opened = await known_loans(session, [i for i in ids if i not in stored])
    for position, loan in enumerate(loans):
        line, before = line_of(loan, position), stored.get(loan.loan_id)
        if loan.loan_id in opened:
            raise BookError(line, "loan_id", f"{loan.loan_id} is already a loan on this desk "
                                             "(opened here, not imported)")
        name = changed_field(before, loan) if before is not None else None
        if name is not None:
            raise BookError(line, name, f"loan {loan.loan_id} was imported before with "
                                        f"{name} {getattr(before, name)}; an imported loan's "
                                        "opening figures cannot change")
    return [loan for loan in loans if loan.loan_id not in stored]


async def plan_book(db: Database, loans: Sequence[ImportedLoan]) -> ImportPlan:
    """What `store_book` would store, without storing anything."""
    async with db.sessions() as session:
        return plan(loans, await new_records(session, loans))


async def store_book(db: Database, loans: Sequence[ImportedLoan]) -> ImportPlan:
    """Check the loans against the database and store the new migration records, all in one
    transaction: all of them or (on any refusal) none."""
    from sqlalchemy.exc import IntegrityError

    from loanflow.store.imported import add_imported_loans

    try:
        async with db.transaction() as session:
            fresh = await new_records(session, loans)
            await add_imported_loans(session, fresh)
    except IntegrityError:
        raise BookError(0, "loan_id", "another import stored some of these loans at the same "
                                      "moment; nothing of this file was stored: run it again") \
            from None
    return plan(loans, fresh)


def plan(loans: Sequence[ImportedLoan], fresh: Sequence[ImportedLoan]) -> ImportPlan:
    ids = {loan.loan_id for loan in fresh}
    return ImportPlan(new=[loan.loan_id for loan in loans if loan.loan_id in ids],
                      stored=[loan.loan_id for loan in loans if loan.loan_id not in ids])


# --- starting the loans -----------------------------------------------------------------------


def check_policy(policy: PolicyOverrides | None) -> None:
    from loanflow.desk_policy import refusal

    problem = refusal(policy) if policy is not None else None
    if problem:
        raise BookError(0, "policy", problem)


async def import_book(
    client: Client,
    db: Database,
    loans: list[ImportedLoan],
    *,
    task_queue: str,
    policy: PolicyOverrides | None = None,
    memo: dict[str, Any] | None = None,
    on_progress: Callable[[int], None] | None = None,
    concurrency: int = START_CONCURRENCY,
) -> ImportReport:
    """Store the loans' migration records and start their workflows, `concurrency` at a time.
    `policy` overrides the risk policy of every loan; `memo` goes with every start (the
    time-skipping test server needs `{"search_attributes": False}`); `on_progress` is called
    with the number of loans handled so far after each one."""
    check_policy(policy)
    await store_book(db, loans)
    started = await start_loans(client, loans, task_queue=task_queue, policy=policy, memo=memo,
                                on_progress=on_progress, concurrency=concurrency)
    report = ImportReport()
    for loan, fresh in zip(loans, started):
        (report.started if fresh else report.already_present).append(loan.loan_id)
    return report


async def start_loans(
    client: Client,
    loans: Sequence[ImportedLoan],
    *,
    task_queue: str,
    policy: PolicyOverrides | None,
    memo: dict[str, Any] | None,
    on_progress: Callable[[int], None] | None,
    concurrency: int,
) -> list[bool]:
    """Start each loan's workflow; per loan, True if started now, False if it existed. The
    first failure (the server gone) stops the rest; what was started stays started."""
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from loanflow.models import WORKFLOW_TYPE, workflow_id
    from loanflow.loan_metadata import start_metadata

    outcome = [False] * len(loans)
    queue = iter(enumerate(loans))
    handled = 0

    async def starter() -> None:
        nonlocal handled
        for index, loan in queue:  # shared: each loan is taken by one starter
            try:
                # A loan id is never reused: a second start of it is refused by the server.
                app = loan.application(policy)
                await client.start_workflow(
                    WORKFLOW_TYPE, app, id=workflow_id(loan.loan_id),
                    task_queue=task_queue, memo=memo,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    **start_metadata(app),  # the Web UI's summary of the loan
                )
                outcome[index] = True
            except WorkflowAlreadyStartedError:
                outcome[index] = False
            handled += 1
            if on_progress is not None:
                on_progress(handled)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(concurrency, len(loans)))):
                group.create_task(starter())
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return outcome
