"""Step hooks: code the loop calls before each optimizer step, installed from outside.

The loop knows nothing of what a hook does. Tests install :class:`KillOnceAt` to SIGKILL a
worker mid-run and check that Ray restarts the group and the run resumes from its checkpoint.
Hooks travel inside the loop's config (``config["hooks"]``), so on Ray Train they must pickle;
a class defined in this package does.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class StepHook(Protocol):
    """Called on every worker before optimizer step ``step`` (0-based) of a run."""

    def __call__(self, step: int, rank: int) -> None: ...


@dataclass(frozen=True)
class KillOnceAt:
    """Fault injection for resume tests: SIGKILL worker ``rank`` at ``step``, once.

    ``marker`` is written just before the kill, so the restarted attempt (and the test) can tell
    the fault happened; ``delay_s`` lets the controller register the last reported checkpoint
    first, as it would in a real run where steps take seconds (a report still in the worker's
    queue dies with it).
    """

    kill_at_step: int
    marker: str
    rank: int = 0
    delay_s: float = 0.0

    def __call__(self, step: int, rank: int) -> None:
        if step != int(self.kill_at_step) or rank != int(self.rank):
            return
        marker = Path(self.marker)
        if marker.exists():
            return
        time.sleep(float(self.delay_s))
        marker.write_text(f"killed rank {rank} at step {step} pid {os.getpid()}\n")
        log.warning("fault injection: SIGKILL rank %d at step %d", rank, step)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class PauseOnceAt:
    """For node-loss rehearsals: rank ``rank`` stops before ``step`` until ``timeout_s`` passes,
    once per run, so an outside fault (a node killed) lands mid-training at a known step.

    ``marker`` is written when the pause starts (the test waits for it, then kills a node); a
    restarted attempt finds it and does not pause again. The other ranks block in their next
    collective meanwhile, as in a slow step. If nothing happens, training goes on after
    ``timeout_s``.
    """

    step: int
    marker: str
    rank: int = 0
    timeout_s: float = 120.0

    def __call__(self, step: int, rank: int) -> None:
        if step != int(self.step) or rank != int(self.rank):
            return
        marker = Path(self.marker)
        if marker.exists():
            return
        marker.write_text(f"paused rank {rank} before step {step} pid {os.getpid()}\n")
        log.warning("pause: rank %d before step %d for up to %.0f s", rank, step, self.timeout_s)
        time.sleep(float(self.timeout_s))


def hooks_from_config(config: dict[str, Any]) -> Sequence[StepHook]:
    """``config["hooks"]``, plus a :class:`KillOnceAt` for the ``fault`` dict that
    ``distributed.train.run_training(fault=...)`` passes (its keys are KillOnceAt's fields)."""
    hooks = list(config.get("hooks") or ())
    if config.get("fault"):
        hooks.append(KillOnceAt(**config["fault"]))
    return hooks
