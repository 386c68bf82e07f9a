"""Stage 2: shared contexts -> task Samples, with strict parsing, rule and LLM checks.

Every (context, task) pair ends in exactly one place: ``samples.jsonl`` (accepted),
``rejected.jsonl`` (the LLM answered but the answer failed a check; final, with the reason) or
``errors.jsonl`` (the call itself failed: timeout, HTTP error; retried on the next run). Each
record is appended and fsynced as soon as it is decided and every LLM answer is cached on disk
first, so a crash loses nothing paid for and a rerun skips decided pairs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from scarlet_ray.config import Config, SynthesisConfig
from scarlet_ray.prompt import PromptFit, PromptTooLong, WindowLog, fit_passages
from scarlet_ray.records import (
    Passage,
    Sample,
    append_errors,
    completed_ids,
    iter_jsonl_objects,
    read_jsonl,
    repair_tail,
    write_jsonl,
)
from scarlet_ray.stagedir import StageOptions, StageRun
from scarlet_ray.synthesis.cache import CachedChat, ChatCache
from scarlet_ray.synthesis.checks import rule_check
from scarlet_ray.synthesis.llm import ChatLLM, LLMError, Usage
from scarlet_ray.synthesis.prompts import (
    PROMPT_VERSION,
    ParseError,
    check_messages,
    check_schema,
    noise_messages,
    noise_schema,
    parse_check,
    parse_noise,
    parse_synthesis,
    sample_schema,
    synthesis_messages,
)
from scarlet_ray.synthesis.tasks import Task, selected_tasks

log = logging.getLogger(__name__)

CHECK_MAX_TOKENS = 16
SYNTH_PREFILL = '{"input": "'
CHECK_PREFILL = "["


def _with_prefill(messages: list[dict], prefix: str, on: bool) -> list[dict]:
    return [*messages, {"role": "assistant", "content": prefix}] if on else messages


@dataclass
class Outcome:
    """What happened to one (context, task) pair."""

    status: str  # accepted | rejected | failed
    task: str
    reason: str = ""
    record: dict[str, Any] = field(default_factory=dict)
    sample: Sample | None = None
    fits: list[PromptFit] = field(default_factory=list)  # every prompt's window fit
    too_long: bool = False  # a prompt did not fit the window even with its passages cut


class _Idle(ChatLLM):
    """Stands in for the configured backend when a resumed run has nothing left to ask."""

    def __init__(self, cfg: Config):
        self.backend = cfg.synthesis.backend
        self.model = cfg.synthesis.model if self.backend == "openai" else cfg.models.generator

    def chat(self, messages: list[dict], *, temperature: float, max_tokens: int,
             seed: int = 0, schema: dict | None = None) -> Any:
        raise AssertionError("no pair is pending")


def pair_id(context_id: str, task: str) -> str:
    return f"{context_id}-{task}"


def fit_messages(llm: CachedChat, build: Callable[[Sequence[Passage]], list[dict]],
                 passages: Sequence[Passage], room: int, fits: list[PromptFit]) -> list[dict]:
    """``build(passages)`` with the passages fitted to the backend's window by the shared rule
    (``prompt.fit_passages``; ``room`` = the call's max_tokens), the fit appended to ``fits``.

    A backend without a known window (openai) gets the prompt as built: the server refuses an
    over-long prompt itself, and that failure lands in errors.jsonl.
    """
    inner = llm.llm
    if inner.window is None:
        return build(passages)
    fit = fit_passages(lambda ps: inner.prompt_ids(build(ps)), passages, window=inner.window,
                       room=room, min_passages=min(1, len(passages)))
    fits.append(fit)
    if fit.cut:
        log.info("prompt fitted to the window: %s", fit.note)
    return build(fit.passages)


def _noise_passage(llm: CachedChat, s: SynthesisConfig, passages: list[Passage], inp: str,
                   out: str, fits: list[PromptFit]) -> tuple[Passage | None, str | None]:
    try:
        msgs = fit_messages(llm, lambda ps: noise_messages(ps, inp, out), passages[:3],
                            s.max_tokens, fits)
        r = llm.chat(msgs, temperature=s.temperature, max_tokens=s.max_tokens, seed=s.seed,
                     schema=noise_schema() if s.structured_output else None)
        title, text = parse_noise(r.text)
    except (LLMError, ParseError) as exc:
        return None, f"noise:{exc.reason}"
    except PromptTooLong:
        return None, "noise:window"
    taken = {p.id for p in passages}
    pid, k = "noise", 1
    while pid in taken:
        pid, k = f"noise-{k}", k + 1
    return Passage(id=pid, title=title, text=text), None


def synthesize_pair(llm: CachedChat, ctx: Sample, task: Task, s: SynthesisConfig,
                    synthesizer: dict[str, Any]) -> Outcome:
    """One synthesis call, parse, rule checks, the LLM check and (optionally) a noise passage.

    With ``synthesis.structured_output`` the synthesis (and noise) call carries the sample's
    JSON schema and no prefill (a prefill and a grammar do not mix); so does the [YES]/[NO] check
    call (``check_schema``)."""
    pre = s.prefill and llm.llm.supports_prefill
    schema = sample_schema(task) if s.structured_output else None
    synth_pre = pre and schema is None
    # the check's verdict is constrained too ({"verdict": "[YES]"|"[NO]"}): a small model's
    # free answer ("No.") was the main loss once the samples parsed
    check_sch = check_schema() if s.structured_output else None
    check_pre = pre and check_sch is None
    sid = pair_id(ctx.id, task.name)
    base = {"id": sid, "context_id": ctx.id, "task": task.name}
    fits: list[PromptFit] = []

    def rejected(stage: str, reason: str, detail: str, raw: str, **kw: Any) -> Outcome:
        return Outcome("rejected", task.name, reason,
                       {**base, "stage": stage, "reason": reason, "detail": detail,
                        "raw": raw[:4000], **kw}, fits=fits)

    def failed(stage: str, exc: LLMError) -> Outcome:
        return Outcome("failed", task.name, f"llm:{exc.reason}",
                       {"source": "synthesis", "id": sid, "field": stage,
                        "reason": f"llm:{exc.reason}", "detail": str(exc)[:300],
                        "context_id": ctx.id, "task": task.name, "attempts": exc.attempts},
                       fits=fits)

    def too_long(stage: str, exc: PromptTooLong) -> Outcome:
        # final, like any rejection: the same prompt never fits the same window on a rerun
        o = rejected(stage, "window:too_long", str(exc), "")
        o.too_long = True
        return o

    try:
        msgs = fit_messages(llm, lambda ps: _with_prefill(synthesis_messages(task, ps),
                                                          SYNTH_PREFILL, synth_pre),
                            ctx.passages, s.max_tokens, fits)
    except PromptTooLong as exc:
        return too_long("synthesis", exc)
    try:
        r = llm.chat(msgs, temperature=s.temperature, max_tokens=s.max_tokens, seed=s.seed,
                     schema=schema)
    except LLMError as exc:
        return failed("synthesis", exc)
    try:
        inp, out = parse_synthesis(r.text)
    except ParseError as exc:
        return rejected("parse", exc.reason, str(exc), r.text, finish_reason=r.finish_reason)
    reason, out = rule_check(task, ctx.passages, out, inp)
    if reason:
        return rejected("rule", reason, f"output {out[:200]!r}", r.text, input=inp, output=out)
    check = "skipped"
    if s.check:
        check_tokens = min(CHECK_MAX_TOKENS, s.max_tokens)
        try:
            msgs = fit_messages(llm, lambda ps: _with_prefill(check_messages(task, ps, inp, out),
                                                              CHECK_PREFILL, check_pre),
                                ctx.passages, check_tokens, fits)
        except PromptTooLong as exc:
            return too_long("check", exc)
        try:
            c = llm.chat(msgs, temperature=0.0, max_tokens=check_tokens, seed=s.seed,
                         schema=check_sch)
        except LLMError as exc:
            return failed("check", exc)
        try:
            ok = parse_check(c.text)
        except ParseError as exc:
            return rejected("check", exc.reason, str(exc), c.text, input=inp, output=out)
        if not ok:
            return rejected("check", "check:no", "the check pass answered [NO]", c.text,
                            input=inp, output=out)
        check = "yes"
    passages = list(ctx.passages)
    meta: dict[str, Any] = {"context_id": ctx.id, "synthesizer": synthesizer, "check": check,
                            "prompt_version": PROMPT_VERSION, "seed_input": ctx.input}
    if s.noise_passage:
        noise, err = _noise_passage(llm, s, passages, inp, out, fits)
        if noise is not None:
            passages.append(noise)
            meta["noise_passage_id"] = noise.id
        else:
            meta["noise_error"] = err
    answers = [out] if (task.labels or task.extractive or task.metric == "substring") else []
    sample = Sample(id=sid, task=task.name, instruction=task.instruction, input=inp, output=out,
                    answers=answers, passages=passages, meta=meta)
    return Outcome("accepted", task.name, "", sample=sample, fits=fits)


def _safe_url(url: str | None) -> str | None:
    """A base_url for the manifest, without any user:password part."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _file_counts(path: Path) -> tuple[Counter, dict[str, Counter]]:
    by_task: Counter = Counter()
    reasons: dict[str, Counter] = defaultdict(Counter)
    if path.exists():
        for _, obj in iter_jsonl_objects(path):
            if isinstance(obj, dict):
                by_task[obj.get("task", "?")] += 1
                if "reason" in obj:
                    reasons[obj.get("task", "?")][obj["reason"]] += 1
    return by_task, reasons


@dataclass
class RunSummary:
    counts: dict[str, Any]
    usage: dict[str, Any]
    failed: int
    attempted: int
    rows: list[tuple[Any, ...]]
    prompt_window: dict[str, Any] = field(default_factory=dict)  # WindowLog.summary()
    exit_code: int = 0  # 1: more than synthesis.max_error_rate of the pairs failed
    message: str = ""


OUTPUTS = ("samples.jsonl", "rejected.jsonl", "llm_cache.jsonl")


def run_synthesis(cfg: Config, contexts: str | Path, out_dir: str | Path,
                  llm: ChatLLM | None = None, progress: bool = True,
                  options: StageOptions | None = None) -> RunSummary:
    """Stage 2: synthesize every pending (context, task) pair of ``contexts`` into ``out_dir``.

    Pairs already accepted or rejected are skipped; failed pairs are retried (errors.jsonl lists
    what is still missing after this run)."""
    with StageRun(Path(out_dir), "synthesize", cfg.dump(), OUTPUTS,
                  options or StageOptions()) as st:
        summary = _run(cfg, contexts, st, llm, progress)
        if summary.exit_code:
            st.fail(summary.message)
        return summary


def _run(cfg: Config, contexts: str | Path, st: StageRun, llm: ChatLLM | None,
         progress: bool) -> RunSummary:
    from tqdm import tqdm

    from scarlet_ray.synthesis.llm import build_llm

    s = cfg.synthesis
    out = st.out
    samples_p, rejected_p, errors_p = out / "samples.jsonl", out / "rejected.jsonl", out / "errors.jsonl"
    tasks = selected_tasks(s)
    if not Path(contexts).exists():
        raise FileNotFoundError(2, "contexts file not found", str(contexts))
    for p in (samples_p, rejected_p):
        if repair_tail(p) is not None:
            log.warning("%s: removed a torn last line left by an interrupted run", p)
    if errors_p.exists():
        errors_p.unlink()  # errors.jsonl lists what is still missing after THIS run
    report = read_jsonl(contexts, Sample, on_error="quarantine", errors_path=errors_p,
                        require_passages=True)
    ctxs = report.records
    st.require_records(len(ctxs), str(contexts), len(report.errors))
    if cfg.synthesis.max_contexts is not None:
        ctxs = ctxs[: cfg.synthesis.max_contexts]
    ids = [pair_id(c.id, t.name) for c in ctxs for t in tasks]
    dup = [k for k, n in Counter(ids).items() if n > 1]
    if dup:
        raise ValueError(f"{contexts}: sample ids collide across (context, task): {dup[:3]}")
    done = completed_ids(samples_p) | completed_ids(rejected_p)
    work: list[tuple[Sample, list[Task]]] = []
    for c in ctxs:
        todo = [t for t in tasks if pair_id(c.id, t.name) not in done]
        if todo:
            work.append((c, todo))
    n_pairs = sum(len(t) for _, t in work)

    t_load = time.time()
    if llm is None:
        # nothing pending: don't load a model (or need a key) just to write the manifest
        llm = build_llm(cfg) if n_pairs else _Idle(cfg)
    load_s = time.time() - t_load
    prices = (s.price_per_1k_input, s.price_per_1k_output) if llm.backend == "openai" else (0, 0)
    usage = Usage(*prices)
    cache = ChatCache(Path(s.cache_path) if s.cache_path else out / "llm_cache.jsonl")
    chat = CachedChat(llm, cache, usage)
    # prefill: the check call's (and the synthesis call's unless structured_output drops it)
    synthesizer = {"backend": llm.backend, "model": llm.model, "temperature": s.temperature,
                   "prefill": s.prefill and llm.supports_prefill,
                   "structured_output": s.structured_output}
    if llm.backend == "openai":
        synthesizer["base_url"] = _safe_url(s.base_url)

    lock = threading.Lock()
    windows = WindowLog(llm.window)
    run_status: Counter = Counter()
    failed_reasons: dict[str, Counter] = defaultdict(Counter)
    bar = tqdm(total=n_pairs, desc="synthesize", unit="pair", disable=not progress)

    def record(o: Outcome) -> None:
        pid = o.record.get("id") or (o.sample.id if o.sample else "?")
        for f in o.fits:
            windows.add(pid, f)
        if o.too_long:
            windows.add_error(pid)
        with lock:
            if o.status == "accepted":
                write_jsonl(samples_p, [o.sample], append=True)
            elif o.status == "rejected":
                write_jsonl(rejected_p, [o.record], append=True)
            else:
                append_errors(errors_p, [o.record])
                failed_reasons[o.task][o.reason] += 1
            run_status[o.status] += 1
            bar.update(1)

    def one_context(item: tuple[Sample, list[Task]]) -> None:
        ctx, todo = item
        for task in todo:
            record(synthesize_pair(chat, ctx, task, s, synthesizer))

    workers = s.concurrency if llm.backend == "openai" else 1
    t_run = time.time()
    if workers > 1 and len(work) > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synth") as pool:
            for _ in pool.map(one_context, work):
                pass
    else:
        for item in work:
            one_context(item)
    bar.close()
    run_s = time.time() - t_run

    accepted, _ = _file_counts(samples_p)
    rejected, rej_reasons = _file_counts(rejected_p)
    failed_total = run_status["failed"]
    paid_in, paid_out = cache.paid_tokens()
    usage_d = usage.as_dict()
    counts: dict[str, Any] = {
        "contexts": len(ctxs), "contexts_quarantined": len(report.errors),
        "tasks": [t.name for t in tasks], "pairs_total": len(ids),
        "pairs_skipped_done": len(ids) - n_pairs, "pairs_attempted": n_pairs,
        "this_run": dict(run_status),
        "accepted": sum(accepted.values()), "rejected": sum(rejected.values()),
        "failed": failed_total,
        "by_task": {t.name: {"accepted": accepted[t.name], "rejected": rejected[t.name],
                             "failed": sum(failed_reasons[t.name].values()),
                             "rejected_reasons": dict(rej_reasons[t.name]),
                             "failed_reasons": dict(failed_reasons[t.name])}
                    for t in tasks},
    }
    st.models["synthesizer"] = synthesizer
    st.counts.update(counts)
    st.timings.update(llm_load_s=load_s, pairs_s=run_s)
    st.extra.update(usage=usage_d,
                    cache={"path": str(cache.path), "entries": len(cache),
                           "paid_prompt_tokens": paid_in, "paid_completion_tokens": paid_out,
                           "paid_cost_usd": round(usage.cost(paid_in, paid_out), 6)},
                    prompt_version=PROMPT_VERSION, prompt_window=windows.summary())
    rows: list[tuple[Any, ...]] = [
        (t.name, accepted[t.name], rejected[t.name], sum(failed_reasons[t.name].values()),
         ", ".join(f"{k}={v}" for k, v in sorted(rej_reasons[t.name].items())) or "-")
        for t in tasks]
    summary = RunSummary(counts=counts, usage=usage_d, failed=failed_total, attempted=n_pairs,
                         rows=rows, prompt_window=windows.summary())
    if failure_rate_exceeded(summary, s.max_error_rate):
        summary.exit_code = 1
        summary.message = (f"{failed_total} of {n_pairs} pairs failed (> synthesis."
                           f"max_error_rate={s.max_error_rate}); see {errors_p} and rerun to "
                           "retry them")
    return summary


def failure_rate_exceeded(summary: RunSummary, max_error_rate: float) -> bool:
    return summary.attempted > 0 and summary.failed / summary.attempted > max_error_rate
