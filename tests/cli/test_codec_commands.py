"""The codec as operators meet it: `loanflow up` keeps a development key and serves the codec,
`loanflow codec-server` decrypts for the Web UI, and a missing or wrong key is one line."""

from __future__ import annotations

import base64
import json
import urllib.request

from loanflow.ports import free_ports
from tests.cli.conftest import Desk
from tests.cli.support import Cli, application, open_flags
from tests.cli.test_stack_commands import process
from tests.support import TEST_CODEC_KEYS


def call(url: str, payloads: list[dict[str, object]]) -> list[dict[str, object]]:
    request = urllib.request.Request(url, data=json.dumps({"payloads": payloads}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["payloads"]


async def test_up_keeps_a_development_key_and_serves_the_codec(cli: Cli) -> None:
    smtp, codec = (str(p) for p in free_ports(2))
    keys = cli.cwd / "var" / "codec.keys"
    # No LOANFLOW_CODEC_KEYS: the stack makes a key of its own, readable by its owner only.
    async with process(cli, "up", ready="running; Ctrl-C to stop", SMTP_PORT=smtp,
                       LOANFLOW_CODEC_KEYS="", LOANFLOW_CODEC_PORT=codec) as lines:
        assert any("created a development payload key" in line for line in lines)
        assert any(f"codec server    http://127.0.0.1:{codec}" in line for line in lines)
        plain = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                 "data": base64.b64encode(b'{"name": "Grace Hopper"}').decode()}
        [sealed] = call(f"http://127.0.0.1:{codec}/encode", [plain])
        assert call(f"http://127.0.0.1:{codec}/decode", [sealed]) == [plain]
    assert keys.stat().st_mode & 0o777 == 0o600
    key = keys.read_text()
    async with process(cli, "up", ready="running; Ctrl-C to stop", SMTP_PORT=smtp,
                       LOANFLOW_CODEC_KEYS="", LOANFLOW_CODEC_PORT=codec) as lines:
        assert not any("created a development payload key" in line for line in lines)
    assert keys.read_text() == key  # kept: what it encrypted stays readable


async def test_codec_server_command_decrypts_for_the_web_ui(cli: Cli) -> None:
    [port] = free_ports(1)
    async with process(cli, "codec-server", "--port", str(port), ready="codec server on",
                       LOANFLOW_CODEC_CORS_ORIGINS="https://temporal.example") as lines:
        assert "keys test-current, test-old, current test-current" in "".join(lines)
        assert "https://temporal.example" in "".join(lines)
        plain = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                 "data": base64.b64encode(b'"x"').decode()}
        [sealed] = call(f"http://127.0.0.1:{port}/encode", [plain])
        assert call(f"http://127.0.0.1:{port}/decode", [sealed]) == [plain]


async def test_a_missing_or_wrong_key_is_one_line(desk: Desk) -> None:
    cli = desk.cli
    loan = "KEY-CLI"
    await cli.ok(*open_flags(application(loan)))
    other = "other:" + base64.b64encode(bytes(range(32))).decode()
    message = await cli.error("status", loan, LOANFLOW_CODEC_KEYS=other)
    assert "key id 'test-current'" in message and "LOANFLOW_CODEC_KEYS" in message
    # Keys rotated: a new current key, the old one kept: the loan still reads.
    rotated = f"{other},{TEST_CODEC_KEYS}"
    assert (await cli.json("status", loan, LOANFLOW_CODEC_KEYS=rotated))["loan_id"] == loan
    missing = await cli.error("status", loan, LOANFLOW_CODEC_KEYS="")
    assert missing.startswith("no payload encryption key: set LOANFLOW_CODEC_KEYS")
    bad = await cli.error("status", loan, LOANFLOW_CODEC_KEYS="k1:short")
    assert bad.startswith("invalid setting: LOANFLOW_CODEC_KEYS") and "short" not in bad
