"""The built-in fake venue, made reproducible for stress runs.

`FakeExchange` draws its few basis points of noise from one random sequence in the order sales
arrive; in a crash hour dozens of loans sell at once and that order is the worker's thread
timing. Here each fill's noise is drawn from the seed and the order's own notional, so a run
gives the same fills whatever order the sales happen in."""

from __future__ import annotations

import random
from decimal import Decimal

from activities.exchange import FakeExchange
from activities.support import FakeFaults
from loanflow.db import Database


class SeededExchange(FakeExchange):
    def __init__(self, db: Database, seed: int) -> None:
        super().__init__(db, FakeFaults())  # no latency, no outages: nothing to wait for
        self.seed = seed

    def slippage(self, notional_usd: Decimal) -> Decimal:
        # Synchronous between the draw and its use: no other sale can take this sequence.
        self.rng = random.Random(f"{self.seed}:{notional_usd}")
        return super().slippage(notional_usd)
