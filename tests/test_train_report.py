"""`genie-play train report RUN` (curves.png and a table of a run's numbers, clear errors for a run
folder it cannot use) and TensorBoard events: written when the `tensorboard` package is importable,
and nothing changes without it. Metrics files made by hand; the tiny tokenizer run of
test_train_usability.py where a real run is needed."""
from __future__ import annotations

import json
import sys

import pytest
from PIL import Image

from genie_play.cli import main
from genie_play.train import tensorboard_log
from genie_play.train.report_cli import wall_time
from test_train import sprite_data  # noqa: F401  (the module-scoped dataset fixture)
from test_train_usability import tokenizer_run

pytestmark = pytest.mark.usefixtures("one_thread")


def write_metrics(run, records, extra_lines=()):
    run.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))


# A run of 30 steps in two sessions (resumed at step 20: its elapsed_s clock starts again).
RECORDS = [
    {"step": 10, "loss": 0.9, "elapsed_s": 10.0}, {"step": 10, "heldout/psnr": 20.0, "heldout/seconds": 0.5},
    {"step": 20, "loss": 0.5, "elapsed_s": 20.0}, {"step": 20, "heldout/psnr": 24.0, "heldout/seconds": 0.5},
    {"step": 30, "loss": 0.6, "elapsed_s": 12.0}, {"step": 30, "heldout/psnr": 23.0, "heldout/seconds": 1.0},
]


def test_report_prints_last_and_best_and_writes_the_curves(tmp_path, capsys):
    run = tmp_path / "run"
    write_metrics(run, RECORDS)
    (run / "config.json").write_text(json.dumps({"train": {"steps": 40}}))
    assert main(["train", "report", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{run}: step 30 of 40; 32.0 s of training in 2 sessions; 3 held-out evaluations took 2.0 s (6.2%)"
    rows = {line.split()[0]: line.split()[1:] for line in out[2:-1]}
    assert rows == {"loss": ["0.6", "30", "0.5", "20"], "heldout/psnr": ["23", "30", "24", "20"]}  # lowest loss, highest PSNR
    assert out[-1] == f"wrote {run / 'curves.png'}"
    assert Image.open(run / "curves.png").size == (2 * 360, 170)  # a panel for the loss and one for the PSNR


def test_wall_time_adds_up_the_sessions():
    assert wall_time(RECORDS) == (32.0, 2)
    assert wall_time([{"step": 1, "heldout/psnr": 1.0}]) == (0.0, 0)


@pytest.mark.parametrize("make, words", [
    (lambda run: None, ["no such run folder"]),
    (lambda run: run.write_text("x"), ["a file, not a run folder"]),
    (lambda run: run.mkdir(), ["no metrics.jsonl"]),
    (lambda run: write_metrics(run, []), ["is empty", "has not logged a step yet"]),
    (lambda run: write_metrics(run, [], ["\x00\x01garbage", "[1, 2]", '{"loss": 1}']), ["none of its 3 lines", "damaged"]),
])
def test_a_run_folder_it_cannot_report_on_is_one_line(tmp_path, capsys, make, words):
    run = tmp_path / "run"
    make(run)
    assert main(["train", "report", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(w in err[0] for w in words), err


def test_a_half_written_line_is_skipped_with_a_warning(tmp_path, capsys):
    run = tmp_path / "run"
    write_metrics(run, RECORDS[:2], ['{"step": 20, "lo'])
    assert main(["train", "report", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "skipped 1 unreadable line of" in err and out.startswith(f"{run}: step 10;")


# ----- TensorBoard ------------------------------------------------------------------------------------
class FakeWriter:
    """Records what a SummaryWriter was given."""

    def __init__(self, log_dir, purge_step):
        self.log_dir, self.purge_step, self.scalars, self.images, self.closed = log_dir, purge_step, [], [], False

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, step))

    def add_image(self, tag, array, step, dataformats):
        self.images.append((tag, step, array.shape, dataformats))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_runs_write_tensorboard_scalars_and_pictures_when_it_is_installed(sprite_data, tmp_path, monkeypatch):
    writers = []
    monkeypatch.setattr(tensorboard_log, "summary_writer", lambda log_dir, purge_step: writers.append(
        FakeWriter(log_dir, purge_step)) or writers[-1])
    run = tmp_path / "tok"
    assert tokenizer_run(sprite_data, run, "eval_every=3", "picture_every=3") == 0
    (writer,) = writers
    assert writer.log_dir == run / "tensorboard" and writer.purge_step == 1 and writer.closed
    assert {("train/loss", s) for s in range(1, 7)} | {("heldout/psnr", 3), ("heldout/psnr", 6)} <= set(writer.scalars)
    assert [(tag, step, dataformats) for tag, step, _, dataformats in writer.images] == [
        ("samples/picture", 3, "HWC"), ("samples/picture", 6, "HWC")]
    assert tokenizer_run(sprite_data, run, "eval_every=3", "picture_every=3", "steps=8") == 0  # resumed at step 6
    assert writers[-1].purge_step == 7  # events a killed run wrote after its checkpoint are dropped


def test_without_tensorboard_nothing_changes(sprite_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` raises ImportError
    run = tmp_path / "tok"
    assert tokenizer_run(sprite_data, run, "eval_every=3") == 0
    assert sorted(p.name for p in run.iterdir()) == ["best.safetensors", "checkpoint.safetensors", "config.json",
                                                     "curves.png", "metrics.jsonl"]


def test_real_tensorboard_event_files(sprite_data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "tok"
    assert tokenizer_run(sprite_data, run, "eval_every=3", "picture_every=3") == 0
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("heldout/psnr")] == [3, 6]
    assert [e.step for e in events.Images("samples/picture")] == [3, 6]
