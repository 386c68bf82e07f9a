"""Shared pieces of the training tests: a tiny config-built bi-encoder and synthetic data."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

TOPICS = ["river", "castle", "violin", "comet", "tiger", "glacier", "bakery", "engine", "harbor",
          "orchid", "volcano", "library", "falcon", "desert", "opera", "copper"]


def make_tiny_encoder(dest: Path) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's real tokenizer, as a sentence-transformers folder.

    Dropout is off so runs are deterministic (needed by the equivalence and resume tests).
    """
    import torch
    from transformers import BertConfig, BertModel

    from scarlet_ray.models.encoder import resolve_encoder_path

    src = Path(resolve_encoder_path("all-minilm-l6-v2"))
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                 "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(src / name, dest / name)
    shutil.copytree(src / "1_Pooling", dest / "1_Pooling", dirs_exist_ok=True)
    if (src / "2_Normalize").is_dir():
        shutil.copytree(src / "2_Normalize", dest / "2_Normalize", dirs_exist_ok=True)
    pooling = json.loads((src / "1_Pooling" / "config.json").read_text())
    pooling["word_embedding_dimension"] = 32
    (dest / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(cfg).save_pretrained(dest)
    return dest


def make_examples(path: Path, n: int = 48, n_neg: int = 4, seed: int = 0) -> Path:
    """Queries whose positive shares the query's topic word; negatives are other topics."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        t = TOPICS[i % len(TOPICS)]
        others = [x for x in TOPICS if x != t]
        rows.append({
            "query": f"tell me about the {t} number {i}",
            "pos": [f"the {t} is described here {rng.randint(0, 99)}",
                    f"facts on the {t} {rng.randint(0, 99)}"],
            "neg": [f"the {o} is described here {rng.randint(0, 99)}"
                    for o in rng.sample(others, n_neg)],
        })
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
