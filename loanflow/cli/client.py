"""The CLI's side of Temporal: connecting, addressing one loan's workflow, its query and
updates, and turning Temporal's failures into one line an operator can act on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from loanflow import search_attributes as sa
from loanflow.cli.errors import CliError
from loanflow.cli.ids import loan_id_of, workflow_id
from loanflow.failures import missing_namespace, missing_namespace_in, unreachable
from loanflow.models import LoanStatus
from loanflow.settings import get_settings
from loanflow.temporal_client import connect, require_namespace

T = TypeVar("T")


async def connect_desk() -> Client:
    """A client for the configured Temporal, or one line saying why there is none (StartupError
    for a broken configuration, a server out of reach or a namespace it does not have,
    SettingsError for a missing key)."""
    client = await connect()
    await require_namespace(client)
    return client


class Loan:
    """One loan's workflow, as the CLI talks to it."""

    def __init__(self, client: Client, ref: str) -> None:
        self.client = client
        self.loan_id = loan_id_of(ref)
        self.handle: WorkflowHandle[Any, LoanStatus] = client.get_workflow_handle(
            workflow_id(self.loan_id), result_type=LoanStatus
        )

    async def status(self) -> LoanStatus:
        """The `status` query. A completed loan answers from its result, which needs no
        worker; a running one needs a worker to answer."""
        async with self.failures("status"):
            described = await self.handle.describe()
            if described.status == WorkflowExecutionStatus.COMPLETED:
                return await self.handle.result()
            return await self.answer(self.handle.query("status", result_type=LoanStatus))

    async def update(self, name: str, request: BaseModel) -> str:
        """Run one update with its validated request; returns the loan's new state."""
        payload = request.model_dump(mode="json")
        async with self.failures(name):
            return await self.answer(self.handle.execute_update(name, payload, result_type=str))

    async def answer(self, call: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(call, get_settings().cli_answer_seconds)
        # An update cancelled by the timeout surfaces as the SDK's own error, not TimeoutError.
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            raise CliError(await self.no_answer()) from None

    @asynccontextmanager
    async def failures(self, action: str) -> AsyncIterator[None]:
        """Temporal's failures as one line each: the validator's own message for a refused
        update, an unknown or ended loan, an unreachable server."""
        try:
            yield
        except WorkflowUpdateFailedError as err:
            raise CliError(refusal(err)) from None
        except WorkflowQueryFailedError as err:
            raise CliError(f"loan {self.loan_id}: {action} failed: {err.message}") from None
        except RPCError as err:
            raise CliError(await self.explain(err, action)) from None

    async def explain(self, err: RPCError, action: str) -> str:
        if err.status == RPCStatusCode.NOT_FOUND:
            return await self.not_found()
        if err.status == RPCStatusCode.UNAVAILABLE:
            return unreachable(self.client.service_client.config.target_host)
        if err.status == RPCStatusCode.DEADLINE_EXCEEDED:
            return await self.no_answer()
        return f"loan {self.loan_id}: {action} failed: {err.message}"

    async def not_found(self) -> str:
        """'Not found' means either no such loan or a loan whose workflow has ended."""
        try:
            described = await self.handle.describe()
        except RPCError as err:
            if missing_namespace_in(err) is not None:
                return missing_namespace(self.client.namespace,
                                         self.client.service_client.config.target_host)
            return f"unknown loan {self.loan_id}"
        state = described.typed_search_attributes.get(sa.LOAN_STATE) or "unknown"
        if described.status == WorkflowExecutionStatus.COMPLETED:
            return f"loan {self.loan_id} is {state}: it accepts no more updates"
        ended = described.status.name.lower() if described.status else "ended"
        return f"loan {self.loan_id} was {ended} (last state {state}): it accepts no more updates"

    async def no_answer(self) -> str:
        try:
            queue = (await self.handle.describe()).task_queue
        except RPCError:
            queue = "?"
        waited = get_settings().cli_answer_seconds
        # Honest about an update: the server holds it for the next worker, but only in memory;
        # the operator should look before sending it again.
        return (f"no worker answered for loan {self.loan_id} within {waited:g} s: start one "
                f"for task queue '{queue}' with `loanflow worker` (or `loanflow up`); an update "
                f"sent now may still be applied when a worker runs: check `loanflow status "
                f"{self.loan_id}` before sending it again")


async def status_or_none(client: Client, loan_id: str) -> LoanStatus | None:
    """A loan's status for a sweep over many loans: None (not an error) for one that cannot
    answer (no such workflow, or one that failed or was terminated)."""
    try:
        return await Loan(client, loan_id).status()
    except CliError:
        return None


def refusal(err: WorkflowUpdateFailedError) -> str:
    """The validator's message (it names the field), without Temporal's wrapping."""
    cause = err.cause
    message = getattr(cause, "message", None) or str(cause) or str(err)
    return str(message)
