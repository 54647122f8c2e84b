"""The benchmark's wait for notices (bench/market.py) gives up when none has come for a while,
so a run reports the loans still missing instead of idling out its whole timeout."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bench.market import wait_for_notices
from loanflow.db import Database


class Counted:
    """The progress display: the last count it was shown."""

    last = -1

    def set(self, label: str, value: int) -> None:
        self.last = value


async def test_a_wait_that_sees_no_new_notice_stops_after_the_stall(db: Database) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    progress = Counted()
    started = time.monotonic()
    found = await wait_for_notices(db, "margin_call", since, 5, progress, "calls",
                                   timeout=60, stall=0.5)
    waited = time.monotonic() - started
    assert found == 0 and progress.last == 0
    assert 0.5 <= waited < 30  # the stall, not the hour-long timeout
