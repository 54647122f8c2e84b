"""A stress run's private servers: the book split over several time-skipping test servers,
their clocks advanced together, hour by hour.

Why more than one: the test server keeps a list of every time lock ever taken and released
(two entries per workflow task and per activity, never dropped: `lockEvents` in sdk-java's
`SelfAdvancingTimerImpl`), and walks it from the start on every state change and every timer
that fires. Its cost per step grows with everything the run has done so far: on one server the
FTX month's last daily revaluations cost four to six times its first. Each of K servers holds
1/K of the book, so its list is 1/K as long and it walks it 1/K as often: 1/K of the work.

How they stay on one clock: each server's clock jumps only when nothing runs on it, so a
server told to sleep until T comes back when everything due before T is done. The runner
advances every server to each tick hour together (`Shards.advance_to`), and only the server
that runs the market monitor takes the tick itself, once the others are there: no loan ever
sees an hour's price before it has finished the hour before.

Which loan runs where: a hash of its workflow id (`shard_of`), the same in every process, so a
worker process needs only the servers' addresses (in order) to signal any loan
(`ShardRouter`). The market monitor always runs on the first server.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from loanflow.binaries import test_server

# A book this size or smaller runs on one server; each further this many loans get another.
LOANS_PER_SERVER = 250
MAX_SERVERS = 8
# The monitor's server stops this short of a tick hour while the others reach it: the tick
# fires only once every server has finished the hour before.
BEFORE_TICK = timedelta(seconds=1)
# The longest the runner waits for a server to reach an hour (the runner gives up sooner).
WAIT = timedelta(hours=1)


def servers_for(loans: int) -> int:
    """The default number of servers for a book of `loans` loans."""
    return max(1, min(MAX_SERVERS, -(-loans // LOANS_PER_SERVER)))


def shard_of(workflow_id: str, count: int) -> int:
    """Which of `count` servers runs this workflow: stable across processes and runs."""
    return zlib.crc32(workflow_id.encode()) % count


class ShardRouter:
    """Reaches a loan on whichever server runs it: what the market fan-out signals through."""

    def __init__(self, clients: Sequence[Client]) -> None:
        self.clients = list(clients)

    def client_for(self, workflow_id: str) -> Client:
        return self.clients[shard_of(workflow_id, len(self.clients))]

    def get_workflow_handle(self, workflow_id: str, **kwargs: Any) -> WorkflowHandle[Any, Any]:
        return self.client_for(workflow_id).get_workflow_handle(workflow_id, **kwargs)


class Shards:
    """K private time-skipping servers; the first one also runs the market monitor."""

    def __init__(self, envs: Sequence[WorkflowEnvironment]) -> None:
        self.envs = list(envs)
        self.router = ShardRouter([env.client for env in self.envs])

    @classmethod
    async def start(cls, count: int, **options: Any) -> Shards:
        started = await asyncio.gather(
            *(WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=test_server(), **options) for _ in range(count)),
            return_exceptions=True)
        envs = [e for e in started if isinstance(e, WorkflowEnvironment)]
        failed = [e for e in started if isinstance(e, BaseException)]
        if failed:
            await asyncio.gather(*(e.shutdown() for e in envs), return_exceptions=True)
            raise failed[0]
        return cls(envs)

    @property
    def first(self) -> WorkflowEnvironment:
        return self.envs[0]

    @property
    def addresses(self) -> list[str]:
        return [env.client.service_client.config.target_host for env in self.envs]

    def split(self, workflow_ids: Sequence[str]) -> list[list[int]]:
        """Positions of `workflow_ids` per server, in order."""
        parts: list[list[int]] = [[] for _ in self.envs]
        for index, workflow_id in enumerate(workflow_ids):
            parts[shard_of(workflow_id, len(self.envs))].append(index)
        return parts

    async def now(self) -> datetime:
        """The latest of the servers' clocks (they start a few milliseconds apart)."""
        return max(await asyncio.gather(*(env.get_current_time() for env in self.envs)))

    async def advance_to(self, at: datetime, *, tick: bool = False) -> None:
        """Every server to `at`, once all that is due before it has run. With `tick`, the
        monitor's server waits `BEFORE_TICK` short of it until every other server is there,
        and then takes the tick hour alone."""
        first_to = at - BEFORE_TICK if tick and len(self.envs) > 1 else at
        await asyncio.gather(_advance(self.first, first_to),
                             *(_advance(env, at) for env in self.envs[1:]))
        if first_to != at:
            await _advance(self.first, at)

    async def shutdown(self) -> None:
        await asyncio.gather(*(env.shutdown() for env in self.envs), return_exceptions=True)


async def _advance(env: WorkflowEnvironment, at: datetime) -> None:
    """`env.sleep`, without the client's default deadline: in a crash hour the server may
    take minutes of real time to get through the work due before `at`."""
    ahead = at - await env.get_current_time()
    if ahead > timedelta(0):
        request = SleepRequest()
        request.duration.FromTimedelta(ahead)
        await env.client.test_service.unlock_time_skipping_with_sleep(request, timeout=WAIT)
