"""The long-running commands (`loanflow up`, `loanflow worker`) as processes against the
session's dev server, the mail commands, and the desk's policy overrides reaching a loan."""

from __future__ import annotations

import asyncio
import json
import signal
import smtplib
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path

from temporalio.client import Client

from loanflow.devserver import port_open
from loanflow.mail.sink import MailSink
from loanflow.ports import free_port
from tests.cli.support import LOANFLOW, Cli, application, ctrl_c_works, open_flags


@asynccontextmanager
async def process(cli: Cli, *args: str, ready: str, **env: str) -> AsyncIterator[list[str]]:
    """`loanflow *args` running in the background until the block ends; then Ctrl-C. Yields
    the lines it printed so far (it is ready once it printed `ready`)."""
    proc = subprocess.Popen([LOANFLOW, *args], cwd=cli.cwd, env=cli.environ(**env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=ctrl_c_works)
    lines: list[str] = []
    reader = asyncio.create_task(asyncio.to_thread(_read, proc, lines))
    try:
        for _ in range(300):
            if any(ready in line for line in lines) or proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert any(ready in line for line in lines), "".join(lines)
        yield lines
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(proc.wait, 30)
        await reader
    assert code in (0, 130), f"loanflow {args[0]} exited {code}:\n{''.join(lines)}"


def _read(proc: subprocess.Popen[str], lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)


async def test_up_runs_worker_and_mail_sink_on_a_running_server(cli: Cli, tmp_path: Path,
                                                                ops_client: Client) -> None:
    """With TEMPORAL_ADDRESS set, `loanflow up` uses that server and starts the worker and the
    local mail sink; a loan's e-mails land in the sink, where `mail list/show` read them."""
    smtp = str(free_port())
    loan = f"CLI-UP-{smtp}"
    async with process(cli, "up", ready="running; Ctrl-C to stop", SMTP_PORT=smtp) as lines:
        assert any("loanflow is up" in line for line in lines)
        await cli.ok(*open_flags(application(loan)), SMTP_PORT=smtp)
        await cli.ok("price", "ETH", "2000", SMTP_PORT=smtp)
        await cli.until(loan, "AWAITING_COLLATERAL")
        messages = await until_mail(cli, 3)
    assert not port_open("127.0.0.1", int(smtp)), "the sink should stop with the stack"
    subjects = [m["subject"] for m in messages]
    assert any(loan in s for s in subjects), subjects
    shown = await cli.ok("mail", "show", "1")
    assert "Subject:" in shown and "grace@example.com" in shown
    assert "<html" in (await cli.ok("mail", "show", "1", "--html")).lower()


async def until_mail(cli: Cli, count: int, timeout: float = 30) -> list[dict[str, str]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(messages := await cli.json("mail", "list")) < count:
        assert asyncio.get_running_loop().time() < deadline, messages
        await asyncio.sleep(0.3)
    return messages


async def test_worker_serves_the_task_queue(cli: Cli, tmp_path: Path) -> None:
    loan = f"CLI-W-{free_port()}"
    await cli.ok("db", "upgrade")  # a worker refuses a database behind the latest schema
    async with process(cli, "worker", ready="worker polling task queue"):
        await cli.ok(*open_flags(application(loan)))
        await cli.ok("price", "ETH", "2000")
        await cli.until(loan, "AWAITING_COLLATERAL")


async def test_mail_commands_read_the_sink_and_render_previews(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "sink"
    with MailSink(folder, port=0) as sink:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@x.example", "b@y.example", "Hi"
        message.set_content("plain words")
        message.add_alternative("<p>html words</p>", subtype="html")
        with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
            smtp.send_message(message)
    listed = await cli.json("mail", "list", "--dir", str(folder))
    assert [(m["n"], m["to"], m["subject"]) for m in listed] == [(1, "b@y.example", "Hi")]
    assert "plain words" in await cli.ok("mail", "show", "1", "--dir", str(folder))
    shown = await cli.json("mail", "show", "1", "--dir", str(folder))
    assert (shown["to"], shown["subject"], shown["text"].strip()) == ("b@y.example", "Hi",
                                                                      "plain words")
    assert "html words" in shown["html"] and listed[0]["received_at"].endswith("Z")
    assert "html words" in await cli.ok("mail", "show", listed[0]["id"], "--html", "--dir",
                                        str(folder))
    assert await cli.error("mail", "show", "7", "--dir", str(folder)) == (
        f"no message matching '7' in {folder}")

    out = tmp_path / "preview"
    previews = await cli.json("mail", "preview", "margin_call", "loan_closed", "--out", str(out))
    assert [p["kind"] for p in previews["previews"]] == ["margin_call", "loan_closed"]
    assert (out / "margin_call.html").exists() and (out / "index.html").exists()
    assert "MARGIN CALL" in (out / "margin_call.txt").read_text()
    refused = await cli.error("mail", "preview", "love_letter", "--out", str(out))
    assert refused.startswith("kind: unknown notice kind(s) love_letter")


async def test_the_desks_policy_overrides_travel_in_the_application(cli: Cli,
                                                                   ops_client: Client) -> None:
    loan = f"CLI-POL-{free_port()}"
    app = application(loan, policy={"cure_period_hours": 72})
    await cli.ok("open", "--file", "-", stdin=json.dumps(app),
                 LOANFLOW_POLICY_CURE_TARGET_LTV="0.55", LOANFLOW_POLICY_CURE_PERIOD_HOURS="24")
    handle = ops_client.get_workflow_handle(f"loan-{loan}")
    started = await anext(handle.fetch_history_events())
    # The input is encrypted in the history: decoded with the desk's codec.
    [sent] = await ops_client.data_converter.decode(
        started.workflow_execution_started_event_attributes.input.payloads)
    # The environment's overrides, under the application's own (its 72 h wins).
    assert sent["policy"]["cure_target_ltv"] == "0.55"
    assert sent["policy"]["cure_period_hours"] == 72
    await handle.terminate("test finished")
