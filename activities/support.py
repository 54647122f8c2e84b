"""Plumbing shared by the activities: how the built-in fakes misbehave, how a business refusal
is raised, and how an effect on an outside service happens once by its business key
(`effect_once`, built on `find_or_check` and `write_once`)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from decimal import Decimal
from typing import Generic, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from loanflow.db import Database
from loanflow.settings import Settings

T = TypeVar("T")
A = TypeVar("A")
S = TypeVar("S")

# The error type of a simulated outage; Temporal retries it like any transient failure.
TRANSIENT = "VendorUnavailable"


class FakeFaults:
    """How a built-in fake of an outside service behaves on the wire: it takes a while to answer
    and now and then fails. A failure is always raised before the service does anything, the
    way a refused connection or a 503 is, so a retry is always safe."""

    def __init__(
        self,
        latency_ms: int = 0,
        failure_rate: Decimal = Decimal(0),
        rng: random.Random | None = None,
    ) -> None:
        if not Decimal(0) <= failure_rate <= Decimal(1):
            raise ValueError(f"failure_rate must be in [0, 1], got {failure_rate}")
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self.rng = rng or random.Random()

    @classmethod
    def from_settings(cls, settings: Settings, name: str) -> FakeFaults:
        """Faults for the fake called `name`. With a seed each fake gets its own reproducible
        sequence (seeded by seed and name), so adding a fake does not shift the others."""
        seed = None if settings.fake_seed is None else f"{settings.fake_seed}:{name}"
        return cls(settings.fake_latency_ms, settings.fake_failure_rate, random.Random(seed))

    async def call(self, service: str, operation: str) -> None:
        """Wait like a network round trip (0.5x to 1.5x the latency), then maybe fail."""
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms * self.rng.uniform(0.5, 1.5) / 1000)
        if self._fails():
            raise ApplicationError(
                f"{service}: {operation} failed: service unavailable (simulated transient fault)",
                type=TRANSIENT,
                non_retryable=False,
            )

    def _fails(self) -> bool:
        # A probability, not money, but kept in integers all the same: rate 1 always fails.
        return self.rng.randrange(1_000_000) < int(self.failure_rate * 1_000_000)


class ServiceActivities(Generic[S]):
    """Activities whose effects happen at one outside service (a custodian, a payment rail, a
    venue) and are recorded in the database, each once by its business key (`effect_once`)."""

    def __init__(self, db: Database, service: S) -> None:
        self.db = db
        self.service = service


def refuse(message: str, error_type: str) -> ApplicationError:
    """A business refusal: retrying cannot help, so Temporal must not retry it."""
    return ApplicationError(message, type=error_type, non_retryable=True)


def conflict(key: str, what: str) -> ApplicationError:
    """The same idempotency key came back with a different request: a bug in the caller."""
    return refuse(
        f"idempotency key {key!r} was already used for a different {what}", "IdempotencyConflict"
    )


async def write_once(
    db: Database,
    write: Callable[[AsyncSession], Awaitable[T]],
    lookup: Callable[[AsyncSession], Awaitable[T | None]],
) -> tuple[T, bool]:
    """Write an effect's records in one transaction; return (result, created).

    The caller has looked for the effect and not found it, or (`post_ledger`) lets the unique
    key find it; either way a duplicate running at the same time (two workers, or a retry
    racing a slow first attempt) may have written it. Then the unique keys make our
    transaction fail as a whole, and what the winner wrote is returned instead with
    created=False.
    """
    try:
        async with db.transaction() as session:
            return await write(session), True
    except IntegrityError:
        async with db.transaction() as session:
            found = await lookup(session)
        if found is None:
            raise
        return found, False


async def find_or_check(
    session: AsyncSession,
    lookup: Callable[[AsyncSession], Awaitable[T | None]],
    check: Callable[[AsyncSession], Awaitable[None]],
) -> T | None:
    """The effect already recorded under the key, or None once `check` has found that it may
    happen (a balance is enough). The check reads first and the lookup second: a duplicate
    that completes in between has used up the balance the check looks at, and is then found by
    the lookup rather than refused by the check."""
    try:
        await check(session)
    except ApplicationError:
        found = await lookup(session)
        if found is None:
            raise
        return found
    return await lookup(session)



async def effect_once(
    db: Database,
    lookup: Callable[[AsyncSession], Awaitable[T | None]],
    outside: Callable[[], Awaitable[A]],
    write: Callable[[AsyncSession, A], Awaitable[T]],
    check: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> T:
    """The shape of every effect on an outside service: look the effect up by its key (and,
    with `check`, see that it may happen: `find_or_check`); if it is not recorded yet, call
    the service (`outside`), then record what it answered once (`write_once`), which the
    lookup finds from then on. The service must itself be idempotent by the key: a worker
    killed between the call and the write calls it again, and must get the same answer."""
    async with db.transaction() as session:
        if check is None:
            found = await lookup(session)
        else:
            found = await find_or_check(session, lookup, check)
    if found is not None:
        return found
    answer = await outside()

    async def record(session: AsyncSession) -> T:
        return await write(session, answer)

    result, _ = await write_once(db, record, lookup)
    return result

@asynccontextmanager
async def heartbeating(every: float = 2.0) -> AsyncIterator[None]:
    """Heartbeat every `every` seconds while the body runs, so that the server notices a dead
    worker's attempt within the activity's heartbeat timeout (not its start-to-close timeout)."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
