"""Open a report in headless Chromium (Debian's `chromium`, installed by scripts/setup.sh) and check what a
reader would see: every <img> decoded (naturalWidth > 0), no console error, no uncaught exception, no failed
load. Driven over the DevTools protocol (websockets' sync client), which reports console messages, exceptions and
log entries as events, and writes a full-page screenshot next to the report."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

SCREENSHOT_FILE = "report_screenshot.png"
_IMAGES_JS = ("JSON.stringify(Array.from(document.images).map(i => "
              "({src: i.src.slice(0, 48), alt: i.alt, complete: i.complete, width: i.naturalWidth})))")  # fmt: skip


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or stopped answering (infrastructure, not a verdict on the page)."""


@dataclass
class PageCheck:
    """What the browser saw."""

    images: int
    broken_images: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.broken_images and not self.console_errors

    def problems(self) -> str:
        lines = [f"image not rendered (naturalWidth == 0): {b}" for b in self.broken_images]
        return "\n".join(lines + [f"console error: {c}" for c in self.console_errors])


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise BrowserError("headless Chromium not found: install Debian's `chromium` (scripts/setup.sh does)")


class _DevTools:
    """A minimal DevTools-protocol session: commands wait for their answer; events are kept for reading."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws, self.next_id, self.events = ws, 0, []  # type: ignore[var-annotated]

    def _recv(self, deadline: float) -> dict[str, Any] | None:
        try:
            raw = self.ws.recv(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return None
        return json.loads(raw)  # type: ignore[no-any-return]

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout_s: float = 30.0) -> dict[str, Any]:  # fmt: skip
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout_s
        while (m := self._recv(deadline)) is not None:
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise BrowserError(f"{method}: {m['error']}")
                return m.get("result", {})  # type: ignore[no-any-return]
            self.events.append(m)
        raise BrowserError(f"{method}: no answer from Chromium in {timeout_s:.0f}s")

    def wait_event(self, method: str, timeout_s: float) -> None:
        if any(e.get("method") == method for e in self.events):
            return
        deadline = time.monotonic() + timeout_s
        while (m := self._recv(deadline)) is not None:
            self.events.append(m)
            if m.get("method") == method:
                return
        raise BrowserError(f"no {method} from Chromium in {timeout_s:.0f}s")

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (m := self._recv(deadline)) is not None:
            self.events.append(m)


def _console_errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        p = e.get("params", {})
        if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif e.get("method") == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(str(d.get("exception", {}).get("description") or d.get("text")))
        elif e.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append(str(p["entry"].get("text")))
    return out


def _wait_port(profile: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    # Chromium writes the port and browser endpoint path it picked (--remote-debugging-port=0) to this file.
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrowserError(f"Chromium exited with {proc.returncode} at start: "
                               f"{(profile / 'chromium.log').read_text(errors='replace')[-2000:]}")  # fmt: skip
        lines = port_file.read_text().split() if port_file.is_file() else []
        if len(lines) >= 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.1)
    raise BrowserError(f"Chromium did not open its DevTools port in {timeout_s:.0f}s")


def _inspect(cdp: _DevTools, url: str, screenshot: Path, timeout_s: float) -> PageCheck:
    target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Page"):
        cdp.call(f"{domain}.enable", session=session)
    nav = cdp.call("Page.navigate", {"url": url}, session=session)
    if nav.get("errorText"):
        raise BrowserError(f"Chromium could not open {url}: {nav['errorText']}")
    cdp.wait_event("Page.loadEventFired", timeout_s)
    cdp.drain(0.5)  # late console messages
    value = cdp.call("Runtime.evaluate", {"expression": _IMAGES_JS, "returnByValue": True}, session=session)
    images = json.loads(value["result"]["value"])
    shot = cdp.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session,
                    timeout_s=timeout_s)  # fmt: skip
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    broken = [f"{i['alt'] or '(no alt)'} [{i['src']}...]" for i in images if not i["complete"] or i["width"] == 0]
    return PageCheck(len(images), broken, _console_errors(cdp.events), screenshot)


def check_page(html: str | Path, screenshot: str | Path | None = None, timeout_s: float = 60.0) -> PageCheck:
    """Load `html` in a fresh headless Chromium and report broken images and console errors; the screenshot goes
    next to the page unless given. Raises BrowserError when the browser itself fails."""
    page = Path(html).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"{page}: no such report")
    shot = Path(screenshot) if screenshot is not None else page.parent / SCREENSHOT_FILE
    with tempfile.TemporaryDirectory(prefix="rlvr-chromium-") as tmp:
        profile = Path(tmp)
        # --no-sandbox: Chromium's sandbox refuses to run as root (containers, CI); the page is our own file.
        cmd = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-extensions", "--remote-debugging-port=0", f"--user-data-dir={profile}",
               "--window-size=1280,1000", "about:blank"]  # fmt: skip
        with (profile / "chromium.log").open("wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ, "LANG": "C.UTF-8"})
        try:
            with connect(_wait_port(profile, proc, timeout_s), max_size=None, open_timeout=timeout_s) as ws:
                return _inspect(_DevTools(ws), page.as_uri(), shot, timeout_s)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
