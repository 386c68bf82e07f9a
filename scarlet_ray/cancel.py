"""A process-wide stop flag that long loops in worker threads check between steps.

Signals reach only the main thread; ``stagedir.StageRun`` sets ``CANCEL`` when SIGINT/SIGTERM
arrives so the attribution walker threads stop at their next edge instead of finishing the
sample (which took 25 s on a 2-core machine before).
"""

from __future__ import annotations

import threading

CANCEL = threading.Event()


class Cancelled(Exception):
    """Raised in a worker thread that saw ``CANCEL``; the main thread raises ``Interrupted``."""


def check_cancelled() -> None:
    if CANCEL.is_set():
        raise Cancelled("stage interrupted")
