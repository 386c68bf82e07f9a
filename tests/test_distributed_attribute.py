"""The Ray attribution runner on a real local Ray cluster (2 CPUs, 2 actors, tiny LLaMA).

One head node (``ray start --head --block``) serves the whole module: in-process drivers join it
by address (so the code ships as a py_module, as from a laptop), the driver-kill test runs the
CLI as a subprocess. (`ray job submit` with jobs/runtime_env.yaml is rehearsed on an autoscaling cluster in tests/test_rehearsal.py.)
The head is stopped by terminating its own ``--block`` process, never ``ray stop`` (which would
stop every Ray cluster of this user on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from scarlet_ray.attribution.stage import run as run_stage
from scarlet_ray.config import load_config
from scarlet_ray.datasets import convert
from scarlet_ray.manifest import read_manifest
from scarlet_ray.records import read_attributions
from scarlet_ray.stagedir import StageOptions

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
N_MASKS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A 2-CPU head with dashboard (job submission needs it), on free ports."""
    port, dash, agent = _free_port(), _free_port(), _free_port()
    tmp = tmp_path_factory.mktemp("rayhead")
    # Ray's unix sockets live under the temp dir: AF_UNIX paths are capped at 107 bytes
    short = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
    env = _env()
    env.pop("PYTHONPATH", None)  # workers must get the code through the runtime_env
    env.pop("RAY_ADDRESS", None)
    log = open(tmp / "head.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--num-gpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={agent}",
         "--disable-usage-stats", f"--temp-dir={short}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{dash}/api/version", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                log.close()
                pytest.fail("ray head did not start:\n" + (tmp / "head.log").read_text()[-3000:])
            time.sleep(1)
    yield {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dash}"}
    import ray

    if ray.is_initialized():
        ray.shutdown()
    proc.send_signal(signal.SIGTERM)  # --block: stops the processes this head started
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture(scope="module")
def samples(shared_data):
    conv = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"), limit=40,
                   passage_words=30)
    return conv.records


def _write_input(path: Path, samples, bad: bool = True) -> dict[str, str]:
    """Samples JSONL plus (optionally) a malformed line, an invalid record and one the engine
    rejects (whitespace-only answer: valid as a record, empty once stripped)."""
    lines = [s.model_dump_json() for s in samples]
    expected_errors: dict[str, str] = {}
    if bad:
        lines.insert(1, '{"id": "broken", "task": ')
        rec = json.loads(samples[0].model_dump_json())
        rec.update(id="no-output")
        del rec["output"]
        lines.insert(3, json.dumps(rec))
        rec = json.loads(samples[0].model_dump_json())
        rec.update(id="blank-answer", output="   ")
        lines.insert(5, json.dumps(rec))
        expected_errors = {"(line)": "invalid JSON", "output": "missing required field",
                           "(score)": "empty"}
    path.write_text("\n".join(lines) + "\n")
    return expected_errors


def _overrides(tiny_llama, address: str | None, **kw) -> list[str]:
    o = {"models.generator": str(tiny_llama), "models.dtype": "float32", "models.device": "cpu",
         "attribution.runner": "ray", "attribution.n_masks": N_MASKS,
         "attribution.num_actors_min": 2, "attribution.num_actors_max": 2,
         "attribution.num_cpus_per_actor": 1, "attribution.ray_batch_size": 2,
         "attribution.max_error_rate": 0.2}
    if address:
        o["ray.address"] = address
    o.update(kw)
    return [f"{k}={v}" for k, v in o.items()]


def _ids_once(out: Path) -> list[str]:
    ids = [a.id for a in read_attributions(out / "attributions")]  # raises on duplicates
    assert len(ids) == len(set(ids))
    return ids


def test_ray_matches_engine_exactly_once_and_quarantines(head, tiny_llama, samples, tmp_path):
    import torch

    from scarlet_ray.attribution.engine import AttributionEngine
    from scarlet_ray.models.generator import load_generator

    sub = samples[:10]
    inp = tmp_path / "in.jsonl"
    expected_errors = _write_input(inp, sub)
    cfg = load_config(None, _overrides(tiny_llama, head["address"],
                                       **{"attribution.max_error_rate": 0.3}))  # 3 of 13 fail
    assert run_stage(cfg, str(inp), str(tmp_path / "out")).exit_code == 0

    got = {a.id: a for a in read_attributions(tmp_path / "out" / "attributions")}
    assert sorted(got) == sorted(s.id for s in sub)
    errors = [json.loads(x) for x in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 3
    for e in errors:
        assert expected_errors[e["field"]] in e["reason"], e
    assert {e["id"] for e in errors if e["field"] == "(score)"} == {"blank-answer"}

    torch.set_num_threads(1)  # the actors run one thread each: same reduction order
    engine = AttributionEngine(load_generator(str(tiny_llama), dtype="float32", device="cpu"),
                               cfg.attribution, cfg.labels)
    for s in sub:
        ref = engine.attribute(s)
        a = got[s.id]
        assert a.passage_ids == ref.passage_ids and a.n_masks == ref.n_masks
        np.testing.assert_allclose(a.utility, ref.utility, rtol=1e-5, atol=1e-6)
        assert a.label == ref.label

    m = read_manifest(tmp_path / "out")
    assert m["status"] == "complete"
    assert m["counts"]["attributed"] == len(sub) and m["counts"]["quarantined"] == 2
    assert m["counts"]["failed"] == 1 and m["counts"]["tokens_forwarded"] > 0
    assert m["throughput"]["tokens_per_s"] > 0

    # rerun: finished ids skipped, the failed id retried (it fails again), errors not repeated
    assert run_stage(cfg, str(inp), str(tmp_path / "out")).exit_code == 0
    m = read_manifest(tmp_path / "out")
    assert m["counts"]["already_done"] == len(sub) and m["counts"]["previously_failed"] == 1
    assert m["counts"]["to_score"] == 1 and m["counts"]["failed"] == 1
    assert len((tmp_path / "out" / "errors.jsonl").read_text().splitlines()) == 3
    assert len(_ids_once(tmp_path / "out")) == len(sub)
    # told not to retry: nothing left to do
    assert run_stage(cfg, str(inp), str(tmp_path / "out"),
                     StageOptions(retry_failed=False)).exit_code == 0
    assert read_manifest(tmp_path / "out")["counts"]["to_score"] == 0

    # the rate gate: with no errors allowed the same input fails with a clear reason
    cfg0 = load_config(None, _overrides(tiny_llama, head["address"],
                                        **{"attribution.max_error_rate": 0.0}))
    assert run_stage(cfg0, str(inp), str(tmp_path / "out0")).exit_code == 1
    assert read_manifest(tmp_path / "out0")["status"] == "failed"
    assert "max_error_rate" in read_manifest(tmp_path / "out0")["message"]


def _score_actor_pids(dashboard: str) -> list[int]:
    from ray.util.state import list_actors

    return [a.pid for a in list_actors(address=dashboard, filters=[("state", "=", "ALIVE")],
                                        limit=1000)
            if "ScoreActor" in (a.class_name or "") and a.pid]


def test_actor_sigkill_midrun_every_id_once(head, tiny_llama, samples, tmp_path):

    inp = tmp_path / "in.jsonl"
    samples = samples[:32]
    _write_input(inp, samples, bad=False)
    out = tmp_path / "out"
    cfg = load_config(None, _overrides(tiny_llama, head["address"],
                                       **{"attribution.ray_batch_size": 1,
                                          "attribution.n_masks": 32}))
    killed: dict[str, object] = {}

    def killer() -> None:
        # Learn the actors' pids while they start (the state API is slow under load), then
        # kill one the moment the first part is committed: mid-run by construction.
        pids: list[int] = []
        deadline = time.time() + 240
        while time.time() < deadline:
            parts = list((out / "attributions").glob("part-*.parquet"))
            if parts and pids:
                killed["parts_before"] = len(parts)
                killed["pid"] = pids[0]
                os.kill(pids[0], signal.SIGKILL)
                return
            if not pids:
                try:
                    pids = _score_actor_pids(head["dashboard"])
                except Exception:  # noqa: BLE001 - state API timeouts under load: ask again
                    pids = []
            time.sleep(0.05 if pids else 0.3)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    assert run_stage(cfg, str(inp), str(out)).exit_code == 0
    t.join(timeout=5)
    assert "pid" in killed, "no actor was killed: the run finished before the first part"
    assert killed["parts_before"] < len(samples)  # the kill landed mid-run
    assert sorted(_ids_once(out)) == sorted(s.id for s in samples)
    m = read_manifest(out)
    assert m["counts"]["attributed"] == len(samples) and m["counts"]["duplicates_dropped"] == 0


def _cli(tiny_llama, address, inp, out, **kw) -> list[str]:
    cmd = [sys.executable, "-m", "scarlet_ray.cli", "attribute", "--input", str(inp),
           "--output", str(out)]
    for o in _overrides(tiny_llama, address, **kw):
        cmd += ["--set", o]
    return cmd


def test_driver_sigkill_then_rerun_completes_only_missing(head, tiny_llama, samples, tmp_path):
    inp = tmp_path / "in.jsonl"
    samples = samples[:24]
    _write_input(inp, samples, bad=False)
    out = tmp_path / "out"
    cmd = _cli(tiny_llama, head["address"], inp, out,
               **{"attribution.ray_batch_size": 1, "attribution.n_masks": 32})
    env = _env(PYTHONPATH=str(ROOT))
    env.pop("RAY_ADDRESS", None)
    log = tmp_path / "driver1.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if len(list((out / "attributions").glob("part-*.parquet"))) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "driver ended before it could be killed:\n" + log.read_text()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = {a.id for a in read_attributions(out / "attributions")}
    assert 2 <= len(done_before) < len(samples)
    assert read_manifest(out)["status"] == "running"  # the killed run never finished

    # the rerun starts its own local cluster (the laptop path: no address anywhere)
    rerun = _cli(tiny_llama, None, inp, out,
                 **{"attribution.ray_batch_size": 1, "attribution.n_masks": 32})
    res = subprocess.run(rerun, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    m = read_manifest(out)
    assert m["status"] == "complete" and m["cluster"]["started_here"] is True
    assert m["counts"]["already_done"] == len(done_before)
    assert m["counts"]["to_score"] == len(samples) - len(done_before)
    assert m["counts"]["attributed"] == len(samples) - len(done_before)
    assert sorted(_ids_once(out)) == sorted(s.id for s in samples)
