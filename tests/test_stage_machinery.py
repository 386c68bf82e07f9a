"""The output-folder discipline every stage shares (issue 14, items 1-3, 6-9), through the real CLI.

Each test is one of the tries a hostile new user made: two runs on one folder, a failed run that
claimed success, a rerun with one setting changed, OS errors, empty inputs, Ctrl-C, and the
report's time per stage.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scarlet_ray.cli import main as cli
from scarlet_ray.datasets import convert
from scarlet_ray.manifest import read_manifest
from scarlet_ray.records import read_attributions

ROOT = Path(__file__).resolve().parents[1]


def _samples(path: Path, shared_data: Path, n: int = 3, words: int = 25, **update) -> list[str]:
    recs = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"), limit=n,
                   passage_words=words).records
    recs = [r.model_copy(update=update) for r in recs]
    path.write_text("".join(r.model_dump_json() + "\n" for r in recs))
    return [r.id for r in recs]


def _sets(tiny_llama: Path, **kw) -> list[str]:
    o = {"models.generator": str(tiny_llama), "models.dtype": "float32",
         "attribution.n_masks": 8}
    o.update(kw)
    out: list[str] = []
    for k, v in o.items():
        out += ["--set", f"{k}={v}"]
    return out


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _attribute_proc(inp: Path, out: Path, tiny_llama: Path, stderr: Path | None = None,
                    **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "scarlet_ray.cli", "attribute", "--input", str(inp),
           "--output", str(out), *_sets(tiny_llama, **kw)]
    err = open(stderr, "w") if stderr else subprocess.PIPE  # noqa: SIM115 - the child owns it
    return subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
                            text=True)


def _samples_done(log: Path) -> int:
    """Samples the progress bar has counted so far (tqdm writes ``attribute: ... N/M``)."""
    import re

    found = re.findall(r"attribute:[^|]*\|[^|]*\| (\d+)/", log.read_text(errors="replace"))
    return int(found[-1]) if found else 0


def _wait_for(pred, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


# ------------------------------------------------------------------ item 1: the lock
def test_second_run_on_a_folder_is_refused_and_a_dead_holder_blocks_nothing(
        tmp_path, tiny_llama, shared_data, capsys):
    inp = tmp_path / "in.jsonl"
    ids = _samples(inp, shared_data, n=6, words=60)
    out = tmp_path / "out"
    first = _attribute_proc(inp, out, tiny_llama, **{"attribution.n_masks": 48,
                                                     "attribution.flush_every": 1})
    try:
        _wait_for(lambda: (read_manifest(out) or {}).get("status") == "running")
        assert cli(["attribute", "--input", str(inp), "--output", str(out),
                    *_sets(tiny_llama)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "in use by another run" in err
        assert f"pid {first.pid}" in err
    finally:
        _, ferr = first.communicate(timeout=600)
    assert first.returncode == 0, ferr[-2000:]
    got = [a.id for a in read_attributions(out / "attributions")]
    assert sorted(got) == sorted(ids)  # every id once

    # a holder killed with SIGKILL leaves the lock file, but not the lock
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from scarlet_ray.stagedir import StageRun;"
         "r = StageRun(Path(sys.argv[1]), 'attribute', {}, ('attributions',)); r.__enter__();"
         "print('held', flush=True); time.sleep(600)", str(tmp_path / "dead")],
        env=_env(), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "dead" / ".lock").exists()
    assert cli(["attribute", "--input", str(inp), "--output", str(tmp_path / "dead"),
                *_sets(tiny_llama)]) == 0


# ------------------------------------------------------------------ item 2: failed is failed
def test_a_failed_run_says_failed_and_a_rerun_retries_its_ids(tmp_path, tiny_llama, shared_data,
                                                             capsys):
    inp = tmp_path / "in.jsonl"
    ids = _samples(inp, shared_data, n=2)
    lines = inp.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["output"] = " "  # a blank answer: the sample fails in scoring
    inp.write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    out = tmp_path / "out"
    sets = _sets(tiny_llama, **{"attribution.max_error_rate": 0.0})
    assert cli(["attribute", "--input", str(inp), "--output", str(out), *sets]) == 1
    m = read_manifest(out)
    assert m["status"] == "failed" and "max_error_rate" in m["message"]
    assert "max_error_rate" in capsys.readouterr().err
    # `scarlet run` must not take it for done
    from scarlet_ray.config import load_config
    from scarlet_ray.stagedir import fingerprint, stage_settings

    cfg = load_config(None, [s for s in sets if s != "--set"])
    assert m["fingerprint"] == fingerprint(stage_settings("attribute", cfg.dump()))
    # the input is fixed: a plain rerun retries the failed id and completes
    bad["output"] = "an answer"
    inp.write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    assert cli(["attribute", "--input", str(inp), "--output", str(out), *sets]) == 0
    m = read_manifest(out)
    assert m["status"] == "complete" and m["counts"]["previously_failed"] == 1
    assert sorted(a.id for a in read_attributions(out / "attributions")) == sorted(ids)
    assert not (out / "errors.jsonl").exists()  # the failure is gone with its retry


# ------------------------------------------------------------------ item 3: fingerprints
@pytest.mark.parametrize("change", ["attribution.n_masks=6", "attribution.target=logit_sum",
                                    "models.dtype=bfloat16"])
def test_rerun_with_other_settings_is_refused_naming_the_key(tmp_path, tiny_llama, shared_data,
                                                             capsys, change):
    inp = tmp_path / "in.jsonl"
    _samples(inp, shared_data, n=1)
    out = tmp_path / "out"
    assert cli(["attribute", "--input", str(inp), "--output", str(out),
                *_sets(tiny_llama)]) == 0
    capsys.readouterr()
    before = read_manifest(out)
    argv = ["attribute", "--input", str(inp), "--output", str(out), *_sets(tiny_llama),
            "--set", change]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "written with other settings" in err and change.split("=")[0] in err
    assert read_manifest(out)["fingerprint"] == before["fingerprint"]  # nothing rewritten
    # operational knobs are not settings: another runner batch size or flush size resumes
    assert cli(["attribute", "--input", str(inp), "--output", str(out), *_sets(tiny_llama),
                "--set", "attribution.flush_every=3", "--set", "attribution.cpu_walkers=1"]) == 0
    # --restart starts over with the new settings
    assert cli([*argv, "--restart"]) == 0
    m = read_manifest(out)
    assert m["fingerprint"] != before["fingerprint"] and m["counts"]["already_done"] == 0
    if change.startswith("attribution.n_masks"):
        assert {a.n_masks for a in read_attributions(out / "attributions")} == {6}


def test_legacy_folder_without_fingerprint_resumes_and_is_checked(tmp_path, tiny_llama,
                                                                  shared_data):
    inp = tmp_path / "in.jsonl"
    _samples(inp, shared_data, n=1)
    out = tmp_path / "out"
    assert cli(["attribute", "--input", str(inp), "--output", str(out),
                *_sets(tiny_llama)]) == 0
    m = read_manifest(out)
    for k in ("fingerprint", "fingerprint_settings"):
        m.pop(k)  # as written before this change
    (out / "manifest.json").write_text(json.dumps(m))
    assert cli(["attribute", "--input", str(inp), "--output", str(out),
                *_sets(tiny_llama)]) == 0
    assert read_manifest(out)["counts"]["already_done"] == 1
    (out / "manifest.json").write_text(json.dumps(m))
    assert cli(["attribute", "--input", str(inp), "--output", str(out), *_sets(tiny_llama),
                "--set", "attribution.n_masks=6"]) == 2


# ------------------------------------------------------------------ item 6: OS errors
def _read_only_dir(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes through file modes: use a folder no one can create
        return Path("/sys/kernel/scarlet-test-output")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return d / "out"


@pytest.mark.parametrize("stage", ["attribute", "label", "synthesize", "context", "train",
                                   "evaluate_attribution", "evaluate_rag", "evaluate_retrieval"])
def test_output_that_is_a_file_or_unwritable_is_one_line(tmp_path, shared_data, capsys, stage):
    inp = tmp_path / "in.jsonl"
    _samples(inp, shared_data, n=1)
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "title": "t", "text": "x"}\n')
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"query": "q", "pos": ["p"], "neg": ["n"]}) + "\n")
    attrs = tmp_path / "attrs"
    from scarlet_ray.attribution.store import AttributionStore

    AttributionStore(attrs).write_rows([{
        "id": "x", "passage_ids": ["a", "b"], "utility": [1.0, 0.0], "intercept": 0.0, "r2": 1.0,
        "label": ["pos", "neg"], "n_masks": 8, "target": "logprob_sum", "generator": "g"}])
    args = {
        "attribute": ["attribute", "--input", str(inp)],
        "label": ["label", "--attributions", str(attrs), "--samples", str(inp)],
        "synthesize": ["synthesize", "--contexts", str(inp)],
        "context": ["context", "--seeds", str(inp), "--corpus", str(inp)],
        "train": ["train", "--train", str(train)],
        "evaluate_attribution": ["evaluate", "attribution", "--attributions", str(attrs),
                                 "--samples", str(inp)],
        "evaluate_rag": ["evaluate", "rag", "--model", "all-minilm-l6-v2", "--samples",
                         str(inp), "--corpus", str(inp)],
        "evaluate_retrieval": ["evaluate", "retrieval", "--model", "all-minilm-l6-v2",
                               "--beir", str(beir)],
    }[stage]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, why in ((a_file, "not a directory"), (_read_only_dir(tmp_path), None),
                     (a_file / "sub", "not a directory")):
        rc = cli([*args, "--output", str(out)])
        err = capsys.readouterr().err.strip()
        assert rc == 2, (out, err)
        assert err.count("\n") == 0 and "Traceback" not in err and str(out) in err, err
        if why:
            assert why in err, err


def test_input_that_is_a_directory_is_one_line(tmp_path, capsys):
    d = tmp_path / "adir"
    d.mkdir()
    for argv in (["attribute", "--input", str(d)], ["synthesize", "--contexts", str(d)],
                 ["train", "--train", str(d)],
                 ["context", "--seeds", str(d), "--corpus", str(d)]):
        rc = cli([*argv, "--output", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.count("\n") == 0 and str(d) in err, (argv, err)


# ------------------------------------------------------------------ item 7: empty inputs
@pytest.mark.parametrize("content", ["", "\n\n", '{"id": "x"}\n{"not json\n'])
def test_empty_or_all_invalid_input_is_an_error_unless_asked(tmp_path, tiny_llama, capsys,
                                                             content):
    inp = tmp_path / "in.jsonl"
    inp.write_text(content)
    for argv in (["attribute", "--input", str(inp), *_sets(tiny_llama)],
                 ["synthesize", "--contexts", str(inp)],
                 ["context", "--seeds", str(inp), "--corpus", str(inp)]):
        out = tmp_path / f"o-{argv[0]}"
        assert cli([*argv, "--output", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(inp) in err and "--allow-empty" in err, err
        assert (read_manifest(out) or {}).get("status") != "complete"
    if content.strip():
        return  # invalid lines still count against max_error_rate, --allow-empty or not
    out = tmp_path / "allowed"
    assert cli(["attribute", "--input", str(inp), *_sets(tiny_llama), "--output", str(out),
                "--allow-empty"]) == 0
    assert read_manifest(out)["status"] == "complete"
    assert read_manifest(out)["counts"]["attributions_total"] == 0


def test_label_with_the_wrong_samples_file_is_an_error(tmp_path, tiny_llama, shared_data,
                                                       capsys):
    inp = tmp_path / "in.jsonl"
    _samples(inp, shared_data, n=1)
    out = tmp_path / "a"
    assert cli(["attribute", "--input", str(inp), "--output", str(out),
                *_sets(tiny_llama)]) == 0
    other = tmp_path / "other.jsonl"
    recs = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"), limit=5,
                   passage_words=25).records[3:]
    other.write_text("".join(r.model_dump_json() + "\n" for r in recs))
    capsys.readouterr()
    assert cli(["label", "--attributions", str(out / "attributions"), "--samples", str(other),
                "--output", str(tmp_path / "lab")]) == 2
    err = capsys.readouterr().err
    assert "wrong samples file" in err and str(other) in err


# ------------------------------------------------------------------ item 8: interrupts
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_flushes_finished_work_and_exits_in_one_line(tmp_path, tiny_llama, shared_data,
                                                               sig, code):
    inp = tmp_path / "in.jsonl"
    ids = _samples(inp, shared_data, n=40, words=60)
    out = tmp_path / "out"
    # flush_every larger than the input: before this change, everything finished was lost
    log = tmp_path / "stderr.log"
    proc = _attribute_proc(inp, out, tiny_llama, stderr=log,
                           **{"attribution.n_masks": 64, "attribution.flush_every": 1000,
                              "attribution.cpu_walkers": 2})
    try:
        _wait_for(lambda: _samples_done(log) >= 2, timeout=300)  # some samples finished
        t0 = time.time()
        proc.send_signal(sig)
        proc.communicate(timeout=30)
        took = time.time() - t0
        err = log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err[-2000:]
    assert took < 10, took  # within the grace `ray job stop` gives a driver
    last = [x for x in err.strip().splitlines() if x.startswith("scarlet attribute:")]
    assert last and "interrupted" in last[-1] and "Traceback" not in err, err[-2000:]
    m = read_manifest(out)
    assert m["status"] == "failed" and "interrupted" in m["message"]
    done = [a.id for a in read_attributions(out / "attributions")]
    assert 0 < len(done) < len(ids) and m["counts"]["attributed"] == len(done)
    # the rerun does only the rest
    rerun = _attribute_proc(inp, out, tiny_llama, **{"attribution.n_masks": 64,
                                                     "attribution.flush_every": 1000})
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-2000:]
    assert read_manifest(out)["counts"]["already_done"] == len(done)
    assert sorted(a.id for a in read_attributions(out / "attributions")) == sorted(ids)


# ------------------------------------------------------------------ item 9: report times
def test_report_stage_time_is_the_manifest_total(tmp_path):
    from scarlet_ray.evaluation.report import _stage_manifests, build_report
    from scarlet_ray.layout import RunLayout
    from scarlet_ray.manifest import write_manifest

    lay = RunLayout(tmp_path / "run")
    write_manifest(lay.contexts.parent, "context",
                   timings={"load_corpus_s": 100.0, "index_s": 100.0, "total_s": 206.0})
    write_manifest(lay.attributions.parent, "attribute", timings={"scoring_s": 50.0,
                                                                  "total_s": 60.0})
    mans = _stage_manifests(lay.root)
    from scarlet_ray.evaluation.report import _seconds

    assert sum(_seconds(m) for m in mans["context"]) == 206.0
    assert sum(_seconds(m) for m in mans["attribution"]) == 60.0
    html = build_report(lay.root).read_text()
    assert "3.4 min" in html and "406" not in html


def test_data_convert_output_directory_or_nothing_valid_is_one_line(tmp_path, shared_data,
                                                                     capsys):
    d = tmp_path / "adir"
    d.mkdir()
    hp = str(shared_data / "hotpotqa" / "hotpotqa_train.json")
    assert cli(["data", "convert", "--format", "hotpotqa", "--input", hp, "--output", str(d),
                "--limit", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a directory" in err and err.count("\n") == 0
    assert not list(tmp_path.glob("*.tmp"))  # nothing half-written left behind
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": 1}\n{"nope": true}\n')
    assert cli(["data", "convert", "--format", "hotpotqa", "--input", str(bad), "--output",
                str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert "all 2 records invalid" in err and not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("argv", [
    ["attribute", "--input", "in.jsonl", "--output", "s3://bucket/run/attribute"],
    ["train", "--train", "train.jsonl", "--output", "gs://bucket/run/model"],
    ["run", "--output", "s3://bucket/run"],
    ["run", "--dry-run", "--output", "s3://bucket/run"],
])
def test_object_store_output_is_refused(argv, tmp_path, monkeypatch, capsys):
    """Stage outputs live on a shared POSIX file system; an s3:// output is refused in one line
    (exit 2) naming the fix, and no local folder named 's3:' appears."""
    from scarlet_ray.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text("")
    (tmp_path / "train.jsonl").write_text("")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "not object storage" in err[0] and "/mnt/shared" in err[0], err[0]
    assert "training.storage_path" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "train.jsonl"]
