"""SPARQL over real HTTP: a local Oxigraph server loaded with Turtle from the real Wikidata files,
queried through SPARQLWrapper, behind a counting proxy that can answer 429/500 or hang."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from context_support import NASTY, NEIGHBOUR_LABELS, PROPS, OxigraphServer

from scarlet_ray.context.build import ContextBuilder
from scarlet_ray.context.graph import KnowledgeGraphError
from scarlet_ray.context.oxigraph_store import OxigraphStore
from scarlet_ray.context.sparql_http import WikidataSparql
from scarlet_ray.datasets.wikidata import shared_wikidata_files, to_turtle

pytestmark = pytest.mark.slow  # the shared Wikidata files and a real server

ENTITIES = ["Douglas Adams", "karlsruhe", "Universe", "Gallu"]


@pytest.fixture(scope="module")
def turtle(shared_data):
    return to_turtle(shared_wikidata_files(shared_data / "wikidata")) + NEIGHBOUR_LABELS


@pytest.fixture(scope="module")
def oxigraph(turtle):
    server = OxigraphServer()
    try:
        server.load_turtle(turtle)
        yield server
    finally:
        server.stop()


class Proxy:
    """Counts requests and plays a script of faults ("429", "500", "hang") before passing
    requests on to the upstream SPARQL server."""

    def __init__(self, upstream: str, hang_s: float = 3.0):
        self.upstream = upstream
        self.script: list[str] = []
        self.requests = 0
        self.hang_s = hang_s
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                with proxy._lock:
                    proxy.requests += 1
                    action = proxy.script.pop(0) if proxy.script else "pass"
                try:
                    if action == "hang":
                        time.sleep(proxy.hang_s)
                        return
                    if action in ("429", "500", "503"):
                        self.send_response(int(action))
                        if action == "429":
                            self.send_header("Retry-After", "0")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    req = urllib.request.Request(
                        proxy.upstream + self.path.split("?", 1)[0].replace("/sparql", "/query")
                        + ("?" + self.path.split("?", 1)[1] if "?" in self.path else ""),
                        headers={"Accept": self.headers.get("Accept", "*/*")})
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        body = resp.read()
                        ctype = resp.headers.get("Content-Type", "application/json")
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError, urllib.error.URLError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/sparql"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(oxigraph):
    p = Proxy(oxigraph.base)
    yield p
    p.close()


def _graph(endpoint, **kw):
    kw.setdefault("timeout_s", 10)
    kw.setdefault("retries", 1)
    kw.setdefault("backoff_s", 0.01)
    return WikidataSparql(endpoint, user_agent="scarlet-ray-tests/0.1", properties=PROPS,
                          max_related=5, **kw)


def test_expansion_over_http_matches_in_process_store(oxigraph, turtle):
    http = _graph(oxigraph.endpoint)
    local = OxigraphStore(properties=PROPS, max_related=5)
    local.load(None, data=turtle)
    assert http.link("Douglas Adams") == "Q42"
    assert http.link("douglas adams") == "Q42"
    assert http.neighbours("Q42")[0].startswith("human: any member of Homo sapiens")
    for e in ENTITIES:
        assert http.expand(e) == local.expand(e), e
    assert http.sent > 0 and http.failures == 0


def test_injection_over_http(oxigraph):
    g = _graph(oxigraph.endpoint)
    before = oxigraph.count()
    for nasty in NASTY:
        assert g.link(nasty) is None, nasty
    assert g.failures == 0  # every query was valid: Oxigraph answered 200
    assert oxigraph.count() == before


def test_retries_on_429_and_500_then_success(proxy):
    g = _graph(proxy.endpoint, retries=3)
    proxy.script = ["429", "500", "503"]
    assert g.link("Douglas Adams") == "Q42"
    assert proxy.requests == 4 and g.sent == 4


def test_retries_exhausted_gives_clear_error(proxy):
    g = _graph(proxy.endpoint, retries=2)
    proxy.script = ["500"] * 3
    with pytest.raises(KnowledgeGraphError, match=r"HTTP 500.* after 3 attempts"):
        g.link("Douglas Adams")
    assert proxy.requests == 3


def test_hanging_endpoint_is_a_recorded_skip_and_the_run_goes_on(proxy):
    g = _graph(proxy.endpoint, timeout_s=1, retries=1)
    proxy.script = ["hang", "hang"]
    builder = ContextBuilder(index=None, encoder=None, extractor=None, kg=g)
    t = time.monotonic()
    expanded, linked, errors = builder.expand("seed-1", ["Douglas Adams", "Universe"])
    assert time.monotonic() - t < 20
    assert [e["entity"] for e in errors] == ["Douglas Adams"]
    assert "timed out after 2 attempts" in errors[0]["reason"]
    assert errors[0]["id"] == "seed-1" and errors[0]["field"] == "expand"
    assert linked == {"Universe": "Q1"}  # the next entity went through once the server answered


def test_endpoint_given_up_after_consecutive_failures(proxy):
    g = _graph(proxy.endpoint, retries=0, max_consecutive_failures=2)
    proxy.script = ["500", "500"]
    for _ in range(2):
        with pytest.raises(KnowledgeGraphError):
            g.link("Douglas Adams")
    with pytest.raises(KnowledgeGraphError, match="2 queries in a row failed"):
        g.link("Douglas Adams")
    assert proxy.requests == 2  # the third lookup sent nothing


def test_cache_rerun_sends_no_queries(proxy, tmp_path):
    cache = tmp_path / "sparql-cache.sqlite"
    g1 = _graph(proxy.endpoint, cache=cache)
    first = [g1.expand(e) for e in ENTITIES]
    g1.close()
    sent = proxy.requests
    assert sent > 0 and g1.sent == sent
    g2 = _graph(proxy.endpoint, cache=cache)
    assert [g2.expand(e) for e in ENTITIES] == first
    assert proxy.requests == sent and g2.sent == 0 and g2.cache_hits > 0
    g2.close()
    # a failed query is not cached: the next run asks again
    g3 = _graph(proxy.endpoint, cache=cache, retries=0)
    proxy.script = ["500"]
    with pytest.raises(KnowledgeGraphError):
        g3.link("Karlsruhe Government Region")
    assert g3.link("Karlsruhe Government Region") == "Q8165"
    g3.close()
