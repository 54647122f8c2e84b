"""The stress run's private servers (`loanflow.stress.shards`): how a book is split over them,
and their clocks advanced together, on real time-skipping test servers."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from temporalio import workflow
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import Worker

from loanflow.stress.shards import MAX_SERVERS, Shards, servers_for, shard_of


@workflow.defn(sandboxed=False)
class Sleeper:
    @workflow.run
    async def run(self, hours: int) -> None:
        await workflow.sleep(timedelta(hours=hours))


def test_one_server_per_250_loans_at_most_eight() -> None:
    assert [servers_for(n) for n in (1, 250, 251, 1000, 2000, 100_000)] == [1, 1, 2, 4, 8, 8]
    assert servers_for(100_000) == MAX_SERVERS


def test_a_loan_always_lands_on_the_same_server_and_the_book_is_spread() -> None:
    ids = [f"loan-default-BTC-{ltv}-{i:03d}" for ltv in (40, 50, 60, 65) for i in range(1, 126)]
    assert [shard_of(x, 4) for x in ids] == [shard_of(x, 4) for x in ids]
    counts = Counter(shard_of(x, 4) for x in ids)
    assert sorted(counts) == [0, 1, 2, 3]
    assert all(100 <= n <= 150 for n in counts.values()), counts


async def test_servers_advance_together_and_the_router_finds_each_workflow() -> None:
    shards = await Shards.start(2)
    try:
        ids = [f"sleeper-{i}" for i in range(6)]
        parts = shards.split(ids)
        assert sorted(i for part in parts for i in part) == list(range(6))
        assert all(parts), parts  # both servers run some
        async with Worker(shards.envs[0].client, task_queue="q", workflows=[Sleeper]), \
                Worker(shards.envs[1].client, task_queue="q", workflows=[Sleeper]):
            for workflow_id in ids:
                await shards.router.client_for(workflow_id).start_workflow(
                    Sleeper.run, 2, id=workflow_id, task_queue="q")
            start = await shards.now()

            await shards.advance_to(start + timedelta(hours=1), tick=True)
            clocks = [await env.get_current_time() for env in shards.envs]
            assert all(start + timedelta(hours=1) <= c < start + timedelta(hours=1, minutes=1)
                       for c in clocks), clocks
            assert await statuses(shards, ids) == {WorkflowExecutionStatus.RUNNING}

            await shards.advance_to(start + timedelta(hours=3))
            assert await statuses(shards, ids) == {WorkflowExecutionStatus.COMPLETED}
    finally:
        await shards.shutdown()


async def statuses(shards: Shards, ids: list[str]) -> set[WorkflowExecutionStatus | None]:
    return {(await shards.router.get_workflow_handle(x).describe()).status for x in ids}
