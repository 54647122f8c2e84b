"""Desk operations: the ledger check, a manual price observation, database migrations."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

import typer

from loanflow.cli.database import database
from loanflow.cli.errors import CliError, fail, run
from loanflow.cli.ids import workflow_id
from loanflow.cli.output import money, print_json, show, table, usd, when
from loanflow.cli.params import NUMBERS, AsJson
from loanflow.models import PriceUpdate, parse_request
from loanflow.settings import get_settings

PANEL = "Desk"
commands = typer.Typer()
ledger = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
db = typer.Typer(help="The database schema (Alembic migrations).", no_args_is_help=True)
commands.add_typer(ledger, name="ledger", rich_help_panel=PANEL)
commands.add_typer(db, name="db", rich_help_panel="Stack")

# How many loans `price` signals at once.
SIGNAL_CONCURRENCY = 20


# --- ledger check -------------------------------------------------------------------------------


@dataclass
class CurrencyTotal:
    """A trial balance in one currency: debit balances must equal credit balances."""

    currency: str
    debits: Decimal = Decimal(0)
    credits: Decimal = Decimal(0)
    accounts: int = 0

    @property
    def difference(self) -> Decimal:
        return self.debits - self.credits


@dataclass
class LedgerCheck:
    entries: int
    currencies: list[CurrencyTotal]
    problems: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return not self.problems and all(c.difference == 0 for c in self.currencies)


def trial_balance(balances: dict[tuple[str, str], Decimal]) -> list[CurrencyTotal]:
    totals: dict[str, CurrencyTotal] = {}
    for (_, currency), amount in balances.items():
        total = totals.setdefault(currency, CurrencyTotal(currency))
        total.accounts += 1
        if amount > 0:
            total.debits += amount
        else:
            total.credits -= amount
    return [totals[c] for c in sorted(totals)]


@ledger.command("check")
def ledger_check(as_json: AsJson = False) -> None:
    """Prove the books balance: every entry sums to zero in each currency, and so debit
    balances equal credit balances per currency. Exits 1 if they do not."""
    from sqlalchemy import func, select

    from loanflow.schema import LedgerEntry
    from loanflow.store.ledger import account_balances, check_book

    async def check() -> LedgerCheck:
        async with database() as store, store.sessions() as session:
            problems = await check_book(session)
            balances = await account_balances(session)
            entries = await session.scalar(select(func.count()).select_from(LedgerEntry))
        return LedgerCheck(int(entries or 0), trial_balance(balances), problems)

    result = run(check())
    if as_json:
        print_json({"balanced": result.balanced, "entries": result.entries,
                    "currencies": [{"currency": c.currency, "debits": c.debits,
                                    "credits": c.credits, "difference": c.difference,
                                    "accounts": c.accounts} for c in result.currencies],
                    "problems": result.problems})
    else:
        show(table(f"ledger: {result.entries} entries",
                   ["currency", "debit balances", "credit balances", "difference", "accounts"],
                   [[c.currency, money(c.currency, c.debits), money(c.currency, c.credits),
                     money(c.currency, c.difference), c.accounts] for c in result.currencies],
                   right=("debit balances", "credit balances", "difference", "accounts")))
    if not result.balanced:
        raise fail("the books do not balance: " + "; ".join(
            result.problems or [f"{c.currency} off by {money(c.currency, c.difference)}" for c in result.currencies
                                if c.difference]))
    if not as_json:
        show("the books balance: every entry sums to zero in every currency")


# --- price --------------------------------------------------------------------------------------


@commands.command(rich_help_panel=PANEL, context_settings=NUMBERS)
def price(
    asset: Annotated[str, typer.Argument(help="BTC or ETH.", show_default=False)],
    value: Annotated[str, typer.Argument(metavar="PRICE", help="USD per unit, e.g. 56000.",
                                         show_default=False)],
    observed_at: Annotated[str | None, typer.Option(
        help="When it was observed (ISO 8601 with zone, e.g. 2026-11-21T12:00:00Z); now if "
             "left out. A price older than the loans' staleness limit is never acted on.")] = None,
    source: Annotated[str, typer.Option(help="Where the price comes from.")] = "desk",
    as_json: AsJson = False,
) -> None:
    """Record a manual price observation and signal it (price_update) to every running loan
    secured by that asset. A price outside the asset's sane range or observed in the future
    is refused; one that jumps more than 30% from the last accepted price is stored
    unconfirmed and signalled to nobody until a second observation confirms it."""
    from loanflow.cli.visibility import check_asset
    from loanflow.store.prices import ObservationProblem, check_observation

    asset = check_asset(asset)
    at = observed_at or datetime.now(timezone.utc).isoformat()
    update = parse_request(PriceUpdate, {"asset": asset, "price": value, "observed_at": at,
                                         "source": source})
    try:
        check_observation(update.asset, update.price, update.observed_at)
    except ObservationProblem as err:
        raise fail(str(err)) from None
    result = run(record_price(update))
    if as_json:
        print_json(result)
        return
    stored = (f"{asset} {usd(update.price)} at {when(update.observed_at, seconds=True)} stored "
              f"as observation {result['observation_id']}")
    if result["unconfirmed"]:
        show(f"{stored} UNCONFIRMED: {result['unconfirmed']}; signalled no loan (a second "
             f"observation near it confirms it)")
        return
    loans = ", ".join(result["signalled"]) or "none"
    show(f"{stored}; signalled {len(result['signalled'])} loan(s): {loans}")


async def record_price(update: PriceUpdate) -> dict[str, Any]:
    from loanflow.cli.client import connect_desk
    from loanflow.cli.visibility import Filters, find_loans, list_query
    from loanflow.money import fmt_usd
    from loanflow.prices import jumps
    from loanflow.store.prices import record_observation

    client = await connect_desk()  # first: with Temporal down nothing is stored
    limit = jumps.DEFAULT_MAX_JUMP
    async with database() as store:
        recorded = await record_observation(store, update.asset, update.price,
                                            update.observed_at, {update.source: update.price},
                                            max_jump=limit)
    stored = recorded.observation
    answer: dict[str, Any] = {
        "observation_id": stored.observation_id, "asset": update.asset, "price": update.price,
        "observed_at": update.observed_at, "source": update.source, "signalled": [],
        "unconfirmed": None}
    if recorded.unconfirmed:
        assert recorded.last_accepted is not None and limit is not None
        answer["unconfirmed"] = (
            f"{jumps.move(recorded.last_accepted, update.price):.1%} from the last accepted "
            f"{fmt_usd(recorded.last_accepted)} (limit {limit:.0%})")
        return answer
    # Every running loan of the asset. (The market monitor signals only the loans whose
    # trigger prices a move crossed; a manual price goes to all of them.)
    query = list_query(Filters(asset=update.asset, running_only=True))
    loans = await find_loans(client, query, limit=None)
    signal = stored.payload()
    gate = asyncio.Semaphore(SIGNAL_CONCURRENCY)

    async def tell(loan_id: str) -> str | None:
        from temporalio.service import RPCError, RPCStatusCode

        async with gate:
            try:
                await client.get_workflow_handle(workflow_id(loan_id)).signal("price_update",
                                                                              signal)
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                return None  # it ended since the query: nothing to tell
            return loan_id

    told = await asyncio.gather(*(tell(row.loan_id) for row in loans))
    answer["signalled"] = sorted(t for t in told if t)
    return answer


# --- database migrations ------------------------------------------------------------------------


@db.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    as_json: AsJson = False,
) -> None:
    """Migrate the configured database (DATABASE_URL) to the latest schema. A fresh database
    is created; one made before migrations existed is adopted; one at the latest is left."""
    from loanflow.migrations import MigrationError, upgrade

    try:
        result = upgrade(get_settings().db_url, revision)
    except MigrationError as err:
        raise CliError(str(err)) from None
    if as_json:
        print_json(result)
        return
    if result.before == result.after:
        show(f"{result.database} is at revision {result.after}: nothing to do")
        return
    start = "the baseline (adopted)" if result.adopted else (result.before or "empty")
    show(f"{result.database}: migrated from {start} to {result.after}")


@db.command("current")
def db_current(as_json: AsJson = False) -> None:
    """The revision the configured database is at, and the latest one."""
    from loanflow.migrations import current, head, shown, sync_url

    url = get_settings().db_url
    result = {"database": shown(sync_url(url)), "current": current(url), "head": head()}
    if as_json:
        print_json(result)
        return
    state = "up to date" if result["current"] == result["head"] else "run `loanflow db upgrade`"
    show(f"{result['database']}: revision {result['current'] or 'none'} (latest "
         f"{result['head']}): {state}")
