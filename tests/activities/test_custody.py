"""Custody: one address per loan, a deposit counted once (by key and by tx id), releases never
more than the loan holds, every movement booked in the asset's units."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal

import pytest
from temporalio.exceptions import ApplicationError

from activities.custody import CustodyActivities, FakeCustodian
from loanflow.effects import CollateralRelease, DepositAddressRequest, DepositRecord
from loanflow.schema import CustodyAccount, CustodyTransfer, LedgerEntry

D = Decimal


def deposit(
    amount: str = "1.5",
    tx: str = "tx-1",
    loan: str = "L1",
    key: str | None = None,
    asset: str = "BTC",
    kind: str = "deposit",
) -> DepositRecord:
    return DepositRecord(
        key=key or f"{loan}:{kind}:{tx}",
        loan_id=loan,
        asset=asset,
        amount=D(amount),
        tx_id=tx,
        kind=kind,  # type: ignore[arg-type]
    )


def release(amount: str, key: str = "L1:release:close", loan: str = "L1") -> CollateralRelease:
    return CollateralRelease(key=key, loan_id=loan, asset="BTC", amount=D(amount), reason="repaid")


def refused(err: pytest.ExceptionInfo[ApplicationError], error_type: str) -> bool:
    return err.value.non_retryable and err.value.type == error_type


@pytest.fixture
async def opened(env, custody) -> None:
    await env.run(custody.open_deposit_address, DepositAddressRequest(loan_id="L1", asset="BTC"))


# --- deposit addresses --------------------------------------------------------------------------


async def test_addresses_look_real_and_are_one_per_loan(env, custody, count) -> None:
    async def open_(loan: str, asset: str) -> str:
        request = DepositAddressRequest(loan_id=loan, asset=asset)
        return (await env.run(custody.open_deposit_address, request)).address

    btc = await open_("L1", "BTC")
    assert re.fullmatch(r"bc1q[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{38}", btc)
    assert re.fullmatch(r"0x[0-9a-f]{40}", await open_("L2", "ETH"))
    assert await open_("L1", "BTC") == btc
    assert await open_("L3", "BTC") != btc
    assert await count(CustodyAccount) == 3
    with pytest.raises(ApplicationError) as err:
        await open_("L1", "ETH")
    assert refused(err, "AssetMismatch")


async def test_concurrent_address_requests_open_one(env, custody, count) -> None:
    request = DepositAddressRequest(loan_id="L1", asset="ETH")
    results = await asyncio.gather(
        *(env.run(custody.open_deposit_address, request) for _ in range(3))
    )
    assert len({r.address for r in results}) == 1
    assert await count(CustodyAccount) == 1


async def test_custodian_outage_fails_before_opening(db, env, failing, count) -> None:
    acts = CustodyActivities(db, FakeCustodian(failing))
    with pytest.raises(ApplicationError) as err:
        await env.run(acts.open_deposit_address, DepositAddressRequest(loan_id="L1", asset="BTC"))
    assert not err.value.non_retryable
    assert await count(CustodyAccount) == 0


# --- deposits -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("opened")
async def test_deposit_is_booked_once(env, custody, count, balances, book_is_balanced) -> None:
    first = await env.run(custody.record_deposit, deposit("1.5"))
    again = await env.run(custody.record_deposit, deposit("1.5"))
    assert (first.created, again.created) == (True, False)
    assert first.transfer_id == again.transfer_id and again.amount == D("1.5")
    assert await count(CustodyTransfer) == 1
    assert await count(LedgerEntry) == 1
    assert await balances() == {
        ("custody:BTC", "BTC"): D("1.5"),
        ("loan:L1:collateral", "BTC"): D("-1.5"),
    }
    assert await book_is_balanced()


@pytest.mark.usefixtures("opened")
async def test_a_tx_id_counts_once_per_loan(env, custody, count, balances) -> None:
    await env.run(custody.record_deposit, deposit("1.5", tx="tx-1"))
    # The same on-chain tx reported again as a top-up: it was already counted.
    again = await env.run(custody.record_deposit, deposit("1.5", tx="tx-1", kind="top_up"))
    assert again.created is False and again.key == "L1:deposit:tx-1"
    top_up = await env.run(custody.record_deposit, deposit("0.25", tx="tx-2", kind="top_up"))
    assert top_up.created is True
    assert await count(CustodyTransfer) == 2
    assert (await balances())[("loan:L1:collateral", "BTC")] == D("-1.75")


async def test_a_tx_id_cannot_fund_two_loans(env, custody, fund, count) -> None:
    await fund("L1", "BTC", D("1"), tx_id="tx-shared")
    await env.run(custody.open_deposit_address, DepositAddressRequest(loan_id="L2", asset="BTC"))
    with pytest.raises(ApplicationError) as err:
        await env.run(custody.record_deposit, deposit("1", tx="tx-shared", loan="L2"))
    assert refused(err, "TxIdUsedByOtherLoan") and "loan L1" in str(err.value)
    assert await count(CustodyTransfer) == 1


async def test_two_loans_racing_for_one_tx_id_count_it_once(env, custody, count) -> None:
    for loan in ("L1", "L2"):
        await env.run(
            custody.open_deposit_address, DepositAddressRequest(loan_id=loan, asset="BTC")
        )
    results = await asyncio.gather(
        env.run(custody.record_deposit, deposit("1", tx="tx-x", loan="L1")),
        env.run(custody.record_deposit, deposit("1", tx="tx-x", loan="L2")),
        return_exceptions=True,
    )
    assert (
        sum(isinstance(r, ApplicationError) and r.type == "TxIdUsedByOtherLoan" for r in results)
        == 1
    )
    assert await count(CustodyTransfer) == 1


@pytest.mark.usefixtures("opened")
async def test_concurrent_duplicate_deposits_leave_one(env, custody, count, balances) -> None:
    record = deposit("2")
    receipts = await asyncio.gather(*(env.run(custody.record_deposit, record) for _ in range(3)))
    assert sorted(r.created for r in receipts) == [False, False, True]
    assert len({r.transfer_id for r in receipts}) == 1
    assert await count(CustodyTransfer) == 1
    assert await count(LedgerEntry) == 1
    assert (await balances())[("custody:BTC", "BTC")] == D("2")


@pytest.mark.usefixtures("opened")
async def test_deposit_mistakes_are_refused(env, custody, count) -> None:
    cases = [
        (deposit("0.000000001"), "InvalidAmount"),  # finer than a satoshi
        (deposit("0"), "InvalidAmount"),
        (deposit("1", asset="ETH"), "AssetMismatch"),  # the loan's address takes BTC
        (deposit("1", loan="L-without-address"), "NoDepositAddress"),
    ]
    for record, error_type in cases:
        with pytest.raises(ApplicationError) as err:
            await env.run(custody.record_deposit, record)
        assert refused(err, error_type), record
    await env.run(custody.record_deposit, deposit("1"))
    with pytest.raises(ApplicationError) as err:
        await env.run(custody.record_deposit, deposit("2"))  # same key, other amount
    assert refused(err, "IdempotencyConflict")
    assert await count(CustodyTransfer) == 1


async def test_eth_deposit_keeps_every_wei(env, custody, fund, balances) -> None:
    receipt = await fund("L1", "ETH", D("3.000000000000000007"))
    assert receipt.amount == D("3.000000000000000007")
    assert (await balances())[("custody:ETH", "ETH")] == D("3.000000000000000007")


async def test_memos_and_refusals_read_amounts_for_people(db, env, custody, fund) -> None:
    """A ledger memo and a refusal give every unit, in plain digits: never `1E-8`."""
    from sqlalchemy import select

    await fund("L1", "ETH", D("1234.000000000000000007"))
    async with db.sessions() as session:
        memos = list(await session.scalars(select(LedgerEntry.memo)))
    assert memos == ["deposit of 1,234.000000000000000007 ETH (tx tx-fund)"]
    with pytest.raises(ApplicationError) as err:
        await env.run(custody.record_deposit, deposit("0.000000001", tx="tx-fine"))
    assert "0.000000001 BTC has more decimal places" in str(err.value)


async def test_custodian_outage_fails_before_recording(db, env, custody, failing, count) -> None:
    await env.run(custody.open_deposit_address, DepositAddressRequest(loan_id="L1", asset="BTC"))
    down = CustodyActivities(db, FakeCustodian(failing))
    with pytest.raises(ApplicationError) as err:
        await env.run(down.record_deposit, deposit("1"))
    assert not err.value.non_retryable and err.value.type == "VendorUnavailable"
    assert await count(CustodyTransfer) == 0
    assert await count(LedgerEntry) == 0


# --- releases -----------------------------------------------------------------------------------


async def test_release_is_booked_once(
    env, custody, fund, count, balances, book_is_balanced
) -> None:
    await fund("L1", "BTC", D("1.5"))
    first = await env.run(custody.release_collateral, release("0.5"))
    again = await env.run(custody.release_collateral, release("0.5"))
    assert (first.created, again.created) == (True, False)
    assert first.transfer_id == again.transfer_id
    assert await count(CustodyTransfer, CustodyTransfer.direction == "out") == 1
    assert await balances() == {
        ("custody:BTC", "BTC"): D("1"),
        ("loan:L1:collateral", "BTC"): D("-1"),
    }
    assert await book_is_balanced()


async def test_release_never_exceeds_what_the_loan_holds(env, custody, fund, count) -> None:
    await fund("L1", "BTC", D("1"))
    await fund("L2", "BTC", D("5"), tx_id="tx-other")
    with pytest.raises(ApplicationError) as err:
        await env.run(custody.release_collateral, release("1.00000001"))
    assert refused(err, "InsufficientCollateral") and "holds 1 BTC" in str(err.value)
    await env.run(custody.release_collateral, release("1"))
    with pytest.raises(ApplicationError) as err:
        await env.run(custody.release_collateral, release("0.1", key="L1:release:again"))
    assert refused(err, "InsufficientCollateral")
    assert await count(CustodyTransfer, CustodyTransfer.direction == "out") == 1


async def test_concurrent_duplicate_releases_leave_one(env, custody, fund, count, balances) -> None:
    await fund("L1", "BTC", D("1"))
    receipts = await asyncio.gather(
        *(env.run(custody.release_collateral, release("1")) for _ in range(3))
    )
    assert sorted(r.created for r in receipts) == [False, False, True]
    assert await count(CustodyTransfer, CustodyTransfer.direction == "out") == 1
    assert await balances() == {}


async def test_custodian_outage_fails_before_releasing(
    db, env, fund, failing, count, balances
) -> None:
    await fund("L1", "BTC", D("1"))
    down = CustodyActivities(db, FakeCustodian(failing))
    with pytest.raises(ApplicationError) as err:
        await env.run(down.release_collateral, release("1"))
    assert not err.value.non_retryable
    assert await count(CustodyTransfer, CustodyTransfer.direction == "out") == 0
    assert (await balances())[("loan:L1:collateral", "BTC")] == D("-1")
