"""What every stage function returns, and how the CLI and the pipeline show it.

Each stage package exposes ``run(cfg, <inputs>, out, options) -> StageOutcome``; the ``scarlet``
subcommand and ``scarlet run`` both call it. The outcome carries the exit code (0, or 1 when the
stage ran but failed its own bar, e.g. ``max_error_rate``), the summary table and the folder.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StageOutcome:
    stage: str
    exit_code: int
    rows: list[tuple[str, Any]] = field(default_factory=list)
    message: str = ""
    out: Path | None = None

    def show(self) -> int:
        """Print the summary table (and the reason of a failure); returns the exit code."""
        from scarlet_ray.manifest import print_table

        if self.rows:
            print_table(f"scarlet {self.stage.replace('_', ' ')}", self.rows, ("", "value"))
        if self.message and self.exit_code:
            print(f"scarlet {self.stage.replace('_', ' ')}: {self.message}", file=sys.stderr)
        return self.exit_code
