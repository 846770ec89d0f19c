"""A small Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (no websocket library, no driver).

Chromium reads commands from file descriptor 3 and writes replies and events to descriptor 4, one JSON
message each, terminated by a NUL byte (what Puppeteer's ``pipe: true`` uses). :class:`Browser` starts a
headless Chromium with a fresh profile, opens a page and offers the few commands the report test needs:
load a file at a viewport size, evaluate JavaScript, take a screenshot, emulate print media, print to PDF.

Run as a script to look at a report: ``python tests/_browser.py report.html shot.png [width height]``.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--hide-scrollbars", "--mute-audio", "--disable-extensions", "--no-default-browser-check")
"""Headless, no sandbox (containers run as root), nothing that reaches the network or another profile."""

CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome")
"""The Debian binary itself first (its ``/usr/bin/chromium`` wrapper only adds desktop flags), then PATH."""


def find_chromium() -> str | None:
    """Path of a Chromium binary (``ROBUSTSEG_CHROMIUM`` first), or None."""
    env = os.environ.get("ROBUSTSEG_CHROMIUM")
    for name in ([env] if env else []) + list(CANDIDATES):
        path = name if os.path.isabs(name) else shutil.which(name)
        if path and os.access(path, os.X_OK):
            return path
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, binary: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="robustseg-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
        for fd in (to_chrome_r, from_chrome_w):
            os.close(fd)

        def fds() -> None:  # in the child: Chromium expects its pipe ends on 3 (read) and 4 (write)
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=fds)
        for fd in high:
            os.close(fd)
        self._buffer = b""
        self._next = 0
        self.events: list[dict] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.page("Page.enable")
        self.page("Runtime.enable")

    # --- protocol ---------------------------------------------------------------------------------------------
    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, **params: Any) -> dict:
        self._next += 1
        ident = self._next
        msg = {"id": ident, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == ident:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def page(self, method: str, **params: Any) -> dict:
        return self.send(method, session=self.session, **params)

    def wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read(deadline))

    # --- what the tests use -----------------------------------------------------------------------------------
    def viewport(self, width: int, height: int, media: str = "screen") -> None:
        self.page("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.page("Emulation.setEmulatedMedia", media=media)

    def load(self, path: str | Path) -> None:
        """Open a local file and wait for its load event and every image to decode."""
        self.events.clear()
        self.page("Page.navigate", url=Path(path).resolve().as_uri())
        self.wait_event("Page.loadEventFired")
        self.evaluate("Promise.all([...document.images].map(i => i.decode().catch(() => null)))")

    def evaluate(self, expression: str) -> Any:
        out = self.page("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in out:
            raise BrowserError(f"JavaScript failed: {out['exceptionDetails']}")
        return out.get("result", {}).get("value")

    def screenshot(self, path: str | Path, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.page("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.page("Page.captureScreenshot", **params)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def pdf(self, path: str | Path) -> Path:
        """Print the page as Chromium's "Print to PDF" does, with the page's own @page size and margins."""
        data = self.page("Page.printToPDF", preferCSSPageSize=True, printBackground=False)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close")
                except (BrowserError, OSError):
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            for fd in (self._to_chrome, self._from_chrome):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the report's checks ---------------------------------------------------------------------------------------

PRINT_WIDTH_PX = round((210 - 2 * 12) / 25.4 * 96)
"""Width of the printed content in CSS px: A4 (210 mm) less the report's 12 mm margins, at 96 px per inch."""

LAYOUT_JS = """(() => {
  const vw = document.documentElement.clientWidth;
  const tables = [...document.querySelectorAll('table')].map((t, i) => {
    const r = t.getBoundingClientRect();
    const th = t.querySelector('th');
    return {index: i, head: th ? th.textContent : '', left: r.left, right: r.right, width: r.width,
            box: t.parentElement.clientWidth};
  });
  const images = [...document.images].map(i => ({alt: i.alt, loaded: i.complete && i.naturalWidth > 0,
                                                 width: i.naturalWidth, embedded: i.src.startsWith('data:')}));
  return {vw, page: document.documentElement.scrollWidth, tables, images};
})()"""
"""Viewport width, page width, every table's box and its container's width, every image's load state."""


def layout(browser: Browser) -> dict:
    return browser.evaluate(LAYOUT_JS)


def layout_problems(info: dict) -> list[str]:
    """Tables wider than the viewport or than their own container, and a page that scrolls sideways."""
    out = []
    if info["page"] > info["vw"] + 1:
        out.append(f"the page is {info['page']} px wide in a {info['vw']} px viewport")
    for t in info["tables"]:
        if t["right"] > info["vw"] + 1 or t["left"] < -1 or t["width"] > t["box"] + 1:
            out.append(f"table {t['index']} ({t['head']!r}...) spans {t['left']:.0f}-{t['right']:.0f} px, "
                       f"its container {t['box']} px, the viewport {info['vw']} px")
    return out


def broken_images(info: dict) -> list[str]:
    return [f"image {i} ({im['alt'][:40]!r}): loaded={im['loaded']}, embedded={im['embedded']}, alt={bool(im['alt'])}"
            for i, im in enumerate(info["images"]) if not (im["loaded"] and im["embedded"] and im["alt"])]


def _characters(text: str) -> dict[str, int]:
    import collections
    import re
    import unicodedata

    return collections.Counter(re.sub(r"\s", "", unicodedata.normalize("NFKC", text)))


def missing_from_pdf(page_text: str, pdf: str | Path) -> dict[str, int]:
    """Characters of the printed page's text (``innerText`` under print media) that the PDF's text lacks.

    Chromium leaves out of the PDF whatever falls outside the paper, so a table cut at the page edge loses
    characters here; ligatures (fi, fl) are unfolded (NFKC) and white space is ignored, so wrapping does not
    count. Empty: every character of the page is in the PDF.
    """
    import pypdf

    text = "".join(p.extract_text() for p in pypdf.PdfReader(str(pdf)).pages)
    have, need = _characters(text), _characters(page_text)
    return {c: n - have.get(c, 0) for c, n in need.items() if n > have.get(c, 0)}


if __name__ == "__main__":
    html_file, png = sys.argv[1], sys.argv[2]
    w, h = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (1280, 800)
    binary = find_chromium()
    if binary is None:
        sys.exit("no Chromium found (install it with scripts/install-test-services.sh)")
    with Browser(binary) as b:
        b.viewport(w, h)
        b.load(html_file)
        b.screenshot(png)
    print(png)
