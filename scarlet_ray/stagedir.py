"""One output-folder discipline for every stage: lock, fingerprint, manifest, errors, interrupts.

Every stage (and both attribution runners) runs inside ``StageRun``:

- **Lock**: ``DIR/.lock`` is held (``flock``) for the whole run and names the holder's host and
  pid; a second run on the folder is refused with that name. The kernel drops the lock when its
  holder dies, so a crashed run never blocks the next one.
- **Fingerprint**: a hash of the settings that change this stage's output (``STAGE_SETTINGS``,
  minus ``OPERATIONAL`` knobs such as the runner, batch sizes or retries). A rerun with other
  settings is refused with the differing keys named; ``restart`` deletes the stage's own outputs
  and starts over. Folders written before fingerprints existed are checked against the settings
  their manifest's ``config`` recorded.
- **Manifest**: ``running`` while the stage works, ``complete`` only after success, ``failed``
  (with the one-line reason) otherwise; ``timings.total_s`` always.
- **errors.jsonl**: one semantics (``ErrorLog``): entries ``source, id, field, reason, stage,
  type``, appended durably as they happen; ids that failed before are retried on a rerun unless
  ``retry_failed`` is off; at the end, entries of ids that now succeeded are dropped and
  duplicates folded.
- **Interrupts**: SIGINT/SIGTERM raise ``Interrupted`` in the main thread and set ``CANCEL`` so
  worker threads stop at their next step; the stage's ``finally`` flushes finished work and the
  CLI exits 130/143 with one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scarlet_ray.cancel import CANCEL
from scarlet_ray.errors import EmptyInput, FingerprintMismatch, Interrupted, OutputBusy, UsageError
from scarlet_ray.manifest import read_manifest, write_manifest

# ------------------------------------------------------------------ fingerprints
# The settings that change each stage's output: config sections or dotted keys. Size knobs that
# only select a prefix of the input (data.seed_limit, evaluation.limit, synthesis.max_contexts)
# stay out: a larger value on the same folder extends the output, as a resume does.
STAGE_SETTINGS: dict[str, tuple[str, ...]] = {
    "context": ("context", "data.passage_words", "models.retriever", "models.ner"),
    # + args: corpus; index.* (kind, nlist ...) is left out: a rerun rebuilds just the ANN part
    "index": ("models.retriever", "data.passage_words"),
    "synthesize": ("synthesis", "models.generator", "models.dtype"),
    "attribute": ("attribution", "labels", "models.generator", "models.dtype"),
    "label": ("labels",),
    "train": ("training", "models.retriever"),
    "evaluate_retrieval": ("evaluation.top_k",),  # + args: model, split, instruction
    # the baselines' scores (leave-one-out, attention) come from the generator
    "evaluate_attribution": ("attribution.eval_baselines", "attribution.target",
                             "models.retriever", "models.generator", "models.dtype"),
    "inputs": ("data",),
    "samples": ("data.attribute_seeds",),
    "labels_gold": (),
    "eval_set": ("data.passage_words",),  # + args: the set's own settings
    "eval_pooled": (),  # + args: the sets pooled
    # + args: model, corpus, samples, conditions, query instruction, max_new_tokens
    "evaluate_rag": ("evaluation.rag_top_k", "models.generator", "models.dtype"),
}

# Knobs that change how (or how fast) a stage runs, never what it writes.
OPERATIONAL: frozenset[str] = frozenset({
    "context.timeout_s", "context.retries", "context.backoff_s", "context.cache_dir",
    "context.user_agent", "context.encode_batch_size", "context.index_dir",
    "context.index_backend", "context.endpoint",
    "synthesis.base_url", "synthesis.api_key_env", "synthesis.timeout_s",
    "synthesis.max_retries", "synthesis.concurrency", "synthesis.backoff_s",
    "synthesis.backoff_max_s", "synthesis.cache_path", "synthesis.max_error_rate",
    "synthesis.price_per_1k_input", "synthesis.price_per_1k_output", "synthesis.max_contexts",
    "attribution.max_batch_tokens", "attribution.prefix_cache", "attribution.kv_sharing",
    "attribution.cpu_walkers", "attribution.flush_every", "attribution.eval_baselines",
    "attribution.runner", "attribution.num_actors_min", "attribution.num_actors_max",
    "attribution.num_gpus_per_actor", "attribution.num_cpus_per_actor",
    "attribution.ray_batch_size", "attribution.max_task_retries",
    "attribution.max_actor_restarts", "attribution.max_error_rate",
    "training.checkpoint_every", "training.storage_path", "training.max_failures",
    "training.log_every", "training.keep_checkpoints", "training.cpus_per_worker",
    "training.torch_threads", "training.run_name",
})


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def stage_settings(stage: str, config: Mapping[str, Any],
                   args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The flat ``{dotted key: value}`` settings that the stage's fingerprint covers.

    ``args`` are command arguments that change the output (a model to evaluate, a split), under
    ``args.NAME``. A key the config does not have (an older manifest) is left out.
    """
    out: dict[str, Any] = {}
    for key in STAGE_SETTINGS[stage]:
        node: Any = config
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                node = _MISSING
                break
            node = node[part]
        if node is not _MISSING:
            _flatten(key, node, out)
    for k, v in (args or {}).items():
        out[f"args.{k}"] = v
    from scarlet_ray.redact import redact_obj

    # redacted as manifests store them, so a stored and a fresh value compare equal
    # a key listed for the stage by name counts even where it is operational elsewhere (the
    # baselines do not change attributions, but they are what `evaluate attribution` reports)
    named = set(STAGE_SETTINGS[stage])
    return redact_obj({k: v for k, v in sorted(out.items())
                       if k not in OPERATIONAL or k in named})


_MISSING = object()


def fingerprint(settings: Mapping[str, Any]) -> str:
    blob = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def differing_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Keys whose values differ; a key only one side has counts only when the other side has
    the same section (so an older manifest without a newer setting still resumes)."""
    keys = []
    for k in sorted(set(old) | set(new)):
        if k in old and k in new:
            if old[k] != new[k]:
                keys.append(k)
        elif k.startswith("args."):
            keys.append(k)
    return keys


# ------------------------------------------------------------------ errors.jsonl
class ErrorLog:
    """``DIR/errors.jsonl`` with the same semantics in every stage."""

    def __init__(self, path: Path, stage: str):
        self.path = path
        self.stage = stage
        self.new = 0

    def previous(self) -> list[dict[str, Any]]:
        from scarlet_ray.records import iter_jsonl_objects

        if not self.path.exists():
            return []
        return [e for _, e in iter_jsonl_objects(self.path) if isinstance(e, dict)]

    def failed_ids(self) -> set[str]:
        """Ids that an earlier run of this stage recorded as failed (not read quarantine)."""
        return {e["id"] for e in self.previous()
                if isinstance(e.get("id"), str) and e.get("stage") == self.stage}

    def add(self, entries: Iterable[Any], *, stage: str | None = None) -> int:
        """Append entries (RecordError or dict) durably; each gets ``stage``."""
        from scarlet_ray.records import RecordError, append_errors

        rows = []
        for e in entries:
            d = e.as_dict() if isinstance(e, RecordError) else dict(e)
            d.setdefault("stage", stage or self.stage)
            rows.append(d)
        if rows:
            append_errors(self.path, rows)
            self.new += len(rows)
        return len(rows)

    def compact(self, done_ids: set[str] | None = None) -> int:
        """Fold duplicates; drop entries of ids now done; returns the entries kept."""
        if not self.path.exists():
            return 0
        from scarlet_ray.records import repair_tail

        repair_tail(self.path)
        seen: set[str] = set()
        keep: list[str] = []
        for e in self.previous():
            if done_ids and e.get("id") in done_ids and e.get("stage") == self.stage:
                continue
            key = json.dumps(e, sort_keys=True, ensure_ascii=False)
            if key not in seen:
                seen.add(key)
                keep.append(key)
        if not keep:
            self.path.unlink()
            return 0
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
        os.replace(tmp, self.path)
        return len(keep)


# ------------------------------------------------------------------ where outputs may live
# "s3://bucket/x", or "s3:/bucket/x" once Path() has folded the double slash; two letters at
# least, so a Windows drive ("C:/") is not taken for a scheme.
_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/")


def refuse_object_store(out: str | os.PathLike[str]) -> None:
    """Stage outputs are POSIX folders: local disk, or on a cluster a shared file system mounted
    at the same path on every node (parts are committed by atomic rename and the folder is
    locked with flock, which object stores do not offer). Object storage holds only Ray Train
    checkpoints (``training.storage_path``). Refuse ``s3://...`` & co. before anything makes a
    local folder named ``s3:``."""
    s = str(out)
    m = _URI_SCHEME.match(s)
    if m is None or m.group(1).lower() == "file":
        return
    uri = s if "://" in s else s.replace(":/", "://", 1)
    raise UsageError(f"{uri}: stage outputs must be a POSIX path, not object storage; use a "
                     "shared file system mounted at the same path on every node (e.g. --output "
                     "/mnt/shared/scarlet-ray/RUN, see docs/cluster.md); object storage is only "
                     "for training.storage_path")


# ------------------------------------------------------------------ options and the run
@dataclass
class StageOptions:
    """What a user can ask of any stage run (the CLI's ``--restart`` etc.)."""

    restart: bool = False        # delete this stage's outputs in DIR and start over
    retry_failed: bool = True    # rerun ids recorded as failed in errors.jsonl
    allow_empty: bool = False    # an input with no usable record gives an empty output


@dataclass
class StageRun:
    """Context manager around one run of one stage on one output folder."""

    out: Path
    stage: str
    config: Mapping[str, Any]
    outputs: Sequence[str]                 # names in DIR this stage owns (deleted on restart)
    options: StageOptions = field(default_factory=StageOptions)
    args: Mapping[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    message: str = ""
    resumed: bool = False
    previous: dict[str, Any] | None = None  # the manifest found in DIR (None: fresh folder)
    _lock_fd: int | None = None
    _created: bool = False
    _t0: float = 0.0
    _old_handlers: dict[int, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------- paths
    @property
    def errors(self) -> ErrorLog:
        return ErrorLog(self.out / "errors.jsonl", self.stage)

    def path(self, name: str) -> Path:
        return self.out / name

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> StageRun:
        self._t0 = time.time()
        refuse_object_store(self.out)
        self.out = Path(self.out)
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"{self.out}: exists and is not a directory (--output takes a "
                             "folder)")
        self._created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._check_fingerprint()
            for stale in self.out.glob("**/.*.tmp"):  # torn writes of a killed run
                stale.unlink()
            for stale in self.out.glob("*.tmp"):
                stale.unlink()
            CANCEL.clear()
            self._install_signals()
            self._write()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc is not None:
                from scarlet_ray.errors import one_line

                line = one_line(exc)
                self.status = "failed"
                self.message = line[0] if line else f"{type(exc).__name__}: {exc}"
            elif self.status == "running":
                self.status = "complete"
            if exc is not None and self._created and not self._has_output() \
                    and not self.errors.path.exists():
                self._remove_folder()  # a run that failed before writing anything leaves none
            else:
                self._write()
        finally:
            self._restore_signals()
            CANCEL.clear()
            self._unlock()

    def fail(self, message: str) -> None:
        """End the run as ``failed`` (e.g. over max_error_rate) without raising."""
        self.status = "failed"
        self.message = message

    def require_records(self, n: int, source: str, quarantined: int = 0) -> None:
        """An input with no usable record is an error unless the user asked for empty output."""
        if n == 0 and not self.options.allow_empty:
            why = (f"all {quarantined} records invalid (reasons in {self.out / 'errors.jsonl'})"
                   if quarantined else "no records")
            raise EmptyInput(f"{source}: {why}; pass --allow-empty to write an empty output")

    # ---------------------------------------------------------------- internals
    def _write(self) -> None:
        settings = stage_settings(self.stage, self.config, self.args)
        timings = {**self.timings, "total_s": time.time() - self._t0}
        extra = {**self.extra, "fingerprint": fingerprint(settings),
                 "fingerprint_settings": settings}
        if self.message:
            extra["message"] = self.message
        write_manifest(self.out, self.stage, config=self.config, models=self.models,
                       counts=self.counts, timings=timings, status=self.status, extra=extra)

    def _lock(self) -> None:
        path = self.out / ".lock"
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = path.read_text(errors="replace").strip() or "another process"
            raise OutputBusy(f"{self.out}: in use by another run ({holder}); wait for it or "
                             "choose another --output") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"host {platform.node()} pid {os.getpid()} stage {self.stage} since "
                     f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def was_complete(self) -> bool:
        """The same settings already completed here (whole-output stages can skip)."""
        return bool(self.resumed and self.previous and self.previous.get("status") == "complete")

    def _check_fingerprint(self) -> None:
        old = self.previous = read_manifest(self.out)
        if old is not None and old.get("stage") != self.stage:
            raise UsageError(f"{self.out}: holds the output of stage {old.get('stage')!r}, not "
                             f"{self.stage!r}; choose another --output")
        if self.options.restart:
            self._clear()
            self.previous = None
            return
        if old is None or not self._has_output():
            return  # nothing was written under the old settings: nothing to protect
        new = stage_settings(self.stage, self.config, self.args)
        prev = old.get("fingerprint_settings")
        if not isinstance(prev, Mapping):  # written before fingerprints: use its config
            prev = stage_settings(self.stage, old.get("config") or {}, None)
            prev.update({k: v for k, v in new.items() if k.startswith("args.")})
        diff = differing_keys(prev, new)
        if diff:
            shown = ", ".join(diff[:8]) + (f" (+{len(diff) - 8} more)" if len(diff) > 8 else "")
            raise FingerprintMismatch(
                f"{self.out}: written with other settings ({shown}); use a new --output, or "
                "--restart to delete this stage's output there and start over")
        self.resumed = True

    def _remove_folder(self) -> None:
        for name in ("manifest.json", ".lock"):
            (self.out / name).unlink(missing_ok=True)
        for name in self.outputs:
            if (self.out / name).is_dir():
                with contextlib.suppress(OSError):
                    (self.out / name).rmdir()
        with contextlib.suppress(OSError):
            self.out.rmdir()  # only if nothing else is there

    def _has_output(self) -> bool:
        for name in self.outputs:
            p = self.out / name
            if p.is_dir() and any(p.iterdir()) or p.is_file() and p.stat().st_size:
                return True
        return False

    def _clear(self) -> None:
        for name in [*self.outputs, "errors.jsonl", "manifest.json"]:
            p = self.out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
        self.resumed = False

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, frame: Any) -> None:
            CANCEL.set()
            raise Interrupted(signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, handler)

    def _restore_signals(self) -> None:
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a few lines must finish (an atomic write); re-raise after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old = {s: signal.signal(s, lambda n, f: pending.append(n))
           for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if pending:
            CANCEL.set()
            raise Interrupted(pending[0])


__all__ = ["ErrorLog", "StageOptions", "StageRun", "differing_keys", "fingerprint", "refuse_object_store", "shielded", "stage_settings"]
