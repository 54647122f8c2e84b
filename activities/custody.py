"""Collateral custody: deposit addresses, deposits and top-ups seen on-chain, and releases back
to the borrower. Every movement is recorded once (by key, and a tx id once) and booked in the
ledger in the same transaction, in the asset's own units."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from functools import partial
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.support import FakeFaults, ServiceActivities, conflict, effect_once, refuse
from loanflow import ledger
from loanflow.effects import (
    ActivityName,
    CollateralRelease,
    DepositAddress,
    DepositAddressRequest,
    DepositRecord,
    TransferReceipt,
)
from loanflow.money import ASSETS, decimal_text, fmt_units_exact, is_whole_units, tidy
from loanflow.schema import CustodyAccount, CustodyTransfer
from loanflow.store.ledger import balance, post_entry


class Custodian(Protocol):
    """The qualified custodian that holds the collateral. Calls must be idempotent by their
    arguments (an address per loan, a release per key), as real custody APIs are."""

    async def open_address(self, loan_id: str, asset: str) -> str:
        """The deposit address for this loan's collateral (the same one every time)."""
        ...

    async def confirm_deposit(self, address: str, asset: str, tx_id: str, amount: Decimal) -> None:
        """Check that `amount` arrived at `address` in `tx_id`; raise if it did not."""
        ...

    async def release(self, key: str, loan_id: str, asset: str, amount: Decimal) -> str:
        """Send collateral back to the borrower; returns the withdrawal reference."""
        ...


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


class FakeCustodian:
    """A stand-in custodian: answers after a network-like delay, fails now and then before
    doing anything, and derives addresses and withdrawal references from its inputs, so that
    asking twice gives the same answer (as the real custodian's idempotency does)."""

    def __init__(self, faults: FakeFaults | None = None) -> None:
        self.faults = faults or FakeFaults()

    async def open_address(self, loan_id: str, asset: str) -> str:
        await self.faults.call("custodian", "open address")
        digest = hashlib.sha512(f"deposit:{asset}:{loan_id}".encode()).digest()
        if asset == "BTC":  # a bech32-looking P2WPKH address: bc1q + 38 characters
            return "bc1q" + "".join(_BECH32[b % 32] for b in digest[:38])
        return "0x" + digest[:20].hex()

    async def confirm_deposit(self, address: str, asset: str, tx_id: str, amount: Decimal) -> None:
        # The fake sees every deposit it is told about; a real one checks the chain.
        await self.faults.call("custodian", "confirm deposit")

    async def release(self, key: str, loan_id: str, asset: str, amount: Decimal) -> str:
        await self.faults.call("custodian", "release")
        return "wd_" + hashlib.sha256(f"release:{key}".encode()).hexdigest()[:24]


class CustodyActivities(ServiceActivities[Custodian]):
    """Collateral at a custodian (the service)."""

    # --- deposit address ------------------------------------------------------------------------

    @activity.defn(name=ActivityName.OPEN_DEPOSIT_ADDRESS)
    async def open_deposit_address(self, request: DepositAddressRequest) -> DepositAddress:
        """One address per loan: asking again returns the address already opened."""
        _check_asset(request.asset)

        async def lookup(session: AsyncSession) -> DepositAddress | None:
            account = await session.get(CustodyAccount, request.loan_id)
            if account is None:
                return None
            if account.asset != request.asset:
                raise refuse(
                    f"loan {request.loan_id} already has a {account.asset} deposit address; "
                    f"it cannot take {request.asset}",
                    "AssetMismatch",
                )
            return DepositAddress(address=account.address)

        async def write(session: AsyncSession, address: str) -> DepositAddress:
            session.add(
                CustodyAccount(loan_id=request.loan_id, asset=request.asset, address=address)
            )
            await session.flush()
            return DepositAddress(address=address)

        opening = partial(self.service.open_address, request.loan_id, request.asset)
        return await effect_once(self.db, lookup, opening, write)

    # --- deposits and top-ups -------------------------------------------------------------------

    @activity.defn(name=ActivityName.RECORD_DEPOSIT)
    async def record_deposit(self, record: DepositRecord) -> TransferReceipt:
        """Count collateral that arrived under `tx_id`, once. Asked again with the same key, or
        with another key for a tx id this loan already counted, it returns the receipt of the
        transfer that counted it, with created=False. A tx id another loan counted is refused.

        Ledger (asset units): debit `custody:<ASSET>`, credit `loan:<id>:collateral`.
        """
        _check_amount(record.asset, record.amount)

        async def lookup(session: AsyncSession) -> TransferReceipt | None:
            return await self._find_deposit(session, record)

        async def confirm() -> None:
            # The loan's address is written once and never changes: reading it apart from the
            # lookup sees what the lookup's transaction would have seen.
            async with self.db.transaction() as session:
                account = await session.get(CustodyAccount, record.loan_id)
            address = _deposit_account(account, record)
            await self.service.confirm_deposit(address, record.asset, record.tx_id, record.amount)

        async def write(session: AsyncSession, _: None) -> TransferReceipt:
            memo = (f"{record.kind} of {fmt_units_exact(record.asset, record.amount)} "
                    f"(tx {record.tx_id})")
            return await _book(session, _transfer(record, "in", record.tx_id, record.kind), memo)

        return await effect_once(self.db, lookup, confirm, write)

    async def _find_deposit(
        self, session: AsyncSession, record: DepositRecord
    ) -> TransferReceipt | None:
        by_key = await _by_key(session, record.key)
        if by_key is not None:
            same = _matches(by_key, record.loan_id, "in", record.asset, record.amount)
            if not same or by_key.tx_id != record.tx_id:
                raise conflict(record.key, "custody transfer")
            return _receipt(by_key, created=False)
        by_tx = await session.scalar(
            select(CustodyTransfer).where(
                CustodyTransfer.tx_id == record.tx_id, CustodyTransfer.direction == "in"
            )
        )
        if by_tx is None:
            return None
        if by_tx.loan_id != record.loan_id:
            raise refuse(
                f"tx {record.tx_id} was already counted for loan {by_tx.loan_id}; "
                f"it cannot fund loan {record.loan_id}",
                "TxIdUsedByOtherLoan",
            )
        # The same tx reported again (a deposit also sent as a top-up): it counted once already.
        return _receipt(by_tx, created=False)

    # --- release --------------------------------------------------------------------------------

    @activity.defn(name=ActivityName.RELEASE_COLLATERAL)
    async def release_collateral(self, release: CollateralRelease) -> TransferReceipt:
        """Send collateral back to the borrower, once per key, never more than the loan holds.

        Ledger (asset units): debit `loan:<id>:collateral`, credit `custody:<ASSET>`.
        """
        _check_amount(release.asset, release.amount)

        async def lookup(session: AsyncSession) -> TransferReceipt | None:
            found = await _by_key(session, release.key)
            if found is None:
                return None
            if not _matches(found, release.loan_id, "out", release.asset, release.amount):
                raise conflict(release.key, "custody transfer")
            return _receipt(found, created=False)

        async def check(session: AsyncSession) -> None:
            await check_holding(session, release.loan_id, release.asset, release.amount, "release")

        # The custodian has sent the collateral: record what happened, whatever it was. (The
        # workflow asks for one release of a loan at a time, so the check still holds.)
        async def write(session: AsyncSession, reference: str) -> TransferReceipt:
            memo = f"release of {fmt_units_exact(release.asset, release.amount)}: {release.reason}"
            return await _book(session, _transfer(release, "out", reference, release.reason), memo)

        sending = partial(
            self.service.release, release.key, release.loan_id, release.asset, release.amount
        )
        return await effect_once(self.db, lookup, sending, write, check)


async def check_holding(
    session: AsyncSession, loan_id: str, asset: str, amount: Decimal, action: str
) -> None:
    """Refuse to `action` (release, sell) more of a loan's collateral than the desk holds for
    it: what its collateral account's credit balance says."""
    held = -await balance(session, ledger.collateral(loan_id), asset)
    if amount > held:
        raise refuse(
            f"cannot {action} {fmt_units_exact(asset, amount)} for loan {loan_id}: it holds "
            f"{fmt_units_exact(asset, held)}",
            "InsufficientCollateral",
        )


async def _by_key(session: AsyncSession, key: str) -> CustodyTransfer | None:
    return await session.scalar(select(CustodyTransfer).where(CustodyTransfer.key == key))


def _transfer(
    request: DepositRecord | CollateralRelease, direction: str, tx_id: str, reason: str
) -> CustodyTransfer:
    return CustodyTransfer(key=request.key, loan_id=request.loan_id, direction=direction,
                           asset=request.asset, amount=request.amount, tx_id=tx_id, reason=reason)


async def _book(session: AsyncSession, transfer: CustodyTransfer, memo: str) -> TransferReceipt:
    """Record a transfer and its ledger entry (same key): collateral coming in is owed back to
    the loan's borrower; going out, it no longer is."""
    session.add(transfer)
    await session.flush()
    held = ledger.custody(transfer.asset)
    owed = ledger.collateral(transfer.loan_id)
    into, out_of = (held, owed) if transfer.direction == "in" else (owed, held)
    await post_entry(
        session,
        key=transfer.key,
        loan_id=transfer.loan_id,
        memo=memo,
        lines=[
            ledger.debit(into, transfer.asset, transfer.amount),
            ledger.credit(out_of, transfer.asset, transfer.amount),
        ],
    )
    return _receipt(transfer, created=True)


def _check_asset(asset: str) -> None:
    if asset not in ASSETS:
        raise refuse(
            f"unknown asset {asset!r}: expected one of {', '.join(ASSETS)}", "UnknownAsset"
        )


def _check_amount(asset: str, amount: Decimal) -> None:
    _check_asset(asset)
    if not amount.is_finite() or amount <= 0:
        raise refuse(f"amount must be positive, got {decimal_text(amount)} {asset}",
                     "InvalidAmount")
    if not is_whole_units(asset, amount):
        raise refuse(f"{decimal_text(amount)} {asset} has more decimal places than {asset} has",
                     "InvalidAmount")


def _deposit_account(account: CustodyAccount | None, record: DepositRecord) -> str:
    """The address the deposit must have arrived at: the loan's own, in the loan's asset."""
    if account is None:
        raise refuse(
            f"loan {record.loan_id} has no deposit address: open one before recording deposits",
            "NoDepositAddress",
        )
    if account.asset != record.asset:
        raise refuse(
            f"loan {record.loan_id} takes {account.asset}, not {record.asset}", "AssetMismatch"
        )
    return account.address


def _matches(
    transfer: CustodyTransfer, loan_id: str, direction: str, asset: str, amount: Decimal
) -> bool:
    """True if a stored transfer is the one a request describes (a retry, not a key reuse)."""
    stored = (transfer.loan_id, transfer.direction, transfer.asset, transfer.amount)
    return stored == (loan_id, direction, asset, amount)


def _receipt(transfer: CustodyTransfer, *, created: bool) -> TransferReceipt:
    return TransferReceipt(
        key=transfer.key,
        transfer_id=f"{transfer.direction}-{transfer.id}",
        amount=tidy(transfer.amount),
        created=created,
    )
