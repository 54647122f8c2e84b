"""How workflow code calls activities: by name, with the typed models of `loanflow.effects`,
and with retry policies that match what each effect can tolerate."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

# Effects on money, collateral and inboxes are idempotent by key, so they may be retried for as
# long as it takes: giving up would leave a loan half done.
EFFECT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    # ...except a value the store can never hold (loanflow.db.ValueTooLong): a 300-character
    # name once made the notice activity retry forever on PostgreSQL.
    non_retryable_error_types=["ValueTooLong"],
)
# Reads may fail fast; the loan simply waits for the next chance.
READ_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
)

R = TypeVar("R", bound=BaseModel)


# An attempt that takes longer than this is presumed lost (a worker killed mid-call) and is
# retried; the built-in services answer in well under a second, real ones in a few.
EFFECT_TIMEOUT = timedelta(seconds=20)
# One SMTP session may take up to 4 x SMTP_TIMEOUT_SECONDS (40 s by default).
NOTICE_TIMEOUT = timedelta(seconds=60)
# The notice activity heartbeats every few seconds (activities.support.heartbeating): an
# attempt on a worker that died (SIGKILL) is retried after this, not after NOTICE_TIMEOUT (the
# last margin-call e-mail once went out 64 s after the tick).
NOTICE_HEARTBEAT = timedelta(seconds=10)


async def effect(
    name: str,
    request: BaseModel,
    result_type: type[R],
    *,
    summary: str | None = None,
    timeout: timedelta = EFFECT_TIMEOUT,
    heartbeat: timedelta | None = None,
    local: bool = False,
) -> R:
    """Run an idempotent effect activity to completion (retried until it succeeds or refuses).

    `local`: as a local activity, run inside the workflow task that asks for it (no heartbeat):
    for a short effect where the round trips of a server-scheduled activity (and the workflow
    task that takes in its result) are the cost, as when `loanflow book import` opens thousands
    of loans at once. An attempt lost with its worker is run again with the workflow task,
    under the same key."""
    if local:
        return await workflow.execute_local_activity(
            name,
            request,
            result_type=result_type,
            start_to_close_timeout=timeout,
            retry_policy=EFFECT_RETRY,
            summary=summary or name,
        )
    return await workflow.execute_activity(
        name,
        request,
        result_type=result_type,
        start_to_close_timeout=timeout,
        heartbeat_timeout=heartbeat,
        retry_policy=EFFECT_RETRY,
        summary=summary or name,
    )


# Reads of our own database and writes to the read model are short and idempotent, so they
# run as local activities: one marker event in the loan's history instead of three events and a
# round trip through the server. That keeps a quiet year of daily revaluations well under
# Temporal's continue-as-new suggestion and halves the server work per loan in a crash.


async def read(name: str, request: BaseModel, result_type: type[R], *, summary: str,
               retry: RetryPolicy = READ_RETRY) -> R:
    """A read of our own database. `retry=EFFECT_RETRY` for a read the loan cannot go on
    without (giving up would fail the loan)."""
    return await workflow.execute_local_activity(
        name,
        request,
        result_type=result_type,
        start_to_close_timeout=timedelta(seconds=20),
        retry_policy=retry,
        summary=summary,
    )


async def record(name: str, request: BaseModel, *, summary: str) -> None:
    """Write to the read model / audit log; idempotent, retried until it lands."""
    await workflow.execute_local_activity(
        name,
        request,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=EFFECT_RETRY,
        summary=summary,
    )
