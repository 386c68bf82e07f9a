"""Per-stage ``manifest.json`` (config, models, counts, timings, version) and summary tables."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scarlet_ray import __version__
from scarlet_ray.redact import redact, redact_obj


def write_manifest(directory: str | Path, stage: str, *, config: Mapping[str, Any] | None = None,
                   models: Mapping[str, Any] | None = None, counts: Mapping[str, Any] | None = None,
                   timings: Mapping[str, float] | None = None, status: str = "complete",
                   extra: Mapping[str, Any] | None = None) -> Path:
    """Write DIR/manifest.json atomically; ``status`` tells a resuming run what is done."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    data = {
        "stage": stage,
        "status": status,
        "version": __version__,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "python": platform.python_version(),
        "config": dict(config or {}),
        "models": dict(models or {}),
        "counts": dict(counts or {}),
        "timings": {k: round(float(v), 3) for k, v in (timings or {}).items()},
        **dict(extra or {}),
    }
    path = d / "manifest.json"
    tmp = d / "manifest.json.tmp"
    # everything written goes through the one redaction (URL credentials, key values, secret
    # keys), objects json cannot write too, as text
    tmp.write_text(json.dumps(redact_obj(data), indent=2, ensure_ascii=False,
                              default=lambda o: redact(str(o))))
    os.replace(tmp, path)
    return path


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / "manifest.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def print_table(title: str, rows: Sequence[tuple[str, Any]] | Sequence[Sequence[Any]],
                headers: Sequence[str] = ("", "")) -> None:
    """A final summary table on the terminal (rich if present)."""
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title)
        for h in headers:
            t.add_column(str(h))
        for r in rows:
            t.add_row(*[_fmt(x) for x in r])
        import sys

        Console(width=None if sys.stdout.isatty() else 200).print(t)
    except ImportError:  # pragma: no cover
        print(title)
        for r in rows:
            print("  " + "  ".join(_fmt(x) for x in r))


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:,.4g}" if abs(x) < 1e5 else f"{x:,.0f}"
    if isinstance(x, int):
        return f"{x:,}"
    from scarlet_ray.redact import redact

    return redact(str(x))  # a cell may hold a configured URL (user:key@, ?api-key=)
