"""The local backend: the generator model through transformers generate, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scarlet_ray.config import load_config
from scarlet_ray.datasets import convert
from scarlet_ray.manifest import read_manifest
from scarlet_ray.records import Passage, Sample, read_samples, write_jsonl
from scarlet_ray.synthesis.checks import normalize
from scarlet_ray.synthesis.llm import LocalChat
from scarlet_ray.synthesis.prompts import sample_schema, synthesis_messages
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
        # the grammar (structured_output is on by default), not a prefill, starts the object
        assert r["reason"] and r["raw"].startswith('{"input": "')
    assert m["models"]["synthesizer"] == {"backend": "local", "model": tiny_chat.model,
                                          "temperature": 0.5, "prefill": True,
                                          "structured_output": True}
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
    # structured output off: the synthesis calls are new calls (another key) with the prefill
    off = cfg.model_copy(update={"synthesis": cfg.synthesis.model_copy(
        update={"structured_output": False})})
    out3 = tmp_path / "out3"
    unconstrained = run_synthesis(off, ctx_path, out3, llm=tiny_chat, progress=False)
    assert unconstrained.usage["calls"] >= 2
    assert read_manifest(out3)["models"]["synthesizer"]["structured_output"] is False
    for r in rejected(out3):
        if r["stage"] in ("parse", "rule"):  # the synthesis call's answer, after the prefill
            assert r["raw"].startswith('{"input": "')


VERDICT = {"title": "verdict", "type": "object",
           "properties": {"output": {"type": "string", "enum": ["SUPPORTS", "REFUTES"]}},
           "required": ["output"], "additionalProperties": False}


def test_local_schema_forces_the_object_even_from_random_weights(tiny_chat):
    """The grammar, not the model, makes the JSON: a random-weight model writes it too."""
    msgs = [{"role": "user", "content": "Is the sky green?"}]
    free = tiny_chat.chat(msgs, temperature=0, max_tokens=32)
    with pytest.raises(ValueError):
        json.loads(free.text)  # random weights: no JSON without the grammar
    compiled = dict(tiny_chat._grammars)
    for seed, temperature in ((0, 0.0), (1, 1.0), (2, 1.0)):
        r = tiny_chat.chat(msgs, temperature=temperature, max_tokens=32, seed=seed,
                           schema=VERDICT)
        assert r.finish_reason == "stop", r.text  # the grammar ended it with EOS
        assert json.loads(r.text) in ({"output": "SUPPORTS"}, {"output": "REFUTES"})
    assert len(tiny_chat._grammars) == len(compiled) + 1  # compiled once, reused after
    with pytest.raises(ValueError, match="prefill"):
        tiny_chat.chat([*msgs, {"role": "assistant", "content": "{"}], temperature=0,
                       max_tokens=4, schema=VERDICT)


@pytest.mark.slow
def test_smollm2_schema_constrained_chat_returns_the_sample_object(smollm2):
    chat = LocalChat(smollm2)
    ps = [Passage(id="p0", title="Radiohead", text="Radiohead released OK Computer in 1997."),
          Passage(id="p1", title="Blur", text="Blur released Parklife in 1994.")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name in ("nq", "fever"):
            task = BUILTIN_TASKS[name]
            r = chat.chat(synthesis_messages(task, ps), temperature=0, max_tokens=64,
                          schema=sample_schema(task))
            obj = json.loads(r.text)
            assert list(obj) == ["input", "output"], r.text  # exactly the keys, in order
            assert all(isinstance(v, str) for v in obj.values())
            if task.labels:
                assert obj["output"] in task.labels
            assert r.finish_reason == "stop"
    finally:
        torch.set_num_threads(threads)


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
