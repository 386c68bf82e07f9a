"""Step hooks: how tests reach into the training loop without the loop knowing about tests."""

from __future__ import annotations

import pickle

from scarlet_ray.training.hooks import KillOnceAt, hooks_from_config


def test_fault_dict_becomes_a_kill_hook_and_hooks_pass_through():
    mine = KillOnceAt(kill_at_step=3, marker="/nonexistent/m")
    hooks = hooks_from_config({"hooks": [mine],
                               "fault": {"kill_at_step": 6, "rank": 1, "marker": "m",
                                         "delay_s": 4}})
    assert hooks == [mine, KillOnceAt(kill_at_step=6, marker="m", rank=1, delay_s=4)]
    assert hooks_from_config({}) == []


def test_kill_hook_is_inert_off_its_step_rank_or_once_marked(tmp_path):
    marker = tmp_path / "killed"
    hook = KillOnceAt(kill_at_step=2, marker=str(marker), rank=1)
    hook(1, 1)  # other step
    hook(2, 0)  # other rank
    marker.write_text("already")
    hook(2, 1)  # marked: the restarted attempt goes on
    assert marker.read_text() == "already"
    # it travels to Ray Train workers inside the loop config
    assert pickle.loads(pickle.dumps(hook)) == hook
