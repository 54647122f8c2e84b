"""The `loanflow up` console's commentary: one line per decision of the desk, read from the
audit trail (SQLite and PostgreSQL), from where the stack started."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from loanflow.db import Database
from loanflow.narration import Narrator, line
from loanflow.schema import AuditRecord

AT = datetime(2026, 12, 3, 16, 8, tzinfo=timezone.utc)


def test_each_desk_action_reads_as_one_line() -> None:
    margin_call = line("margin_call", {"ltv": "0.7143", "cure_top_up": "0.19047620",
                                       "cure_repay_usd": "6400.00",
                                       "cure_deadline": "2026-12-05T16:08:00Z"},
                       "BTC", Decimal("56000"))
    assert margin_call == ("MARGIN CALL: LTV 71.43% at BTC $56,000.00; cure by adding "
                           "0.1904762 BTC or repaying $6,400.00 by Sat 5 Dec 2026, 16:08 UTC")
    assert line("cured", {"how": "repayment", "ltv": "0.6"}, "ETH", None) == \
        "margin call cured by a repayment: LTV 60.00%"
    sale = line("liquidation", {"quantity": "0.5", "fill_price": "44000", "cause": "cure_deadline",
                                "applied": "21560", "fee": "440", "ltv_before": "0.75",
                                "ltv_after": "0.4995"}, "BTC", Decimal("44000"))
    assert sale == ("SOLD 0.5 BTC at $44,000.00 (cure deadline passed): $21,560.00 applied, "
                    "fee $440.00, LTV 75.00% -> 49.95%")
    closed_out = line("liquidation", {"quantity": "0.0004", "fill_price": "40788",
                                      "cause": "hard_floor", "applied": "15.00", "fee": "0.33",
                                      "ltv_before": "0.9101", "ltv_after": None,
                                      "closed_out": "dust"}, "BTC", Decimal("41200"))
    assert closed_out == ("SOLD 0.0004 BTC at $40,788.00 (past the hard floor): $15.00 applied, "
                          "fee $0.33, LTV 91.01% -> n/a; all of it: what a partial sale would "
                          "leave was too small to size to the cent")
    assert line("state", {"previous": "LIQUIDATING", "new": "DEFAULTED",
                          "reason": "collateral exhausted"}, "BTC", None) == \
        "DEFAULTED (collateral exhausted)"
    assert line("cure_extended", {"hours": 24, "cure_deadline": "2026-12-06T16:08:00Z",
                                  "operator": "ops-anna"}, "BTC", None) == \
        "cure deadline extended by 24 h to Sun 6 Dec 2026, 16:08 UTC by ops-anna"


def test_the_inner_workings_are_left_to_the_audit_trail() -> None:
    for kind in ("kyc_screening", "waiting_for_price", "liquidation_pending_confirmation"):
        assert line(kind, {}, "BTC", None) is None
    # A state change is told by the decision that caused it, except the loan's end.
    assert line("state", {"previous": "ACTIVE", "new": "MARGIN_CALL"}, "BTC", None) is None


async def record(db: Database, key: str, kind: str, detail: dict[str, Any]) -> None:
    async with db.transaction() as session:
        session.add(AuditRecord(key=key, loan_id="N1", at=AT, kind=kind, state="ACTIVE",
                                detail=detail, price=None, observation_id=None))


async def test_a_restarted_stack_narrates_from_then_on(db: Database) -> None:
    await record(db, "N1:audit:1", "repayment", {"amount": "100", "reference": "old"})
    said: list[str] = []
    narrator = Narrator(db, said.append)
    await narrator.start_here()
    assert await narrator.tell_new() == 0 and said == []
    await record(db, "N1:audit:2", "repayment", {"amount": "250.5", "reference": "w2"})
    await record(db, "N1:audit:3", "kyc_screening", {"outcome": "approved"})
    assert await narrator.tell_new() == 2
    assert said == ["  N1: repayment received: $250.50 (reference w2)"]
