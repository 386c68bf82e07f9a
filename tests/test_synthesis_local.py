"""The local backend: the generator model through transformers generate, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scarlet_ray.config import load_config
from scarlet_ray.datasets import convert
from scarlet_ray.manifest import read_manifest
from scarlet_ray.records import Sample, read_samples, write_jsonl
from scarlet_ray.synthesis.checks import normalize
from scarlet_ray.synthesis.llm import LocalChat
from scarlet_ray.synthesis.synthesize import run_synthesis
from scarlet_ray.synthesis.tasks import BUILTIN_TASKS


def contexts(shared_data: Path, path: Path, n: int, passages: int = 3, words: int = 40) -> list:
    res = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"), limit=n,
                  passage_words=words)
    ctx = [Sample(id=s.id, task=s.task, instruction=s.instruction, input=s.input,
                  output=s.output, passages=s.passages[:passages]) for s in res.records]
    write_jsonl(path, ctx)
    return ctx


def rejected(out: Path) -> list[dict]:
    p = out / "rejected.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


@pytest.fixture(scope="module")
def tiny_chat(tiny_llama):
    from scarlet_ray.models.generator import load_generator

    return LocalChat(load_generator(str(tiny_llama), dtype="float32", device="cpu"))


def test_local_chat_template_prefill_and_determinism(tiny_chat):
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "hello"}]
    a = tiny_chat.chat(msgs, temperature=0, max_tokens=6)
    b = tiny_chat.chat(msgs, temperature=0, max_tokens=6)
    assert a.text == b.text and a.prompt_tokens > 3 and 0 < a.completion_tokens <= 6
    s1 = tiny_chat.chat(msgs, temperature=1.0, max_tokens=6, seed=3)
    s2 = tiny_chat.chat(msgs, temperature=1.0, max_tokens=6, seed=3)
    assert s1.text == s2.text  # sampling is seeded, so the cache key determines the answer
    p = tiny_chat.chat([*msgs, {"role": "assistant", "content": '{"input": "'}],
                       temperature=0, max_tokens=4)
    assert p.text.startswith('{"input": "')
    assert p.prompt_tokens > a.prompt_tokens  # the prefix is in the prompt, not regenerated


def test_local_backend_end_to_end_with_tiny_model(shared_data, tmp_path, tiny_chat, monkeypatch):
    ctx_path = tmp_path / "contexts.jsonl"
    contexts(shared_data, ctx_path, n=1)
    cache = tmp_path / "cache.jsonl"
    cfg = load_config(None, ["synthesis.tasks=[nq, fever]", "synthesis.max_tokens=8",
                             "synthesis.prefill=true", f"synthesis.cache_path={cache}"])
    out = tmp_path / "out"
    summary = run_synthesis(cfg, ctx_path, out, llm=tiny_chat, progress=False)
    m = read_manifest(out)
    c = m["counts"]
    # random weights: nothing sensible comes out, but every pair is accounted for with a reason
    assert c["accepted"] + c["rejected"] == 2 and c["failed"] == 0
    for r in rejected(out):
        assert r["reason"] and r["raw"].startswith('{"input": "')
    assert m["models"]["synthesizer"] == {"backend": "local", "model": tiny_chat.model,
                                          "temperature": 0.5, "prefill": True}
    assert m["usage"]["calls"] >= 2 and m["usage"]["cost_usd"] == 0
    assert summary.usage["completion_tokens"] > 0
    # resuming a finished run loads no model at all
    import scarlet_ray.synthesis.llm as llm_mod

    def no_model(*a, **k):
        raise AssertionError("a finished run must not load a model")

    monkeypatch.setattr(llm_mod, "build_llm", no_model)
    done = run_synthesis(cfg, ctx_path, out, progress=False)
    monkeypatch.undo()
    assert done.attempted == 0 and read_manifest(out)["counts"]["pairs_skipped_done"] == 2
    # the same cache in a fresh directory: no generation at all
    again = run_synthesis(cfg, ctx_path, tmp_path / "out2", llm=tiny_chat, progress=False)
    assert again.usage["calls"] == 0 and again.usage["cache_hits"] == m["usage"]["calls"]


@pytest.mark.slow
def test_smollm2_writes_samples_end_to_end(shared_data, tmp_path, smollm2):
    ctx_path = tmp_path / "contexts.jsonl"
    ctx = contexts(shared_data, ctx_path, n=1)
    cfg = load_config(None, ["synthesis.tasks=[nq, fever]", "synthesis.max_tokens=24",
                             "synthesis.prefill=true"])
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core box, 2 threads per process oversubscribe (~10x)
    try:
        run_synthesis(cfg, ctx_path, out, llm=LocalChat(smollm2), progress=False)
    finally:
        torch.set_num_threads(threads)
    m = read_manifest(out)
    assert m["counts"]["accepted"] + m["counts"]["rejected"] == 2
    assert m["usage"]["completion_tokens"] > 0 and m["usage"]["calls"] >= 2
    samples = read_samples(out / "samples.jsonl") if (out / "samples.jsonl").exists() else []
    hay = normalize(" ".join(f"{p.title} {p.text}" for p in ctx[0].passages))
    for s in samples:  # whatever passed obeys the rules it was checked against
        assert s.passages == ctx[0].passages and s.meta["check"] == "yes"
        if s.task == "fever":
            assert s.output in BUILTIN_TASKS["fever"].labels
        else:
            assert normalize(s.output) in hay
    for r in rejected(out):
        assert r["reason"].split(":")[0] in {"malformed", "rule", "check"}
