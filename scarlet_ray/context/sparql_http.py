"""A SPARQL endpoint over HTTP (Wikidata's WDQS or an Oxigraph server) via SPARQLWrapper.

What the network needs and the in-process store does not: timeouts, retries with backoff (and
``Retry-After``), a circuit breaker after consecutive failures, and the on-disk query cache.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from scarlet_ray.context.graph import KnowledgeGraphError
from scarlet_ray.context.query_cache import QueryCache
from scarlet_ray.context.sparql_graph import SparqlGraph

log = logging.getLogger(__name__)


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(exc, "headers", None) or getattr(exc, "hdrs", None)
    if headers is None:
        return None
    try:
        return float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def _classify(exc: BaseException) -> tuple[bool, str]:
    """(retriable?, short reason) for an exception raised by SPARQLWrapper / urllib."""
    import socket
    import urllib.error

    from SPARQLWrapper.SPARQLExceptions import EndPointInternalError, SPARQLWrapperException

    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500, f"HTTP {exc.code}"
    if isinstance(exc, EndPointInternalError):
        return True, "HTTP 500 (endpoint internal error)"
    if isinstance(exc, SPARQLWrapperException):
        from scarlet_ray.redact import redact

        # redact before the cut: a key cut in half no longer looks like one
        return False, f"{type(exc).__name__}: {redact(str(exc)).splitlines()[0][:200]}"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return True, "timed out"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return True, "timed out"
        return True, f"connection failed: {reason}"
    if isinstance(exc, (ConnectionError, OSError)):
        return True, f"connection failed: {exc}"
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return True, "malformed response"
    return False, f"{type(exc).__name__}: {exc}"


class WikidataSparql(SparqlGraph):
    """Wikidata (or any SPARQL 1.1 endpoint holding wd:/wdt: data) over HTTP via SPARQLWrapper."""

    kind = "sparql"

    def __init__(self, endpoint: str = "https://query.wikidata.org/sparql", *,
                 user_agent: str = "scarlet-ray/0.1", timeout_s: float = 30.0, retries: int = 4,
                 backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 cache: QueryCache | str | Path | None = None, max_consecutive_failures: int = 5,
                 method: str = "GET", **kwargs: Any):
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.user_agent = user_agent
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.cache = QueryCache(cache) if isinstance(cache, (str, Path)) else cache
        self.max_consecutive_failures = max_consecutive_failures
        self.method = method
        self.sent = 0          # HTTP requests sent (tries included)
        self.cache_hits = 0
        self.failures = 0      # queries that failed after all retries
        self._consecutive = 0

    def _send(self, query: str) -> Any:
        from SPARQLWrapper import GET, JSON, POST, SPARQLWrapper

        sw = SPARQLWrapper(self.endpoint, agent=self.user_agent)
        sw.setQuery(query)
        sw.setReturnFormat(JSON)
        sw.setMethod(POST if self.method.upper() == "POST" else GET)
        sw.setTimeout(max(1, math.ceil(self.timeout_s)))
        self.sent += 1
        result = sw.query().convert()
        if not isinstance(result, dict) or "results" not in result:
            raise json.JSONDecodeError("not SPARQL JSON results", str(result)[:50], 0)
        return result

    def select(self, query: str) -> list[dict[str, str]]:
        result = self.cache.get(self.endpoint, query) if self.cache else None
        if result is not None:
            self.cache_hits += 1
        else:
            result = self._query_with_retries(query)
            if self.cache:
                self.cache.put(self.endpoint, query, result)
        return [{k: v.get("value", "") for k, v in b.items()}
                for b in result.get("results", {}).get("bindings", [])]

    def _query_with_retries(self, query: str) -> Any:
        if self.max_consecutive_failures and self._consecutive >= self.max_consecutive_failures:
            raise KnowledgeGraphError(
                f"SPARQL endpoint {self.endpoint}: skipped, {self._consecutive} queries in a "
                "row failed")
        reason = "no attempt"
        for attempt in range(self.retries + 1):
            try:
                result = self._send(query)
                self._consecutive = 0
                return result
            except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
                retriable, reason = _classify(exc)
                if not retriable:
                    self.failures += 1
                    raise KnowledgeGraphError(
                        f"SPARQL endpoint {self.endpoint}: {reason}") from exc
                if attempt == self.retries:
                    break
                wait = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
                hinted = _retry_after(exc)
                if hinted is not None:
                    wait = min(self.max_backoff_s, max(wait, hinted))
                log.warning("SPARQL %s: %s; retry %d/%d in %.1fs", self.endpoint, reason,
                            attempt + 1, self.retries, wait)
                time.sleep(wait)
        self.failures += 1
        self._consecutive += 1
        raise KnowledgeGraphError(
            f"SPARQL endpoint {self.endpoint}: {reason} after {self.retries + 1} attempts")

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "endpoint": self.endpoint, "requests_sent": self.sent,
                "cache_hits": self.cache_hits, "failed_queries": self.failures}

    def close(self) -> None:
        if self.cache:
            self.cache.close()
