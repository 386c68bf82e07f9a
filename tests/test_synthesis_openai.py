"""Stage 2 over the real ``openai`` client against a real local chat-completions server.

Contexts are built from the shared HotpotQA paragraphs, as stage 1 would write them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from synthesis_fake_server import FakeChatServer

from scarlet_ray import cli
from scarlet_ray.datasets import convert
from scarlet_ray.manifest import read_manifest
from scarlet_ray.records import Passage, Sample, read_jsonl, read_samples, write_jsonl
from scarlet_ray.synthesis.cache import CachedChat, ChatCache
from scarlet_ray.synthesis.llm import LLMError, OpenAIChat, Usage

ROOT = Path(__file__).resolve().parents[1]
MSG = [{"role": "user", "content": "Reply with exactly [YES] or [NO]"}]


def make_contexts(shared_data: Path, path: Path, n: int = 3,
                  markers: dict[int, str] | None = None) -> list[Sample]:
    """Shared contexts from real HotpotQA paragraphs; a marker goes into passage 1's text."""
    res = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"), limit=n,
                  passage_words=60)
    out = []
    for i, s in enumerate(res.records):
        ps = list(s.passages[:4])
        if markers and i in markers:
            ps[1] = Passage(id=ps[1].id, title=ps[1].title, text=f"{ps[1].text} {markers[i]}")
        out.append(Sample(id=s.id, task=s.task, instruction=s.instruction, input=s.input,
                          output=s.output, passages=ps, meta={"seed_id": s.id}))
    write_jsonl(path, out)
    return out


def args(ctx: Path, out: Path, server: FakeChatServer, *sets: str) -> list[str]:
    base = ["synthesize", "--contexts", str(ctx), "--output", str(out),
            "--set", "synthesis.backend=openai", "--set", f"synthesis.base_url={server.base_url}",
            "--set", "synthesis.model=fake-gpt", "--set", "synthesis.backoff_s=0.01",
            "--set", "synthesis.api_key_env=SCARLET_TEST_OPENAI_KEY"]
    for s in sets:
        base += ["--set", s]
    return base


@pytest.fixture
def server():
    with FakeChatServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("SCARLET_TEST_OPENAI_KEY", "test-key-not-secret")


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] \
        if path.exists() else []


@pytest.mark.slow
def test_end_to_end_cli_then_cache_and_resume(shared_data, tmp_path, server):
    ctx_path = tmp_path / "contexts.jsonl"
    ctxs = make_contexts(shared_data, ctx_path, n=3)
    out = tmp_path / "run1"
    cache = tmp_path / "llm_cache.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCARLET_TEST_OPENAI_KEY": "k"}
    cmd = [sys.executable, "-m", "scarlet_ray.cli", *args(
        ctx_path, out, server, "synthesis.tasks=[nq, fever, eli5]",
        "synthesis.noise_passage=true", f"synthesis.cache_path={cache}")]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "scarlet synthesize" in p.stdout
    samples = read_samples(out / "samples.jsonl")
    assert len(samples) == 9 and not (out / "rejected.jsonl").exists()
    assert {s.id for s in samples} == {f"{c.id}-{t}" for c in ctxs for t in ("nq", "fever", "eli5")}
    by_id = {c.id: c for c in ctxs}
    for s in samples:
        c = by_id[s.meta["context_id"]]
        assert [p.id for p in s.passages] == [p.id for p in c.passages] + ["noise"]
        assert s.passages[:-1] == c.passages
        assert s.meta["check"] == "yes" and s.meta["synthesizer"]["model"] == "fake-gpt"
        assert s.instruction and s.input and s.output
        if s.task == "fever":
            assert s.output == "SUPPORTS"
        if s.task == "nq":
            assert s.output == c.passages[0].title and s.answers == [s.output]
    # 9 pairs x (synthesis, check, noise)
    assert server.state.ok == server.state.attempts == 27
    m = read_manifest(out)
    assert m["status"] == "complete"
    assert m["counts"]["accepted"] == 9 and m["counts"]["by_task"]["nq"]["accepted"] == 3
    assert m["usage"]["calls"] == 27
    assert m["usage"]["prompt_tokens"] == server.state.prompt_tokens
    assert m["usage"]["completion_tokens"] == server.state.completion_tokens
    expected_cost = (server.state.prompt_tokens / 1000 * 0.0025
                     + server.state.completion_tokens / 1000 * 0.01)
    assert m["usage"]["cost_usd"] == pytest.approx(expected_cost, abs=1e-6)
    assert m["models"]["synthesizer"]["base_url"] == server.base_url

    # resume into the same directory: nothing left to do, no request, no duplicate
    server.state.reset_counts()
    assert cli.main(args(ctx_path, out, server, "synthesis.tasks=[nq, fever, eli5]",
                         "synthesis.noise_passage=true", f"synthesis.cache_path={cache}")) == 0
    assert server.state.attempts == 0
    assert len(read_samples(out / "samples.jsonl")) == 9
    assert read_manifest(out)["counts"]["pairs_skipped_done"] == 9

    # a fresh output directory with the same cache: every answer comes from disk
    out2 = tmp_path / "run2"
    assert cli.main(args(ctx_path, out2, server, "synthesis.tasks=[nq, fever, eli5]",
                         "synthesis.noise_passage=true", f"synthesis.cache_path={cache}")) == 0
    assert server.state.attempts == 0
    m2 = read_manifest(out2)
    assert m2["usage"]["cache_hits"] == 27 and m2["usage"]["calls"] == 0
    assert m2["usage"]["cost_usd"] == 0 and m2["cache"]["paid_cost_usd"] > 0
    assert sorted((out / "samples.jsonl").read_text().splitlines()) == \
        sorted((out2 / "samples.jsonl").read_text().splitlines())


def test_429_and_500_are_retried_then_succeed(shared_data, tmp_path, server):
    ctx_path = tmp_path / "contexts.jsonl"
    make_contexts(shared_data, ctx_path, n=2)
    server.state.fail_next = [429, 500, 503, 429, 502]
    out = tmp_path / "out"
    assert cli.main(args(ctx_path, out, server, "synthesis.tasks=[nq, fever]",
                         "synthesis.max_retries=5")) == 0
    assert len(read_samples(out / "samples.jsonl")) == 4
    assert server.state.ok == 8  # 4 pairs x (synthesis + check)
    assert server.state.attempts == 8 + 5
    u = read_manifest(out)["usage"]
    assert u["calls"] == 8 and u["attempts"] == 13 and u["failed_calls"] == 0


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_limit_is_respected_and_used(shared_data, tmp_path, server, concurrency):
    ctx_path = tmp_path / "contexts.jsonl"
    make_contexts(shared_data, ctx_path, n=6)
    server.state.delay_s = 0.3
    out = tmp_path / "out"
    assert cli.main(args(ctx_path, out, server, "synthesis.tasks=[nq]", "synthesis.check=false",
                         f"synthesis.concurrency={concurrency}")) == 0
    assert server.state.ok == 6
    assert server.state.max_inflight == concurrency
    assert read_manifest(out)["counts"]["accepted"] == 6


def test_client_level_retry_rules(server):
    llm = OpenAIChat("fake-gpt", base_url=server.base_url,
                     api_key_env="SCARLET_TEST_OPENAI_KEY", max_retries=2, backoff_s=0.01,
                     timeout_s=5)
    server.state.fail_next = [500, 500, 500]
    with pytest.raises(LLMError) as ei:
        llm.chat(MSG, temperature=0, max_tokens=4)
    assert ei.value.reason == "http_500" and ei.value.attempts == 3
    assert server.state.attempts == 3
    server.state.fail_next = [400]
    with pytest.raises(LLMError) as ei:
        llm.chat(MSG, temperature=0, max_tokens=4)
    assert ei.value.reason == "http_400" and ei.value.attempts == 1  # not retried
    assert server.state.attempts == 4
    r = llm.chat(MSG, temperature=0, max_tokens=4)
    assert r.text == "[YES]" and r.attempts == 1 and r.prompt_tokens > 0


def test_hang_times_out_pair_fails_run_goes_on_then_rerun_completes(shared_data, tmp_path,
                                                                    server, capsys):
    ctx_path = tmp_path / "contexts.jsonl"
    ctxs = make_contexts(shared_data, ctx_path, n=3, markers={1: "[[hang]]"})
    server.state.hang_s = 3.0
    out = tmp_path / "out"
    sets = ("synthesis.tasks=[nq, fever]", "synthesis.timeout_s=0.5",
            "synthesis.max_retries=1")
    t0 = time.time()
    rc = cli.main(args(ctx_path, out, server, *sets))
    assert time.time() - t0 < 20
    assert rc == 1  # 2 of 6 pairs failed > max_error_rate
    assert "2 of 6 pairs failed" in capsys.readouterr().err
    ok_ids = {f"{c.id}-{t}" for c in (ctxs[0], ctxs[2]) for t in ("nq", "fever")}
    assert {s.id for s in read_samples(out / "samples.jsonl")} == ok_ids
    errs = lines(out / "errors.jsonl")
    assert {e["id"] for e in errs} == {f"{ctxs[1].id}-nq", f"{ctxs[1].id}-fever"}
    assert all(e["reason"] == "llm:timeout" and e["attempts"] == 2 for e in errs)
    m = read_manifest(out)
    assert m["status"] == "failed" and m["counts"]["failed"] == 2
    assert m["counts"]["by_task"]["nq"]["failed_reasons"] == {"llm:timeout": 1}

    server.state.hang_s = 0.0  # the endpoint recovered: a rerun does only the failed pairs
    server.state.reset_counts()
    assert cli.main(args(ctx_path, out, server, *sets)) == 0
    assert server.state.attempts == 4  # 2 pairs x (synthesis + check)
    assert len(read_samples(out / "samples.jsonl")) == 6
    assert not (out / "errors.jsonl").exists()
    assert read_manifest(out)["status"] == "complete"


def test_malformed_and_failed_checks_are_rejected_with_reason(shared_data, tmp_path, server):
    ctx_path = tmp_path / "contexts.jsonl"
    ctxs = make_contexts(shared_data, ctx_path, n=4, markers={
        0: "[[malformed]]", 1: "[[checkno]]", 2: "[[badlabel]] [[notincontext]]"})
    out = tmp_path / "out"
    assert cli.main(args(ctx_path, out, server, "synthesis.tasks=[nq, fever]")) == 0
    rej = {r["id"]: r for r in lines(out / "rejected.jsonl")}
    c0, c1, c2, c3 = (c.id for c in ctxs)
    assert {k: v["reason"] for k, v in rej.items()} == {
        f"{c0}-nq": "malformed:not_json", f"{c0}-fever": "malformed:not_json",
        f"{c1}-nq": "check:no", f"{c1}-fever": "check:no",
        f"{c2}-nq": "rule:answer_not_in_context", f"{c2}-fever": "rule:label_not_allowed"}
    assert rej[f"{c0}-nq"]["raw"].startswith("Sure!")
    assert rej[f"{c2}-fever"]["output"] == "MAYBE"
    assert {s.id for s in read_samples(out / "samples.jsonl")} == {f"{c3}-nq", f"{c3}-fever"}
    # the rule checks cost no check call: 8 synthesis + checks for c1 (2) and c3 (2)
    assert server.state.attempts == 12
    bt = read_manifest(out)["counts"]["by_task"]
    assert bt["fever"]["rejected_reasons"] == {"malformed:not_json": 1, "check:no": 1,
                                               "rule:label_not_allowed": 1}
    assert bt["nq"]["accepted"] == 1 and bt["nq"]["rejected"] == 3
    # rejected pairs are final: a rerun asks nothing
    server.state.reset_counts()
    assert cli.main(args(ctx_path, out, server, "synthesis.tasks=[nq, fever]")) == 0
    assert server.state.attempts == 0


def test_bad_context_line_is_quarantined_not_dropped(shared_data, tmp_path, server):
    ctx_path = tmp_path / "contexts.jsonl"
    make_contexts(shared_data, ctx_path, n=1)
    with open(ctx_path, "a") as fh:
        fh.write(json.dumps({"id": "x", "task": "nq", "input": "q", "output": "a",
                             "passages": []}) + "\n")
    out = tmp_path / "out"
    assert cli.main(args(ctx_path, out, server, "synthesis.tasks=[nq]")) == 0
    errs = lines(out / "errors.jsonl")
    assert len(errs) == 1 and errs[0]["field"] == "passages" and ":2" in errs[0]["source"]
    assert read_manifest(out)["counts"]["contexts_quarantined"] == 1
    assert read_jsonl(out / "samples.jsonl", Sample).records[0].task == "nq"


@pytest.mark.slow
def test_no_secret_in_outputs_or_logs(shared_data, tmp_path, server):
    key = f"sk-scarlet-FAKE-{uuid.uuid4().hex}"
    ctx_path = tmp_path / "contexts.jsonl"
    make_contexts(shared_data, ctx_path, n=2, markers={1: "[[malformed]]"})
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": key}
    a = args(ctx_path, out, server, "synthesis.tasks=[nq, fever]",
             "synthesis.api_key_env=OPENAI_API_KEY")
    server.state.fail_next = [429, 401]  # errors print bodies and headers paths; still no key
    p = subprocess.run([sys.executable, "-m", "scarlet_ray.cli", *a, "-v"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert (out / "manifest.json").exists(), p.stderr
    assert server.state.auth and set(server.state.auth) == {f"Bearer {key}"}  # it was used
    assert key not in p.stdout and key not in p.stderr
    assert "DEBUG" in p.stderr  # the verbose log was really captured
    files = [f for f in out.rglob("*") if f.is_file()]
    assert {"manifest.json", "samples.jsonl", "rejected.jsonl", "llm_cache.jsonl"} <= \
        {f.name for f in files}
    for f in files:
        data = f.read_bytes()
        assert key.encode() not in data, f
        assert key[-12:].encode() not in data, f


def test_key_handling(server, monkeypatch):
    monkeypatch.delenv("SCARLET_TEST_OPENAI_KEY")
    with pytest.raises(ValueError, match="SCARLET_TEST_OPENAI_KEY is not set"):
        OpenAIChat("m", base_url=None, api_key_env="SCARLET_TEST_OPENAI_KEY")
    llm = OpenAIChat("m", base_url=server.base_url, api_key_env="SCARLET_TEST_OPENAI_KEY")
    llm.chat(MSG, temperature=0, max_tokens=4)
    assert server.state.auth == ["Bearer EMPTY"]


@pytest.mark.slow
def test_kill_9_mid_run_loses_nothing_paid_for(shared_data, tmp_path, server):
    ctx_path = tmp_path / "contexts.jsonl"
    make_contexts(shared_data, ctx_path, n=3)
    out = tmp_path / "out"
    server.state.gate_after = 5  # the 6th request never answers: the driver is stuck there
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    a = args(ctx_path, out, server, "synthesis.tasks=[nq, fever]", "synthesis.concurrency=1")
    proc = subprocess.Popen([sys.executable, "-m", "scarlet_ray.cli", *a], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = out / "llm_cache.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and len(lines(cache)) < 5:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert len(lines(cache)) == 5
    server.state.gate_after = None
    server.state.reset_counts()
    assert cli.main(a) == 0
    assert server.state.attempts == 12 - 5  # only the unpaid calls are made again
    samples = read_samples(out / "samples.jsonl")
    assert len(samples) == 6 and len({s.id for s in samples}) == 6


def test_backoff_grows_and_honours_retry_after(server):
    llm = OpenAIChat("m", base_url=server.base_url, api_key_env="SCARLET_TEST_OPENAI_KEY",
                     backoff_s=1.0, backoff_max_s=8.0)
    for attempt, (lo, hi) in enumerate([(0.5, 1), (1, 2), (2, 4), (4, 8), (4, 8)]):
        d = llm._delay(attempt, None)
        assert lo <= d <= hi, (attempt, d)
    assert llm._delay(3, 0.25) == 0.25  # the server's Retry-After wins when it is sane
    assert 4 <= llm._delay(3, 600.0) <= 8  # an absurd Retry-After falls back to backoff


def test_bad_input_exits_2_with_a_reason(shared_data, tmp_path, server, capsys):
    ctx_path = tmp_path / "contexts.jsonl"
    assert cli.main(args(ctx_path, tmp_path / "o", server)) == 2
    assert "contexts.jsonl: file not found" in capsys.readouterr().err
    make_contexts(shared_data, ctx_path, n=1)
    assert cli.main(args(ctx_path, tmp_path / "o", server, "synthesis.tasks=[nq, nope]")) == 2
    assert "synthesis.tasks: unknown task(s) ['nope']" in capsys.readouterr().err
    assert server.state.attempts == 0


def request_kind(body: dict) -> str:
    """Which call a request body is: check, noise or the synthesis call of a task."""
    user = body["messages"][-1]["content"]
    if "Reply with exactly [YES] or [NO]" in user:
        return "check"
    if '{"title": "...", "text": "..."}' in user:
        return "noise"
    return "synthesis:" + re.search(r"^Task: (\S+)", user, re.MULTILINE).group(1)


def strict_object(title: str, /, **props: dict) -> dict:
    return {"name": title, "strict": True,
            "schema": {"title": title, "type": "object", "properties": props,
                       "required": list(props), "additionalProperties": False}}


STR = {"type": "string"}


def test_structured_output_puts_the_schema_on_the_wire_and_off(shared_data, tmp_path, server):
    ctx_path = tmp_path / "contexts.jsonl"
    make_contexts(shared_data, ctx_path, n=1)
    cache = tmp_path / "llm_cache.jsonl"
    sets = ("synthesis.tasks=[nq, fever]", "synthesis.noise_passage=true",
            f"synthesis.cache_path={cache}")
    out = tmp_path / "on"
    assert cli.main(args(ctx_path, out, server, *sets)) == 0  # structured_output: default on
    sent = {request_kind(b): b for b in server.state.bodies}
    assert len(server.state.bodies) == 6 and set(sent) == {
        "synthesis:nq", "synthesis:fever", "check", "noise"}
    assert sent["synthesis:nq"]["response_format"] == {
        "type": "json_schema", "json_schema": strict_object("sample", input=STR, output=STR)}
    assert sent["synthesis:fever"]["response_format"] == {
        "type": "json_schema", "json_schema": strict_object(
            "sample", input=STR, output={"type": "string", "enum": ["SUPPORTS", "REFUTES"]})}
    assert sent["noise"]["response_format"] == {
        "type": "json_schema", "json_schema": strict_object("noise_passage", title=STR, text=STR)}
    checks = [b for b in server.state.bodies if request_kind(b) == "check"]
    assert len(checks) == 2 and all(b["response_format"] == {
        "type": "json_schema", "json_schema": strict_object(
            "check_verdict", verdict={"type": "string", "enum": ["[YES]", "[NO]"]})}
        for b in checks)
    m = read_manifest(out)
    assert m["counts"]["accepted"] == 2
    assert m["models"]["synthesizer"]["structured_output"] is True
    assert all(s.meta["synthesizer"]["structured_output"] is True
               for s in read_samples(out / "samples.jsonl"))

    # off: nothing constrained is sent, and the shared cache's constrained answers are not
    # reused for the unconstrained calls (every call is made again)
    server.state.reset_counts()
    off = tmp_path / "off"
    assert cli.main(args(ctx_path, off, server, *sets, "synthesis.structured_output=false")) == 0
    kinds = sorted(request_kind(b) for b in server.state.bodies)
    assert kinds == ["check", "check", "noise", "noise", "synthesis:fever", "synthesis:nq"]
    assert all("response_format" not in b for b in server.state.bodies)
    m = read_manifest(off)
    assert m["models"]["synthesizer"]["structured_output"] is False
    assert m["usage"]["cache_hits"] == 0 and m["usage"]["calls"] == 6


def test_cached_chat_never_answers_a_schema_call_from_an_unconstrained_one(server, tmp_path):
    llm = OpenAIChat("fake-gpt", base_url=server.base_url,
                     api_key_env="SCARLET_TEST_OPENAI_KEY", max_retries=0)
    path = tmp_path / "cache.jsonl"
    chat = CachedChat(llm, ChatCache(path), Usage())
    yes_no = {"title": "verdict", "type": "object",
              "properties": {"v": {"type": "string", "enum": ["[YES]", "[NO]"]}},
              "required": ["v"], "additionalProperties": False}
    plain = chat.chat(MSG, temperature=0, max_tokens=4)
    assert not plain.cached and server.state.attempts == 1
    constrained = chat.chat(MSG, temperature=0, max_tokens=4, schema=yes_no)
    assert not constrained.cached and server.state.attempts == 2
    assert "response_format" not in server.state.bodies[0]
    assert server.state.bodies[1]["response_format"]["json_schema"]["schema"] == yes_no
    other = {**yes_no, "properties": {"v": {"type": "string", "enum": ["[YES]"]}}}
    chat.chat(MSG, temperature=0, max_tokens=4, schema=other)
    assert server.state.attempts == 3  # another schema is another call
    # every one of them is now answered from disk, also by a cache read back from the file
    again = CachedChat(llm, ChatCache(path), Usage())
    for schema in (None, yes_no, other):
        assert again.chat(MSG, temperature=0, max_tokens=4, schema=schema).cached
    assert server.state.attempts == 3 and again.usage.cache_hits == 3
