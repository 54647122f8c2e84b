"""The embedded Temporal dev server: file-backed (nothing lost on restart), with the Web UI and
the loan book's search attributes registered at launch."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loanflow import search_attributes as sa
from loanflow.binaries import temporal_cli
from loanflow.failures import StartupError

def search_attribute_flags() -> list[str]:
    """`--search-attribute LoanState=Keyword ...` for `temporal server start-dev`."""
    flags = []
    for key in sa.ALL:
        kind = key.indexed_value_type.name.title().replace("Float", "Double")
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags


# One partition per task queue. The server's default, four, spreads a queue over four matching
# hosts in a cluster; in one dev server process it spreads nothing and only leaves pollers
# idle on empty partitions while others hold a backlog: the last sixth of a 10,000-loan book
# import went through at half the pace, and the whole import took 486 s against 412 s with
# one partition (bench/README.md, "One task-queue partition").
PARTITIONS = {"matching.numTaskqueueReadPartitions": 1,
              "matching.numTaskqueueWritePartitions": 1}


def dynamic_config_flags(values: Mapping[str, Any]) -> list[str]:
    """`--dynamic-config-value KEY=VALUE ...` for `temporal server start-dev`."""
    flags = []
    for key, value in values.items():
        flags += ["--dynamic-config-value", f"{key}={value}"]
    return flags


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class DevServer:
    """A `temporal server start-dev` child process."""

    db_file: Path
    port: int = 7233
    ui_port: int = 8233
    headless: bool = False
    log_file: Path | None = None
    # The remote codec the Web UI calls to show payloads decrypted (`loanflow codec-server`).
    codec_endpoint: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def command(self) -> list[str]:
        cmd = [
            temporal_cli(), "server", "start-dev",
            "--ip", "127.0.0.1",
            "--port", str(self.port),
            "--db-filename", str(self.db_file),
            "--log-level", "warn",
            *search_attribute_flags(),
            *dynamic_config_flags(PARTITIONS),
        ]
        cmd += ["--headless"] if self.headless else ["--ui-port", str(self.ui_port)]
        if self.codec_endpoint and not self.headless:
            cmd += ["--ui-codec-endpoint", self.codec_endpoint]
        return cmd

    async def start(self, timeout: float = 60) -> None:
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None:
                raise StartupError(f"the Temporal dev server exited with code "
                                   f"{self.process.returncode}{self.log_tail()}")
            if loop.time() > deadline:
                self.stop()
                raise StartupError(f"the Temporal dev server is not listening on {self.address} "
                                   f"after {timeout:g} s{self.log_tail()}")
            await asyncio.sleep(0.2)

    def log_tail(self) -> str:
        """The log's last line (the server's own reason), for a one-line failure."""
        if self.log_file is None or not self.log_file.exists():
            return ""
        lines = self.log_file.read_text(errors="replace").strip().splitlines()
        last = f": {lines[-1].strip()[:300]}" if lines else ""
        return f"{last} (see {self.log_file})"

    def stop(self, timeout: float = 15) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
