"""The benchmark's own stack, in a temporary directory: one Temporal dev server (headless,
with throughput-friendly dynamic config), the local SMTP sink in a process of its own (as a
relay would be), a fresh PostgreSQL database (SQLite if no server answers, or on request), a
client and the loan worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from temporalio.client import Client

from loanflow import codec_keys
from loanflow.db import Database
from loanflow.devserver import DevServer, dynamic_config_flags, port_open
from loanflow.ports import free_ports
from loanflow.settings import Settings
from loanflow.stack import connect_when_ready

# The dev server's rate limits are sized for a laptop's interactive use (frontend 2,400 rps,
# matching 1,200 rps). A crash across a large book is a burst of signals, task dispatches and
# completions; these lift the limits so the benchmark measures the server's work, not a limiter.
DYNAMIC_CONFIG = {
    "frontend.rps": 30000,
    "frontend.namespaceRPS": 30000,
    "matching.rps": 30000,
    "history.rps": 30000,
    "frontend.persistenceMaxQPS": 30000,
    "history.persistenceMaxQPS": 30000,
    "matching.persistenceMaxQPS": 30000,
}


# The dev server's SQLite file in its default rollback-journal mode syncs every commit: with it
# the server carried ~30 signal+activity workflows a second here, with WAL and NORMAL sync ~150
# (in-memory: ~120). Still a file, still there after a crash of the server process.
SQLITE_PRAGMAS = {"journal_mode": "wal", "synchronous": "normal"}


@dataclass
class BenchServer(DevServer):
    dynamic_config: dict[str, Any] = field(default_factory=lambda: dict(DYNAMIC_CONFIG))
    pragmas: dict[str, str] = field(default_factory=lambda: dict(SQLITE_PRAGMAS))

    def command(self) -> list[str]:
        flags = dynamic_config_flags(self.dynamic_config)
        for key, value in self.pragmas.items():
            flags += ["--sqlite-pragma", f"{key}={value}"]
        return [*super().command(), *flags]


@dataclass
class Stack:
    root: Path
    server: BenchServer
    client: Client
    db: Database
    settings: Settings
    mail_dir: Path
    sink_pid: int  # the SMTP sink's process, whose CPU the crash benchmark reports


@dataclass
class Tuning:
    """What the benchmark sets and reports."""

    fake_latency_ms: int = 20
    fake_failure_rate: Decimal = Decimal("0.01")
    max_concurrent_activities: int = 200
    max_concurrent_workflow_tasks: int = 50
    worker_processes: int = 2  # one per core: a Python process works on one core at a time
    database: str = "postgresql"  # or "sqlite"
    keep: bool = False


PG_ADMIN_URL = os.environ.get("LOANFLOW_BENCH_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def bench_settings(root: Path, smtp_port: int, tuning: Tuning, task_queue: str,
                   database_url: str) -> Settings:
    # A payload key of the bench's own, in its own var/: the bench process and its worker
    # processes (which get these settings as JSON) encrypt and decrypt with the same key.
    keys_file = root / "var" / "codec.keys"
    codec_keys.create_file(keys_file)
    return Settings(
        codec_keys=None,
        codec_keys_file=keys_file,
        var_dir=root / "var",
        database_url=database_url,
        smtp_port=smtp_port,
        task_queue=task_queue,
        fake_latency_ms=tuning.fake_latency_ms,
        fake_failure_rate=tuning.fake_failure_rate,
        fake_seed=11,
    )


@contextlib.asynccontextmanager
async def bench_stack(tuning: Tuning, task_queue: str = "loans-bench") -> AsyncIterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="loanflow-bench-"))
    server_port, smtp_port = free_ports(2)
    server = BenchServer(db_file=root / "temporal.db", port=server_port, headless=True,
                         log_file=root / "temporal.log")
    mail_dir = root / "var" / "mail"
    sink = start_sink_process(mail_dir, smtp_port, root / "sink.log")
    database_url, drop = fresh_database(root, tuning.database)
    settings = bench_settings(root, smtp_port, tuning, task_queue, database_url)
    await server.start()
    db = Database(settings.db_url)
    try:
        await db.create_all()
        await wait_for_port(smtp_port)
        client = await connect_when_ready(server.address, settings=settings)
        yield Stack(root, server, client, db, settings, mail_dir, sink.pid)
    finally:
        await db.dispose()
        server.stop()
        sink.terminate()
        sink.wait(10)
        drop()
        if not tuning.keep:
            shutil.rmtree(root, ignore_errors=True)


def start_sink_process(directory: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "loanflow.mail.sink", "--dir", str(directory), "serve",
               "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(command, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


async def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not port_open("127.0.0.1", port):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"the mail sink is not listening on {port}")
        await asyncio.sleep(0.1)


def fresh_database(root: Path, kind: str) -> tuple[str, Callable[[], None]]:
    """A new, empty database for this run, and how to drop it afterwards."""
    if kind == "postgresql":
        try:
            return _fresh_pg()
        except Exception as err:  # no server, no rights: fall back, and say so
            print(f"PostgreSQL not available ({type(err).__name__}); using SQLite")
    return f"sqlite:///{root / 'var' / 'loanflow.db'}", lambda: None


def _fresh_pg() -> tuple[str, Callable[[], None]]:
    from sqlalchemy import create_engine, text

    name = f"loanflow_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()

    def drop() -> None:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop


@contextlib.asynccontextmanager
async def worker_processes(stack: Stack, tuning: Tuning, cache: int, log: Path,
                           concurrency: int) -> AsyncIterator[list[int]]:
    """`tuning.worker_processes` processes of `bench.worker`, each running the production worker
    (every workflow and activity) and the baseline's worker, sized for the book: every loan
    stays in the workflow cache, as on a worker fleet sized for the book. Yields their pids
    (for CPU accounting and profiling) once every one polls; stops them (SIGTERM, then SIGKILL) on the way out."""
    def command(index: int) -> list[str]:
        # Each process's fakes fail on a sequence of their own (as independent machines would).
        seed = (stack.settings.fake_seed or 0) + index
        settings = stack.settings.model_copy(update={"fake_seed": seed})
        return [sys.executable, "-m", "bench.worker", "--address", stack.server.address,
                "--settings", settings.model_dump_json(), "--cache", str(cache),
                "--max-activities", str(tuning.max_concurrent_activities),
                "--max-workflow-tasks", str(tuning.max_concurrent_workflow_tasks),
                "--concurrency", str(concurrency), "--log", str(log)]

    procs = [await asyncio.create_subprocess_exec(*command(i), stdout=subprocess.PIPE,
                                                  start_new_session=True)
             for i in range(tuning.worker_processes)]
    try:
        for proc in procs:
            await _ready(proc, log)
        yield [proc.pid for proc in procs]
    finally:
        await asyncio.gather(*(_stop(proc) for proc in procs))


async def _ready(proc: asyncio.subprocess.Process, log: Path, timeout: float = 60) -> None:
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    except asyncio.TimeoutError:
        line = b""
    if line.strip() != b"ready":
        raise RuntimeError(f"a bench worker process did not start (exit code {proc.returncode}); "
                           f"see {log}")


async def _stop(proc: asyncio.subprocess.Process, grace: float = 30) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
