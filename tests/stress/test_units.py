"""The pieces of a stress run that need no server: price input, the generated book, policy
files, the clock."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from loanflow.risk import ltv
from loanflow.stress.book import BookSpecError, generate, parse_assets, parse_ltvs
from loanflow.stress.clock import MARGIN, Clock
from loanflow.stress.policies import PolicyFileError, load_policies
from loanflow.stress.prices import PriceError, from_files, from_window, parse_price_arg
from tests.stress.conftest import T0, crafted_closes, write_bars


def test_file_names_say_asset_and_venue_or_the_option_does(tmp_path: Path) -> None:
    named = parse_price_arg("data/binance-usdt/eth-usdt_2022-11_binance_1h.csv")
    assert (named.asset, named.venue, named.currency) == ("ETH", "binance", "USDT")
    stated = parse_price_arg("BTC:Kraken=/x/prices.csv")
    assert (stated.asset, stated.venue, stated.currency, stated.path) == (
        "BTC", "kraken", "USD", Path("/x/prices.csv"))
    with pytest.raises(PriceError, match="state them as BTC:venue="):
        parse_price_arg("prices.csv")


def test_one_venue_per_asset_is_the_quorum_and_the_window_is_the_file(tmp_path: Path) -> None:
    path = write_bars(tmp_path / "btc-usd_2024-01_testvenue_1h.csv", crafted_closes())
    prices = from_files([parse_price_arg(str(path))], tmp_path / "work")
    assert prices.rules().quorum == 1
    assert prices.first_tick == T0 + timedelta(hours=1) and len(prices.ticks()) == 92
    assert prices.first_price("BTC") == Decimal(20000)
    # The data set's windows have one USD venue per asset beside a USDT one: a USDT quote is
    # converted only with a USDT/USD rate (none in the files), so the USD venue is the price.
    assert from_window("2022-11").rules().quorum == 1
    usdt = write_bars(tmp_path / "btc-usdt_2024-01_other_1h.csv", crafted_closes())
    usd2 = write_bars(tmp_path / "btc-usd_2024-01_second_1h.csv", crafted_closes())
    assert from_files([parse_price_arg(str(p)) for p in (path, usdt)],
                      tmp_path / "w2").rules().quorum == 1
    assert from_files([parse_price_arg(str(p)) for p in (path, usdt, usd2)],
                      tmp_path / "w3").rules().quorum == 2


def test_bad_price_input_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(PriceError, match="no such file"):
        from_files([parse_price_arg(str(tmp_path / "btc-usd_x_v_1h.csv"))], tmp_path)
    broken = tmp_path / "btc-usd_2024-01_v_1h.csv"
    broken.write_text("when,close\n2024-01-01T00:00:00Z,1\n2024-01-01T01:00:00Z,2\n")
    with pytest.raises(PriceError, match="missing column 'timestamp'"):
        from_files([parse_price_arg(str(broken))], tmp_path)
    with pytest.raises(PriceError, match="no window 'nope'"):
        from_window("nope")


def test_generated_book_sits_at_its_buckets_and_is_reproducible() -> None:
    prices = {"BTC": Decimal("20453.28"), "ETH": Decimal("1570.60")}
    args = (["BTC", "ETH"], parse_ltvs("0.40,0.65"), 3, 7, prices, T0)
    book = generate(*args)
    assert book == generate(*args) and len(book) == 12
    assert [x.loan_id for x in book[:4]] == ["BTC-40-001", "BTC-40-002", "BTC-40-003",
                                            "BTC-65-001"]
    for loan in book:
        start = ltv(loan.principal_usd, loan.collateral_amount, prices[loan.collateral_asset])
        # Collateral rounded up to the satoshi / wei: the LTV is the bucket, to a hair.
        assert start is not None and abs(start - loan.ltv0) < Decimal("0.000001")
        assert loan.maturity_at - loan.originated_at >= timedelta(days=180)


def test_book_options_are_checked() -> None:
    with pytest.raises(BookSpecError, match="--ltv: 1.2 must be a fraction"):
        parse_ltvs("0.4,1.2")
    with pytest.raises(BookSpecError, match="--assets: DOGE is not supported"):
        parse_assets("BTC,DOGE")


def test_policy_files_override_and_are_named_by_file(tmp_path: Path) -> None:
    strict = tmp_path / "strict.toml"
    strict.write_text("margin_call_ltv = 0.68\ncure_period_hours = 24\n")
    loose = tmp_path / "loose.json"
    loose.write_text('{"liquidation_ltv": "0.85"}')
    policies = load_policies([strict, loose])
    assert [p.name for p in policies] == ["strict", "loose"]
    assert policies[0].overrides is not None
    assert policies[0].overrides.margin_call_ltv == Decimal("0.68")
    assert policies[0].overrides.cure_period_hours == 24
    bad = tmp_path / "bad.toml"
    bad.write_text("margin_call_ltv = 0.95\n")
    with pytest.raises(PolicyFileError, match="bad.toml: margin_call_ltv .* must be below"):
        load_policies([bad])
    unknown = tmp_path / "typo.toml"
    unknown.write_text("margin_cal_ltv = 0.7\n")
    with pytest.raises(PolicyFileError, match="typo.toml: margin_cal_ltv: Extra inputs"):
        load_policies([unknown])


def test_the_clock_is_one_offset_and_the_first_tick_just_under_an_hour_ahead() -> None:
    server_now = T0 + timedelta(days=1000, minutes=7, microseconds=5)
    first_tick = T0 + timedelta(hours=1)
    clock = Clock.lay(server_now, first_tick)
    assert clock.to_server(first_tick) == server_now + timedelta(hours=1) - MARGIN
    assert clock.to_window(clock.to_server(first_tick + timedelta(hours=48))) == (
        first_tick + timedelta(hours=48))
