"""Training that is killed, interrupted or runs out of disk: the earlier checkpoint stays usable,
the next run resumes from it, and every failure is a one-line message (issue 8).

The toy module and clips of tests/_toy_train.py keep each run well under a second. Kills happen in
a subprocess (SIGKILL cannot be caught); a full disk is a real one for the writing code: the file
size limit RLIMIT_FSIZE makes the kernel fail write() with EFBIG, as ENOSPC would.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from _toy_train import SpriteClips, ToyModule
from genie_play.errors import CheckpointError, GenieError
from genie_play.train.checkpoint import CHECKPOINT_NAME, PREV_NAME, read_checkpoint_meta, stale_temp_files
from genie_play.train.loop import Trainer, TrainConfig

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

CFG = dict(steps=8, batch_size=4, clip_len=4, lr=1e-2, warmup_steps=2, precision="fp32", log_every=1,
           checkpoint_every=4, picture_every=0, num_workers=1)


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def trainer(run_dir: Path, **kw) -> Trainer:
    torch.manual_seed(1234)  # the same initial weights every time
    return Trainer(ToyModule(), SpriteClips(), TrainConfig(**{**CFG, **kw}), run_dir, "cpu", extra_state={"model": "toy"})


def checkpoint_step(path: Path) -> int:
    """The step of one checkpoint file, after loading every tensor (so the file is whole)."""
    load_file(str(path))
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["step"])


def same_tensors(a: Path, b: Path) -> bool:
    ta, tb = load_file(str(a / CHECKPOINT_NAME)), load_file(str(b / CHECKPOINT_NAME))
    return set(ta) == set(tb) and all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted 8-step run: a resumed run must end bit-identical to it."""
    run_dir = tmp_path_factory.mktemp("reference")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer(run_dir).run()
    finally:
        torch.set_num_threads(before)
    return run_dir


# ----- SIGKILL while a checkpoint is being written ------------------------------------------------------
KILLER = r"""
import os, signal, sys
sys.path[:0] = [{tests!r}, {repo!r}]
import torch
from safetensors.torch import save_file
from _toy_train import SpriteClips, ToyModule
from genie_play.train import checkpoint
from genie_play.train.loop import Trainer, TrainConfig

torch.set_num_threads(1)
mode = {mode!r}
torch.manual_seed(1234)
trainer = Trainer(ToyModule(), SpriteClips(), TrainConfig(**{cfg!r}), {run_dir!r}, "cpu", extra_state={{"model": "toy"}})
saves = []

def save_then_die(tensors, filename, metadata=None):
    saves.append(filename)
    save_file(tensors, filename, metadata=metadata)
    if mode == "mid-write" and len(saves) == 2:  # the step-8 checkpoint: half its bytes are on disk
        size = os.path.getsize(filename)
        with open(filename, "r+b") as f:
            f.truncate(size // 2)
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

real_replace = os.replace

def replace_then_die(src, dst):
    # the rename that would publish the step-8 checkpoint: die just before it
    if mode == "before-rename" and len(saves) == 2 and os.path.basename(str(dst)) == checkpoint.CHECKPOINT_NAME:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)

trainer.save_file = save_then_die
checkpoint.os.replace = replace_then_die
trainer.run()
print("finished", flush=True)
"""


@pytest.mark.parametrize("mode", ["mid-write", "before-rename"])
def test_sigkill_during_checkpoint_write_keeps_previous_and_next_run_resumes(tmp_path, reference, mode):
    script = KILLER.format(tests=str(TESTS), repo=str(REPO), mode=mode, cfg=CFG, run_dir=str(tmp_path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert "finished" not in proc.stdout
    # The step-4 checkpoint is whole and is what a resume reads; the killed writer's temp file is
    # all that is left of the step-8 one.
    assert checkpoint_step(tmp_path / CHECKPOINT_NAME) == 4
    assert read_checkpoint_meta(tmp_path)["step"] == 4
    assert stale_temp_files(tmp_path)
    resumed = trainer(tmp_path)
    assert resumed.start_step == 4 and resumed.resumed_from == tmp_path / CHECKPOINT_NAME
    assert not stale_temp_files(tmp_path)  # cleaned when the next run starts
    resumed.run()
    assert checkpoint_step(tmp_path / CHECKPOINT_NAME) == 8 and checkpoint_step(tmp_path / PREV_NAME) == 4
    assert same_tensors(reference, tmp_path)  # nothing lost: as if never killed


# ----- a full disk -----------------------------------------------------------------------------------------
@pytest.fixture
def disk_limit():
    """`disk_limit(n)`: from now on files of this process cannot grow past n bytes, and write()
    fails with EFBIG (a real I/O error from the kernel, like ENOSPC on a full disk) instead of the
    default SIGXFSZ kill. Lifted when the test ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def limit(max_bytes: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))

    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


def test_real_write_error_in_safetensors_is_a_checkpoint_error_and_keeps_earlier(tmp_path, reference, disk_limit):
    t = trainer(tmp_path)
    calls = []

    def save_on_a_filling_disk(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:  # the disk fills up after the step-4 checkpoint
            disk_limit((tmp_path / CHECKPOINT_NAME).stat().st_size // 2)
        save_file(tensors, filename, metadata=metadata)  # the real writer meets the real error

    t.save_file = save_on_a_filling_disk
    with pytest.raises(CheckpointError) as info:
        t.run()
    disk_limit(resource.RLIM_INFINITY)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / CHECKPOINT_NAME) in message and "intact" in message
    assert "File too large" in message, message
    assert checkpoint_step(tmp_path / CHECKPOINT_NAME) == 4
    assert not stale_temp_files(tmp_path) and not (tmp_path / PREV_NAME).exists()
    resumed = trainer(tmp_path)
    assert resumed.start_step == 4
    resumed.run()
    assert same_tensors(reference, tmp_path)


def test_metrics_log_on_a_full_disk_warns_and_training_goes_on(tmp_path, capsys, disk_limit):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    filler = json.dumps({"step": 0, "note": "x" * 200}) + "\n"  # kept by the resume trim (step 0)
    (run_dir / "metrics.jsonl").write_text(filler * 2000)  # larger than a checkpoint
    limit = (run_dir / "metrics.jsonl").stat().st_size + 100  # metrics fill up; checkpoints still fit
    t = trainer(run_dir, steps=4, checkpoint_every=2)
    disk_limit(limit)
    t.run()
    disk_limit(resource.RLIM_INFINITY)
    err = capsys.readouterr().err
    assert err.count("could not write") == 1 and "metrics.jsonl" in err and "training goes on" in err
    assert read_checkpoint_meta(run_dir)["step"] == 4 and not t.interrupted
    again = trainer(run_dir, steps=6)  # the half-written metrics line is dropped on resume
    assert again.start_step == 4
    again.run()
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line)["step"] in (0, 5, 6) for line in lines)


def test_unwritable_pictures_folder_warns_and_training_goes_on(tmp_path, capsys):
    (tmp_path / "pictures").write_text("a file where the pictures folder should be")
    t = trainer(tmp_path, steps=4, picture_every=2)
    t.run()
    assert "could not write" in capsys.readouterr().err
    assert read_checkpoint_meta(tmp_path)["step"] == 4


def test_run_folder_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError) as info:
        trainer(blocker / "run")
    assert isinstance(info.value, GenieError) and "\n" not in str(info.value) and "run folder" in str(info.value)


# ----- Ctrl-C ----------------------------------------------------------------------------------------------
def test_ctrl_c_during_a_checkpoint_write_still_saves_and_stops(tmp_path):
    t = trainer(tmp_path, steps=100)

    def save_with_ctrl_c(tensors, filename, metadata=None):
        if not hasattr(save_with_ctrl_c, "sent"):
            save_with_ctrl_c.sent = True
            os.kill(os.getpid(), signal.SIGINT)  # arrives while the step-4 checkpoint is written
        save_file(tensors, filename, metadata=metadata)

    t.save_file = save_with_ctrl_c
    t.run()  # no KeyboardInterrupt: the write finishes, one more step runs and is saved
    assert t.interrupted and read_checkpoint_meta(tmp_path)["step"] == 5
    assert checkpoint_step(tmp_path / PREV_NAME) == 4 and not stale_temp_files(tmp_path)


def test_second_ctrl_c_during_a_write_aborts_without_damage(tmp_path):
    t = trainer(tmp_path, steps=100)
    handler_before = signal.getsignal(signal.SIGINT)
    calls = []

    def save_then_ctrl_c(tensors, filename, metadata=None):
        calls.append(filename)
        save_file(tensors, filename, metadata=metadata)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: finish the step, save, stop
        else:
            t._stop_time -= 10.0  # as if a second later (the torchrun-echo guard is 1 s)
            with open(filename, "r+b") as f:
                f.truncate(100)  # half written when the second Ctrl-C arrives
            os.kill(os.getpid(), signal.SIGINT)

    t.save_file = save_then_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        t.run()
    assert checkpoint_step(tmp_path / CHECKPOINT_NAME) == 4  # the earlier checkpoint, untouched
    assert not stale_temp_files(tmp_path)  # the half-written file was removed on the way out
    assert signal.getsignal(signal.SIGINT) is handler_before
    assert trainer(tmp_path).start_step == 4
