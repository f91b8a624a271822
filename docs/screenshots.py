"""Screenshots of the MLflow UI of a finished search, for docs/watching.md.

    .venv/bin/python docs/screenshots.py EXPERIMENT_DIR [--out docs/img]

Starts ``mlflow ui`` on 127.0.0.1 (the experiment's sqlite store), drives headless Chromium
(Debian's ``chromium``) over the DevTools protocol (``pip install websocket-client``): the runs
table with the child runs expanded, and the parent run's artifacts. Stops both at the end.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"{url}: no answer after {timeout:.0f} s")


class Page:
    """One Chromium tab over the DevTools protocol."""

    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=60)
        self.n = 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                return msg.get("result", {})

    def js(self, code: str):
        return self.call("Runtime.evaluate", expression=code, returnByValue=True).get("result", {}).get("value")

    def click_text(self, text: str) -> None:
        """A real mouse click on the first element whose own text is ``text``."""
        xy = self.js(f"""(() => {{ const e = [...document.querySelectorAll('*')].find(e => e.children.length === 0
                     && e.textContent.trim() === {json.dumps(text)}); if (!e) return null;
                     const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        if xy:
            for kind in ("mousePressed", "mouseReleased"):
                self.call("Input.dispatchMouseEvent", type=kind, x=xy[0], y=xy[1], button="left", clickCount=1)

    def shot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        print(f"wrote {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "img")
    args = ap.parse_args()
    db = args.experiment.resolve() / "mlflow.db"
    state = json.loads((args.experiment / "tracking.json").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    port, cdp = free_port(), free_port()
    ui = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    profile = tempfile.mkdtemp(prefix="chromium-")
    browser = subprocess.Popen(
        [
            "chromium",
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--remote-debugging-port={cdp}",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={profile}",
            "--window-size=1600,1000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health")
        wait_http(f"http://127.0.0.1:{cdp}/json/version")
        tabs = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{cdp}/json").read())
        page = Page(next(t for t in tabs if t["type"] == "page")["webSocketDebuggerUrl"])
        page.call("Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1, mobile=False)
        exp_id = state.get("experiment_id") or "1"
        page.call("Page.navigate", url=f"{base}/#/experiments/{exp_id}/runs")
        time.sleep(20)
        # close the assistant side panel, expand the parent run's children
        page.js("""[...document.querySelectorAll('button')].filter(b => (b.getAttribute('aria-label')||'').match(/close/i))
                   .forEach(b => b.click());""")
        time.sleep(1)
        page.js("""const b = [...document.querySelectorAll('.ag-row button')].find(b => b.className.includes('btn-link')
                   && b.textContent.trim() === ''); if (b) b.click();""")
        time.sleep(4)
        page.shot(args.out / "mlflow-runs.png")
        run = state["parent_run_id"]
        page.call("Page.navigate", url=f"{base}/#/experiments/{exp_id}/runs/{run}/artifacts")
        time.sleep(10)
        page.click_text("pareto.png")
        time.sleep(4)
        page.shot(args.out / "mlflow-parent-artifacts.png")
    finally:
        browser.terminate()
        ui.terminate()
        for p in (browser, ui):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
