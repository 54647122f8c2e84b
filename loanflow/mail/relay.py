"""The notice relay: mails the notices that loans record with their read-model writes.

A loan started with NOTICES_WITH_WRITES (`workflows.base`) does not schedule an activity per
notice: its notices ride with its next read-model write (`LoanRecord.notices`), which records
each once by its key, rendered, `pending` in the outbox (`NoticeDelivery.record_for_relay`).
From there the relay, a task of the worker process, brings each row to a final status through
the same `NoticeDelivery.deliver` as the notice activity and `loanflow mail resend`: the claim,
the point of no return before the data, `sent` on the server's 250, the probe or `unconfirmed`
when nobody can know. So a message still goes out once per server acceptance; what the relay
adds is only which rows to take, and in which order.

- Oldest first, in `LANES` lanes at once (each on an SMTP connection kept for the pass), each
  loan in one lane, so a loan's notices go in the order it recorded them: a row that cannot go
  yet (a 4xx for its recipient, another attempt holding it) holds back its loan's later rows
  for a while, longer each time (up to `max_backoff`); other loans' rows go on.
- The mail server down is an outage, not a loan's problem: after a few rows in a row that
  cannot go (OUTAGE_AFTER, across the lanes), the pass stops and the relay waits, longer each
  time (up to `max_backoff`), then tries again. Nothing is lost meanwhile: every row waits in
  the outbox.
- A row a stopped relay held (a worker killed mid-send) is taken again: before the data once
  its claim is older than one SMTP timeout (a live holder would be fenced out by the claim's
  version anyway), after it once the claim is older than the in-flight grace, when the probe
  or `unconfirmed` decides, exactly as for a retried activity.
- One relay sends per database, however many workers run one: the one holding the relay
  lease (`loanflow.mail.relay_lease`); the others stand by and take over when it goes. Even
  two at once would send each message once (the claims fence them); the lease keeps a loan's
  notices in order across workers.

A write in this process rings the relay's bell (`ring`), so a notice leaves at once; rows
recorded by another process are found by the poll.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from datetime import timedelta

from temporalio.exceptions import ApplicationError

from loanflow.mail import outbox
from loanflow.mail.delivery import NoticeDelivery
from loanflow.mail.relay_lease import RelayLease
from loanflow.mail.smtp import SmtpSession
from loanflow.notice_schema import PENDING, OutboxRow

log = logging.getLogger("loanflow.relay")

_BELLS: set[asyncio.Event] = set()
# Rows that could not go, one after another across the lanes, before a pass is an outage.
OUTAGE_AFTER = 3
# Messages on their way at once, each on a connection of its own, each loan in one lane.
LANES = 4
# How often a relay standing by (another worker's holds the lease) asks for the lease.
STANDBY = 5.0


def ring() -> None:
    """Notices were recorded in this process: its relays look now, not at their next poll."""
    for bell in _BELLS:
        bell.set()


class NoticeRelay:
    """Delivers the outbox's due rows (see the module's docstring)."""

    def __init__(self, delivery: NoticeDelivery, *, poll: float = 0.5, batch: int = 500,
                 max_backoff: float = 30.0, lanes: int = LANES,
                 lease: RelayLease | None = None) -> None:
        self.delivery = delivery
        self.lease = lease or RelayLease(delivery.db)
        self.poll, self.batch, self.max_backoff = poll, batch, max_backoff
        # One SMTP connection per lane, kept for a pass.
        self.sessions = [SmtpSession(delivery.smtp) for _ in range(lanes)]
        # Loans whose oldest due row could not go: (not before, last wait), on the loop's clock.
        self._held: dict[str, tuple[float, float]] = {}
        self._stopping = asyncio.Event()
        self._failures = 0  # rows of this pass that could not go, one after another

    async def run(self) -> None:
        """Relay until `stop` (see there), while this worker holds the relay lease; stand by
        while another does."""
        bell = asyncio.Event()
        _BELLS.add(bell)
        backoff = 0.0
        try:
            while not self._stopping.is_set():
                if not await self._leased():
                    await self._pause(self._stopping, STANDBY)
                    continue
                bell.clear()
                if await self.relay_due():
                    backoff = 0.0
                    await self._pause(bell, self.poll)
                else:  # an outage: wait it out, however many notices ring meanwhile
                    backoff = min(max(2 * backoff, 1.0), self.max_backoff)
                    log.warning("notice relay: notices cannot go out; trying again in %.0f s",
                                backoff)
                    await self._pause(self._stopping, backoff)
        finally:
            _BELLS.discard(bell)
            await self.lease.release()

    async def _leased(self) -> bool:
        """Does this relay hold the database's relay lease (taking it if it is free)?"""
        was_held = self.lease.held
        try:
            held = await self.lease.acquire()
        except Exception as err:  # the database away: try again after the standby
            log.warning("notice relay: cannot take the relay lease: %s", err)
            return False
        if held and not was_held:
            log.info("notice relay: this worker relays the outbox's notices")
        return held

    def stop(self) -> None:
        """Ask the relay to stop after the row it is on (await its task to know it has). Never
        cancel it: cancelled inside a database call, a SQLite write could keep its lock, and every
        writer of the desk (the loans' own writes) would wait on it."""
        self._stopping.set()

    async def _pause(self, event: asyncio.Event, seconds: float) -> None:
        """Until `event` is set (or the relay is stopped), at most `seconds`."""
        waits = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._stopping.wait())}
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def relay_due(self) -> bool:
        """One pass over the due rows; False if it stopped at an outage."""
        after: OutboxRow | None = None
        try:
            while True:
                now = self.delivery.clock()
                due = await outbox.due(
                    self.delivery.db, limit=self.batch, after=after,
                    claimed_before=now - timedelta(seconds=self.delivery.smtp.timeout),
                    stale_before=now - self.delivery.in_flight_grace)
                if not await self._deliver_in_lanes(due):
                    return False
                if len(due) < self.batch:
                    return True
                # On past what this batch left (held loans' rows): a batch of nothing but
                # held rows would otherwise come back again and again until the holds end.
                after = due[-1]
        except Exception as err:  # the database away, say: the relay outlives it
            log.warning("notice relay paused: %s", err)
            return False
        finally:
            for session in self.sessions:  # idle connections are not kept
                await session.close()

    async def _deliver_in_lanes(self, due: list[OutboxRow]) -> bool:
        """The rows in `lanes` lanes at once, each loan's rows in one lane, in their order;
        every lane finishes before the next pass (so no row is in two lanes)."""
        self._failures = 0
        lanes: list[list[OutboxRow]] = [[] for _ in self.sessions]
        for row in due:
            lanes[zlib.crc32(row.loan_id.encode()) % len(lanes)].append(row)
        done = await asyncio.gather(*(self._deliver(rows, session)
                                      for rows, session in zip(lanes, self.sessions) if rows),
                                    return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        return all(done)

    async def _deliver(self, due: list[OutboxRow], session: SmtpSession) -> bool:
        """Deliver these rows in order, but none of a held loan's; False at an outage (rows
        that could not go, OUTAGE_AFTER in a row across the lanes). The pending ones are
        claimed together first (one statement, not one each); those left untried are given
        back at the end."""
        pending = [row for row in due
                   if row.status == PENDING and not self._held_back(row.loan_id)]
        claimed = await outbox.claim(self.delivery.db, pending, self.delivery.clock())
        try:
            for row in due:
                if self._failures >= OUTAGE_AFTER:
                    return False
                if self._stopping.is_set():
                    return True
                if not self._held_back(row.loan_id):
                    await self._deliver_row(row, claimed.pop(row.notice_key, None), session)
            return self._failures < OUTAGE_AFTER
        finally:
            await outbox.release(self.delivery.db, claimed, self.delivery.clock())

    async def _deliver_row(self, row: OutboxRow, claimed: int | None,
                           session: SmtpSession) -> None:
        """One row: sent as claimed at version `claimed`, or the whole way (`deliver`) if it
        was not (a row taken over from a stopped relay, say). A row that cannot go yet holds
        back its loan."""
        try:
            if claimed is None:
                await self.delivery.deliver(row.notice_key, session)
            else:
                await self.delivery.deliver_claimed(row, claimed, session)
        except ApplicationError as err:
            self._hold(row.loan_id)
            self._failures += 1
            # (the delivery logged a mail server's refusal; this says the rest)
            log.info("notice %s not sent yet: %s", row.notice_key, err.message)
            return
        self._failures = 0
        self._held.pop(row.loan_id, None)

    def _held_back(self, loan_id: str) -> bool:
        """Does this loan wait (a notice of its could not go): its later rows wait too."""
        hold = self._held.get(loan_id)
        return hold is not None and asyncio.get_running_loop().time() < hold[0]

    def _hold(self, loan_id: str) -> None:
        """Hold a loan's rows back, longer each time one could not go (up to max_backoff)."""
        backoff = min(max(2 * self._held.get(loan_id, (0.0, 0.0))[1], 1.0), self.max_backoff)
        self._held[loan_id] = (asyncio.get_running_loop().time() + backoff, backoff)
