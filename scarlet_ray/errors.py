"""The errors a user sees: one line, exit 2 (bad input) or 130/143 (interrupted).

Every module raises these (or ``RecordError``/``ConfigError``, which are ``ValueError``s) instead
of importing the CLI, and ``one_line`` is the only place that turns an exception into the line a
user reads, so an OS error in any stage reads the same way.
"""

from __future__ import annotations

import errno
import signal


class ScarletError(Exception):
    """Bad input or a refused run: one line, exit 2."""

    exit_code = 2


class UsageError(ScarletError):
    """A command was given something it cannot use (wrong path kind, missing option...)."""


class OutputBusy(UsageError):
    """Another run holds the output directory."""


class FingerprintMismatch(UsageError):
    """The output directory was written with settings that change the output."""


class EmptyInput(UsageError):
    """An input held no usable record (and the user did not ask for empty output)."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM reached a stage: finished work is flushed, then the CLI exits 130/143.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that the per-sample ``except Exception``
    of a stage loop does not record it as the sample's failure.
    """

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_OS_REASONS = {
    errno.ENOENT: "file not found",
    errno.EISDIR: "is a directory (a file is expected here)",
    errno.ENOTDIR: "not a directory (a path component is a file)",
    errno.EEXIST: "already exists",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
}


def os_error_line(exc: OSError) -> str:
    """``PATH: reason`` for an OSError, without a traceback."""
    reason = _OS_REASONS.get(exc.errno or -1) or exc.strerror or type(exc).__name__
    path = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    return f"{path}: {reason}" if path else reason


def one_line(exc: BaseException) -> tuple[str, int] | None:
    """(message, exit code) for errors that are the user's to fix; None for real bugs."""
    from scarlet_ray.redact import redact

    if isinstance(exc, Interrupted):
        return f"interrupted by {exc}; finished work is saved, rerun to resume", exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by SIGINT; finished work is saved, rerun to resume", 130
    if isinstance(exc, ScarletError):
        msg = str(exc)
    elif isinstance(exc, OSError):
        msg = os_error_line(exc)
    elif isinstance(exc, ValueError):  # ConfigError, RecordError: file:line: field: reason
        msg = str(exc)
    else:
        return None
    msg = " ".join(redact(msg).split())  # one line, whatever the message held
    return msg, 2
