"""Issue 10, items 1-4: nothing a caller sends through a real client fails a loan's workflow
task, poisons its price, impersonates another loan or injects state."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError

from loanflow.models import LoanState, LoanStatus
from tests.workflows.book import application, audit_kinds, count, notices
from tests.workflows.conftest import Desk
from tests.workflows.test_lifecycle import active_loan, wait_state
from workflows.loan import LoanWorkflow

HUGE = "x" * 1_500_000  # under Temporal's 2 MB payload limit, far over any column

# Every malformed shape a `price_update` signal may take: wrong types, several arguments, none,
# null, out-of-range and absurd prices, unknown fields, huge strings.
MALFORMED_SIGNALS: list[tuple[Any, ...]] = [
    (1, 2),
    (),
    (None,),
    ("a string",),
    ([1, 2, 3],),
    ({},),
    ({"asset": "BTC", "price": "1e309", "observed_at": "2024-01-01T00:00:00Z"},),
    ({"asset": "BTC", "price": "NaN", "observed_at": "2024-01-01T00:00:00Z"},),
    ({"asset": "BTC", "price": "0.0001", "observed_at": "2024-01-01T00:00:00Z"},),
    ({"asset": "BTC", "price": "50000", "observed_at": "not a time"},),
    ({"asset": "BTC", "price": "50000", "observed_at": "2024-01-01T00:00:00"},),  # naive
    ({"asset": "BTC", "price": "50000", "observed_at": "2024-01-01T00:00:00Z", "x": 1},),
    ({"asset": "BTC", "price": "50000", "observed_at": "2024-01-01T00:00:00Z",
      "source": HUGE},),
    ({"asset": HUGE, "price": "50000", "observed_at": "2024-01-01T00:00:00Z"},),
    ({"asset": "BTC", "price": "50000", "observed_at": "2024-01-01T00:00:00Z",
      "observation_id": 2**80},),
]


async def send_raw(handle, name: str, *args: Any) -> None:  # type: ignore[no-untyped-def]
    await handle.signal(name, args=list(args))


async def test_malformed_signals_are_dropped_and_the_loan_goes_on(desk: Desk) -> None:
    handle = await active_loan(desk, "HI2")
    before = await desk.status(handle)
    for args in MALFORMED_SIGNALS:
        await send_raw(handle, "price_update", *args)
    await send_raw(handle, "no_such_signal", 1, 2)
    await desk.env.sleep(timedelta(seconds=2))
    after = await desk.status(handle)  # the loan still answers its query
    assert after.state == LoanState.ACTIVE and after.price == before.price
    # ...and still acts on the next good price: 42,000 is a margin call.
    await desk.price(handle, "BTC", "42000")
    await wait_state(desk, handle, LoanState.MARGIN_CALL)
    desc = await handle.describe()
    assert desc.raw_description.pending_workflow_task is None or \
        desc.raw_description.pending_workflow_task.attempt <= 1


MALFORMED_UPDATES: list[tuple[str, tuple[Any, ...], str]] = [
    ("top_up", (1, 2), "2 arguments"),
    ("top_up", (), "0 arguments"),
    ("top_up", (None,), "JSON object"),
    ("top_up", ("0.5",), "JSON object"),
    ("top_up", ({"amount": "1e400", "tx_id": "t"},), "amount"),
    ("top_up", ({"amount": "1", "tx_id": HUGE},), "tx_id"),
    ("repay", ({"amount_usd": "1.00", "reference": "r" * 101},), "reference"),
    ("extend_cure", ({"hours": 10**30, "reason": "x", "operator": "o"},), "hours"),
    ("extend_cure", ({"hours": 1, "reason": HUGE, "operator": "o"},), "reason"),
    ("kyc_decision", ({"approved": "maybe", "reviewer": "r", "reason": "x"},), "approved"),
]


@pytest.mark.parametrize(("name", "args", "field"), MALFORMED_UPDATES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(MALFORMED_UPDATES)])
async def test_malformed_updates_are_refused_by_the_validator(
    desk: Desk, name: str, args: tuple[Any, ...], field: str
) -> None:
    handle = await active_loan(desk, f"HU{MALFORMED_UPDATES.index((name, args, field))}")
    before = await desk.settle(handle)
    audits = len(await audit_kinds(desk.db, before.loan_id))
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await handle.execute_update(name, args=list(args))
    assert field in str(info.value.cause), info.value.cause
    after = await desk.settle(handle)
    assert after == before and len(await audit_kinds(desk.db, before.loan_id)) == audits
    await desk.price(handle, "BTC", "42000")
    await wait_state(desk, handle, LoanState.MARGIN_CALL)


async def test_a_future_dated_price_is_dropped(desk: Desk) -> None:
    """Item 1: a 2030 price must neither cure a call nor hide the real prices after it."""
    handle = await active_loan(desk, "HF1")
    await desk.price(handle, "BTC", "42000")
    await wait_state(desk, handle, LoanState.MARGIN_CALL)
    for observed_at in ("2030-01-01T00:00:00Z", (await desk.now() + timedelta(minutes=5)).isoformat()):
        await handle.signal("price_update", {"asset": "BTC", "price": "60000",
                                             "observed_at": observed_at, "source": "attacker"})
    await desk.env.sleep(timedelta(seconds=2))
    status = await desk.status(handle)
    assert status.state == LoanState.MARGIN_CALL and status.price == Decimal("42000")
    # A real price after it is still taken: 41,000 moves the figures.
    await desk.price(handle, "BTC", "41000")
    await desk.env.sleep(timedelta(seconds=1))
    assert (await desk.status(handle)).price == Decimal("41000")
    await desk.settle(handle)
    assert "margin_call_cured" not in await notices(desk.db, "HF1")


async def test_a_jump_waits_for_a_confirming_observation(desk: Desk) -> None:
    """One print 40% away from the last accepted price acts on nothing; a second, later one
    in line with it does."""
    handle = await active_loan(desk, "HJ1")
    await desk.price(handle, "BTC", "42000", confirmed=False)  # 58% down: held
    await desk.env.sleep(timedelta(seconds=2))
    held = await desk.status(handle)
    assert held.state == LoanState.ACTIVE and held.price == Decimal("100000")
    await desk.price(handle, "BTC", "42100", confirmed=False)  # confirms
    await wait_state(desk, handle, LoanState.MARGIN_CALL)
    # A lone fat-fingered print back up is held too: the call is not cured by it.
    await desk.price(handle, "BTC", "420000", confirmed=False)
    await desk.env.sleep(timedelta(seconds=2))
    assert (await desk.status(handle)).state == LoanState.MARGIN_CALL


async def test_a_start_naming_another_loan_is_rejected_and_writes_nothing(desk: Desk) -> None:
    """Item 4: workflow loan-MISMATCH with loan_id OTHER takes none of OTHER's keys."""
    app = application("HOTHER")
    handle = await desk.client.start_workflow(
        LoanWorkflow.run, app, id="loan-HMISMATCH", task_queue=desk.task_queue,
        memo={"search_attributes": False})
    desk.handles.append(handle)
    result = await handle.result()
    assert result.state == LoanState.REJECTED and "loan_id" in (result.reason or "")
    for table in ("loans", "audit_log", "notices", "ledger_entries", "custody_transfers"):
        for loan_id in ("HOTHER", "HMISMATCH"):
            assert await count(desk.db, table, loan_id) == 0, (table, loan_id)
    # The real loan-HOTHER is untouched and runs normally.
    real = await active_loan(desk, "HOTHER")
    await desk.settle(real)
    assert "application_received" in await notices(desk.db, "HOTHER")


async def test_state_in_a_fresh_start_is_not_honoured(desk: Desk) -> None:
    """Item 4: `resume` (or a second argument) in a fresh start makes no ACTIVE loan."""
    app = application("HRESUME", borrower={"id": "B-9", "name": "Kim", "email": "k@example.com",
                                           "country": "KP"})
    fake = {"state": "ACTIVE", "step": 5, "collateral": "50", "required_collateral": "1",
            "opened_at": "2024-01-01T00:00:00Z", "policy": {}, "principal": "30000"}
    raw = app.model_dump(mode="json") | {"resume": fake}
    handle = await desk.client.start_workflow(
        "LoanWorkflow", raw, id="loan-HRESUME", task_queue=desk.task_queue,
        memo={"search_attributes": False})
    desk.handles.append(handle)
    result = LoanStatus.model_validate(await handle.result())
    assert result.state == LoanState.REJECTED and "resume" in (result.reason or "")
    assert result.collateral_amount == 0
    handle = await desk.client.start_workflow(
        "LoanWorkflow", args=[application("HRESUME2").model_dump(mode="json"),
                              {"from_run": "x", "file": fake}],
        id="loan-HRESUME2", task_queue=desk.task_queue, memo={"search_attributes": False})
    desk.handles.append(handle)
    result = LoanStatus.model_validate(await handle.result())
    assert result.state == LoanState.REJECTED and result.collateral_amount == 0


async def test_extra_fields_in_the_application_fail_the_start_naming_them(desk: Desk) -> None:
    raw = application("HEXTRA").model_dump(mode="json") | {"polcy": {"margin_call_ltv": "0.9"}}
    handle = await desk.client.start_workflow(
        "LoanWorkflow", raw, id="loan-HEXTRA", task_queue=desk.task_queue,
        memo={"search_attributes": False})
    desk.handles.append(handle)
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert "polcy" in str(info.value.cause)


async def test_a_jump_the_store_holds_is_the_desks_word(desk: Desk) -> None:
    """The monitor signals only loans whose triggers a tick crossed, so a loan's last price can
    be far behind: a jump that the desk's store holds acts at once (the loan looks at the store
    when a jump arrives); what a signal claims beyond it never does."""
    from loanflow.store.prices import store_observation

    handle = await active_loan(desk, "HV1")
    stored = await store_observation(desk.db, "BTC", Decimal("42000"), await desk.now())
    forged = stored.model_copy(update={"price": Decimal("150000")}).model_dump(mode="json")
    await handle.signal("price_update", forged)
    status = await wait_state(desk, handle, LoanState.MARGIN_CALL)
    assert status.price == Decimal("42000")
