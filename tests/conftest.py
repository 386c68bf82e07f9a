"""Shared fixtures: the shared data folder, tiny config-built models, the real small models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Hypothesis draws the same examples on every run ("derandomize"), in CI and by default alike:
# `make test` on a fresh machine must not pass or fail by chance, and a failure replays by
# rerunning (so no example database is kept). "ci" (chosen when $CI is set; .ci/run sets it)
# also lets a slow shared runner through the too-slow health check; "explore" draws new random
# examples, for hunting counterexamples by hand (HYPOTHESIS_PROFILE=explore). Deadlines are off
# everywhere: the machines are shared and timings vary. print_blob shows how to reproduce.
settings.register_profile("dev", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          database=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", derandomize=False, deadline=None, print_blob=True,
                          max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI") else "dev"))


def shared_data_dir() -> Path:
    """../shared/data beside the checkout (CI lays it there), or $SCARLET_SHARED_DATA."""
    env = os.environ.get("SCARLET_SHARED_DATA")
    return Path(env) if env else (ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if not d.is_dir():
        pytest.fail(f"shared data not found at {d} (set SCARLET_SHARED_DATA)")
    return d


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """A 2-layer LLaMA built from a config with random weights, plus SmolLM2's real tokenizer
    when available (so chat templates are real), saved as an HF folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from scarlet_ray.models.generator import prepare_named_generator

    tok_dir = prepare_named_generator("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=4096, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct generator from the offline package."""
    from scarlet_ray.models.generator import load_generator

    return load_generator("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A 1-layer random BERT with MiniLM's real tokenizer, saved as a sentence-transformers
    folder (mean pooling + normalise): fast, and identical texts still embed identically."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from scarlet_ray.models.encoder import resolve_encoder_path

    root = tmp_path_factory.mktemp("tiny-encoder")
    tok = AutoTokenizer.from_pretrained(resolve_encoder_path("all-minilm-l6-v2"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(root / "hf")
    tok.save_pretrained(root / "hf")
    word = Transformer(str(root / "hf"), max_seq_length=64)
    pool = Pooling(word.get_embedding_dimension(), "mean")
    st = SentenceTransformer(modules=[word, pool, Normalize()], device="cpu")
    st.save(str(root / "st"))
    return root / "st"
