"""The CLI contract: every subcommand listed, one-line reasons, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scarlet_ray.cli import COMMANDS, build_parser, main


def test_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "scarlet_ray.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for name in ["context", "synthesize", "attribute", "label", "train", "evaluate", "run",
                 "data", "models", "plan"]:
        assert name in out
    ev = subprocess.run([sys.executable, "-m", "scarlet_ray.cli", "evaluate", "--help"],
                        capture_output=True, text=True, check=True).stdout
    for name in ["retrieval", "attribution", "rag"]:
        assert name in ev


@pytest.mark.parametrize("path", [c[0] for c in COMMANDS])
def test_every_command_takes_config_and_set(path):
    p = build_parser()
    # each subcommand parser accepts --config and repeated --set
    sub = p._subparsers._group_actions[0].choices[path[0]]
    if len(path) == 2:
        sub = sub._subparsers._group_actions[0].choices[path[1]]
    opts = {o for a in sub._actions for o in a.option_strings}
    assert {"--config", "--set"} <= opts


def test_bad_override_exits_2_with_one_line(capsys, tmp_path):
    rc = main(["models", "list", "--set", "attribution.n_maks=3"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "attribution.n_maks" in err and "\n" not in err


def test_models_list(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ["smollm2-135m-instruct", "all-minilm-l6-v2", "en_core_web_sm"]:
        assert name in out
