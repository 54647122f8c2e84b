"""Start-up and its failures as an operator meets them, each a real process: `loanflow up` on
ports that are taken, Ctrl-C while its output goes to a pipe whose reader is gone, the worker
(`python worker.py` and `loanflow worker`) on a database or a server that is not ready, and the
CLI when Temporal refuses a call. Each failure is one `error:` line and exit code 1."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from loanflow.devserver import DevServer, port_open
from loanflow.ports import free_port, free_ports
from tests.cli.support import LOANFLOW, Cli, application, ctrl_c_works, open_flags

WORKER_PY = str(Path(__file__).resolve().parents[2] / "worker.py")


@contextmanager
def held(port: int) -> Iterator[None]:
    """A program that is neither Temporal nor SMTP listening on `port`: it accepts, and stays
    silent."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        yield


def up_cli(tmp_path: Path, **env: str) -> Cli:
    """The CLI with nothing of the test session's: `up` must start (or refuse) its own server.
    Its codec server on a free port too: 8234 may be another stack's on this machine."""
    return Cli(tmp_path, {"LOANFLOW_VAR_DIR": str(tmp_path / "var"),
                          "LOANFLOW_CODEC_PORT": str(free_port()), **env})


def up_args(port: int, ui: int, smtp: int) -> list[str]:
    return ["up", "--port", str(port), "--ui-port", str(ui), "--smtp-port", str(smtp)]


@pytest.mark.parametrize(("taken", "message"), [
    (0, "port {port} (Temporal frontend) is taken by a program that is not a Temporal server: "
        "stop it or pass --port N (or set LOANFLOW_TEMPORAL_PORT=N)"),
    (1, "port {port} (Temporal Web UI) is taken by another program: stop it or pass "
        "--ui-port N (or set LOANFLOW_UI_PORT=N)"),
    (2, "port {port} (mail sink) is taken by a program that does not speak SMTP: stop it or "
        "pass --smtp-port N (or set SMTP_PORT=N)"),
])
async def test_up_refuses_a_taken_port_before_starting_anything(tmp_path: Path, taken: int,
                                                                message: str) -> None:
    ports = free_ports(3)
    cli = up_cli(tmp_path)
    with held(ports[taken]):
        assert await cli.error(*up_args(*ports)) == message.format(port=ports[taken])
    assert not (tmp_path / "var" / "temporal.db").exists(), "no dev server may have started"
    assert not any(port_open("127.0.0.1", p) for p in ports)


async def test_up_refuses_one_port_for_two_servers(tmp_path: Path) -> None:
    port, smtp = free_ports(2)
    cli = up_cli(tmp_path)
    assert await cli.error(*up_args(port, port, smtp)) == (
        f"--port and --ui-port are both {port}: give the Web UI its own port")
    assert await cli.error(*up_args(port, smtp, port)) == (
        f"--smtp-port {port} is also the Temporal server's: give the mail sink its own port")


async def test_up_settings_choose_the_ports_as_the_options_do(tmp_path: Path) -> None:
    ports = free_ports(3)
    cli = up_cli(tmp_path)
    with held(ports[1]):
        assert (await cli.error("up", LOANFLOW_TEMPORAL_PORT=str(ports[0]),
                                LOANFLOW_UI_PORT=str(ports[1]), SMTP_PORT=str(ports[2]))
                ).startswith(f"port {ports[1]} (Temporal Web UI) is taken")


def test_ctrl_c_stops_the_dev_server_when_the_output_pipe_is_gone(tmp_path: Path) -> None:
    """`make run | tee log`, then Ctrl-C (which ends tee too): printing "stopping ..." fails
    with EPIPE, and the dev server must be stopped all the same."""
    ports = free_ports(3)
    cli = up_cli(tmp_path)
    errors = (tmp_path / "stderr").open("w")
    proc = subprocess.Popen([LOANFLOW, *up_args(*ports)], cwd=tmp_path, env=cli.environ(),
                            stdout=subprocess.PIPE, stderr=errors, preexec_fn=ctrl_c_works)
    server = None
    try:
        assert proc.stdout is not None
        printed = read_until(proc.stdout, b"running; Ctrl-C to stop", timeout=120)
        server = dev_server_child(proc.pid)
        # On the ports chosen: frontend, Web UI, mail sink.
        assert all(port_open("127.0.0.1", p) for p in ports), printed
        assert f"Web UI          http://127.0.0.1:{ports[1]}/" in printed
        proc.stdout.close()  # the reader is gone: the next print fails with EPIPE
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        assert gone(server, timeout=20), f"dev server {server} still runs after:\n{printed}"
        assert not port_open("127.0.0.1", ports[0])
        assert "Traceback" not in (tmp_path / "stderr").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        if server is not None and not gone(server, timeout=0):
            os.kill(server, signal.SIGKILL)
        errors.close()


def read_until(stream: object, marker: bytes, timeout: float) -> str:
    """What the process printed, up to the line with `marker` (fails after `timeout`)."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)  # type: ignore[arg-type]
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0 and selector.select(left), f"no {marker!r} in:\n{seen.decode()}"
        chunk = os.read(stream.fileno(), 4096)  # type: ignore[attr-defined]
        assert chunk, f"the process ended:\n{seen.decode()}"
        seen += chunk
    return seen.decode()


def dev_server_child(parent: int) -> int:
    """The pid of the `temporal server start-dev` that `parent` started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"start-dev" in command:
            return int(entry.name)
    raise AssertionError(f"process {parent} has no dev server child")


def gone(pid: int, timeout: float) -> bool:
    """Whether `pid` has exited (a zombie not yet reaped counts as exited)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


# --- the worker's start-up ----------------------------------------------------------------------


def worker_py(cli: Cli, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, WORKER_PY], capture_output=True, text=True,
                          cwd=cli.cwd, env=cli.environ(**env), timeout=90)


async def both_workers_fail(cli: Cli, **env: str) -> str:
    """`python worker.py` and `loanflow worker` fail alike: one line, exit 1; that line."""
    done = worker_py(cli, **env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert await cli.error("worker", **env) == lines[0].removeprefix("error: ")
    return lines[0].removeprefix("error: ")


async def test_a_worker_on_a_database_never_migrated(tmp_path: Path) -> None:
    """Its folder not even made yet (a fresh checkout): said before the server is asked."""
    where = tmp_path / "never" / "loanflow.db"
    cli = Cli(tmp_path, {"DATABASE_URL": f"sqlite:///{where}"})
    message = await both_workers_fail(cli, TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    assert message.startswith(f"database sqlite:///{where} is at schema revision none, not ")
    assert message.endswith(": run `loanflow db upgrade` first")
    assert not where.parent.exists(), "looking must not create the database"


async def test_a_worker_without_a_server_or_a_reachable_database(tmp_path: Path) -> None:
    cli = Cli(tmp_path, {"DATABASE_URL": f"sqlite:///{tmp_path / 'loanflow.db'}"})
    await cli.ok("db", "upgrade")
    address = f"127.0.0.1:{free_port()}"
    assert await both_workers_fail(cli, TEMPORAL_ADDRESS=address) == (
        f"cannot reach Temporal at {address}: start the stack with `make run` (or `loanflow "
        "up`), or set TEMPORAL_ADDRESS")
    nowhere = f"postgresql://nobody:secret@127.0.0.1:{free_port()}/loanflow"
    message = await both_workers_fail(cli, DATABASE_URL=nowhere)
    assert message.startswith("database postgresql+psycopg://nobody:***@127.0.0.1:")
    assert message.endswith(": check DATABASE_URL") and "secret" not in message


async def test_a_worker_with_bad_settings(tmp_path: Path) -> None:
    cli = Cli(tmp_path, {"LOANFLOW_VAR_DIR": str(tmp_path / "var")})
    assert await both_workers_fail(cli, LOANFLOW_FAKE_LATENCY_MS="-3") == (
        "invalid setting: LOANFLOW_FAKE_LATENCY_MS: Input should be greater than or equal to 0")
    assert await both_workers_fail(cli, TEMPORAL_PROFILE="nope") == (
        "invalid Temporal configuration (TEMPORAL_*, temporal.toml): Profile 'nope' not found")


async def test_a_namespace_the_server_does_not_have(tmp_path: Path,
                                                    ops_server: DevServer) -> None:
    """A mistyped TEMPORAL_NAMESPACE: the worker at start-up and every command that talks to
    the server name the namespace and what to do, in one line (`status` once said "unknown
    loan", and `price` stored a price that no loan was told of)."""
    cli = Cli(tmp_path, {"DATABASE_URL": f"sqlite:///{tmp_path / 'loanflow.db'}",
                         "TEMPORAL_ADDRESS": ops_server.address, "TEMPORAL_NAMESPACE": "nope"})
    await cli.ok("db", "upgrade")
    missing = (f"Temporal namespace 'nope' does not exist on {ops_server.address}: set "
               "TEMPORAL_NAMESPACE to one that does (`temporal operator namespace list`), or "
               "create it (`temporal operator namespace create --namespace nope`)")
    assert await both_workers_fail(cli) == missing
    for command in (["status", "L1"], ["list"], ["watch", "L1"],
                    ["repay", "L1", "5.00", "--reference", "w"],
                    ["kyc", "approve", "L1", "--reviewer", "r", "--reason", "ok"],
                    ["price", "BTC", "50000"], ["market", "stop"], ["book", "reconcile"],
                    open_flags(application("L1"))):
        assert await cli.error(*command) == missing, command
    # Nothing was stored on the way: the price never reached a loan, so it is not kept.
    assert "no price stored yet" in await cli.ok("market", "status")


async def test_an_unknown_asset_for_a_market_tick(tmp_path: Path) -> None:
    cli = Cli(tmp_path, {"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"})
    assert await cli.error("market", "tick", "DOGE") == (
        "asset: 'DOGE' is not supported (BTC or ETH)")


def test_output_to_a_pipe_closed_early_is_no_traceback(tmp_path: Path) -> None:
    """`loanflow mail preview ... | head -1`: the reader leaves; no traceback, no message
    (click ends such a command with exit code 1, quietly)."""
    cli = Cli(tmp_path)
    proc = subprocess.Popen([LOANFLOW, "mail", "preview", "--out", str(tmp_path / "p")],
                            cwd=tmp_path, env=cli.environ(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    code = proc.wait(60)
    assert code in (0, 1) and proc.stderr.read() == b""


async def test_up_on_a_database_that_is_not_loanflows(tmp_path: Path, ops_server: DevServer
                                                       ) -> None:
    """It refuses to migrate it, in one line (the server it used is left as it was)."""
    import sqlite3

    from loanflow.migrations import baseline_tables

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE {sorted(baseline_tables())[0]} (x INTEGER)")
    cli = up_cli(tmp_path, TEMPORAL_ADDRESS=ops_server.address)
    message = await cli.error("up", "--smtp-port", str(free_port()),
                              DATABASE_URL=f"sqlite:///{path}")
    assert message.startswith(f"sqlite:///{path} has some loanflow tables but not ")


async def test_a_market_tick_no_worker_answers(cli: Cli) -> None:
    """Nothing polls the market's queue: the tick gives up, it does not wait for ever."""
    queue = cli.env["LOANFLOW_TASK_QUEUE"] + "-market"
    message = await cli.error("market", "tick", "BTC", "--monitor", f"m-{queue}",
                              LOANFLOW_CLI_ANSWER_SECONDS="1.5")
    assert message == (f"no worker answered the market monitor within 1.5 s: start one for "
                       f"task queue '{queue}' with `loanflow worker` (or `loanflow up`)")


def test_temporal_failures_past_a_commands_own_handling_are_one_line() -> None:
    """The server gone mid-command, a call refused, an update a workflow refused: the words an
    operator can act on (the central handling of every command and of the worker)."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.exceptions import ApplicationError
    from temporalio.service import RPCError, RPCStatusCode

    from loanflow.failures import explain

    gone = RPCError("connection reset", RPCStatusCode.UNAVAILABLE, b"")
    message = explain(gone) or ""
    assert message.startswith("lost the Temporal server at ")  # the configured address
    assert message.endswith(" (connection reset): check it runs (`make run` or `loanflow up`) "
                            "and try again")
    refused = RPCError("Request unauthorized.", RPCStatusCode.PERMISSION_DENIED, b"")
    assert explain(refused) == ("Temporal refused the call (PERMISSION_DENIED): Request "
                                "unauthorized.")
    # A namespace the server does not have, met past a command's own check: named, with what to do.
    missing = explain(RPCError("Namespace x is not found.", RPCStatusCode.NOT_FOUND, b"")) or ""
    assert missing.startswith("Temporal namespace 'x' does not exist on ")
    assert missing.endswith("set TEMPORAL_NAMESPACE to one that does (`temporal operator "
                            "namespace list`), or create it (`temporal operator namespace create "
                            "--namespace x`)")
    update = WorkflowUpdateFailedError(ApplicationError("asset: 'DOGE' is not tracked"))
    assert explain(update) == "asset: 'DOGE' is not tracked"
    assert explain(ValueError("a bug")) is None  # a bug keeps its traceback


async def test_up_uses_an_smtp_server_already_on_the_mail_port(tmp_path: Path,
                                                              ops_server: DevServer) -> None:
    """Another stack's sink (or any SMTP server) on the port: mail goes there, and the banner
    says it is not the local sink."""
    from loanflow.mail.sink import MailSink
    from tests.cli.test_stack_commands import process

    cli = up_cli(tmp_path, TEMPORAL_ADDRESS=ops_server.address,
                 LOANFLOW_TASK_QUEUE=f"loans-{free_port()}")
    with MailSink(tmp_path / "other-sink", port=0) as sink:
        async with process(cli, "up", "--smtp-port", str(sink.port),
                           ready="running; Ctrl-C to stop") as lines:
            printed = "".join(lines)
    assert (f"mail goes to 127.0.0.1:{sink.port} (an SMTP server already listens there; no "
            "local sink started)") in printed
    assert f"mail            127.0.0.1:{sink.port} (an SMTP server that is not the local sink)" \
        in printed


async def test_the_market_commands_without_a_server(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    cli = Cli(tmp_path, {"TEMPORAL_ADDRESS": address})
    for command in (["market", "tick", "BTC"], ["market", "stop"]):
        assert await cli.error(*command) == (
            f"cannot reach Temporal at {address}: start the stack with `make run` (or "
            "`loanflow up`), or set TEMPORAL_ADDRESS")


async def test_up_refuses_a_port_option_the_temporal_address_overrides(tmp_path: Path) -> None:
    cli = up_cli(tmp_path)
    assert await cli.error("up", "--port", "7300", TEMPORAL_ADDRESS="127.0.0.1:7999") == (
        "--port: TEMPORAL_ADDRESS=127.0.0.1:7999 names the server to use, so no dev server is "
        "started: unset it to start one on that port")
    assert not (tmp_path / "var" / "temporal.db").exists()
