"""The timeline's one-line summaries, for people: LTVs as percentages, never 60 digits."""

from __future__ import annotations

from loanflow.timeline import describe


def test_ltv_details_read_as_percentages() -> None:
    detail = {"ltv": "0.824175824175824175824175824175824175824175824175824175824176",
              "margin_call_ltv": "0.70", "cure_top_up": "0.56250000", "reason": None}

    assert describe(detail) == "ltv=82.42%, margin_call_ltv=70.00%, cure_top_up=0.56250000"


def test_an_ltv_detail_that_is_no_number_stays_as_it_is() -> None:
    assert describe({"ltv": "n/a", "ltv_after": "Infinity"}) == (
        "ltv=n/a, ltv_after=infinite (collateral worth less than a cent)")
