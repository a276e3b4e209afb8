"""The trainer as people who train models expect it (issue 18): no traps (frame size, schedules,
unknown keys, typos, exit codes, imports), held-out evaluation with best weights, curves and
animated samples. Tiny configs on 16x16 sprite data (tests/test_train.py's fixture)."""
from __future__ import annotations

import json
import signal

import numpy as np
import pytest
from PIL import Image

from genie_play import World
from genie_play.cli import main
from genie_play.train.curves import draw_curves
from genie_play.train.heldout import DynamicsHeldout, read_best
from genie_play.train.pictures import grid
from test_train import SIZE, sprite_data  # noqa: F401  (the module-scoped dataset fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["log_every=1", "checkpoint_every=100", "num_workers=0", "lr=2e-3"]


def tokenizer_run(data, run, *extra: str) -> int:
    return main(["train", "tokenizer", "--data", str(data), "--run", str(run), "--preset", "tiny", "steps=6",
                 "batch_size=4", "clip_len=4", "warmup_steps=1", "picture_every=0", *FAST, *extra])


def error_of(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


# ----- no traps ---------------------------------------------------------------------------------------
def test_a_preset_of_another_frame_size_is_one_line_and_makes_no_folder(sprite_data, tmp_path, capsys):
    run = tmp_path / "tok"
    assert main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(run), "--preset", "small", "steps=2"]) == 2
    line = error_of(capsys)
    assert "64x64" in line and "16x16" in line and "--preset tiny" in line, line
    assert not run.exists()


def test_a_start_that_fails_removes_the_run_folder_it_made(tmp_path):
    from _toy_train import SpriteClips, ToyModule
    from genie_play.train.loop import Trainer, TrainConfig

    class Broken(ToyModule):
        def forward(self, frames, step):
            raise RuntimeError("The size of tensor a (256) must match the size of tensor b (16)")

    run = tmp_path / "run"
    trainer = Trainer(Broken(), SpriteClips(), TrainConfig(steps=4, batch_size=2, clip_len=4, warmup_steps=1), run, "cpu")
    with pytest.raises(RuntimeError):
        trainer.run()
    assert not run.exists()


def test_short_runs_fit_warmup_and_intervals_with_a_warning(sprite_data, tmp_path, capsys):
    run = tmp_path / "tok"
    assert main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(run), "--preset", "tiny", "steps=20",
                 "batch_size=4", "clip_len=4", "picture_every=500", "eval_every=0", *FAST]) == 0
    err = capsys.readouterr().err
    assert "warmup_steps=500" in err and "using warmup_steps=2" in err and "picture_every=500" in err
    train = json.loads((run / "config.json").read_text())["train"]
    assert (train["warmup_steps"], train["picture_every"]) == (2, 5)
    assert sorted(p.name for p in (run / "pictures").glob("*.png")) == [f"step_{s:06d}.png" for s in (5, 10, 15, 20)]


@pytest.mark.parametrize("phase_args, item, words", [
    (["tokenizer"], "loss.foo=1", ["'loss.foo'", "valid keys: beta"]),
    (["tokenizer"], "model.tokenizer.decodr.depth=2", ["'model.tokenizer.decodr'", "valid keys:", "decoder"]),
    (["dynamics", "--tokenizer", "coinrun"], "loss.foo=1", ["'loss.foo'", "valid keys: mask_min"]),
    (["tokenizer"], "stepz=3", ["'stepz'", "valid keys: steps"]),
])
def test_unknown_keys_are_refused_the_same_way_everywhere(sprite_data, tmp_path, capsys, phase_args, item, words):
    run = tmp_path / "run"
    args = ["train", phase_args[0], "--data", str(sprite_data), "--run", str(run), *phase_args[1:], item]
    assert main(args) == 2
    line = error_of(capsys)
    assert "unknown setting" in line and all(w in line for w in words), line
    assert not run.exists()


def test_print_config_shows_the_resolved_config_and_writes_nothing(sprite_data, tmp_path, capsys):
    run = tmp_path / "tok"
    assert main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(run), "--preset", "tiny", "--print-config",
                 "steps=30", "model.tokenizer.decoder.depth=3", "loss.beta=0.5"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["train"]["steps"] == 30 and config["train"]["warmup_steps"] == 3  # fitted to the run
    assert config["model"]["tokenizer"]["decoder"]["depth"] == 3 and config["loss"] == {"beta": 0.5}
    assert not run.exists()


def test_typos_and_run_folders_get_helpful_messages(sprite_data, tmp_path, capsys, monkeypatch):
    assert tokenizer_run(sprite_data, tmp_path / "tok", "eval_every=0") == 0
    capsys.readouterr()
    assert main(["train", "dynamics", "--data", str(sprite_data), "--run", str(tmp_path / "dyn"), "--preset", "tiny",
                 "--tokenizer", str(tmp_path / "tokk")]) == 2
    line = error_of(capsys)
    assert "no such run folder" in line and f"did you mean {tmp_path / 'tok'}" in line, line
    prompt = tmp_path / "p.png"
    Image.new("RGB", (SIZE, SIZE)).save(prompt)
    assert main(["rollout", str(prompt), "--world", str(tmp_path / "tok"), "--actions", "0", "--out", str(tmp_path / "o.gif")]) == 2
    line = error_of(capsys)
    assert "training run folder" in line and "genie-play train export" in line, line
    monkeypatch.chdir(tmp_path)
    assert main(["trian", "tokenizer"]) == 2
    assert "did you mean `train`" in error_of(capsys)


def test_an_interrupted_run_exits_130_and_a_finished_one_0(sprite_data, tmp_path, monkeypatch):
    from genie_play.train.loop import Trainer

    step = Trainer._train_step

    def ctrl_c_during_step_2(self, batches, k):
        if k == 2:
            self._on_signal(signal.SIGINT, None)
        return step(self, batches, k)

    monkeypatch.setattr(Trainer, "_train_step", ctrl_c_during_step_2)
    assert tokenizer_run(sprite_data, tmp_path / "tok", "eval_every=0") == 130
    monkeypatch.setattr(Trainer, "_train_step", step)
    assert tokenizer_run(sprite_data, tmp_path / "tok", "eval_every=0") == 0


def test_an_import_of_few_videos_warns_and_a_reimport_exits_0(tmp_path, capsys):
    from genie_play.gif import write_gif

    rng = np.random.default_rng(0)
    for i in range(3):
        write_gif(tmp_path / "src" / f"v{i}.gif", rng.integers(0, 255, (20, 16, 16, 3), dtype=np.uint8))
    args = ["data", "import", str(tmp_path / "src"), "--out", str(tmp_path / "data"), "--size", "16",
            "--heldout-fraction", "0.3"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "only 3 sources" in err and "1 of 3 (20 of 60 frames) went to held-out" in err, err
    (tmp_path / "src" / "short.gif").parent.mkdir(exist_ok=True)
    write_gif(tmp_path / "src" / "short.gif", rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8))
    assert main(args) == 0  # nothing new but a too-short clip skipped: nothing went wrong
    assert main(["data", "frame", str(tmp_path / "data"), "--episode", "1", "--index", "4",
                 "--out", str(tmp_path / "prompt.png")]) == 0
    assert Image.open(tmp_path / "prompt.png").size == (16, 16)
    assert main(["data", "frame", str(tmp_path / "data"), "--episode", "9", "--out", str(tmp_path / "x.png")]) == 2
    assert "episodes 0..2" in error_of(capsys)


# ----- held-out evaluation, best weights, curves, samples ----------------------------------------------
def test_runs_evaluate_held_out_keep_best_and_draw_curves_and_gifs(sprite_data, tmp_path, capsys):
    tok = tmp_path / "tok"
    assert tokenizer_run(sprite_data, tok, "eval_every=3") == 0
    rows = [json.loads(line) for line in (tok / "metrics.jsonl").read_text().splitlines()]
    held = [r for r in rows if "heldout/psnr" in r]
    assert [r["step"] for r in held] == [3, 6] and all(5 < r["heldout/psnr"] < 60 for r in held)
    best = read_best(tok)
    assert best["metric"] == "heldout/psnr" and best["value"] == max(r["heldout/psnr"] for r in held)
    assert Image.open(tok / "curves.png").size[0] >= 360

    dyn = tmp_path / "dyn"
    assert main(["train", "dynamics", "--data", str(sprite_data), "--run", str(dyn), "--preset", "tiny", "--tokenizer",
                 str(tok), "steps=4", "batch_size=2", "clip_len=6", "warmup_steps=1", "eval_every=2", "eval_clips=2",
                 "picture_every=4", *FAST]) == 0
    rows = [json.loads(line) for line in (dyn / "metrics.jsonl").read_text().splitlines()]
    held = [r for r in rows if "heldout/rollout_psnr" in r]
    assert [r["step"] for r in held] == [2, 4]
    assert {"heldout/copy_psnr", "heldout/action_perplexity", "heldout/nmi_true_actions", "heldout/delta_psnr_t4"} <= set(held[0])
    gif = Image.open(dyn / "pictures" / "step_000004.gif")
    assert gif.n_frames == 6  # the prompt and 5 generated frames, every action beside the real clip
    assert read_best(dyn)["metric"] == "heldout/rollout_psnr"
    out = tmp_path / "best.safetensors"
    capsys.readouterr()
    assert main(["train", "export", str(dyn), "--out", str(out), "--best"]) == 0
    assert f"best weights: step {read_best(dyn)['step']}" in capsys.readouterr().out
    assert World.load(out, device="cpu").frame_size == (SIZE, SIZE)


def test_the_control_report_collects_states_once_with_the_frame_skip(monkeypatch):
    from genie_play.train import control

    calls = []
    monkeypatch.setattr(control, "collect_states", lambda levels, clips, seed, frame_skip: calls.append((levels, frame_skip)) or "S")
    monkeypatch.setattr(control, "control_report", lambda world, states, seed: {
        "control_accuracy": 0.5, "distinct_classes": 3, "mapped_minus_copy": 1.0, "states": states})
    ev = DynamicsHeldout(dataset=None, clips=2, horizon=2, control_levels=(10, 20), frame_skip=4)
    assert ev.control("world") == {"heldout/control_accuracy": 0.5, "heldout/distinct_classes": 3.0, "heldout/mapped_minus_copy": 1.0}
    ev.control("world")
    assert calls == [((10, 20), 4)]


def test_row_labels_are_not_cut_and_curves_have_a_panel_per_metric():
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    short, long = grid([frames], labels=["a"]), grid([frames], labels=["real 0123456789"])
    assert long.size[0] - short.size[0] >= 14 * 5  # the margin grows with the label
    records = [{"step": s, "loss": 1 / s} for s in range(1, 5)] + [{"step": 4, "heldout/psnr": 20.0, "heldout/rollout_psnr": 9.0}]
    assert draw_curves(records).size == (2 * 360, 2 * 170)
