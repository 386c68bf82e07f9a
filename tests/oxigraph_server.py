"""A real local Oxigraph SPARQL server for tests (the ``oxigraph`` CLI from the venv)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def oxigraph_binary() -> str:
    local = Path(sys.executable).parent / "oxigraph"
    found = str(local) if local.exists() else shutil.which("oxigraph")
    if not found:
        raise RuntimeError("the oxigraph CLI is not installed (pip install oxigraph)")
    return found


class OxigraphServer:
    """``oxigraph serve`` in memory on a free port; ``load_turtle`` POSTs to /store?default."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.endpoint = f"{self.base}/query"
        self.proc = subprocess.Popen([oxigraph_binary(), "serve", "--bind",
                                      f"127.0.0.1:{self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"oxigraph exited: {self.proc.stderr.read().decode()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("oxigraph did not start within 30 s") from None
                time.sleep(0.1)

    def load_turtle(self, text: str) -> None:
        req = urllib.request.Request(f"{self.base}/store?default", data=text.encode(),
                                     headers={"Content-Type": "text/turtle"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status in (200, 201, 204), resp.status

    def count(self) -> int:
        import json
        import urllib.parse

        q = urllib.parse.urlencode({"query": "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"})
        req = urllib.request.Request(f"{self.endpoint}?{q}",
                                     headers={"Accept": "application/sparql-results+json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(json.load(resp)["results"]["bindings"][0]["n"]["value"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
