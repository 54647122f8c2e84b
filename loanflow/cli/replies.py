"""What an update command answers: the loan's state after it acted on the update, in the
command's own words ("deposit of 20 ETH counted for loan L1: ACTIVE, ..."). Pure functions of
the request and the loan's status, so every wording is tested without a server."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loanflow.cli.output import ratio, time_left, units, usd, when
from loanflow.models import LoanState, LoanStatus

State = LoanState


def still_acting(update: str, s: LoanStatus) -> bool:
    """True while the loan has yet to carry on from an update its handler accepted: a
    deposit that funds it is paid out by the loan's own flow, and a KYC approval is followed by
    the LTV check at a fresh price. The other updates finish their work in the handler. A loan
    that waits for something outside it (a fresh price: `waiting_for`) is done acting for now:
    the reply says what it waits for at once, rather than after SETTLE_SECONDS."""
    if s.waiting_for is not None:
        return False
    if update == "confirm_deposit":
        return s.state == State.AWAITING_COLLATERAL and s.collateral_amount >= s.required_collateral
    if update == "kyc_decision":
        return s.state == State.KYC_REVIEW and s.kyc_status == "approved"
    return False


def reply(update: str, request: Any, s: LoanStatus, settled: bool, now: datetime) -> str:
    """One line for people; `settled` False means the loan was still acting when we stopped
    waiting, and the line says where to look."""
    words = WORDS[update](request, s, now)
    if not settled:
        words += f"; the loan is still acting on it: see `loanflow status {s.loan_id}`"
    return words


def kyc_words(request: Any, s: LoanStatus, now: datetime) -> str:
    if not request.approved:
        return f"KYC rejected for loan {s.loan_id}: it is {s.state.value} ({s.reason})"
    head = f"KYC approved for loan {s.loan_id}: it is {s.state.value}"
    if s.state == State.AWAITING_COLLATERAL:
        return (f"{head}, waiting for {units(s.collateral_asset, s.required_collateral)} at "
                f"{s.deposit_address} by {when(s.funding_deadline)}")
    if s.state == State.KYC_REVIEW:
        return (f"{head}, waiting for a fresh {s.collateral_asset} price to check its LTV "
                f"(`loanflow price {s.collateral_asset} ...` or a market tick brings one)")
    return f"{head}{reason(s)}"


def deposit_words(request: Any, s: LoanStatus, now: datetime) -> str:
    head = f"deposit of {units(s.collateral_asset, request.amount)} counted for loan {s.loan_id}"
    if s.state == State.AWAITING_COLLATERAL:
        missing = s.required_collateral - s.collateral_amount
        if missing > 0:
            return (f"{head}: {units(s.collateral_asset, s.collateral_amount)} of "
                    f"{units(s.collateral_asset, s.required_collateral)} received, it waits for "
                    f"{units(s.collateral_asset, missing)} more by {when(s.funding_deadline)}")
        if s.waiting_for == "price":
            return (f"{head}: fully funded, AWAITING_COLLATERAL: it pays out once a fresh "
                    f"{s.collateral_asset} price confirms the LTV (`loanflow price "
                    f"{s.collateral_asset} ...` or a market tick brings one)")
        return f"{head}: fully funded, AWAITING_COLLATERAL until it pays out"
    if s.state == State.ACTIVE:
        return (f"{head}: ACTIVE, {usd(s.principal_usd)} paid out, LTV {ratio(s.ltv)}, "
                f"maturity {when(s.maturity)}")
    return f"{head}: it is {s.state.value}{reason(s)}"


def top_up_words(request: Any, s: LoanStatus, now: datetime) -> str:
    head = (f"top-up of {units(s.collateral_asset, request.amount)} counted for loan "
            f"{s.loan_id}: it is {s.state.value}, collateral "
            f"{units(s.collateral_asset, s.collateral_amount)}, LTV {ratio(s.ltv)}")
    return head + still_called(s, now)


def repay_words(request: Any, s: LoanStatus, now: datetime) -> str:
    head = f"repayment of {usd(request.amount_usd)} applied to loan {s.loan_id}"
    if s.state == State.CLOSED:
        return f"{head}: repaid in full, CLOSED, collateral released"
    return (f"{head}: it is {s.state.value}, debt {usd(s.debt_usd)}, LTV {ratio(s.ltv)}"
            + still_called(s, now))


def extend_words(request: Any, s: LoanStatus, now: datetime) -> str:
    return (f"cure deadline of loan {s.loan_id} extended by {request.hours} h to "
            f"{when(s.cure_deadline)} ({time_left(s.cure_deadline, now)} left); it is "
            f"{s.state.value}" + cures(s))


def still_called(s: LoanStatus, now: datetime) -> str:
    if s.state != State.MARGIN_CALL:
        return ""
    return (f"; still in margin call, deadline {when(s.cure_deadline)} "
            f"({time_left(s.cure_deadline, now)} left)" + cures(s))


def cures(s: LoanStatus) -> str:
    if s.cure_top_up is None and s.cure_repay_usd is None:
        return ""
    return (f": cure by adding {units(s.collateral_asset, s.cure_top_up)} or repaying "
            f"{usd(s.cure_repay_usd)}")


def reason(s: LoanStatus) -> str:
    return f" ({s.reason})" if s.reason else ""


WORDS = {"kyc_decision": kyc_words, "confirm_deposit": deposit_words, "top_up": top_up_words,
         "repay": repay_words, "extend_cure": extend_words}
