"""The stress run's workers: the production worker (loans and market monitor, every activity)
wired to the run's private database, mail sink and seeded fake exchange (`SeededExchange`), one
per private server (`shards`), the market fan-out reaching every server. One set runs in the
stress process; `extra` more run as processes of their own (a Python process works on one
core at a time), polling the same private servers:

    python -m loanflow.stress.workers --address HOST:PORT[,HOST:PORT...] --workdir DIR
                                      --smtp-port N --seed S --cache N

(the servers' addresses in the runner's order) prints `ready` once it polls and stops cleanly
on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.exchange import FakeExchange
from activities.registry import build_activities
from activities.support import FakeFaults
from loanflow import event_loop
from loanflow.db import Database
from loanflow.settings import Settings
from loanflow.stress.shards import ShardRouter
from loanflow.worker import Workers, build_worker

TASK_QUEUE = "stress-loans"
MARKET_QUEUE = f"{TASK_QUEUE}-market"
# A stress process's slots, whatever the number of servers: the SDK's defaults for workflow
# tasks and local activities, and the desk worker's for activities.
SLOTS = {"workflow": 100, "local": 100, "activity": 200}


def private_database(workdir: Path) -> Database:
    """The run's own SQLite file. It is thrown away after the run, so it skips the fsync of
    every commit: a crash loses the run, never the desk's data."""
    db = Database(f"sqlite+aiosqlite:///{workdir / 'stress.db'}")

    def no_fsync(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.close()

    db.on_connect(no_fsync)
    return db


class SeededExchange(FakeExchange):
    """The built-in fake venue, made reproducible. `FakeExchange` draws its few basis points of
    noise from one random sequence in the order sales arrive; in a crash hour dozens of loans
    sell at once and that order is the worker's thread timing. Here each fill's noise is drawn
    from the seed and the order's own notional, so a run gives the same fills whatever order
    the sales happen in."""

    def __init__(self, db: Database, seed: int) -> None:
        super().__init__(db, FakeFaults())  # no latency, no outages: nothing to wait for
        self.seed = seed

    def slippage(self, notional_usd: Decimal) -> Decimal:
        # Synchronous between the draw and its use: no other sale can take this sequence.
        self.rng = random.Random(f"{self.seed}:{notional_usd}")
        return super().slippage(notional_usd)


def stress_settings(seed: int, smtp_port: int, workdir: Path) -> Settings:
    """This run's own settings: the private mail sink, fakes without latency or outages (so
    nothing depends on timing), and the seed. Nothing is read from the desk's environment that
    could point elsewhere."""
    return Settings(
        task_queue=TASK_QUEUE, market_task_queue=MARKET_QUEUE, var_dir=workdir,
        database_url=None, smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_security="none",
        smtp_username=None, smtp_password=None, fake_latency_ms=0,
        fake_failure_rate=Decimal(0), fake_seed=seed,
        # Without the workflow sandbox, whatever the desk's environment says: building it
        # costs tens of milliseconds per loan and it guards against non-determinism, which the
        # test suite and the replay tests guard for the same code.
        workflow_sandbox=False,
    )


def stress_worker(client: Client, router: ShardRouter, db: Database, settings: Settings,
                  seed: int, cache: int) -> Workers:
    """The workers of one private server; the market fan-out signals through `router`."""
    activities = build_activities(db, settings, client=router,
                                  exchange=SeededExchange(db, seed))
    # One process serves every server: its slots are shared out between them, so that it
    # takes no more work at once than one worker would (the extra work in flight only queued
    # for the database's connections, and read-model writes timed out waiting).
    share = len(router.clients)
    return build_worker(
        client, db, settings, activities=activities, task_queue=TASK_QUEUE,
        # Every loan stays in the cache: an evicted loan replays its whole history on its
        # next wake-up.
        max_cached_workflows=cache,
        max_concurrent_workflow_tasks=max(SLOTS["workflow"] // share, 5),
        max_concurrent_local_activities=max(SLOTS["local"] // share, 5),
        max_concurrent_activities=max(SLOTS["activity"] // share, 10),
    )


@asynccontextmanager
async def stress_workers(router: ShardRouter, db: Database, settings: Settings, seed: int,
                         cache: int) -> AsyncIterator[None]:
    """One process's workers for every private server, started and stopped together."""
    async with AsyncExitStack() as stack:
        for client in router.clients:
            await stack.enter_async_context(
                stress_worker(client, router, db, settings, seed, cache))
        yield


@asynccontextmanager
async def extra_workers(count: int, addresses: Sequence[str], workdir: Path, smtp_port: int,
                        seed: int, cache: int) -> AsyncIterator[None]:
    """`count` worker processes for the run, stopped (SIGTERM, then waited for) on the way out."""
    procs: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "loanflow.stress.workers", "--address", ",".join(addresses),
                "--workdir", str(workdir), "--smtp-port", str(smtp_port), "--seed", str(seed),
                "--cache", str(cache), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL)
            procs.append(proc)
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=120)
            if line.strip() != b"ready":
                raise RuntimeError(f"a stress worker process did not start ({line!r})")
        yield
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), timeout=30)
            except TimeoutError:  # its server is gone and it cannot shut down politely
                proc.kill()
                await proc.wait()


async def serve(args: argparse.Namespace) -> None:
    from loanflow.stack import stop_event

    stop = stop_event()
    clients = [await Client.connect(address, data_converter=pydantic_data_converter)
               for address in args.address.split(",")]
    db = private_database(args.workdir)
    settings = stress_settings(args.seed, args.smtp_port, args.workdir)
    try:
        async with stress_workers(ShardRouter(clients), db, settings, args.seed, args.cache):
            print("ready", flush=True)
            await stop.wait()
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> None:
    from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

    parser = argparse.ArgumentParser(prog="python -m loanflow.stress.workers")
    parser.add_argument("--address", required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--cache", type=int, required=True)
    args = parser.parse_args(argv)
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="WARN")))),
        error_if_already_set=False)
    event_loop.run(serve(args))


if __name__ == "__main__":
    main()
