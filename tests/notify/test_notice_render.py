"""Rendering notices: every kind, with the figures of a real loan state, escaped, and with the
same facts in text and HTML."""

from __future__ import annotations

import html as htmllib
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from loanflow import risk
from loanflow.effects import Notice
from loanflow.mail import preview
from loanflow.mail.kinds import KINDS, RATIO_FIELDS, TIME_FIELDS, UNITS_FIELDS, USD_FIELDS
from loanflow.mail.message import NOTICE_KEY_HEADER, build_message, message_id_for, to_bytes
from loanflow.mail.render import (
    NoticeDataError,
    NoticeTemplateError,
    render_notice,
    template_kinds,
)
from loanflow.models import Borrower
from loanflow.money import fmt_ratio, fmt_units, fmt_usd
from loanflow.policy import RiskPolicy
from loanflow.settings import Settings

SETTINGS = Settings(
    lender_name="Northwind Credit",
    support_email="help@northwind.example",
    mail_footer="Northwind Credit Ltd. Loans secured by crypto can be liquidated.",
    mail_from="notices@northwind.example",
)
TOKYO = Borrower(id="B1", name="Ada Lovelace", email="ada@example.com", country="JP",
                 timezone="Asia/Tokyo")


def visible_text(markup: str) -> str:
    """What a person sees in the HTML: tags dropped, entities decoded, spaces collapsed."""
    markup = re.sub(r"<(style|title)[^>]*>.*?</\1>", " ", markup, flags=re.S)
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def flat(text: str) -> str:
    return " ".join(text.split())


def expected_figures(data: dict[str, str]) -> dict[str, str]:
    """Each figure of a notice as a person must read it, by the figure's name."""
    asset = data.get("collateral_asset", "BTC")
    shown: dict[str, str] = {}
    for name, value in data.items():
        if name in USD_FIELDS:
            shown[name] = fmt_usd(Decimal(value))
        elif name in UNITS_FIELDS:
            shown[name] = fmt_units(asset, Decimal(value))
        elif name in RATIO_FIELDS:
            shown[name] = fmt_ratio(Decimal(value))
        elif name in TIME_FIELDS:
            moment = datetime.fromisoformat(value).astimezone(timezone.utc)
            shown[name] = f"{moment.day} {moment:%b %Y, %H:%M} UTC"
    return shown


def notice(kind: str, data: dict[str, str], borrower: Borrower = TOKYO) -> Notice:
    return Notice(key=f"L1:notice:{kind}:1", loan_id="L1", kind=kind, borrower=borrower,
                  data=data)


def test_every_kind_has_a_template_pair_and_every_template_a_kind() -> None:
    assert template_kinds() == set(KINDS)
    root = Path(__file__).resolve().parents[2] / "templates"
    for kind in KINDS:
        assert (root / f"{kind}.html.j2").is_file(), kind


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_notice_states_its_figures_in_text_and_html(kind: str) -> None:
    data = preview.sample_data(kind)
    msg = render_notice(notice(kind, data), SETTINGS)
    text, seen = flat(msg.text), visible_text(msg.html)
    assert msg.subject and "\n" not in msg.subject
    assert msg.subject in text and msg.subject in seen
    for name, shown in expected_figures(data).items():
        assert shown in text, f"{kind}: {name} {shown!r} missing from the text"
        assert shown in seen, f"{kind}: {name} {shown!r} missing from the HTML"
    for common in ("Ada Lovelace", "L1", "Northwind Credit", "help@northwind.example",
                   "Loans secured by crypto can be liquidated."):
        assert common in text and common in seen
    assert "None" not in text and "None" not in seen


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_text_and_html_carry_the_same_facts(kind: str) -> None:
    """Every amount, percentage and time in one body is in the other."""
    msg = render_notice(notice(kind, preview.sample_data(kind)), SETTINGS)
    pattern = re.compile(
        r"-?\$[\d,]+\.\d\d|\d[\d,]*(?:\.\d+)? (?:BTC|ETH)|\d[\d,]*\.\d\d%|"
        r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d(?: [A-Z]+)?"
    )
    assert set(pattern.findall(flat(msg.text))) == set(pattern.findall(visible_text(msg.html)))


def margin_call_state(asset: str, amount: str, price: str, days: int) -> dict[str, str]:
    """A real loan state at a margin call: principal plus accrued interest, at a price."""
    p = RiskPolicy()
    principal, rate = Decimal("250000.00"), Decimal("0.11")
    balances = risk.Balances(principal, risk.daily_interest(principal, rate) * days, Decimal(0))
    debt, qty, px = balances.total, Decimal(amount), Decimal(price)
    observed = datetime(2022, 11, 9, 23, 15, tzinfo=timezone.utc)
    return {
        "ltv": str(risk.ltv(debt, qty, px)), "margin_call_ltv": str(p.margin_call_ltv),
        "cure_target_ltv": str(p.cure_target_ltv), "liquidation_ltv": str(p.liquidation_ltv),
        "price": price, "observed_at": observed.isoformat(), "collateral_asset": asset,
        "collateral_amount": amount, "debt_usd": str(debt),
        "cure_deadline": (observed + timedelta(hours=48)).isoformat(),
        "cure_top_up": str(risk.cure_top_up(asset, debt, qty, px, p.cure_target_ltv)),
        "cure_repay_usd": str(risk.cure_repay(debt, qty, px, p.cure_target_ltv)),
        "liquidation_price": str(risk.trigger_price(debt, qty, p.liquidation_ltv)),
        "hard_liquidation_ltv": str(p.hard_liquidation_ltv),
    }


@pytest.mark.parametrize(
    ("asset", "amount", "price"),
    [("BTC", "10", "35400.00"), ("ETH", "180.123456789012345678", "1950.37")],
)
def test_margin_call_states_the_risk_maths_cure_amounts(
    asset: str, amount: str, price: str
) -> None:
    data = margin_call_state(asset, amount, price, days=31)
    p = RiskPolicy()
    debt, qty, px = Decimal(data["debt_usd"]), Decimal(amount), Decimal(price)
    top_up = risk.cure_top_up(asset, debt, qty, px, p.cure_target_ltv)
    repay = risk.cure_repay(debt, qty, px, p.cure_target_ltv)
    assert risk.ltv(debt, qty, px) >= p.margin_call_ltv  # it is a real margin call
    msg = render_notice(notice("margin_call", data), SETTINGS)
    text, seen = flat(msg.text), visible_text(msg.html)
    for shown in (fmt_units(asset, top_up), fmt_usd(repay), fmt_usd(px),
                  fmt_ratio(risk.ltv(debt, qty, px)), fmt_usd(debt)):
        assert shown in text and shown in seen
    # The top-up shown (at most 8 places, rounded up) still cures the call at this price.
    shown_top_up = Decimal(fmt_units(asset, top_up).split()[0].replace(",", ""))
    assert shown_top_up >= top_up
    assert risk.ltv(debt, qty + shown_top_up, px) <= p.cure_target_ltv
    assert risk.ltv(debt - repay, qty, px) <= p.cure_target_ltv
    # The deadline in UTC and on the borrower's clock (Tokyo is UTC+9).
    assert "11 Nov 2022, 23:15 UTC" in text and "12 Nov 2022, 08:15 JST in Asia/Tokyo" in text
    assert "11 Nov 2022, 23:15 UTC" in msg.subject
    # And what happens if nothing is done.
    assert "What happens if nothing is done" in text
    assert f"If your LTV reaches 80.00% (a {asset} price of" in text
    # ... stated as the desk acts: on a confirmed level, at once only past the hard floor.
    for said in (text, seen):
        assert "as soon as a second price observation confirms that level" in said
        assert "at 90.00% or above, on the first observation" in said
        assert "at once" not in said


def test_deadline_without_a_known_time_zone_is_utc_only() -> None:
    data = margin_call_state("BTC", "10", "35400.00", days=31)
    for zone in (None, "Mars/Olympus_Mons", "UTC", "../etc/passwd"):
        borrower = TOKYO.model_copy(update={"timezone": zone})
        text = render_notice(notice("margin_call", data, borrower), SETTINGS).text
        assert "DEADLINE: 11 Nov 2022, 23:15 UTC\n" in text, zone


def test_deadline_follows_daylight_saving_time() -> None:
    data = {"cure_deadline": "2024-07-01T16:00:00Z", "previous_deadline": "2024-01-15T16:00:00Z",
            "hours": "24", "reason": "bank holiday"}
    borrower = TOKYO.model_copy(update={"timezone": "America/New_York"})
    text = render_notice(notice("cure_extended", data, borrower), SETTINGS).text
    assert "1 Jul 2024, 12:00 EDT in America/New_York" in text
    assert "15 Jan 2024, 11:00 EST in America/New_York" in text


def test_html_is_escaped_and_text_shows_it_as_written() -> None:
    evil = TOKYO.model_copy(update={"name": "<script>alert('x')</script> & Co"})
    data = {"reason": "<img src=x onerror=alert(1)>"}
    msg = render_notice(notice("application_rejected", data, evil), SETTINGS)
    assert "<script>" not in msg.html and "<img" not in msg.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co" in msg.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in msg.html
    assert "Dear <script>alert('x')</script> & Co," in msg.text
    assert "<img src=x onerror=alert(1)>" in msg.text


def test_amounts_are_for_people_and_never_floats() -> None:
    data = {"principal_usd": "1234567.891", "collateral_asset": "BTC",
            "collateral_amount": "1234.123456789", "term_days": 90, "annual_rate": "0.125"}
    text = render_notice(notice("application_received", data), SETTINGS).text
    assert "$1,234,567.89" in text
    assert "1,234.12345679 BTC" in text  # 8 places at most, rounded up
    assert "12.50% a year" in text
    assert "90 days" in text
    assert "e+" not in text and "E+" not in text


def test_a_kind_without_a_template_raises_a_clear_error() -> None:
    with pytest.raises(NoticeTemplateError, match="no template for notice kind 'bonus_offer'"):
        render_notice(notice("bonus_offer", {}), SETTINGS)
    with pytest.raises(NoticeTemplateError):
        render_notice(notice("../base", {}), SETTINGS)


def test_a_missing_required_figure_fails_loudly() -> None:
    data = margin_call_state("BTC", "10", "35400.00", days=31)
    del data["cure_top_up"], data["cure_repay_usd"]
    with pytest.raises(NoticeDataError, match="cure_top_up, cure_repay_usd"):
        render_notice(notice("margin_call", data), SETTINGS)
    with pytest.raises(NoticeDataError, match="expected a number"):
        render_notice(notice("loan_defaulted", {"shortfall_usd": "lots"}), SETTINGS)


def test_missing_optional_figures_read_na_and_unknown_keys_are_ignored() -> None:
    data = {"shortfall_usd": "1000.00", "something_new": "42"}
    msg = render_notice(notice("loan_defaulted", data), SETTINGS)
    assert "Collateral sold:        n/a" in msg.text
    assert "$1,000.00" in msg.text and "42" not in msg.text


def test_the_message_is_multipart_alternative_with_a_deterministic_message_id() -> None:
    n = notice("margin_call", margin_call_state("BTC", "10", "35400.00", days=31))
    rendered = render_notice(n, SETTINGS)
    when = datetime(2022, 11, 9, 23, 15, 2, tzinfo=timezone.utc)
    built = [build_message(notice_key=n.key, subject=rendered.subject, text=rendered.text,
                           html=rendered.html, to_name="<Ada> \"L\"", to_address="ada@example.com",
                           settings=SETTINGS, date=when) for _ in range(2)]
    assert to_bytes(built[0]) == to_bytes(built[1])  # a retry sends the very same bytes
    msg = BytesParser(policy=policy.default).parsebytes(to_bytes(built[0]))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Message-ID"] == message_id_for(n.key, SETTINGS.mail_from)
    assert msg["Message-ID"].endswith("@northwind.example>")
    assert msg[NOTICE_KEY_HEADER] == n.key
    assert msg["From"].addresses[0].display_name == "Northwind Credit"
    assert msg["From"].addresses[0].addr_spec == "notices@northwind.example"
    assert msg["To"].addresses[0].addr_spec == "ada@example.com"
    assert msg["To"].addresses[0].display_name == "<Ada> \"L\""
    assert msg["Reply-To"].addresses[0].addr_spec == "help@northwind.example"
    assert msg["Subject"] == rendered.subject
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == rendered.text
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == rendered.html
    assert message_id_for("L1:notice:a:1", "x@y") != message_id_for("L1:notice:a:2", "x@y")


def test_a_message_in_other_scripts_goes_out_in_seven_bits_and_reads_back_the_same() -> None:
    subject = "Appel de marge sur votre prêt — déposez 0,25 BTC avant le 5 déc. " * 3
    text, html = "Chère Zoë Müller,\n€ 1 234,56 à régler.\n" * 20, "<p>Zoë — €</p>\n"
    raw = to_bytes(build_message(notice_key="L1:notice:margin_call:1", subject=subject,
                                 text=text, html=html, to_name="Zoë Müller, \"née\" Ōta",
                                 to_address="zoe@example.com", settings=SETTINGS,
                                 date=datetime(2022, 11, 9, tzinfo=timezone.utc)))
    assert raw.isascii()  # any relay takes it, 8BITMIME or not
    assert all(len(line) <= 78 for line in raw.split(b"\r\n")[:12])  # headers folded
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert msg["Subject"] == " ".join(subject.split())
    assert msg["To"].addresses[0].display_name == "Zoë Müller, \"née\" Ōta"
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == text
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == html


def test_preview_writes_every_kind_to_html_and_text(tmp_path: Path) -> None:
    assert preview.main(["--out", str(tmp_path), "--timezone", "Europe/Zurich"]) == 0
    for kind in KINDS:
        assert "</html>" in (tmp_path / f"{kind}.html").read_text()
        assert (tmp_path / f"{kind}.txt").read_text().startswith("Subject: ")
    assert "margin_call.html" in (tmp_path / "index.html").read_text()
    assert "in Europe/Zurich" in (tmp_path / "margin_call.txt").read_text()


LIQUIDATION_CAUSES = {
    # cause: (figures beyond the sample sale, what the borrower must read)
    "cure_deadline": ({}, "the margin call on this loan was not cured by its deadline, "
                          "5 Apr 2024, 00:00 UTC"),
    "liquidation_level": ({"observed_at": "2024-04-05T00:01:00Z"},
                          "A second, later price observation confirmed it."),
    "hard_floor": ({}, "At 90.00% or above we sell on the first observation."),
    "maturity": ({}, "not repaid at maturity and the grace period has ended"),
}


@pytest.mark.parametrize("cause", sorted(LIQUIDATION_CAUSES))
def test_a_sale_notice_says_why_with_the_figures_it_acted_on(cause: str) -> None:
    extra, because = LIQUIDATION_CAUSES[cause]
    data = preview.sample_data("liquidation_executed") | extra | {
        "cause": cause, "margin_call_ltv": "0.70", "liquidation_ltv": "0.80",
        "hard_liquidation_ltv": "0.90"}
    msg = render_notice(notice("liquidation_executed", data), SETTINGS)
    text, seen = flat(msg.text), visible_text(msg.html)
    price, ltv = fmt_usd(Decimal(data["price"])), fmt_ratio(Decimal(data["ltv_before"]))
    for said in (text, seen):
        assert because in said
        assert f"at a BTC price of {price}" in said
        if cause != "maturity":
            assert f"the LTV of your loan was {ltv}" in said
        assert "no margin call before this sale" not in said  # a call was open (cure_deadline)
        assert "Reason:" not in said  # the audit's wording is not the borrower's


def test_a_sale_without_a_margin_call_first_says_so() -> None:
    data = {k: v for k, v in preview.sample_data("liquidation_executed").items()
            if k != "cure_deadline"} | {"cause": "liquidation_level", "margin_call_ltv": "0.70",
                                        "liquidation_ltv": "0.80"}
    msg = render_notice(notice("liquidation_executed", data), SETTINGS)
    for said in (flat(msg.text), visible_text(msg.html)):
        assert ("The price fell past the margin-call level (70.00%) and the liquidation level "
                "between two of our price observations, so there was no margin call before "
                "this sale.") in said


def test_a_sale_notice_recorded_before_causes_existed_still_renders() -> None:
    data = {k: v for k, v in preview.sample_data("liquidation_executed").items()
            if k not in ("cause", "cure_deadline", "price", "ltv_before")}
    msg = render_notice(notice("liquidation_executed", data), SETTINGS)
    assert "Reason: cure deadline passed" in msg.text


def test_a_dust_close_out_says_everything_was_sold_and_why() -> None:
    data = preview.sample_data("liquidation_executed") | {
        "closed_out": "dust", "collateral_left": "0", "debt_usd": "0", "surplus_usd": "0.42"}
    msg = render_notice(notice("liquidation_executed", data), SETTINGS)
    for said in (flat(msg.text), visible_text(msg.html)):
        assert "We have sold all of the collateral of your loan" in said
        assert "repaid the loan in full from the proceeds and paid the rest out to you" in said
        assert "whose proceeds are rounded to the cent" in said
        assert "sold part of" not in said


def test_a_partial_sale_says_part() -> None:
    msg = render_notice(notice("liquidation_executed",
                               preview.sample_data("liquidation_executed")), SETTINGS)
    for said in (flat(msg.text), visible_text(msg.html)):
        assert "We have sold part of the collateral" in said and "all of the collateral" not in said
