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
    assert "64x64" in line and "16x16" in line and "--preset tiny (16x16 frames" in line, line
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


def test_schedules_left_unset_follow_the_run_and_given_intervals_are_fitted(sprite_data, tmp_path, capsys):
    run = tmp_path / "tok"
    assert main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(run), "--preset", "tiny", "steps=32",
                 "batch_size=4", "clip_len=4", "picture_every=500", *FAST]) == 0
    err = capsys.readouterr().err
    assert "warmup_steps" not in err and "picture_every=500 is longer than steps=32; using picture_every=3" in err, err
    train = json.loads((run / "config.json").read_text())["train"]
    assert (train["warmup_steps"], train["picture_every"], train["eval_every"]) == (2, 3, 3)  # steps // 16, 12 a run
    held = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if "heldout/psnr" in line]
    assert held == [*range(3, 32, 3), 32]


def test_a_given_warmup_as_long_as_the_run_is_refused_before_anything_is_written(sprite_data, tmp_path, capsys):
    run = tmp_path / "tok"
    assert main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(run), "--preset", "tiny", "steps=60",
                 "warmup_steps=500"]) == 2
    line = error_of(capsys)
    assert "warmup_steps=500 is not shorter than steps=60" in line and "use warmup_steps=3" in line, line
    assert not run.exists()


def test_a_resumed_run_keeps_its_schedule(sprite_data, tmp_path, capsys):
    """Settings left unset take the checkpoint's values (an old run's fixed warmup=500 too), not the
    new length's fractions: the learning rate of a resumed run does not jump."""
    run = tmp_path / "tok"
    assert tokenizer_run(sprite_data, run, "eval_every=0") == 0  # warmup_steps=1, picture_every=0 given
    capsys.readouterr()
    assert main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(run), "--preset", "tiny", "steps=20",
                 "batch_size=4", "clip_len=4", *FAST]) == 0
    assert "changed settings: steps 6 -> 20\n" in capsys.readouterr().err  # and nothing else changed
    train = json.loads((run / "config.json").read_text())["train"]
    assert (train["warmup_steps"], train["picture_every"], train["eval_every"]) == (1, 0, 0)


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


def test_print_config_shows_every_setting_with_its_help_and_writes_nothing(sprite_data, tmp_path, capsys):
    run = tmp_path / "tok"
    assert main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(run), "--preset", "tiny", "--print-config",
                 "steps=32", "model.tokenizer.decoder.depth=3", "loss.beta=0.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("# model: preset tiny (16x16 frames"), out[:2]
    settings = {line.split("=")[0]: line for line in out if not line.startswith("#")}
    assert settings["steps"].startswith("steps=32 ") and "# optimiser steps in total" in settings["steps"]
    assert settings["warmup_steps"].startswith("warmup_steps=2 ") and "steps // 16" in settings["warmup_steps"]
    assert settings["model.tokenizer.decoder.depth"].startswith("model.tokenizer.decoder.depth=3 ")
    assert "# ST blocks" in settings["model.tokenizer.decoder.depth"]
    assert settings["loss.beta"].startswith("loss.beta=0.5 ") and "# commitment weight" in settings["loss.beta"]
    assert settings["betas"].split()[0] == "betas=0.9,0.9"  # every line is a valid override
    assert len(settings) > 60 and not run.exists()


def test_field_help_comes_from_the_comment_beside_or_above_a_field():
    from dataclasses import dataclass

    from genie_play.config_text import config_lines, field_help

    @dataclass
    class Example:
        depth: int = 2  # layers stacked
        # Sampling temperature. Lower is greedier.
        temperature: float = 1.0
        flag: bool = False

    assert field_help(Example) == {"depth": "layers stacked", "temperature": "Sampling temperature.", "flag": ""}
    lines = config_lines(Example(), "x.")
    assert [line.split("#")[0].strip() for line in lines] == ["x.depth=2", "x.temperature=1.0", "x.flag=false"]
    assert lines[0].index("# layers") == lines[1].index("# Sampling") and lines[2] == "x.flag=false"  # lined up


def test_presets_are_described_in_help_and_errors(sprite_data, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "tokenizer", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "tiny (16x16 frames" in help_text and "small (64x64 frames" in help_text
    assert main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(tmp_path / "r"), "--preset", "huge"]) == 2
    line = error_of(capsys)
    assert "unknown preset 'huge'" in line and "tiny (16x16 frames" in line, line


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
    out, err = capsys.readouterr()
    assert "only 3 sources" in err and "1 of 3 (20 of 60 frames) went to held-out" in err, err
    assert out.splitlines()[-1] == f"next: genie-play train tokenizer --data {tmp_path / 'data'} --run runs/tok --preset tiny"
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
    hint = capsys.readouterr().err.strip().splitlines()[-1]  # the tiny preset's dynamics needs its preset and clip length
    assert hint == f"next: genie-play train dynamics --data {sprite_data} --run RUN --tokenizer {tok} --preset tiny clip_len=6"
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
    out_path = tmp_path / "best.safetensors"
    capsys.readouterr()
    assert main(["train", "export", str(dyn), "--out", str(out_path), "--best"]) == 0
    out = capsys.readouterr().out
    assert f"best weights: step {read_best(dyn)['step']}" in out and f"next: genie-play PROMPT.png --world {out_path}" in out
    assert World.load(out_path, device="cpu").frame_size == (SIZE, SIZE)


def test_coinrun_data_say_what_to_run_next(tmp_path, capsys, monkeypatch):
    from genie_play.train import coinrun

    def episodes(levels, num_frames, **kw):
        rng = np.random.default_rng(levels[0])
        yield coinrun.Episode(rng.integers(0, 255, (20, 64, 64, 3), dtype=np.uint8), np.full(20, 1, np.int16), levels[0])

    monkeypatch.setattr(coinrun, "import_procgen", lambda: None)
    monkeypatch.setattr(coinrun, "generate_episodes", episodes)
    data = tmp_path / "coinrun"
    assert main(["data", "coinrun", "--out", str(data), "--levels", "0:5", "--frames", "20",
                 "--heldout-levels", "5:6", "--heldout-frames", "20"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"next: genie-play train tokenizer --data {data} --run runs/tok"


def test_the_control_report_collects_states_once_with_the_frame_skip(monkeypatch):
    from genie_play.train import control, control_states

    calls = []
    monkeypatch.setattr(control_states, "collect_states", lambda levels, clips, seed, frame_skip: calls.append((levels, frame_skip)) or "S")
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


def test_the_run_folder_survives_torchrun_s_own_argument_parser():
    """torchrun parses the whole command line first: a bare --run is an ambiguous abbreviation of its
    --run-path and stops it, so the trainer also takes --run-dir (what the README shows)."""
    import argparse

    from torch.distributed.run import get_args_parser

    from genie_play.train.cli import add_arguments

    launch = ["--standalone", "--nproc_per_node", "2", "-m", "genie_play.train", "dynamics", "--data", "d",
              "--tokenizer", "t"]
    with pytest.raises(SystemExit):
        get_args_parser().parse_args([*launch, "--run", "r"])
    script_args = get_args_parser().parse_args([*launch, "--run-dir", "r"]).training_script_args
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert str(parser.parse_args(script_args).run) == "r"
