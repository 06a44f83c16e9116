"""Headless Chromium driven over the DevTools protocol (raw CDP on a websocket; no browser download).

``Browser.open(url, ready=...)`` loads a page, waits until ``document.body.dataset.ready`` equals
``ready``, and records every response with status >= 400 and every request that failed on the network.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from websockets.sync.client import connect

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--enable-unsafe-swiftshader", "--remote-debugging-port=0"]


@dataclass
class PageLoad:
    failures: list[str] = field(default_factory=list)  # "<status> <url>" or "<error> <url>"
    requests: int = 0


class Browser:
    def __init__(self, width: int = 1200, height: int = 800):
        self.profile = Path(tempfile.mkdtemp(prefix="gnt-chromium-"))
        self.process = subprocess.Popen([shutil.which("chromium") or CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}",
                                         f"--window-size={width},{height}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().split()) == 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {self.process.poll()})")
            time.sleep(0.1)
        port, path = port_file.read_text().split()
        self.socket = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=30)
        self.next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, session: bool = False, timeout: float = 60, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.socket.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, *, ready: str, timeout: float = 60) -> PageLoad:
        """Loads ``url`` and waits until the page says ``ready``; the failed requests seen meanwhile."""
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + timeout
        while self.evaluate("document.body && document.body.dataset.ready || null") != ready:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: not ready after {timeout} s; page errors: {(self.evaluate('window.viewerErrors || []'))[:3]}")
            time.sleep(0.25)
        return self._page_load()

    def _page_load(self) -> PageLoad:
        load = PageLoad()
        urls = {}
        for event in self.events:
            params = event.get("params", {})
            if event["method"] == "Network.requestWillBeSent":
                load.requests += 1
                urls[params["requestId"]] = params["request"]["url"]
            elif event["method"] == "Network.responseReceived" and params["response"]["status"] >= 400:
                load.failures.append(f"{params['response']['status']} {params['response']['url']}")
            elif event["method"] == "Network.loadingFailed":
                load.failures.append(f"{params.get('errorText')}{' (canceled)' if params.get('canceled') else ''} {urls.get(params['requestId'], '?')}")
        return load

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"])

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            shutil.rmtree(self.profile, ignore_errors=True)
