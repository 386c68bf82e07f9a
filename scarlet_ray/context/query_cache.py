"""On-disk cache of SPARQL results, so reruns and other runs do not ask the endpoint again."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from scarlet_ray.redact import redact


class QueryCache:
    """SQLite cache of SPARQL results keyed by endpoint + query text, shared across runs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, "
                         "endpoint TEXT, query TEXT, result TEXT, at REAL)")
        self._db.commit()

    @staticmethod
    def key(endpoint: str, query: str) -> str:
        return hashlib.sha256(f"{endpoint}\n{query}".encode()).hexdigest()

    def get(self, endpoint: str, query: str) -> Any | None:
        with self._lock:
            row = self._db.execute("SELECT result FROM results WHERE key = ?",
                                   (self.key(endpoint, query),)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, endpoint: str, query: str, result: Any) -> None:
        with self._lock:
            # the key hashes the real endpoint; the stored text is redacted (the cache file
            # lives in the output folder by default)
            self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
                             (self.key(endpoint, query), redact(endpoint), query,
                              json.dumps(result), time.time()))
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()
