"""Record the event histories the replay test checks every change against.

    .venv/bin/python -m tests.replay.record_histories [SCENARIO ...]   # default: all

Runs a few representative loans on the time-skipping test server with the real activities
(SQLite in a temp dir, a real SMTP sink) and saves each finished loan's history as JSON in
tests/replay/histories/. Re-record only for a deliberate, patched change of workflow code:
the point of these files is that running loans were started by the *old* code.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.registry import build_activities
from loanflow.binaries import test_server
from loanflow.db import Database
from loanflow.models import LoanApplication, LoanState
from loanflow.ports import free_port
from loanflow.prices.messages import ManualTick, MonitorInput, TickSummary
from loanflow.prices.sources import Quote
from loanflow.worker import Workers, build_worker
from tests.support import Inbox, quiet_settings
from tests.workflows.book import BAD_POLICY, MALLORY, application
from tests.workflows.conftest import Desk
from workflows.market import MarketMonitor

HISTORIES = Path(__file__).with_name("histories")



async def until(desk: Desk, handle: WorkflowHandle[Any, Any], state: LoanState) -> None:
    for _ in range(300):
        if (await desk.status(handle)).state == state:
            return
        await desk.env.sleep(timedelta(seconds=1))
    raise AssertionError(f"{handle.id} never reached {state}")


async def funded(desk: Desk, loan_id: str, **overrides: Any) -> WorkflowHandle[Any, Any]:
    handle = await desk.open(application(loan_id, **overrides))
    await desk.price(handle, "BTC", "100000")
    await until(desk, handle, LoanState.AWAITING_COLLATERAL)
    amount = str(overrides.get("collateral_amount", "1"))
    await handle.execute_update("confirm_deposit", {"amount": amount, "tx_id": f"{loan_id}-tx"})
    await until(desk, handle, LoanState.ACTIVE)
    return handle


async def repaid(desk: Desk) -> WorkflowHandle[Any, Any]:
    handle = await funded(desk, "HIST-REPAID")
    await desk.env.sleep(timedelta(days=10))
    await handle.execute_update("repay", {"amount_usd": "5000.00", "reference": "w1"})
    return await repay_in_full(desk, handle, "w2")


async def called_and_liquidated(desk: Desk) -> WorkflowHandle[Any, Any]:
    handle = await funded(desk, "HIST-CALL")
    await desk.price(handle, "BTC", "45500")  # warning
    await margin_call(desk, handle, "42000")
    await handle.execute_update("extend_cure", {"hours": 2, "reason": "wire", "operator": "ops"})
    for _ in range(60 * 4):
        await desk.env.sleep(timedelta(minutes=15))
        await desk.price(handle, "BTC", "42000")
        if (await desk.status(handle)).state == LoanState.ACTIVE:
            break
    await desk.price(handle, "BTC", "20000")  # a crash through the debt: default
    return handle


async def sold_in_limit_orders(desk: Desk) -> WorkflowHandle[Any, Any]:
    """A hard-floor sale in two limit orders (patch "sale-sizing-limit"), then repaid."""
    handle = await funded(desk, "HIST-LIMIT")
    await desk.price(handle, "BTC", "33000")  # 90.9%: past the hard floor
    await until_sold(desk, handle)
    return await repay_in_full(desk, handle, "w1")


async def until_sold(desk: Desk, handle: WorkflowHandle[Any, Any]) -> None:
    """Until a partial sale has left the loan ACTIVE with less than its 1 BTC."""
    for _ in range(60):
        await desk.env.sleep(timedelta(seconds=1))
        status = await desk.status(handle)
        if status.state == LoanState.ACTIVE and status.collateral_amount < 1:
            break
    await desk.settle(handle)


async def continued(desk: Desk) -> WorkflowHandle[Any, Any]:
    handle = await funded(desk, "HIST-CAN", history_limit=200)
    for tick in range(200):
        await desk.price(handle, "BTC", str(100000 + tick % 3))
        if tick % 20 == 19:
            await desk.env.sleep(timedelta(seconds=1))
    return handle


async def margin_call(desk: Desk, handle: WorkflowHandle[Any, Any], price: str) -> None:
    """A BTC price signalled that puts the loan in a margin call, and the call."""
    await desk.price(handle, "BTC", price)
    await until(desk, handle, LoanState.MARGIN_CALL)


async def topped_up_to_active(desk: Desk, handle: WorkflowHandle[Any, Any], tx_id: str) -> None:
    """Half a BTC topped up (update `top_up`), curing the call."""
    await handle.execute_update("top_up", {"amount": "0.5", "tx_id": tx_id})
    await until(desk, handle, LoanState.ACTIVE)


async def repay_in_full(desk: Desk, handle: WorkflowHandle[Any, Any],
                        reference: str) -> WorkflowHandle[Any, Any]:
    """The loan's whole debt repaid (it closes); its handle."""
    debt = (await desk.status(handle)).debt_usd
    await handle.execute_update("repay", {"amount_usd": str(debt), "reference": reference})
    return handle


async def open_imported(desk: Desk, loan_id: str, principal: str,
                        accrued: str) -> WorkflowHandle[Any, Any]:
    """A migrated loan of 1 BTC opened 30 days ago at 12%, started and ACTIVE."""
    handle = await desk.open(await imported_application(desk, loan_id, principal, accrued))
    await until(desk, handle, LoanState.ACTIVE)
    return handle


async def imported_application(desk: Desk, loan_id: str, principal: str,
                               accrued: str) -> LoanApplication:
    """The migration record of a loan of 1 BTC opened 30 days ago at 12%, stored; the
    application its workflow starts with."""
    from loanflow.book_import import store_book
    from loanflow.imported import ImportedLoan

    now = await desk.now()
    loan = ImportedLoan(
        loan_id=loan_id, borrower_id="B-100", borrower_name="Ada Lovelace",
        borrower_email="ada@example.com", borrower_country="GB", collateral_asset="BTC",
        collateral_amount=Decimal("1"), principal_usd=Decimal(principal),
        accrued_interest_usd=Decimal(accrued), annual_rate=Decimal("0.12"),
        originated_at=now - timedelta(days=30), maturity_at=now + timedelta(days=335),
    )
    await store_book(desk.db, [loan])
    return loan.application()


async def imported(desk: Desk) -> WorkflowHandle[Any, Any]:
    """A migrated loan at 75% LTV: margin call on its first price, cured, repaid."""
    handle = await open_imported(desk, "HIST-IMPORT", "74000.00", "1000.00")
    await margin_call(desk, handle, "100000")
    cure = (await desk.status(handle)).cure_repay_usd
    await handle.execute_update("repay", {"amount_usd": str(cure), "reference": "cure"})
    return await repay_in_full(desk, handle, "rest")


async def kyc_review(desk: Desk) -> WorkflowHandle[Any, Any]:
    """A loan above the review threshold: a person approves it (update `kyc_decision`)."""
    handle = await desk.open(application("HIST-KYC", principal_usd=Decimal("1500000.00"),
                                         collateral_amount=Decimal("40")))
    await until(desk, handle, LoanState.KYC_REVIEW)
    for _ in range(100):
        if (await desk.status(handle)).kyc_status == "manual_review":
            break
        await desk.env.sleep(timedelta(seconds=1))
    await handle.execute_update("kyc_decision",
                                {"approved": True, "reviewer": "ops", "reason": "documents seen"})
    await desk.price(handle, "BTC", "100000")
    await until(desk, handle, LoanState.AWAITING_COLLATERAL)
    await handle.execute_update("confirm_deposit", {"amount": "40", "tx_id": "HIST-KYC-tx"})
    await until(desk, handle, LoanState.ACTIVE)
    return await repay_in_full(desk, handle, "k1")


async def topped_up(desk: Desk) -> WorkflowHandle[Any, Any]:
    """A margin call cured by a top-up (update `top_up`), then repaid in full."""
    handle = await funded(desk, "HIST-TOPUP")
    await margin_call(desk, handle, "42000")
    await topped_up_to_active(desk, handle, "HIST-TOPUP-more")
    return await repay_in_full(desk, handle, "t1")


async def cancelled(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Half the collateral arrives, the funding deadline passes: cancelled, collateral back."""
    handle = await desk.open(application("HIST-CANCEL"))
    await desk.price(handle, "BTC", "100000")
    await until(desk, handle, LoanState.AWAITING_COLLATERAL)
    await handle.execute_update("confirm_deposit", {"amount": "0.5", "tx_id": "HIST-CANCEL-tx"})
    await desk.env.sleep(timedelta(hours=73))
    await until(desk, handle, LoanState.CANCELLED)
    return handle


async def matured(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Unpaid past maturity and the grace period: sold in full on the next fresh price."""
    handle = await funded(desk, "HIST-MATURITY", term_days=2)
    await desk.env.sleep(timedelta(days=2, hours=73))
    await desk.price(handle, "BTC", "100000")
    await until(desk, handle, LoanState.CLOSED)
    return handle


async def until_continued(desk: Desk, handle: WorkflowHandle[Any, Any]) -> None:
    """Price the loan (a small history limit) until its run continues as new."""
    first = (await handle.describe()).run_id
    for tick in range(400):
        await desk.price(handle, "BTC", str(100000 + tick % 3))
        if tick % 20 == 19:
            await desk.env.sleep(timedelta(seconds=1))
            if (await handle.describe()).run_id != first:
                return


async def resumed(desk: Desk) -> WorkflowHandle[Any, Any]:
    """The run after a continue-as-new (its input carries the state): it goes on to a margin
    call and a repayment in full."""
    handle = await funded(desk, "HIST-RESUMED", history_limit=200)
    await until_continued(desk, handle)
    latest = desk.client.get_workflow_handle(handle.id)
    await margin_call(desk, latest, "42000")
    debt = (await desk.status(latest)).debt_usd
    await latest.execute_update("repay", {"amount_usd": str(debt), "reference": "r1"})
    return latest


async def market_monitor(desk: Desk) -> WorkflowHandle[Any, Any]:
    """The market monitor: manual ticks, one of which crosses a loan's margin-call trigger and
    signals it, then `stop`."""
    loan = await funded(desk, "HIST-MARKET")
    monitor = await desk.client.start_workflow(
        MarketMonitor.run, MonitorInput(), id="market-monitor-history", task_queue=desk.task_queue
    )
    desk.handles.append(monitor)
    for prices in (("100000", "100010"), ("99000", "99005"), ("42000", "42010")):
        quotes = [Quote(venue=v, asset="BTC", price=Decimal(p))
                  for v, p in zip(("bitstamp", "coinbase"), prices)]
        await monitor.execute_update("tick", ManualTick(quotes=quotes), result_type=TickSummary)
    await until(desk, loan, LoanState.MARGIN_CALL)
    await monitor.signal("stop")
    await monitor.result()
    return monitor


async def hostile_rules(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with the issue-10 patches in: malformed signals dropped, a future-dated price
    dropped, a jump held then confirmed, a breach confirmed by a batch, a repayment in full."""
    handle = await funded(desk, "HIST-HOSTILE")
    await handle.signal("price_update", args=[1, 2])
    await handle.signal("price_update", {"asset": "BTC", "price": "1e309",
                                         "observed_at": "2024-01-01T00:00:00Z"})
    await handle.signal("price_update", {"asset": "BTC", "price": "60000",
                                         "observed_at": "2030-01-01T00:00:00Z"})
    await desk.price(handle, "BTC", "42000", confirmed=False)  # a 58% jump: held
    await desk.env.sleep(timedelta(minutes=2))
    await desk.price(handle, "BTC", "42100", confirmed=False)  # confirms: a margin call
    await until(desk, handle, LoanState.MARGIN_CALL)
    now = await desk.now()
    for seconds in (2, 1, 0):  # 82.5% three times in one go: confirmed, sold
        at = (now - timedelta(seconds=seconds)).isoformat()
        await handle.signal("price_update", {"asset": "BTC", "price": "36363.64",
                                             "observed_at": at, "source": "test"})
    await until(desk, handle, LoanState.ACTIVE)
    return await repay_in_full(desk, handle, "h1")


async def ordered_notices_cure_timer(desk: Desk,
                                     loan_id: str = "HIST-ISSUE11") -> WorkflowHandle[Any, Any]:
    """Recorded with the issue-11 patches in: notices one after another, and a margin call's
    deadline as a timer of its own (started, moved by an extension, dropped by the cure)."""
    handle = await funded(desk, loan_id)
    await margin_call(desk, handle, "42000")
    await handle.execute_update("extend_cure", {"hours": 6, "reason": "wire", "operator": "ops"})
    await desk.env.sleep(timedelta(hours=25))  # past the 24 h reminder
    await desk.price(handle, "BTC", "42000")
    await topped_up_to_active(desk, handle, f"{loan_id}-more")
    return await repay_in_full(desk, handle, "i1")


async def notices_with_writes_onboarded(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with notices-recorded-with-the-read-model in: a loan's onboarding run, its
    notices (application received to paid out) recorded with its writes (first run)."""
    handle = await funded(desk, "HIST-NOTICES-ONBOARDED")
    await desk.settle(handle)
    return handle


async def notices_with_writes_serving(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with notices-recorded-with-the-read-model in: the serving run of a loan
    margin-called, its deadline extended, a day on (its daily look), cured by a top-up and
    repaid, every notice recorded with a write (latest run)."""
    return await ordered_notices_cure_timer(desk, "HIST-NOTICES-SERVING")


async def notices_with_writes_imported(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with notices-recorded-with-the-read-model in: an imported loan whose import
    notice rides with its first write, then margin-called, topped up and repaid."""
    return await import_one_task(desk, "HIST-NOTICES-IMPORTED")


async def sparse_checks_on_the_minute(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with the speed patches of issue 9 in: a breach waits for confirmation and the
    loan re-reads the store 5 minutes later (`sparse-confirmation-recheck`) on a whole minute,
    as its daily revaluation (`checks-on-the-minute`); then confirmed, sold, a day on, repaid."""
    handle = await funded(desk, "HIST-CHECKS")
    await desk.price(handle, "BTC", "36500", confirmed=False)  # 82%: waits for a second look
    await desk.env.sleep(timedelta(minutes=7))  # past the re-read
    await desk.price(handle, "BTC", "36400")  # confirms: sold to the target
    await until(desk, handle, LoanState.ACTIVE)
    await desk.env.sleep(timedelta(days=1, minutes=2))  # one daily revaluation
    return await repay_in_full(desk, handle, "c1")


async def one_publish_onboarded(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with the issue-12 patch in (one read-model write per workflow task): onboarded,
    warned, called, the call extended and cured by a top-up, repaid in full; the updates
    publish while the main loop runs in the same tasks."""
    handle = await funded(desk, "HIST-ONEPUB")
    await desk.price(handle, "BTC", "45500")  # warning
    await margin_call(desk, handle, "42000")
    await handle.execute_update("extend_cure", {"hours": 2, "reason": "wire", "operator": "ops"})
    await topped_up_to_active(desk, handle, "HIST-ONEPUB-more")
    return await repay_in_full(desk, handle, "o1")


async def one_publish_imported(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with the issue-12 patch in: an imported loan whose first revaluation finds the
    stored price (one write at its start, one once ACTIVE), part repaid, repaid in full."""
    from loanflow.store.prices import store_observation

    await store_observation(desk.db, "BTC", Decimal("100000"), await desk.now())
    handle = await open_imported(desk, "HIST-ONEPUB-IMPORT", "40000.00", "500.00")
    await handle.execute_update("repay", {"amount_usd": "10000.00", "reference": "p1"})
    return await repay_in_full(desk, handle, "p2")


async def one_publish_continued(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with the issue-12 patch in: the first run of a loan that continues as new
    (what it published is flushed before the run ends)."""
    handle = await funded(desk, "HIST-ONEPUB-CAN", history_limit=200)
    await until_continued(desk, handle)
    return handle


async def one_look_daily(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with the issue-9 patch in (the daily look in one local activity): an imported
    loan looks at a stored price once a day (one quiet look, one that warns), part repaid,
    repaid in full."""
    from loanflow.store.prices import store_observation

    now = await desk.now()
    await store_observation(desk.db, "BTC", Decimal("100000"), now)
    handle = await open_imported(desk, "HIST-ONELOOK", "40000.00", "500.00")
    await store_observation(desk.db, "BTC", Decimal("90000"), now + timedelta(hours=23, minutes=58))
    await desk.env.sleep(timedelta(days=1, minutes=2))  # a quiet look: LTV about 45%
    await store_observation(desk.db, "BTC", Decimal("62000"), now + timedelta(days=1, hours=23,
                                                                            minutes=58))
    await desk.env.sleep(timedelta(days=1))  # a look that warns: LTV about 65.5%
    await handle.execute_update("repay", {"amount_usd": "10000.00", "reference": "l1"})
    return await repay_in_full(desk, handle, "l2")


async def reminder_reads_store(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with the issue-9 patches in: a margin call at a steady market that is stored
    but never signalled; both reminders read the store for their price; a top-up cures the
    call; repaid in full."""
    from loanflow.store.prices import store_observation

    handle = await funded(desk, "HIST-REMIND")
    await margin_call(desk, handle, "42000")
    for _ in range(4 * 45):  # the monitor's ticks every 15 minutes, no loan signalled
        await store_observation(desk.db, "BTC", Decimal("42000"), await desk.now())
        await desk.env.sleep(timedelta(minutes=15))
    await desk.price(handle, "BTC", "42000")  # a signal: the cure below acts on it
    await topped_up_to_active(desk, handle, "HIST-REMIND-more")
    return await repay_in_full(desk, handle, "m1")


async def sold_after_backlog(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded before issue12-call-after-backlog: a call-level and a liquidation-level price
    reach the loan in one workflow task (it opened no call), a later one confirms the breach,
    a sale; repaid in full."""
    handle = await funded(desk, "HIST-BACKLOG")
    await desk.price(handle, "BTC", "50000")
    await desk.settle(handle)
    await desk.backlogged_prices(handle, "BTC", "41000", "36500")
    await desk.settle(handle)
    await desk.price(handle, "BTC", "36400")
    await until_sold(desk, handle)
    return await repay_in_full(desk, handle, "b1")


async def dust_sold_in_steps(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded before sale-dust-close-out: a $15 loan on 0.0004 BTC past the hard floor, whose
    partial sale would leave dust (about $2 of collateral), sold in limit orders; repaid."""
    handle = await funded(desk, "HIST-DUST", principal_usd=Decimal("15.00"),
                          collateral_amount=Decimal("0.0004"))
    await desk.price(handle, "BTC", "41200")  # 91%: past the hard floor
    await until_sold(desk, handle)
    return await repay_in_full(desk, handle, "d1")


async def negative_target(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded before policy-positive-post-liquidation-ltv: a loan opened (past `loanflow
    open`) with a post-liquidation LTV of -0.5 runs; repaid in full."""
    handle = await funded(desk, "HIST-NEGATIVE", policy=BAD_POLICY)
    await desk.settle(handle)
    return await repay_in_full(desk, handle, "n1")


async def fresh_run(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with issue12-fresh-run-once-serving in: the run that onboards a loan and
    continues as new once it is ACTIVE and its notices are out (its history is the first run's)."""
    handle = await funded(desk, "HIST-FRESH")
    await desk.settle(handle)
    return handle


async def fresh_run_continued(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with issue12-fresh-run-once-serving in: the run an onboarded loan continued
    in (it wrote nothing at its start), margin-called, then repaid in full."""
    handle = await funded(desk, "HIST-FRESH-NEXT")
    await desk.settle(handle)
    latest = desk.client.get_workflow_handle(handle.id)
    await margin_call(desk, latest, "42000")
    return await repay_in_full(desk, latest, "f1")


async def fresh_run_imported(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with issue12-fresh-run-once-serving in: an imported loan (which wrote its
    snapshot before adopting its migration record and again once ACTIVE), margin-called on
    its first signalled price, then repaid in full."""
    from loanflow.store.prices import store_observation

    await store_observation(desk.db, "BTC", Decimal("100000"), await desk.now())
    handle = await open_imported(desk, "HIST-FRESH-IMPORT", "40000.00", "500.00")
    await margin_call(desk, handle, "55000")
    return await repay_in_full(desk, handle, "i1")


async def import_refused(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded before a refused import stopped telling anyone: an imported loan started by
    hand with no migration record, REJECTED (and, then, an application_rejected notice)."""
    from loanflow.imported import ImportedLoan

    now = await desk.now()
    loan = ImportedLoan(
        loan_id="HIST-IMPORT-REFUSED", borrower_id="B-100", borrower_name="Ada Lovelace",
        borrower_email="ada@example.com", borrower_country="GB", collateral_asset="BTC",
        collateral_amount=Decimal("1"), principal_usd=Decimal("1000.00"),
        accrued_interest_usd=Decimal("0"), annual_rate=Decimal("0.12"),
        originated_at=now - timedelta(days=30), maturity_at=now + timedelta(days=335),
    )
    handle = await desk.open(loan.application())
    await handle.result()
    return handle


async def import_one_task(desk: Desk,
                          loan_id: str = "HIST-IMPORT-ONE-TASK") -> WorkflowHandle[Any, Any]:
    """Recorded with issue12-import-opened-in-one-task in: an imported loan opened in its first
    task (its opening effects as local activities, one write once ACTIVE), margin-called on its
    first signalled price, topped up, then repaid in full."""
    from loanflow.store.prices import store_observation

    await store_observation(desk.db, "BTC", Decimal("100000"), await desk.now())
    handle = await open_imported(desk, loan_id, "40000.00", "500.00")
    await margin_call(desk, handle, "55000")
    await topped_up_to_active(desk, handle, "one-task-top-up")
    return await repay_in_full(desk, handle, "t1")


async def claimed_onboarded(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with loan-id-claimed-by-its-first-run in: a loan that claimed its id in its
    first task, onboarded, continued as new once ACTIVE (its first run's history)."""
    handle = await funded(desk, "HIST-CLAIMED")
    await desk.settle(handle)
    return handle


async def reused_id_refused(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with loan-id-claimed-by-its-first-run in: a loan repaid in full, then a second
    start under its id (the stock CLI's reuse policy), refused (the second run's history)."""
    return await started_again(desk, "HIST-REUSED", "r1", borrower=MALLORY)


async def started_again(desk: Desk, loan_id: str, reference: str,
                        **overrides: Any) -> WorkflowHandle[Any, Any]:
    """A loan funded and repaid in full (`reference`: the repayment's), then a second start
    under its id with `overrides` to the application, run to its end; the second run."""
    handle = await funded(desk, loan_id)
    await desk.settle(handle)
    latest = await repay_in_full(desk, desk.client.get_workflow_handle(handle.id), reference)
    await latest.result()
    again = await desk.open(application(loan_id, **overrides))
    await again.result()
    return again


async def claimed_import_refused(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with loan-id-claimed-by-its-first-run in: an imported loan (its id claimed
    with the read of its migration record) ended by operations, then started again by hand,
    refused (the second run's history)."""
    from loanflow.store.prices import store_observation

    await store_observation(desk.db, "BTC", Decimal("100000"), await desk.now())
    app = await imported_application(desk, "HIST-CLAIMED-IMPORT", "40000.00", "500.00")
    handle = await desk.open(app)
    await until(desk, handle, LoanState.ACTIVE)
    await desk.settle(handle)
    await handle.terminate("ended by operations")
    again = await desk.open(app)
    await again.result()
    return again


async def policy_rejected(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with loan-id-claimed-by-its-first-run in, before
    loan-id-claimed-before-a-rejection: a start with an unsafe policy, rejected at once (its
    notice scheduled), its id claimed with its first write."""
    handle = await desk.open(application("HIST-POLICY-REJECTED", policy=BAD_POLICY))
    await handle.result()
    return handle


async def rejected_reused_id_refused(desk: Desk) -> WorkflowHandle[Any, Any]:
    """Recorded with loan-id-claimed-before-a-rejection in: a loan repaid in full, then a start
    under its id by the same borrower with an unsafe policy, refused as a reused id before
    its rejection (the second run's history)."""
    return await started_again(desk, "HIST-REJECTED-REUSE", "q1", policy=BAD_POLICY)


SCENARIOS: dict[str, Callable[[Desk], Awaitable[WorkflowHandle[Any, Any]]]] = {
    "repaid": repaid,
    "margin_call_liquidation_default": called_and_liquidated,
    "continue_as_new_first_run": continued,
    "imported": imported,
    "hard_floor_limit_sales": sold_in_limit_orders,
    "kyc_review_approved": kyc_review,
    "top_up_cure": topped_up,
    "cancelled_unfunded": cancelled,
    "maturity_full_liquidation": matured,
    "continue_as_new_resumed_run": resumed,
    "market_monitor": market_monitor,
    "hostile_rules": hostile_rules,
    "ordered_notices_cure_timer": ordered_notices_cure_timer,
    "sparse_checks_on_the_minute": sparse_checks_on_the_minute,
    "one_publish_onboarded": one_publish_onboarded,
    "one_publish_imported": one_publish_imported,
    "one_publish_continued": one_publish_continued,
    "one_look_daily": one_look_daily,
    "reminder_reads_store": reminder_reads_store,
    "sold_after_backlog": sold_after_backlog,
    "fresh_run_onboarded": fresh_run,
    "fresh_run_continued": fresh_run_continued,
    "dust_sold_in_steps": dust_sold_in_steps,
    "negative_target_opened": negative_target,
    "fresh_run_imported": fresh_run_imported,
    "import_refused": import_refused,
    "import_one_task": import_one_task,
    "claimed_onboarded": claimed_onboarded,
    "reused_id_refused": reused_id_refused,
    "claimed_import_refused": claimed_import_refused,
    "policy_rejected": policy_rejected,
    "rejected_reused_id_refused": rejected_reused_id_refused,
    "notices_with_writes_onboarded": notices_with_writes_onboarded,
    "notices_with_writes_serving": notices_with_writes_serving,
    "notices_with_writes_imported": notices_with_writes_imported,
}
# Scenarios whose saved history is of the latest run rather than the first.
LATEST_RUN = {"continue_as_new_resumed_run", "fresh_run_continued", "dust_sold_in_steps",
              "reused_id_refused", "claimed_import_refused", "rejected_reused_id_refused",
              "notices_with_writes_serving"}
# Scenarios that stop and restart the worker (`Desk.backlog`): theirs caches no workflows.
BACKLOG = {"sold_after_backlog"}


async def record_one(desk: Desk, name: str) -> None:
    handle = await SCENARIOS[name](desk)
    await desk.settle(handle)
    if handle.id.startswith("loan-"):
        await desk.settle(handle)
    run_id = None if name in LATEST_RUN else handle.first_execution_run_id
    history = await desk.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())
    print(f"recorded {name}: {len(history.events)} events")


async def record(names: list[str]) -> None:
    HISTORIES.mkdir(exist_ok=True)
    inbox, port = Inbox(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=test_server()
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{tmp}/replay.db")
        await db.create_all()
        settings = quiet_settings(smtp_port=port, var_dir=Path(tmp))
        for name in names:
            options = {"max_cached_workflows": 0} if name in BACKLOG else {}

            def workers(options: dict[str, Any] = options) -> Workers:
                return build_worker(env.client, db, settings, task_queue="replay",
                                    activities=build_activities(db, settings, client=env.client),
                                    **options)

            async with Desk(env, db, "replay", workers) as desk:
                await record_one(desk, name)
        await db.dispose()
    await env.shutdown()
    smtp.stop()


if __name__ == "__main__":
    chosen = sys.argv[1:] or list(SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario(s) {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}")
    # Names on the command line record just those scenarios (the others keep the histories
    # their older code wrote); none records every scenario.
    asyncio.run(record(chosen))
