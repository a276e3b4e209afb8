"""The controllability report (genie_play/train/control.py): its metric core on synthetic arrays, the
procgen states it plays from, and the whole report on a tiny 64x64 world."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genie_play.cli import main as cli_main
from genie_play.errors import BadDataError, BadSettingError, GenieError
from genie_play.train import control, control_states
from genie_play.train.coinrun_policy import ACTION_CLASSES, CLASS_TO_PROCGEN

LEVELS = (10000, 10050)
C, K, H = 8, 3, 8  # clips, horizon, frame size of the synthetic arrays


def synthetic_futures(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """real (C, 6, K, H, H, 3) with six distinct futures per clip, prompts (C, H, H, 3)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (C, 6, K, H, H, 3), dtype=np.uint8),
            rng.integers(0, 256, (C, H, H, 3), dtype=np.uint8))


PERMUTATION = [5, 2, 7, 0, 3, 1]  # class c is latent PERMUTATION[c]; latents 4 and 6 mean nothing


def oracle_rollouts(real: np.ndarray, seed: int = 1) -> np.ndarray:
    """rolled (C, 8, K, H, W, 3): latent PERMUTATION[c] reproduces class c's real future exactly."""
    rolled = np.random.default_rng(seed).integers(0, 256, (real.shape[0], 8, *real.shape[2:]), dtype=np.uint8)
    for c, a in enumerate(PERMUTATION):
        rolled[:, a] = real[:, c]
    return rolled


def test_oracle_scores_one_with_six_distinct_classes_and_its_labels_agree() -> None:
    real, prompts = synthetic_futures()
    labels = ["?"] * 8
    for c, a in enumerate(PERMUTATION):
        labels[a] = ACTION_CLASSES[c].upper() + " "  # labels match case-insensitively, stripped
    r = control.control_metrics(real, oracle_rollouts(real), prompts, labels)
    assert r["control_accuracy"] == 1.0 and r["control_accuracy_folds"] == [1.0, 1.0]
    assert r["label_accuracy"] == r["control_accuracy"]
    assert r["class_to_latent"] == PERMUTATION and r["fold_maps"] == [PERMUTATION, PERMUTATION]
    assert r["label_map"] == PERMUTATION
    assert r["distinct_classes"] == 6
    suggested = r["suggested_labels"]
    assert [suggested[a] for a in PERMUTATION] == list(ACTION_CLASSES)  # mapped latents: plain names
    assert all(suggested[a].endswith("?") for a in range(8) if a not in PERMUTATION)  # the rest: a guess
    assert r["mapped_psnr"] == pytest.approx(control.PSNR_CAP)  # exact rollouts: capped, not 148 dB
    assert r["mapped_psnr"] > r["copy_baseline_psnr"] + 40 and r["copy_identical_frames"] == 0
    assert len(r["mapped_psnr_per_t"]) == K and len(r["copy_psnr_per_t"]) == K
    assert np.asarray(r["class_latent_mse"]).shape == (6, 8)
    assert all(r["class_latent_mse"][c][a] == 0 for c, a in enumerate(PERMUTATION))


def test_a_world_that_ignores_its_actions_scores_exactly_chance() -> None:
    real, prompts = synthetic_futures()
    same = np.random.default_rng(7).integers(0, 256, (C, 1, K, H, H, 3), dtype=np.uint8)
    rolled = np.repeat(same, 8, axis=1)  # every latent gives the same rollout
    r = control.control_metrics(real, rolled, prompts, list(ACTION_CLASSES) + ["x", "y"])
    assert r["control_accuracy"] == pytest.approx(1 / 6) and r["label_accuracy"] == pytest.approx(1 / 6)
    assert r["distinct_classes"] == 1 and r["class_to_latent"] == [0] * 6  # ties: the first latent
    assert sum(r["control_accuracy_per_class"].values()) == pytest.approx(1.0)  # one class right per clip
    assert r["suggested_labels"][0] in ACTION_CLASSES  # the one latent every class maps to
    assert all(label.endswith("?") for label in r["suggested_labels"][1:])


def test_a_rollout_equally_close_to_two_futures_counts_as_wrong_for_both() -> None:
    real = np.zeros((2, 6, 1, 2, 2, 3), np.uint8)
    real[:, 0], real[:, 1] = 90, 110  # both 10 away from the rollout
    real[:, 2:] = np.array([180, 220, 20, 0], np.uint8).reshape(1, 4, 1, 1, 1, 1)  # farther away
    rolled = np.full((2, 3, 1, 2, 2, 3), 100, np.uint8)
    r = control.control_metrics(real, rolled, np.zeros((2, 2, 2, 3), np.uint8), ["idle", "left", "right"])
    assert r["control_accuracy"] == 0.0 and r["label_accuracy"] == 0.0
    assert r["control_accuracy_per_class"]["idle"] == 0.0 and r["control_accuracy_per_class"]["left"] == 0.0


def test_copy_baseline_of_a_still_scene_is_capped_and_counted() -> None:
    real, prompts = synthetic_futures()
    real[:, 0] = prompts[:, None]  # idle: nothing moves, the future is the prompt
    r = control.control_metrics(real, oracle_rollouts(real), prompts)
    assert r["copy_identical_frames"] == pytest.approx(1 / 6)
    assert r["copy_psnr_per_class"]["idle"] == pytest.approx(control.PSNR_CAP) and r["copy_baseline_psnr"] < 20
    moving = [r["mapped_psnr_per_class"][k] - r["copy_psnr_per_class"][k] for k in control.ACTION_CLASSES[1:]]
    assert r["mapped_minus_copy_moving"] == pytest.approx(np.mean(moving)) and r["mapped_minus_copy_moving"] > r["mapped_minus_copy"]


def test_labels_map_first_exact_name_and_missing_classes_are_wrong() -> None:
    assert control.label_map(["jump right", " Right", "right", "idle"]) == [3, -1, 1, -1, -1, 0]
    real, prompts = synthetic_futures()
    labels = [""] * 8
    labels[PERMUTATION[0]] = "idle"  # only idle is labelled
    r = control.control_metrics(real, oracle_rollouts(real), prompts, labels)
    assert r["label_accuracy_per_class"]["idle"] == 1.0
    assert r["label_accuracy"] == pytest.approx(1 / 6)  # the five unlabelled classes are wrong on every clip


def test_suggested_labels_give_each_mapped_class_one_plain_name_and_guess_the_rest() -> None:
    mse = np.full((6, 4), 50.0)
    mse[0, 1], mse[1, 1], mse[2, 2] = 5.0, 3.0, 1.0  # idle and left both chose latent 1, left closer
    mse[3:, 0] = 10.0                                  # the three jumps share latent 0: the first wins
    mse[0, 3] = 6.0                                    # unmapped latent 3 is nearly idle's best (6 vs 5)
    assert control.suggest_labels([1, 1, 2, 0, 0, 0], mse) == ["jump", "left", "right", "idle?"]


def test_metrics_refuse_one_clip_or_mismatched_shapes() -> None:
    real, prompts = synthetic_futures()
    with pytest.raises(GenieError):
        control.control_metrics(real[:1], oracle_rollouts(real)[:1], prompts[:1])
    with pytest.raises(GenieError):
        control.control_metrics(real, oracle_rollouts(real)[:, :, :2], prompts)


# -- procgen states -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def states():
    pytest.importorskip("procgen")
    return control_states.collect_states(LEVELS, clips=4, seed=3, horizon=K, prefix_max=12, settle=4, num_envs=4)


def test_set_state_then_the_same_actions_give_the_same_frames() -> None:
    pytest.importorskip("procgen")
    env = control_states.make_env(LEVELS, 1, 5, "hard")
    for a in [7] * 10 + [5] * 3 + [4] * 5:
        env.act(np.array([a], np.int32))
    saved = env.get_state()
    continued = []
    for a in [1, 1, 8, 8, 4, 2]:  # the original environment goes on
        env.act(np.array([a], np.int32))
        continued.append(env.observe()[1]["rgb"][0].copy())
    other = control_states.make_env(LEVELS, 1, 99, "hard")  # another environment, another level, restored
    for _ in range(2):
        other.set_state(saved)
        replay = []
        for a in [1, 1, 8, 8, 4, 2]:
            other.act(np.array([a], np.int32))
            replay.append(other.observe()[1]["rgb"][0].copy())
        assert np.array_equal(np.stack(replay), np.stack(continued))
    assert not np.array_equal(continued[0], continued[-1])  # the frames moved: the check is not vacuous


def test_states_hold_each_class_from_a_reproducible_state(states) -> None:
    assert states.prompts.shape == (4, 64, 64, 3) and states.real.shape == (4, 6, K, 64, 64, 3)
    assert all(LEVELS[0] <= lv < LEVELS[1] for lv in states.level_seeds)
    assert all(0 <= p <= 12 for p in states.prefix_frames) and set(states.skipped) >= {"identical real futures"}
    futures_env = control_states.make_env(LEVELS, 6, 0, "hard")
    for i in range(len(states.states)):
        prompt, real, ended = control_states.real_futures(futures_env, states.states[i], K)
        assert np.array_equal(prompt, states.prompts[i]) and np.array_equal(real, states.real[i]) and not ended
        assert all(not np.array_equal(real[a], real[b]) for a in range(6) for b in range(a))
    assert np.asarray(CLASS_TO_PROCGEN).tolist() == [4, 1, 7, 5, 2, 8]
    again = control_states.collect_states(LEVELS, clips=4, seed=3, horizon=K, prefix_max=12, settle=4, num_envs=4)
    assert np.array_equal(again.real, states.real)  # deterministic for a seed


def test_missing_procgen_is_a_one_line_genie_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "procgen", None)
    with pytest.raises(GenieError, match="install-coinrun"):
        control_states.collect_states(LEVELS, clips=2)


# -- the whole report on a tiny world -----------------------------------------------------------------
@pytest.fixture(scope="module")
def world64_path(tmp_path_factory) -> Path:
    """A tiny world with random weights and 64x64 frames (patch 16: the same 4x4 token grid as 'tiny')."""
    import torch

    from genie_play import bundle
    from genie_play.presets import preset, to_dict
    from genie_play.world import build_models, export_tensors

    torch.manual_seed(0)
    cfg = preset("tiny")
    cfg.tokenizer.frame_size, cfg.tokenizer.patch = (64, 64), 16
    cfg.lam.frame_size, cfg.lam.patch = (64, 64), 32
    m = build_models(cfg.check())
    path = tmp_path_factory.mktemp("world64") / "tiny64.safetensors"
    tensors = export_tensors(m["tokenizer"], m["dynamics"], m["lam"].action_codebook(), m["lam"])
    bundle.save_bundle(path, tensors, to_dict(cfg), labels=["right", "jump", "left", "idle", "a4", "a5", "a6", "a7"],
                       card={}, dtype=None)
    return path


def test_rollouts_are_explore_with_the_clip_seed(world64_path, states) -> None:
    from genie_play.world import World

    world = World.load(world64_path)
    world.sampling = {"steps": 2}
    rolled = control.rollout_latents(world, states.prompts[:2], K, seed=4)  # (2, A, K, 64, 64, 3)
    world.reset(states.prompts[1])
    assert np.array_equal(rolled[1], world.explore(K, seed=4 * 1_000_003 + 1))


def test_report_returns_every_field_and_its_picture(world64_path, states, tmp_path) -> None:
    from genie_play.world import World

    world = World.load(world64_path)
    world.sampling = {"steps": 2}
    picture = tmp_path / "control.png"
    r = control.control_report(world, states, seed=1, picture=picture, picture_clips=2)
    for key in ("clips", "horizon", "seed", "sampling", "levels", "states", "skipped", "chance", "control_accuracy",
                "control_accuracy_kind", "control_accuracy_folds", "control_accuracy_per_class", "label_accuracy",
                "label_accuracy_per_class", "class_to_latent", "distinct_classes", "mapped_psnr", "copy_baseline_psnr",
                "mapped_psnr_per_t", "copy_psnr_per_t", "mapped_psnr_per_class", "copy_identical_frames", "mapped_minus_copy_moving", "class_latent_mse", "suggested_labels", "picture"):
        assert key in r, key
    assert r["clips"] == 4 and r["horizon"] == K and r["levels"] == list(LEVELS) and r["num_actions"] == 8
    assert 0 <= r["control_accuracy"] <= 1 and 1 <= r["distinct_classes"] <= 6 and len(r["suggested_labels"]) == 8
    assert r["states"]["settle"] == 4 and r["states"]["mode"] == "hard"
    assert r["press"] is None and r["idle_latent"] is None  # held, not tapped
    json.dumps(r)
    text = control.format_control_report(r)
    assert "control accuracy" in text and "label accuracy" in text and "suggested labels" in text
    with Image.open(picture) as image:  # 2 clips x 6 classes + a blank row; prompt + K real + gap + K rolled
        assert image.size == (96 + (2 * K + 2) * 66 + 2, 16 + 13 * 66 + 2)


def test_cli_control_prints_json_and_writes_the_picture(world64_path, states, tmp_path, capsys) -> None:
    picture = tmp_path / "cli.png"
    args = ["eval", str(world64_path), "--data", str(tmp_path / "none"), "--control", "--levels", "10000:10050",
            "--clips", "2", "--horizon", "2", "--steps", "1", "--json", "--picture", str(picture),
            "--labels-out", str(tmp_path / "labels.json")]
    assert cli_main(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["clips"] == 2 and r["horizon"] == 2 and picture.is_file()
    assert r["states"]["frame_skip"] == 1  # no dataset: one game step per frame
    # the suggested labels, as a file `train export --labels` reads
    from genie_play.labels import read_label_list

    assert read_label_list(tmp_path / "labels.json", r["num_actions"]) == r["suggested_labels"]


def test_cli_refuses_a_world_of_another_frame_size_and_a_dataset_without_heldout_levels(
        tiny_world_path, world64_path, tmp_path, capsys) -> None:
    from genie_play.train.data import DatasetWriter

    data = tmp_path / "d"
    with DatasetWriter(data, 64) as writer:
        writer.append_episode(np.zeros((4, 64, 64, 3), np.uint8), split="train")
        writer.add_level_range("train", 0, 10)
    with pytest.raises(BadDataError, match="held-out level range"):
        control_states.heldout_levels(data)
    assert control_states.heldout_levels(data, "5:9") == (5, 9)
    assert cli_main(["eval", str(world64_path), "--data", str(data), "--control"]) == 2
    assert cli_main(["eval", str(tiny_world_path), "--data", str(data), "--control", "--levels", "1:2"]) == 2
    err = capsys.readouterr().err
    assert "held-out level range" in err and "16x16" in err
    for press in ("0", "8"):  # a tap must release before the horizon ends
        assert cli_main(["eval", str(world64_path), "--data", str(data), "--control", "--levels", "1:2", "--press", press]) == 2
        assert "--press in 1..horizon-1" in capsys.readouterr().err


def test_taps_press_each_class_then_release_and_the_world_releases_with_its_idle_latent(world64_path) -> None:
    from genie_play.world import World

    taps = control_states.collect_states(LEVELS, clips=2, seed=3, horizon=K, prefix_max=12, settle=4, num_envs=4, press=1)
    assert taps.settings["press"] == 1
    futures_env = control_states.make_env(LEVELS, 6, 0, "hard")
    _, held, _ = control_states.real_futures(futures_env, taps.states[0], K)
    futures_env.set_state([taps.states[0]] * 6)
    pressed = np.asarray(CLASS_TO_PROCGEN, np.int32)
    frames = []
    for action in [pressed] + [np.full(6, control_states.IDLE, np.int32)] * (K - 1):
        futures_env.act(action)
        frames.append(futures_env.observe()[1]["rgb"].copy())
    assert np.array_equal(np.stack(frames, 1), taps.real[0])
    assert np.array_equal(taps.real[0, :, 0], held[:, 0])  # the first frame is the press itself
    assert not np.array_equal(taps.real[0], held)  # releasing changed the futures
    world = World.load(world64_path)  # labels: "idle" is action 3
    world.sampling = {"steps": 2}
    r = control.control_report(world, taps, seed=1)
    assert r["press"] == 1 and r["idle_latent"] == 3 and "released" in control.format_control_report(r)
    rolled = control.rollout_latents(world, taps.prompts[:1], K, seed=1, press=1, idle=3)
    seq = np.array([[a] + [3] * (K - 1) for a in range(world.num_actions)])
    assert np.array_equal(rolled[0], world.rollout_batch(np.repeat(taps.prompts[:1], 8, 0), seq, seed=1_000_003)[:, 1:])
    world.labels = ["a%d" % i for i in range(8)]
    with pytest.raises(BadSettingError, match="idle"):
        control.control_report(world, taps, seed=1)


def test_taps_can_release_with_no_action_and_need_no_idle_label(world64_path) -> None:
    from genie_play.world import NO_ACTION, World

    taps = control_states.collect_states(LEVELS, clips=2, seed=3, horizon=K, prefix_max=12, settle=4, num_envs=4, press=1)
    world = World.load(world64_path)
    world.sampling = {"steps": 2}
    world.labels = ["a%d" % i for i in range(8)]  # no "idle": releasing with no action does not need one
    r = control.control_report(world, taps, seed=1, release="none")
    assert r["release"] == "none" and r["idle_latent"] == NO_ACTION and "no action" in control.format_control_report(r)
    rolled = control.rollout_latents(world, taps.prompts[:1], K, seed=1, press=1, idle=NO_ACTION)
    seq = np.array([[a] + [NO_ACTION] * (K - 1) for a in range(world.num_actions)])
    assert np.array_equal(rolled[0], world.rollout_batch(np.repeat(taps.prompts[:1], 8, 0), seq, seed=1_000_003)[:, 1:])
    assert not np.array_equal(rolled[0], control.rollout_latents(world, taps.prompts[:1], K, seed=1, press=1, idle=3)[0])
    with pytest.raises(BadSettingError, match="release"):
        control.control_report(world, taps, seed=1, release="stop")
