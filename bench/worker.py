"""One benchmark worker process: the production loan worker (`build_worker`: every workflow
and activity, built-in fakes) plus the baseline's worker, so that the baseline and the crash
run on the same processes. The benchmark starts several of these, as a desk runs a worker per
core: one Python process is bound to one core by its interpreter lock.

    python -m bench.worker --address HOST:PORT --settings JSON [--cache N ...]

Prints `ready` once both workers poll; stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.baseline import baseline_worker
from bench.report import quiet_logs
from loanflow import event_loop
from loanflow.db import Database
from loanflow.settings import Settings
from loanflow.stack import stop_event
from loanflow.temporal_client import connect
from loanflow.worker import build_worker


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--address", required=True, help="the dev server, HOST:PORT")
    parser.add_argument("--settings", required=True, help="loanflow Settings as JSON")
    parser.add_argument("--cache", type=int, required=True, help="workflows kept in the cache")
    parser.add_argument("--max-activities", type=int, default=200)
    parser.add_argument("--max-workflow-tasks", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=100, help="the baseline worker's slots")
    parser.add_argument("--log", type=Path, required=True, help="append warnings here")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    settings = Settings.model_validate_json(args.settings)
    stop = stop_event()
    client = await connect(target_host=args.address, settings=settings)
    db = Database(settings.db_url)
    loans = build_worker(client, db, settings, max_cached_workflows=args.cache,
                         max_concurrent_activities=args.max_activities,
                         max_concurrent_workflow_tasks=args.max_workflow_tasks)
    try:
        async with loans, baseline_worker(client, args.cache, args.concurrency):
            print("ready", flush=True)
            await stop.wait()
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_logs(args.log, fresh=False)
    event_loop.run(serve(args))


if __name__ == "__main__":
    main()
