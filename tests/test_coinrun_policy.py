"""The CoinRun data policies: the held policy holds one of the six distinct actions for the
configured number of frames, never carries an action over an episode reset, and (with procgen)
the generated episodes show exactly that."""
from __future__ import annotations

import numpy as np
import pytest

from genie_play.cli import main as cli_main
from genie_play.train.coinrun_policy import (
    ACTION_CLASSES, CLASS_TO_PROCGEN, PROCGEN_TO_CLASS, HeldPolicy, HeldPolicyConfig, RandomPolicy, make_policy,
)


def runs(actions: np.ndarray) -> list[tuple[int, int]]:
    """[(action, run length), ...] of consecutive equal actions."""
    edges = np.flatnonzero(np.diff(actions)) + 1
    starts, stops = np.r_[0, edges], np.r_[edges, len(actions)]
    return [(int(actions[a]), int(b - a)) for a, b in zip(starts, stops)]


def test_held_policy_holds_each_choice_for_the_configured_frames() -> None:
    policy = HeldPolicy(num_envs=3, seed=0, cfg=HeldPolicyConfig(hold_min=3, hold_max=5))
    acts = np.stack([policy.act(np.zeros(3, bool)) for _ in range(2000)])  # (2000, 3) no resets
    assert set(np.unique(acts)) <= set(CLASS_TO_PROCGEN)
    # A choice lasts 3-5 frames; two choices in a row may be the same action, so a run of equal
    # actions is a sum of holds: never shorter than 3 (except the last, cut by the end).
    lengths = [n for e in range(3) for _, n in runs(acts[:, e])[:-1]]
    assert min(lengths) >= 3 and max(lengths) >= 5
    assert 3 <= np.mean(lengths) < 8
    # walks are chosen more often than jumps, right more than left
    counts = np.bincount([PROCGEN_TO_CLASS[a] for a in acts.ravel()], minlength=6)
    walk, jump = counts[1] + counts[2], counts[3] + counts[4] + counts[5]
    assert walk > jump and counts[2] > counts[1] and counts[0] > 0


def test_held_policy_starts_a_new_choice_at_every_reset() -> None:
    policy = HeldPolicy(num_envs=64, seed=1, cfg=HeldPolicyConfig(hold_min=50, hold_max=50))
    first = np.zeros(64, bool)
    before = np.stack([policy.act(first) for _ in range(10)])
    assert (before == before[0]).all()  # held
    first[:32] = True
    after = policy.act(first)
    assert (after[32:] == before[0, 32:]).all()  # still held where no reset happened
    assert (after[:32] != before[0, :32]).any()  # redrawn where a new episode began
    assert (policy.left[:32] == 49).all()  # and held for a full new period


def test_policies_are_deterministic_and_named() -> None:
    a = [make_policy("held", 4, 7).act(np.zeros(4, bool)) for _ in range(2)]
    assert np.array_equal(a[0], a[1])
    assert isinstance(make_policy("random", 4, 7), RandomPolicy)
    assert ACTION_CLASSES == ("idle", "left", "right", "jump", "jump left", "jump right")
    assert [PROCGEN_TO_CLASS[a] for a in CLASS_TO_PROCGEN] == list(range(6))
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("greedy", 4, 7)
    with pytest.raises(ValueError):
        HeldPolicyConfig(hold_min=5, hold_max=2).check()


def test_coinrun_held_data_never_crosses_a_reset(tmp_path) -> None:
    pytest.importorskip("procgen")
    from genie_play.train.data import open_dataset

    out = tmp_path / "held"
    assert cli_main(["data", "coinrun", "--out", str(out), "--levels", "0:40", "--frames", "600", "--envs", "4",
                     "--max-episode-frames", "80", "--hold", "4:6", "--seed", "2"]) == 0
    data = open_dataset(out)
    assert "policy=held:4-6" in data.episodes[0]["source"]
    for e, ep in enumerate(data.episodes):
        acts = data.actions(ep["shard"])[ep["start"] : ep["start"] + ep["length"]]
        assert acts[-1] == -1  # nothing is recorded across the episode's end
        inner = runs(acts[:-1])
        assert set(a for a, _ in inner) <= set(CLASS_TO_PROCGEN)
        # a new hold starts with the episode, and every hold but the one cut by its end lasts 4+ frames
        assert all(n >= 4 for _, n in inner[:-1]), (e, inner)
    assert cli_main(["data", "coinrun", "--out", str(tmp_path / "x"), "--hold", "6:2", "--frames", "10"]) == 2


def test_frame_skip_is_recorded_and_never_mixed(tmp_path) -> None:
    pytest.importorskip("procgen")
    from genie_play.train.data import open_dataset

    out = tmp_path / "skip"
    base = ["data", "coinrun", "--out", str(out), "--levels", "0:40", "--frames", "200", "--envs", "4",
            "--max-episode-frames", "40", "--hold", "2:3"]
    assert cli_main([*base, "--frame-skip", "3", "--seed", "1"]) == 0
    data = open_dataset(out)
    assert data.frame_skip == 3 and "skip=3" in data.episodes[0]["source"]
    moved = [np.abs(data.episode_frames(e)[1:].astype(int) - data.episode_frames(e)[:-1]).mean() for e in range(3)]
    assert cli_main([*base, "--frame-skip", "2", "--seed", "2"]) == 2  # one dataset, one speed
    assert cli_main([*base, "--frame-skip", "3", "--seed", "2"]) == 0  # the same skip appends
    one = tmp_path / "one"
    assert cli_main([*base[:3], str(one), *base[4:], "--seed", "1"]) == 0
    assert open_dataset(one).frame_skip == 1
    still = [np.abs(open_dataset(one).episode_frames(e)[1:].astype(int) - open_dataset(one).episode_frames(e)[:-1]).mean()
             for e in range(3)]
    assert np.mean(moved) > np.mean(still)  # three game steps per frame move the view more than one
