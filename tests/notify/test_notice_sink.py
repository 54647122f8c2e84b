"""The development mail sink: started from code or from the command line, it keeps every
message where a person (and `list` / `show`) can read it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import aiosmtplib
import pytest

from loanflow.mail.message import build_message
from loanflow.mail.sink import (
    MailSink,
    SinkProbe,
    find_messages,
    list_messages,
    main,
    read_message,
)
from loanflow.ports import free_port
from loanflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def sample(key: str, to: str = "ada@example.com") -> bytes:
    msg = build_message(notice_key=key, subject=f"Notice {key}", text="Plain words.\n",
                        html="<p>Plain words.</p>\n", to_name="Ada", to_address=to,
                        settings=Settings(), date=datetime(2024, 1, 2, 3, 4, tzinfo=timezone.utc))
    return msg.as_bytes()


async def deliver(port: int, key: str) -> None:
    await aiosmtplib.send(sample(key), hostname="127.0.0.1", port=port, sender="a@x.example",
                          recipients=["ada@example.com"], start_tls=False, timeout=5)


async def test_threaded_sink_list_show_and_probe(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with MailSink(tmp_path, port=0) as sink:
        await deliver(sink.port, "L1:notice:a:1")
        await deliver(sink.port, "L1:notice:b:1")
    stored = list_messages(tmp_path)
    assert [m.subject for m in stored] == ["Notice L1:notice:a:1", "Notice L1:notice:b:1"]
    assert stored[0].rcpt_to == ("ada@example.com",) and stored[0].mail_from == "a@x.example"
    assert stored[0].notice_key == "L1:notice:a:1"
    assert read_message(tmp_path, stored[1].id)["Subject"] == "Notice L1:notice:b:1"
    assert read_message(tmp_path, stored[1].message_id)["Subject"] == "Notice L1:notice:b:1"
    assert len(find_messages(tmp_path, stored[0].message_id)) == 1
    assert await SinkProbe(tmp_path).accepted(stored[0].message_id)
    assert not await SinkProbe(tmp_path).accepted("<nope@x>")

    assert main(["--dir", str(tmp_path), "list"]) == 0
    assert "Notice L1:notice:b:1" in capsys.readouterr().out
    assert main(["--dir", str(tmp_path), "show", "2"]) == 0
    shown = capsys.readouterr().out
    assert "Subject: Notice L1:notice:b:1" in shown and "Plain words." in shown
    assert main(["--dir", str(tmp_path), "show", "1", "--html"]) == 0
    assert "<p>Plain words.</p>" in capsys.readouterr().out
    assert main(["--dir", str(tmp_path), "show", "99"]) == 1


async def test_the_sink_command_serves_until_stopped(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loanflow.mail.sink", "--dir", str(tmp_path), "serve",
         "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)  # type: ignore[union-attr]
        assert f"listening on 127.0.0.1:{port}" in line
        await deliver(port, "L2:notice:c:1")
    finally:
        proc.terminate()
        proc.wait(10)
    assert [m.notice_key for m in list_messages(tmp_path)] == ["L2:notice:c:1"]
