"""The loan's price bookkeeping as plain data (workflows/loan_file.py), without a server: which
unread observation owes a margin call when a later price reaches liquidation in the same task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from loanflow.models import PriceUpdate
from loanflow.policy import RiskPolicy
from workflows.loan_file import LoanFile

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def loan() -> LoanFile:
    """$30,000 owed on 1 BTC: margin call at 42,857.15 and below, liquidation at 37,500."""
    f = LoanFile(policy=RiskPolicy(), opened_at=NOW - timedelta(days=30),
                 required_collateral=Decimal(1))
    f.collateral, f.principal = Decimal(1), Decimal("30000")
    return f


def seen(price: str, seconds_ago: int) -> PriceUpdate:
    return PriceUpdate(asset="BTC", price=Decimal(price), source="test",
                       observed_at=NOW - timedelta(seconds=seconds_ago))


def test_the_newest_call_level_observation_read_late_is_the_one() -> None:
    f = loan()
    f.looked_at = NOW - timedelta(minutes=1)
    f.evidence = [seen("42000", 40), seen("50000", 30), seen("41000", 20), seen("37000", 15)]
    found = f.call_level_seen(seen("36500", 0), NOW)
    assert found is not None and found.price == Decimal("41000")


def test_what_the_loan_looked_at_before_owes_nothing() -> None:
    f = loan()
    f.looked_at = NOW - timedelta(seconds=30)
    # A late arrival older than the price the loan last looked at: that look had its say.
    f.evidence = [seen("41000", 40)]
    assert f.call_level_seen(seen("36500", 0), NOW) is None


def test_stale_or_liquidation_level_observations_owe_no_call() -> None:
    f = loan()
    f.evidence = [seen("41000", 20 * 60), seen("37000", 20)]  # 20 minutes old; 81%
    assert f.call_level_seen(seen("36500", 0), NOW) is None


def test_only_observations_before_the_newest_count() -> None:
    f = loan()
    f.evidence = [seen("41000", 0)]  # not older than the price acted on
    assert f.call_level_seen(seen("36500", 0), NOW) is None


def test_a_loan_that_never_looked_counts_every_earlier_observation() -> None:
    f = loan()
    f.evidence = [seen("41000", 20)]
    found = f.call_level_seen(seen("36500", 0), NOW)
    assert found is not None and found.price == Decimal("41000")
