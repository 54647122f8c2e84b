"""Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`,
what Puppeteer's pipe mode uses), so no browser-automation package is needed.

Why not `--screenshot --virtual-time-budget`: virtual time stands still while a request is
pending, and the Web UI long-polls a running workflow's history on every page of that workflow,
so Chromium would wait forever. Here the page runs in real time, and we wait until the text we
look for is on it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--window-size=1400,900")
WIDTH, HEIGHT = 1400, 900


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: the Web UI test needs Debian's `chromium` "
                    "package (`apt-get install -y chromium`)")
    return found


def high(fd: int) -> int:
    """The same pipe end as a descriptor numbered 10 or above."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Browser:
    """One headless Chromium with one page. Blocking: call it from a thread in async tests."""

    def __init__(self, profile: Path) -> None:
        program = chromium()
        self.log = profile.with_suffix(".log")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Chromium reads commands on fd 3 and writes answers on fd 4. The child's ends are
        # moved above 9 first, so that redirecting one onto 3 or 4 cannot overwrite the other
        # (bash, not sh: dash cannot redirect descriptors above 9).
        to_chrome_r, from_chrome_w = high(to_chrome_r), high(from_chrome_w)
        wrapper = f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}'
        self.process = subprocess.Popen(
            ["bash", "-c", wrapper, program, *FLAGS, f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdout=subprocess.DEVNULL, stderr=self.log.open("wb"),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH,
                  height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer (events in between are skipped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        try:
            os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"chromium is gone: {self.log.read_text()[-2000:]}") from None
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium closed the DevTools pipe; see {self.log}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def text(self) -> str:
        """What a person reads on the page, including what the Web UI renders in frames
        (a workflow's current details come as the markdown in a frame's address)."""
        return self.evaluate(
            "(document.body ? document.body.innerText : '') + '\\n' + "
            "Array.from(document.querySelectorAll('iframe'))"
            ".map(f => decodeURIComponent(f.src || '')).join('\\n')"
        )

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True)
        return result["result"].get("value")

    def open(self, url: str, *expected: str, timeout: float = 45) -> str:
        """Load `url` and wait until every expected text is on the page; the page's HTML."""
        self.call("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + timeout
        while not all(text in self.text() for text in expected):
            if time.monotonic() > deadline:
                missing = [t for t in expected if t not in self.text()]
                raise AssertionError(f"{url}: {missing} not on the page:\n{self.text()[:2000]}")
            time.sleep(0.5)
        time.sleep(1)  # let the page finish drawing what it just received
        return str(self.evaluate("document.documentElement.outerHTML"))

    def reveal(self, text: str) -> None:
        """Scroll the first element that shows `text` to the middle of the window."""
        found = self.evaluate(
            "(() => { const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);"
            " for (let n = walk.nextNode(); n; n = walk.nextNode()) {"
            f" if (n.textContent.includes({json.dumps(text)})) {{"
            " n.parentElement.scrollIntoView({block: 'center', inline: 'nearest'}); return true; } }"
            " return false; })()"
        )
        assert found, f"{text!r} is not on the page"
        time.sleep(1)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass  # it is going away anyway
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
