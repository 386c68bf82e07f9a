"""The cluster flow of cluster.yaml, rehearsed on one machine with Ray's fake multi-node provider.

Real processes throughout: a head started with ``RAY_FAKE_CLUSTER=1``, jobs sent through the
job API (``ray job submit``'s path, code shipped as the job's runtime_env), worker nodes launched
and terminated by the real autoscaler, and spot preemptions that SIGKILL every process of one
node (raylet, agents, workers) at once. One cluster serves the module; two jobs run on it:

* attribution (``scarlet attribute`` with ``runner=ray`` and one GPU per actor): scale-up from
  zero, a worker node preempted mid-run, every id exactly once, recomputed samples counted,
  idle nodes terminated;
* training (Ray Train + DeepSpeed, 2 workers on 2 worker nodes): a node preempted mid-run, the
  run restored from its last checkpoint with the steps and losses of an uninterrupted run.

Timings and counts are printed (run with -s).
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import shutil
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from ray.job_submission import JobStatus, JobSubmissionClient
from training_helpers import make_examples, make_tiny_encoder

from scarlet_ray.rehearsal import FAKE_HEAD_NODE_ID, LocalAutoscalingCluster, wait_for

pytestmark = [pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[1]
# Attribution job: enough work that a preemption lands mid-run on this 2-core machine.
N_SAMPLES = 32
N_MASKS = 48
BATCH = 1
KILL_AFTER_PARTS = 1  # committed parts (= samples, batch 1) before the preemption


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalAutoscalingCluster]:
    """One fake autoscaling cluster for the module, stopped (every process) even on failure."""
    temp = Path(tempfile.mkdtemp(prefix="scarlet-rehearsal-", dir="/tmp"))
    c = LocalAutoscalingCluster(temp_dir=temp)
    t0 = time.monotonic()
    c.start()
    print(f"\n[rehearsal] ray start -> head up (job API answering): {time.monotonic() - t0:.1f} s")
    try:
        yield c
    finally:
        t1 = time.monotonic()
        n = c.stop()
        left = [p for p in psutil.process_iter(["cmdline"])
                if any(str(temp) in a for a in (p.info["cmdline"] or []))]
        print(f"[rehearsal] stop: {n} processes in {time.monotonic() - t1:.1f} s, "
              f"{len(left)} left")
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"processes of the rehearsal cluster survived stop(): {left}"


def _env_vars(**extra: str) -> dict[str, str]:
    """This machine's settings for the job (not the cluster image's /home/ray paths)."""
    from scarlet_ray.models.registry import cache_root

    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_AUTH_MODE": "disabled",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           "SCARLET_CACHE": str(cache_root()),
           "HF_HOME": os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))}
    env.update(extra)
    return env


def _repo_runtime_env(**env: str) -> dict[str, Any]:
    """jobs/runtime_env.yaml as `ray job submit --working-dir . --runtime-env ...` sends it."""
    renv = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text())
    renv["working_dir"] = str(ROOT)
    renv["env_vars"] = _env_vars(**env)
    return renv


def _alive_workers(cluster: LocalAutoscalingCluster) -> set[str]:
    return {n.node_id for n in cluster.worker_nodes(processes=False)}


def _actor_nodes(cluster: LocalAutoscalingCluster, class_part: str) -> list[str]:
    from ray.util.state import list_actors

    try:
        actors = list_actors(address=cluster.dashboard_url, filters=[("state", "=", "ALIVE")],
                             limit=1000, raise_on_missing_output=False)
    except Exception:  # noqa: BLE001 - the state API times out under load: ask again later
        return []
    return [a.node_id for a in actors if class_part in (a.class_name or "") and a.node_id]


def _watch(client: JobSubmissionClient, job: str, t0: float, timeout_s: float,
           step: Callable[[float], None], every_s: float = 0.25) -> float:
    """Call ``step(seconds since t0)`` until the job ends; returns the seconds it took."""
    while not client.get_job_status(job).is_terminal():
        step(time.monotonic() - t0)
        assert time.monotonic() - t0 < timeout_s, (
            f"job did not end in {timeout_s} s:\n" + client.get_job_logs(job)[-3000:])
        time.sleep(every_s)
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def attr_samples(shared_data):
    from scarlet_ray.datasets import convert

    conv = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"),
                   limit=N_SAMPLES, passage_words=30)
    return conv.records[:N_SAMPLES]


@pytest.mark.slow
def test_attribute_job_scales_from_zero_and_survives_preemption(cluster, tiny_llama, attr_samples):
    from scarlet_ray.manifest import read_manifest
    from scarlet_ray.records import read_attributions

    work = cluster.temp_dir / "attribute"
    work.mkdir()
    inp, out, trace = work / "in.jsonl", work / "out", work / "trace"
    inp.write_text("".join(s.model_dump_json() + "\n" for s in attr_samples))
    sets = {"models.generator": str(tiny_llama), "models.dtype": "float32",
            "models.device": "cpu", "attribution.runner": "ray", "attribution.n_masks": N_MASKS,
            "attribution.num_actors_min": 2, "attribution.num_actors_max": 2,
            "attribution.num_cpus_per_actor": 1, "attribution.num_gpus_per_actor": 1,
            "attribution.ray_batch_size": BATCH, "attribution.max_error_rate": 0.0}
    entry = ["python", "-m", "scarlet_ray.cli", "attribute", "--input", str(inp),
             "--output", str(out)]
    for k, v in sets.items():
        entry += ["--set", f"{k}={v}"]

    client = JobSubmissionClient(cluster.dashboard_url)
    wait_for(lambda: not _alive_workers(cluster), 90, "no worker nodes before the job", 0.5)
    t0 = time.monotonic()
    job = client.submit_job(entrypoint=shlex.join(entry),
                            runtime_env=_repo_runtime_env(SCARLET_SCORE_TRACE=str(trace)))
    seen: dict[str, Any] = {"workers": set()}

    def parts() -> int:
        return len(list((out / "attributions").glob("part-*.parquet")))

    def trace_now() -> dict[str, list[str]]:
        """Each actor's trace lines by node id (actors write them as they score)."""
        out: dict[str, list[str]] = {}
        for f in trace.glob("*.tsv"):
            out.setdefault(f.name.split("-", 1)[0], []).extend(f.read_text().splitlines())
        return out

    def step(now: float) -> None:
        workers = _alive_workers(cluster)
        seen["workers"] |= workers
        if workers:
            seen["last_alive"] = now
        if workers and "first_node" not in seen:
            seen["first_node"] = now
        n = parts()
        if n and "first_result" not in seen:
            seen["first_result"] = now
        if n < KILL_AFTER_PARTS or "killed" in seen:
            return
        lines = trace_now()
        done = sum(ln.startswith("done") for v in lines.values() for ln in v)
        # preempt a node whose actor is scoring a sample right now, while work remains
        busy = [node for node, v in lines.items()
                if node in workers and v and v[-1].startswith("start")]
        if busy and done < N_SAMPLES - 6:
            victim = busy[0]
            seen["pids"] = cluster.kill_node(victim)
            seen["killed"], seen["victim"], seen["done_at_kill"] = now, victim, done
            seen["before_kill"] = set(workers)
            seen["committed_at_kill"] = {a.id for a in read_attributions(out / "attributions")}
        if "killed" in seen and "replacement" not in seen and workers - seen["before_kill"]:
            seen["replacement"] = now

    end_s = _watch(client, job, t0, 300, step)
    logs = client.get_job_logs(job)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, logs[-4000:]
    assert "killed" in seen, "the run ended before a node could be preempted:\n" + logs[-2000:]
    assert seen["done_at_kill"] < N_SAMPLES, "the preemption landed after the scoring"

    # every id exactly once (read_attributions raises on a duplicate id)
    ids = [a.id for a in read_attributions(out / "attributions")]
    assert sorted(ids) == sorted(s.id for s in attr_samples)
    m = read_manifest(out)
    assert m["status"] == "complete" and m["cluster"]["started_here"] is False
    assert m["counts"]["attributed"] == N_SAMPLES and m["counts"]["failed"] == 0

    # what was computed twice: ids whose scoring started more than once, per the actors' trace
    started: collections.Counter[str] = collections.Counter()
    done: collections.Counter[str] = collections.Counter()
    on_victim: set[str] = set()
    cut_short: set[str] = set()
    for f in trace.glob("*.tsv"):
        mine: dict[str, set[str]] = {"start": set(), "done": set()}
        for line in f.read_text().splitlines():
            kind, sid = line.split("\t")[:2]
            (started if kind == "start" else done)[sid] += 1
            mine[kind].add(sid)
        if f.name.startswith(seen["victim"]):
            on_victim |= mine["start"]
            cut_short |= mine["start"] - mine["done"]
    twice = sorted(i for i, c in started.items() if c > 1)
    assert set(started) == set(done) == set(ids)
    # only work in flight on the lost node was redone: never an id already committed
    assert set(twice) <= on_victim - seen["committed_at_kill"], (twice, on_victim)

    # each fake node unpacked the job's code into a folder of its own (see rehearsal.py)
    assert len(list((cluster.temp_dir / "session_latest").glob("runtime_resources_*"))) >= 2
    idle_s = wait_for(lambda: not _alive_workers(cluster), 90, "idle workers to terminate", 0.5)
    if idle_s < 0.5:  # already gone: when the last one was still seen
        idle_s = seen["last_alive"] - end_s
    dead_nodes = len(seen["workers"])
    print(f"\n[rehearsal] attribute job ({N_SAMPLES} samples x {N_MASKS} masks, 2 actors "
          f"with GPU: 1, batch {BATCH}): submit -> first worker node alive "
          f"{seen['first_node']:.1f} s; -> first committed part {seen['first_result']:.1f} s; "
          f"-> job SUCCEEDED {end_s:.1f} s; job end -> all workers terminated {idle_s:.1f} s")
    repl = (f"replacement node alive {seen['replacement'] - seen['killed']:.1f} s after"
            if "replacement" in seen else "no new node needed (a spare was up)")
    print(f"[rehearsal] preemption at {seen['killed']:.1f} s after submit, with "
          f"{len(seen['committed_at_kill'])}/{N_SAMPLES} samples committed and "
          f"{seen['done_at_kill']} scored: SIGKILLed "
          f"{len(seen['pids'])} processes of node ...{seen['victim'][-5:]}; {repl}; "
          f"{dead_nodes} worker nodes launched in all")
    print(f"[rehearsal] scoring started {sum(started.values())} times, finished "
          f"{sum(done.values())} times for {len(ids)} ids: {len(twice)} computed twice {twice} "
          f"(all in flight on the lost node: {len(on_victim)} started there, "
          f"{len(cut_short)} cut short by the kill); "
          f"duplicates dropped at commit: {m['counts']['duplicates_dropped']}; "
          f"manifest first_result_s {m['timings']['first_result_s']:.1f}, "
          f"pipeline_s {m['timings']['pipeline_s']:.1f}")


TRAIN_JOB = """
import json, sys
from scarlet_ray.config import load_config
from scarlet_ray.distributed.train import run_training
from scarlet_ray.training.hooks import PauseOnceAt

a = json.loads(sys.argv[1])
cfg = load_config(None, a["sets"])
r = run_training(cfg, a["train"], a["out"], hooks=[PauseOnceAt(**a["pause"])],
                 extra_resources={"accelerator_type:L40S": 0.001})
print("RESULT", json.dumps({"steps": r.metrics["optimizer_steps"], "world": r.metrics["world_size"],
                            "resumed_from": r.resumed_from, "history": r.history,
                            "seconds": r.seconds}), flush=True)
"""
TRAIN_SETS = ["training.batch_size=8", "training.lr=1e-3", "training.epochs=2",
              "training.checkpoint_every=4", "training.temperature=0.1", "training.loss=infonce",
              "training.log_every=100", "training.zero_stage=1", "training.backend=deepspeed"]
PAUSE_STEP = 6  # 0-based: 6 steps done, the last checkpoint is step 4


@pytest.mark.slow
def test_training_restores_after_node_loss(cluster):
    from scarlet_ray.config import load_config
    from scarlet_ray.training.data import Batcher, load_examples

    work = cluster.temp_dir / "train"  # on the disk every fake node shares
    work.mkdir()
    model = make_tiny_encoder(work / "tiny")
    data = make_examples(work / "train.jsonl")
    marker = work / "paused.marker"
    # an uninterrupted run's optimizer steps: batches are a pure function of (seed, epoch,
    # step), so the count is the batcher's (tests/test_training_ray.py runs it: 12, and shows a
    # resumed run follows the uninterrupted loss curve)
    tc = load_config(None, TRAIN_SETS).training
    uninterrupted = Batcher(load_examples(data), global_batch=tc.batch_size,
                            group_size=tc.group_size, world_size=2, rank=0,
                            grad_accum=tc.grad_accum, seed=tc.seed).steps_per_epoch * tc.epochs

    job_dir = work / "job"
    job_dir.mkdir()
    (job_dir / "job.py").write_text(textwrap.dedent(TRAIN_JOB))
    args = {"sets": [*TRAIN_SETS, "training.num_workers=2", "training.max_failures=2",
                     "training.cpus_per_worker=1", f"models.retriever={model}"],
            "train": str(data), "out": str(work / "out"),
            "pause": {"step": PAUSE_STEP, "marker": str(marker), "rank": 0, "timeout_s": 120}}
    client = JobSubmissionClient(cluster.dashboard_url)
    t0 = time.monotonic()
    job = client.submit_job(
        entrypoint=f"python job.py {shlex.quote(json.dumps(args))}",
        runtime_env={"working_dir": str(job_dir), "py_modules": [str(ROOT / "scarlet_ray")],
                     "excludes": ["__pycache__"], "env_vars": _env_vars()})
    seen: dict[str, Any] = {}

    def step(now: float) -> None:
        if "killed" in seen or not marker.exists():
            return
        # the step-4 checkpoint was reported before the pause; the controller collects reports
        # by polling the workers: give it a moment, as a real step's duration would
        seen.setdefault("marker_seen", now)
        if now - seen["marker_seen"] < 2.0:
            return
        nodes = sorted(set(_actor_nodes(cluster, "TrainWorker")))
        if len(nodes) < 2:
            return
        seen["train_nodes"] = nodes
        ckpts = sorted(p.name for p in (work / "out" / "ray_results").glob("*/checkpoint_*"))
        seen["ckpts_at_kill"] = ckpts
        seen["paused_at"] = now
        cluster.kill_node(nodes[-1])
        seen["killed"] = now

    end_s = _watch(client, job, t0, 300, step, every_s=0.5)
    logs = client.get_job_logs(job)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, logs[-4000:]
    assert "killed" in seen, "no node was killed:\n" + logs[-3000:]
    res = json.loads([ln for ln in logs.splitlines() if ln.startswith("RESULT ")][-1][7:])
    # 2 workers on 2 different worker nodes, never the head
    assert len(seen["train_nodes"]) == 2 and FAKE_HEAD_NODE_ID not in seen["train_nodes"]
    assert res["world"] == 2
    assert res["resumed_from"] == [4], res["resumed_from"]
    assert res["steps"] == uninterrupted == 12
    assert [h["step"] for h in res["history"]] == list(range(1, 13))
    print(f"\n[rehearsal] training (DeepSpeed ZeRO-1, 2 workers on nodes "
          f"...{seen['train_nodes'][0][-5:]} and ...{seen['train_nodes'][1][-5:]}): paused "
          f"before step {PAUSE_STEP + 1} ({PAUSE_STEP} steps done, checkpoints "
          f"{[c for c in seen['ckpts_at_kill'] if c.startswith('checkpoint_step')]}); node "
          f"killed {seen['killed']:.1f} s after submit; restored from step "
          f"{res['resumed_from']}, {res['steps'] - res['resumed_from'][-1]} steps after the "
          f"restore, {res['steps']} in all (uninterrupted: {uninterrupted}); job SUCCEEDED "
          f"{end_s:.1f} s after submit, {end_s - seen['killed']:.1f} s after the kill "
          f"(fit {res['seconds']:.1f} s)")
