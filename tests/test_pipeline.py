"""`scarlet run` end to end on a tiny configuration, then a rerun that skips every stage."""

from __future__ import annotations

import json

import pytest

from scarlet_ray.cli import main
from scarlet_ray.datasets import convert
from scarlet_ray.records import read_attributions, write_jsonl


@pytest.mark.slow
@pytest.mark.ray
def test_run_all_stages_then_resume(tmp_path, shared_data, tiny_llama, capsys):
    hp = shared_data / "hotpotqa" / "hotpotqa_train.json"
    # a small corpus: the paragraphs of the first 6 questions (3 seeds + 3 held out)
    qs = convert("hotpotqa", str(hp), limit=6, passage_words=60).records
    corpus = {(p.title, p.text): p for s in qs for p in s.passages}
    write_jsonl(tmp_path / "corpus.jsonl",
                [{"id": f"c{i}", "title": t, "text": x} for i, (t, x) in enumerate(corpus)])
    run = tmp_path / "run"
    args = ["run", "--output", str(run),
            "--set", f"data.seeds={hp}", "--set", "data.seed_limit=3",
            "--set", f"data.corpus=[{tmp_path / 'corpus.jsonl'}]",
            "--set", "data.corpus_formats=[]", "--set", "data.passage_words=60",
            "--set", f"models.generator={tiny_llama}", "--set", "models.dtype=float32",
            "--set", "stages=[context, attribute, label, train, evaluate]",
            "--set", "context.corpus_graph_ner=false",
            "--set", "attribution.n_masks=8", "--set", "attribution.eval_baselines=[random]",
            "--set", "labels.method=fixed", "--set", "labels.fixed_bottom=2",
            "--set", "training.batch_size=1", "--set", "training.backend=ddp",
            "--set", "training.max_seq_len=64",
            "--set", "evaluation.heldout_offset=3", "--set", "evaluation.heldout_size=3",
            "--set", "evaluation.train_gold=false", "--set", "evaluation.max_new_tokens=4",
            "--set", "evaluation.rag_conditions=[retrieved, none]"]
    assert main(args) == 0
    out = capsys.readouterr().out
    summary = out[out.rindex("scarlet run:"):]
    assert "│ failed " not in summary and "│ not run " not in summary, summary
    assert len(read_attributions(run / "attribution" / "attributions")) == 3
    assert (run / "train" / "model" / "config.json").exists()
    for variant in ("base", "trained"):
        m = json.loads((run / "eval" / f"retrieval_{variant}" / "metrics.json").read_text())
        assert m["n_queries"] == 3 and 0 <= m["ndcg@10"] <= 1
        assert (run / "eval" / f"rag_{variant}" / "metrics.json").exists()
    assert (run / "report" / "report.html").exists()
    # a rerun finds every stage complete and computes nothing
    assert main(args) == 0
    again = capsys.readouterr().out
    again = again[again.rindex("scarlet run:"):]
    for stage in ("context", "attribute", "label", "train", "rag (trained)"):
        line = next(x for x in again.splitlines() if f"│ {stage} " in x)
        assert "skipped" in line, line
