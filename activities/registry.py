"""Everything a worker registers: the activity objects wired to the database and to the
outside services (built-in fakes unless real ones are passed in).

    activities = build_activities(db, settings)
    Worker(client, task_queue=settings.task_queue, workflows=[...], activities=activities)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from activities.custody import Custodian, CustodyActivities, FakeCustodian
from activities.exchange import Exchange, ExchangeActivities, FakeExchange
from activities.kyc import KycActivities
from activities.ledger import LedgerActivities
from activities.migration import MigrationActivities
from activities.payouts import FakePayoutRail, PayoutActivities, PayoutRail
from activities.pricing import PricingActivities
from activities.store import StoreActivities
from activities.support import FakeFaults
from loanflow.db import Database
from loanflow.mail.delivery import NoticeDelivery
from loanflow.settings import Settings

if TYPE_CHECKING:
    from activities.market import Signaller
    from activities.notify import NotifyActivities


def build_activities(
    db: Database,
    settings: Settings,
    *,
    notice_activities: list[Callable[..., Any]] | None = None,
    custodian: Custodian | None = None,
    exchange: Exchange | None = None,
    payout_rail: PayoutRail | None = None,
    client: Signaller | None = None,
) -> list[Callable[..., Any]]:
    """The bound activity methods for a `Worker`, one per name in `ActivityName`.

    Outside services default to the built-in fakes, configured from the settings
    (`fake_latency_ms`, `fake_failure_rate`, `fake_seed`); pass `custodian`, `exchange` or
    `payout_rail` to use others. Notices: `notice_activities=None` registers
    `activities.notify.NotifyActivities(db, settings).record_notice` if that module is there;
    pass a list to register those instead (`[]` for none).

    With a Temporal `client` (or another `activities.market.Signaller`), the market monitor's
    activities are added too (`market_observe`, `market_fan_out`): the fan-out signals loans
    through it.
    """

    def faults(name: str) -> FakeFaults:
        return FakeFaults.from_settings(settings, name)

    kyc = KycActivities(faults("kyc"))
    pricing = PricingActivities(db)
    custody = CustodyActivities(db, custodian or FakeCustodian(faults("custodian")))
    payouts = PayoutActivities(db, payout_rail or FakePayoutRail(faults("payout_rail")))
    exchange_activities = ExchangeActivities(
        db, exchange or FakeExchange(db, faults("exchange"), faults("exchange_fills").rng)
    )
    ledger = LedgerActivities(db)
    store = StoreActivities(db, NoticeDelivery.for_settings(db, settings))
    migration = MigrationActivities(db)
    if notice_activities is None:
        notice_activities = default_notice_activities(db, settings)
    return [
        kyc.screen_borrower,
        pricing.latest_price,
        custody.open_deposit_address,
        custody.record_deposit,
        custody.release_collateral,
        payouts.disburse,
        exchange_activities.sell_collateral,
        ledger.post_ledger,
        store.record_loan,
        store.refresh_loan,
        store.claim_loan_id,
        migration.imported_loan,
        *notice_activities,
        *market_activities(db, client),
    ]


def market_activities(db: Database, client: Signaller | None) -> list[Callable[..., Any]]:
    if client is None:
        return []
    from activities.market import MarketActivities

    market = MarketActivities(db, client)
    return [market.observe, market.fan_out]


def default_notice_activities(db: Database, settings: Settings) -> list[Callable[..., Any]]:
    return [notifier(db, settings).record_notice]


def notifier(db: Database, settings: Settings) -> NotifyActivities:
    """The notice activity, wired to the local mail sink's probe when mail goes to this machine
    (`NoticeDelivery.for_settings`)."""
    from activities.notify import NotifyActivities

    return NotifyActivities.for_settings(db, settings)
