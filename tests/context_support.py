"""Test support for the context stage: a real local Oxigraph SPARQL server (the ``oxigraph``
CLI from the venv), neighbour labels, and injection strings."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from scarlet_ray.datasets.wikidata import TURTLE_PREFIXES

PROPS = ["P31", "P361", "P112", "P910", "P527", "P2670"]

# Labels of some neighbours of the shared entities: wbgetentities answers carry the labels of
# the requested entities only, not of the items their statements point to.
NEIGHBOUR_LABELS = TURTLE_PREFIXES + """
wd:Q5 rdfs:label "human"@en ; rdfs:label "être humain"@fr ;
  schema:description "any member of Homo sapiens, unique extant species of the genus Homo"@en .
wd:Q8935487 rdfs:label "Category:Douglas Adams"@en ;
  schema:description "Wikimedia category"@en .
wd:Q515 rdfs:label "city"@en ; schema:description "large human settlement"@en .
wd:Q8165 rdfs:label "Karlsruhe Government Region"@en .
"""

NASTY = [
    '"} ; DELETE WHERE {?s ?p ?o} #',
    '" . } UNION { ?item ?p ?o } #',
    "Douglas Adams\"@en } UNION { ?item rdfs:label ?x } #",
    "O'Brien \\ back\\slash",
    "tab\there",
    "a\\u0022b",
    "\\U0001F600 then \\u",
    "x\\",
    "SELECT * WHERE { ?s ?p ?o }",
    "unicode: Ærøskøbing 東京 🚀",
    "quote ''' and \"\"\"",
    ">\x0c<\x08>",
]


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
