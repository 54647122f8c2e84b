"""Window time <-> the private server's time: one fixed offset for the whole run.

The time-skipping server's clock starts at real time and only moves forward. The window is laid
onto it so that the window's first tick falls just under an hour after the book is imported:
the book's dates and every replayed quote are shifted by the same offset, the loans' own timers
(cure deadline, reminders, daily revaluation, interest, maturity) run on that clock, and every
event maps back to window time by subtracting it.

Why "just under an hour": each loan's daily revaluation falls at the minute of the hour it was
imported at. Placing the import a couple of minutes after a (shifted) hour makes that
revaluation see the same hour's tick as a fresh price, as the production safety net does,
whatever the speed of the machine, provided the import takes less than
`IMPORT_BUDGET` and a tick's work settles within `MARGIN` of real time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)
MARGIN = timedelta(minutes=2)
IMPORT_BUDGET = timedelta(minutes=12)  # keeps every daily revaluation within 15 min of a tick


@dataclass(frozen=True)
class Clock:
    offset: timedelta  # server time = window time + offset

    @classmethod
    def lay(cls, server_now: datetime, first_tick: datetime) -> Clock:
        """The window's first tick at `server_now + 1 h - MARGIN`."""
        anchor = server_now + HOUR - MARGIN
        return cls(offset=anchor - first_tick)

    def to_server(self, at: datetime) -> datetime:
        return at + self.offset

    def to_window(self, at: datetime) -> datetime:
        return at - self.offset


def iso(at: datetime) -> str:
    """ISO 8601 UTC with a Z, to the second (results never carry sub-second noise)."""
    return at.replace(microsecond=0).isoformat().replace("+00:00", "Z")
