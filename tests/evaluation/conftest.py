"""Fixtures of the evaluation tests: a tiny config-built bi-encoder and tiny BEIR/sample sets."""

from __future__ import annotations

from pathlib import Path

import pytest


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
