"""On-disk cache of chat calls: nothing paid for is paid for twice, even across crashes.

Append-only JSONL, one line per answered call, flushed and fsynced before the answer is used, so
a crash (even ``kill -9``) loses at most calls still in flight. The key is a SHA-256 of the
backend identity, the messages and the sampling parameters, plus the JSON schema of a
constrained call (only then, so keys of unconstrained calls are what they always were and a
constrained call never reuses an unconstrained answer). Failed calls are never cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from scarlet_ray.records import RecordError, iter_jsonl_objects, repair_tail
from scarlet_ray.synthesis.llm import ChatLLM, ChatResult, LLMError, Usage

log = logging.getLogger(__name__)


def _lock_file(fh: Any) -> None:
    """Exclusive advisory lock, released when the file is closed (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the thread lock still holds
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)


def cache_key(identity: dict[str, Any], messages: list[dict], params: dict[str, Any]) -> str:
    blob = json.dumps({"llm": identity, "messages": messages, "params": params},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def call_params(temperature: float, max_tokens: int, seed: int,
                schema: dict | None = None) -> dict[str, Any]:
    """The sampling parameters of a call's cache key; ``schema`` only where one is given."""
    params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
    if schema is not None:
        params["schema"] = schema
    return params


class ChatCache:
    """key -> response text and usage, loaded from and appended to one JSONL file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] = {}
        self.torn_lines = 0
        if self.path.exists():
            for lineno, obj in iter_jsonl_objects(self.path):
                if isinstance(obj, RecordError) or not isinstance(obj, dict) or "key" not in obj:
                    # a torn last line from a crash: that call is simply made again
                    self.torn_lines += 1
                    log.warning("%s:%d: unreadable cache line skipped", self.path, lineno)
                    continue
                self._data[obj["key"]] = obj
            repair_tail(self.path)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._data.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        line = json.dumps({"key": key, **entry}, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                _lock_file(fh)  # two runs sharing one cache_path must not interleave lines
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self._data[key] = {"key": key, **entry}

    def paid_tokens(self) -> tuple[int, int]:
        """Prompt and completion tokens of every call ever stored (what the cache has cost)."""
        with self._lock:
            return (sum(e.get("prompt_tokens", 0) for e in self._data.values()),
                    sum(e.get("completion_tokens", 0) for e in self._data.values()))


class CachedChat:
    """A ChatLLM behind the cache, with usage accounting."""

    def __init__(self, llm: ChatLLM, cache: ChatCache, usage: Usage):
        self.llm = llm
        self.cache = cache
        self.usage = usage

    def chat(self, messages: list[dict], *, temperature: float, max_tokens: int,
             seed: int = 0, schema: dict | None = None) -> ChatResult:
        key = cache_key(self.llm.identity(), messages,
                        call_params(temperature, max_tokens, seed, schema))
        hit = self.cache.get(key)
        if hit is not None:
            r = ChatResult(text=hit["text"], prompt_tokens=hit.get("prompt_tokens", 0),
                           completion_tokens=hit.get("completion_tokens", 0), attempts=0,
                           cached=True, finish_reason=hit.get("finish_reason"))
            self.usage.add(r)
            return r
        try:
            r = self.llm.chat(messages, temperature=temperature, max_tokens=max_tokens, seed=seed,
                              schema=schema)
        except LLMError as exc:
            self.usage.add_failure(exc.attempts)
            raise
        self.cache.put(key, {"model": self.llm.model, "backend": self.llm.backend,
                             "text": r.text, "prompt_tokens": r.prompt_tokens,
                             "completion_tokens": r.completion_tokens,
                             "finish_reason": r.finish_reason})
        self.usage.add(r)
        return r
