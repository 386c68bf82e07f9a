"""Every prompt fits its model's window, by one rule (prompt.fit_passages), recorded.

Attribution, local synthesis and RAG all fit their passages with the same function; a
50,000-word passage (which once made a local generate run for minutes and write nothing) is cut
to the window, the prompt that runs is within it, and the stage's ``prompt_window`` says so.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scarlet_ray.attribution.engine import AttributionEngine
from scarlet_ray.attribution.scoring import prepare_sample
from scarlet_ray.config import AttributionConfig, LabelsConfig, load_config
from scarlet_ray.evaluation.rag import RagItem, run_items
from scarlet_ray.manifest import read_manifest
from scarlet_ray.models.generator import Generator, load_generator
from scarlet_ray.prompt import (
    MIN_WORDS,
    RULE,
    PromptTooLong,
    fit_chat_prompt,
    fit_passages,
)
from scarlet_ray.records import Passage, Sample, write_jsonl
from scarlet_ray.synthesis.llm import LLMError, LocalChat
from scarlet_ray.synthesis.synthesize import run_synthesis
from scarlet_ray.synthesis.tasks import BUILTIN_TASKS

VOCAB = ["the", "river", "city", "capital", "old", "bridge", "music", "king", "north", "south",
         "war", "peace", "France"]
INSTRUCTION = "Answer the question."
QUESTION = "What is the capital of France?"


def long_passage(words: int = 50_000, pid: str = "long") -> Passage:
    return Passage(id=pid, title="A very long page",
                   text=" ".join(VOCAB[(i * 7) % len(VOCAB)] for i in range(words)))


def short_passages() -> list[Passage]:
    return [Passage(id="p0", title="Paris", text="Paris is the capital of France."),
            Passage(id="p1", title="Lyon", text="Lyon is a city in France on the Rhone.")]


@pytest.fixture(scope="module")
def tiny_gen(tiny_llama) -> Generator:
    return load_generator(str(tiny_llama), dtype="float32", device="cpu")


@pytest.fixture()
def generate_lengths(tiny_gen, monkeypatch) -> list[int]:
    """Prompt widths the model's own generate is called with (the call runs as usual)."""
    seen: list[int] = []
    real = tiny_gen.model.generate

    def spy(*args, **kwargs):
        seen.append(int(kwargs["input_ids"].shape[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_gen.model, "generate", spy)
    return seen


def test_50k_word_passage_is_cut_to_the_window_and_recorded(tiny_gen):
    ps = [short_passages()[0], long_passage(), short_passages()[1]]
    window = tiny_gen.window
    assert window == 4096  # the tiny LLaMA's config
    t0 = time.perf_counter()
    fit = fit_chat_prompt(tiny_gen, INSTRUCTION, ps, QUESTION, window=window, room=32)
    assert time.perf_counter() - t0 < 10
    assert fit.tokens_before > 10 * window
    assert fit.ids == tiny_gen.prompt_ids(INSTRUCTION, fit.passages, QUESTION)
    assert fit.tokens_after + 32 <= window and fit.tokens_after > window - 200  # fills it
    # only the long one is cut, to its first words, title and order kept
    assert fit.cut == fit.shortened == ["long"] and fit.dropped == []
    assert [p.id for p in fit.passages] == ["p0", "long", "p1"]
    assert fit.passages[0] == ps[0] and fit.passages[2] == ps[2]
    cut = fit.passages[1]
    assert cut.title == ps[1].title and ps[1].text.startswith(cut.text)
    assert len(cut.text.split()) == fit.cap_words
    assert "long" in fit.note and str(window) in fit.note


def test_a_prompt_that_fits_is_unchanged_and_an_impossible_one_is_one_line(tiny_gen):
    ps = short_passages()
    fit = fit_chat_prompt(tiny_gen, INSTRUCTION, ps, QUESTION, window=tiny_gen.window, room=32)
    assert fit.passages == ps and fit.cut == [] and fit.note == ""
    assert fit.ids == tiny_gen.prompt_ids(INSTRUCTION, ps, QUESTION)
    with pytest.raises(PromptTooLong, match="budget of 4096") as info:
        fit_chat_prompt(tiny_gen, INSTRUCTION, ps, " ".join(["word"] * 5000),
                        window=tiny_gen.window, room=32)
    assert "\n" not in str(info.value)


def test_crowded_window_drops_lowest_ranked_passages_whole(tiny_gen):
    ps = [Passage(id=f"p{i}", title=f"T{i}", text=" ".join(VOCAB * 3)) for i in range(30)]
    bare = len(tiny_gen.prompt_ids(INSTRUCTION, [], QUESTION))
    window = bare + 200  # room for a few passages at MIN_WORDS words, not for 30
    fit = fit_chat_prompt(tiny_gen, INSTRUCTION, ps, QUESTION, window=window, room=8)
    kept = [p.id for p in fit.passages]
    assert 0 < len(kept) < 30 and kept == [f"p{i}" for i in range(len(kept))]
    assert fit.dropped == [f"p{i}" for i in range(len(kept), 30)]
    assert fit.tokens_after + 8 <= window
    assert all(len(p.text.split()) >= MIN_WORDS for p in fit.passages)


def test_attribution_fits_by_the_shared_rule_and_logs_it(tiny_gen):
    ps = [*short_passages(), long_passage()]
    s = Sample(id="s1", task="nq", instruction=INSTRUCTION, input=QUESTION, output="Paris",
               passages=ps)
    prep = prepare_sample(tiny_gen, s.instruction, s.passages, s.input, s.output)
    same = fit_chat_prompt(tiny_gen, INSTRUCTION, ps, QUESTION, window=tiny_gen.window,
                           room=len(prep.answer_ids))
    assert prep.passages == same.passages and prep.truncated == same.cut == ["long"]
    assert prep.truncation_note == same.note
    assert (len(tiny_gen.prompt_ids(INSTRUCTION, prep.passages, QUESTION))
            + len(prep.answer_ids) <= tiny_gen.window)
    eng = AttributionEngine(tiny_gen, AttributionConfig(n_masks=8), LabelsConfig())
    eng.prepare(s)
    eng.prepare(s.model_copy(update={"id": "s2", "passages": short_passages()}))
    w = eng.window_log.summary()
    assert w["rule"] == RULE and w["window"] == tiny_gen.window
    assert w["prompts"] == 2 and w["prompts_cut"] == 1 and w["ids_cut"] == ["s1"]
    assert w["passages_shortened"] == 1 and w["max_tokens_before_cut"] == same.tokens_before


def test_rag_fits_every_prompt_and_records_it(tiny_gen, generate_lengths):
    task = BUILTIN_TASKS["nq"]
    samples = [Sample(id=f"q{i}", task="nq", instruction=INSTRUCTION, input=QUESTION,
                      output="Paris", passages=short_passages()) for i in range(2)]
    items = [RagItem(samples[0], task, INSTRUCTION,
                     {"retrieved": [long_passage(), *short_passages()], "none": []}, 4),
             RagItem(samples[1], task, INSTRUCTION,
                     {"retrieved": short_passages(), "none": []}, 4)]
    rows: list[dict] = []
    t0 = time.perf_counter()
    res = run_items(tiny_gen, items, batch_size=2, chunk=8, on_rows=rows.extend)
    assert time.perf_counter() - t0 < 60
    assert res.written == 2 and [r["id"] for r in rows] == ["q0", "q1"]
    assert rows[0]["prompt_cut"] == {"retrieved": ["long"]} and "prompt_cut" not in rows[1]
    assert all(set(r["predictions"]) == {"retrieved", "none"} for r in rows)
    assert generate_lengths and max(generate_lengths) + 4 <= tiny_gen.window
    w = res.prompt_window
    assert w["rule"] == RULE and w["window"] == tiny_gen.window
    assert w["prompts"] == 4 and w["prompts_cut"] == 1 and w["ids_cut"] == ["q0"]
    assert w["max_tokens_before_cut"] > 10 * tiny_gen.window
    json.dumps(w)  # manifest-ready


def _long_context(path: Path) -> Sample:
    ctx = Sample(id="c1", task="nq", instruction=INSTRUCTION, input=QUESTION, output="Paris",
                 passages=[short_passages()[0], long_passage()])
    write_jsonl(path, [ctx])
    return ctx


def test_local_synthesis_fits_the_window_and_the_manifest_says_so(tiny_gen, tmp_path,
                                                                 generate_lengths):
    ctx_path = tmp_path / "contexts.jsonl"
    _long_context(ctx_path)
    cfg = load_config(None, ["synthesis.tasks=[nq]", "synthesis.max_tokens=8",
                             "synthesis.prefill=true", "synthesis.check=false"])
    out = tmp_path / "out"
    t0 = time.perf_counter()
    summary = run_synthesis(cfg, ctx_path, out, llm=LocalChat(tiny_gen), progress=False)
    assert time.perf_counter() - t0 < 60
    m = read_manifest(out)
    assert m["counts"]["accepted"] + m["counts"]["rejected"] == 1 and m["counts"]["failed"] == 0
    w = m["prompt_window"]
    assert w == summary.prompt_window
    assert w["rule"] == RULE and w["window"] == tiny_gen.window
    assert w["prompts"] == 1 and w["prompts_cut"] == 1 and w["ids_cut"] == ["c1-nq"]
    assert w["max_tokens_before_cut"] > 10 * tiny_gen.window
    assert generate_lengths and max(generate_lengths) + 8 <= tiny_gen.window


def test_local_backend_refuses_a_prompt_past_the_window(tiny_gen, generate_lengths):
    chat = LocalChat(tiny_gen)
    msgs = [{"role": "user", "content": long_passage(5000).text}]
    with pytest.raises(LLMError, match="window of 4096") as info:
        chat.chat(msgs, temperature=0, max_tokens=8)
    assert info.value.reason == "context_window" and generate_lengths == []


words_st = st.lists(st.sampled_from(VOCAB), min_size=1, max_size=400).map(" ".join)
long_words_st = st.lists(st.sampled_from(VOCAB), min_size=40, max_size=400).map(" ".join)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(words_st | long_words_st, min_size=0, max_size=6), share=st.integers(0, 110),
       offset=st.integers(-20, 20), room=st.integers(0, 64))
def test_fitted_prompts_never_exceed_the_window_and_fitting_ones_are_unchanged(
        tiny_gen, texts, share, offset, room):
    ps = [Passage(id=f"p{i}", title=f"T{i}", text=t) for i, t in enumerate(texts)]

    def encode(sel):
        return tiny_gen.prompt_ids(INSTRUCTION, sel, QUESTION)

    bare, full = len(encode([])), len(encode(ps))
    window = bare + room + (full - bare) * share // 100 + offset  # from too small to roomy
    try:
        fit = fit_passages(encode, ps, window=window, room=room)
    except PromptTooLong:
        event("too long")
        assert bare + room > window
        return
    assert len(fit.ids) + room <= window and fit.ids == encode(fit.passages)
    if full + room <= window:
        event("fits")
        assert fit.passages == ps and fit.cut == []
        return
    event("dropped" if fit.dropped else "shortened")
    kept = {p.id: p for p in fit.passages}
    by_id = {p.id: p for p in ps}
    assert [p.id for p in fit.passages] == [p.id for p in ps[:len(fit.passages)]]
    assert fit.dropped == [p.id for p in ps[len(fit.passages):]]
    for pid, p in kept.items():  # a prefix of each passage's words; only the longest cut
        orig = by_id[pid].text.split()
        assert p.title == by_id[pid].title and p.text.split() == orig[:len(p.text.split())]
        if pid in fit.shortened:
            assert len(p.text.split()) == fit.cap_words
        else:
            assert p == by_id[pid] and (fit.cap_words is None or len(orig) <= fit.cap_words)


# ---------------------------------------------------------------- real SmolLM2 (slow)

@pytest.mark.slow
def test_smollm2_rag_and_synthesis_on_a_50k_word_passage_finish_and_write(smollm2, tmp_path):
    """Each item costs at most one window's prefill (~20 s for SmolLM2's 8192 tokens on one
    loaded CPU core) instead of growing with the passage (> 170 s for 50,000 words)."""
    per_item_limit = 90.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core box oversubscribes with 2 threads per process
    try:
        rows: list[dict] = []
        item = RagItem(Sample(id="q0", task="nq", instruction=INSTRUCTION, input=QUESTION,
                              output="Paris", passages=short_passages()),
                       BUILTIN_TASKS["nq"], INSTRUCTION,
                       {"retrieved": [short_passages()[0], long_passage()]}, 8)
        t0 = time.perf_counter()
        res = run_items(smollm2, [item], batch_size=1, chunk=1, on_rows=rows.extend)
        rag_s = time.perf_counter() - t0
        assert rows and rows[0]["predictions"]["retrieved"] is not None
        assert res.prompt_window["prompts_cut"] == 1

        ctx_path = tmp_path / "contexts.jsonl"
        _long_context(ctx_path)
        cfg = load_config(None, ["synthesis.tasks=[nq]", "synthesis.max_tokens=16",
                                 "synthesis.prefill=true", "synthesis.check=false"])
        out = tmp_path / "synth"
        t0 = time.perf_counter()
        run_synthesis(cfg, ctx_path, out, llm=LocalChat(smollm2), progress=False)
        synth_s = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    m = read_manifest(out)
    assert m["counts"]["accepted"] + m["counts"]["rejected"] == 1
    assert m["prompt_window"]["prompts_cut"] == 1 and m["prompt_window"]["window"] == 8192
    assert (out / "samples.jsonl").exists() or (out / "rejected.jsonl").exists()
    print(f"\nSmolLM2, 50,000-word passage: rag {rag_s:.1f} s/item, synthesis {synth_s:.1f} s/item")
    assert rag_s < per_item_limit and synth_s < per_item_limit
