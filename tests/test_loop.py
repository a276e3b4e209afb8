"""The shared training loop (genie_play/train/loop.py): schedule, overrides, checkpoints, resume,
signals and torchrun, on a toy module (tests/_toy_train.py) and tiny in-memory clips."""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal, Optional

import pytest
import torch
from safetensors.torch import load_file

from _toy_train import SpriteClips, ToyModule
from _toy_train import train as train_toy
from genie_play.errors import BadDataError, BadSettingError, CheckpointError
from genie_play.train.checkpoint import CHECKPOINT_NAME, PREV_NAME, read_checkpoint_meta, strip_wrapper_prefixes
from genie_play.train.loop import (Trainer, TrainConfig, apply_overrides, config_from_dict, config_to_dict,
                                   default_param_groups, load_checkpoint_weights, lr_at)

TOY = Path(__file__).with_name("_toy_train.py")
REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def small_cfg(**kw) -> TrainConfig:
    base = dict(steps=8, batch_size=4, clip_len=4, lr=1e-2, warmup_steps=2, precision="fp32", log_every=1,
                checkpoint_every=4, picture_every=0, num_workers=1)
    return TrainConfig(**{**base, **kw})


def make_trainer(run_dir: Path, module: torch.nn.Module | None = None, **kw) -> Trainer:
    """A Trainer of a toy module; the same initial weights unless `module` is given (seed it before)."""
    if module is None:
        torch.manual_seed(1234)
        module = ToyModule()
    return Trainer(module, SpriteClips(), small_cfg(**kw), run_dir, "cpu", extra_state={"model": "toy"})


def run_toy(run_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(TOY), "--run-dir", str(run_dir), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def tensors_of(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / CHECKPOINT_NAME))


def losses(run_dir: Path) -> list[tuple[int, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines)]


# ----- settings -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Cfg:
    depth: int = 2
    rate: float = 0.5
    name: str = "a"
    flag: bool = False
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[float, float] = (0.9, 0.9)
    limit: Optional[int] = None
    mode: Literal["x", "y"] = "x"


def test_overrides_parse_every_field_type():
    c = apply_overrides(_Cfg(), ["depth=4", "--rate=1e-3", "name=b", "flag", "sizes=3,4,5", "pair=(0.8, 0.95)",
                                 "limit=7", "mode=y"])
    assert c == _Cfg(4, 1e-3, "b", True, (3, 4, 5), (0.8, 0.95), 7, "y")
    assert apply_overrides(c, ["limit=none", "flag=false", "depth=1e1"]) == dataclasses.replace(c, limit=None, flag=False, depth=10)
    assert config_from_dict(_Cfg, json.loads(json.dumps(config_to_dict(c)))) == c
    cfg = apply_overrides(TrainConfig(), ["steps=5", "betas=0.9,0.95", "precision=bf16", "compile=true"])
    assert (cfg.steps, cfg.betas, cfg.precision, cfg.compile) == (5, (0.9, 0.95), "bf16", True)


@pytest.mark.parametrize("item, words", [
    ("depht=3", ["unknown setting 'depht'", "valid keys: depth, rate, name"]),
    ("depth=2.5", ["bad value '2.5'", "'depth'", "integer"]),
    ("rate=fast", ["bad value 'fast'", "number"]),
    ("flag=maybe", ["true/false"]),
    ("pair=1,2,3", ["2 comma-separated values"]),
    ("mode=z", ["one of x, y"]),
    ("depth", ["needs a value"]),
])
def test_override_errors_are_one_line(item, words):
    with pytest.raises(BadSettingError) as info:
        apply_overrides(_Cfg(), [item])
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_config_validation_and_json_type_errors():
    with pytest.raises(BadSettingError, match="grad_accum"):
        small_cfg(grad_accum=0).validate()
    with pytest.raises(BadSettingError, match="betas"):
        small_cfg(betas=(0.9, 1.5)).validate()
    with pytest.raises(BadSettingError, match="unknown settings"):
        config_from_dict(_Cfg, {"depth": 1, "bogus": 2})
    with pytest.raises(BadSettingError, match="'depth'"):
        config_from_dict(_Cfg, {"depth": "many"})


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=110, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(60, cfg) == pytest.approx(0.55)
    assert lr_at(110, cfg) == pytest.approx(0.1)
    lrs = [lr_at(s, cfg) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_default_param_groups_skip_norms_biases_embeddings_codebooks():
    m = torch.nn.Module()
    m.proj = torch.nn.Linear(4, 4)
    m.norm = torch.nn.LayerNorm(4)
    m.emb = torch.nn.Embedding(5, 4)
    m.codebook = torch.nn.Parameter(torch.zeros(8, 4))
    m.frozen = torch.nn.Linear(4, 4).requires_grad_(False)
    decay, no_decay = default_param_groups(m, 0.1)
    assert [p.shape for p in decay["params"]] == [(4, 4)] and decay["weight_decay"] == 0.1
    assert len(no_decay["params"]) == 5 and no_decay["weight_decay"] == 0.0  # bias, norm w+b, emb, codebook


def test_strip_wrapper_prefixes():
    assert strip_wrapper_prefixes("module._orig_mod.enc._orig_mod.w") == "enc.w"
    assert strip_wrapper_prefixes("modules.x") == "modules.x"


# ----- training in this process ----------------------------------------------------------------------
def test_loss_goes_down_and_files_are_written(tmp_path):
    trainer = make_trainer(tmp_path, steps=30, picture_every=10, checkpoint_every=10)
    assert trainer.start_step == 0
    trainer.run()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert {"loss", "lr", "grad_norm", "mse", "mean_code", "frames_per_s", "tokens_per_s"} <= set(rows[0])
    first, last = sum(r["loss"] for r in rows[:3]) / 3, sum(r["loss"] for r in rows[-3:]) / 3
    assert last < 0.5 * first, (first, last)
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == ["step_000010.png", "step_000020.png", "step_000030.png"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["train"]["steps"] == 30 and config["extra_state"] == {"model": "toy"}
    state, meta = load_checkpoint_weights(tmp_path)
    assert meta["step"] == 30 and meta["extra_state"] == {"model": "toy"} and meta["train_config"]["lr"] == 1e-2
    assert set(state) == set(trainer.module.state_dict())
    assert all(torch.equal(state[k], v) for k, v in trainer.module.state_dict().items())
    again = make_trainer(tmp_path, steps=30)  # finished: constructing resumes at the end, run() does nothing
    assert again.start_step == 30 and again.resumed_from == tmp_path / CHECKPOINT_NAME
    again.run()


def test_bf16_autocast_keeps_fp32_master_weights(tmp_path):
    trainer = make_trainer(tmp_path, steps=20, precision="bf16", checkpoint_every=100)
    assert trainer.amp_dtype == torch.bfloat16
    trainer.run()
    rows = losses(tmp_path)
    assert rows[-1][1] < 0.5 * rows[0][1]
    assert all(p.dtype == torch.float32 for p in trainer.module.parameters())
    assert all(v.dtype == torch.float32 for k, v in tensors_of(tmp_path).items() if k.startswith(("optim.", "model.norm")))


def test_grad_accumulation_equals_one_big_batch(tmp_path):
    torch.manual_seed(0)
    one = make_trainer(tmp_path / "one", module=ToyModule(noise=False), steps=3, batch_size=4, grad_accum=1)
    torch.manual_seed(0)
    two = make_trainer(tmp_path / "two", module=ToyModule(noise=False), steps=3, batch_size=2, grad_accum=2)
    one.run()
    two.run()
    for (name, a), b in zip(one.module.named_parameters(), two.module.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def _enospc_writer(tensors, filename, metadata=None):
    Path(filename).write_bytes(b"\0" * 100)  # half-written, then the disk is full
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)


def test_failing_checkpoint_write_keeps_earlier_checkpoint(tmp_path):
    make_trainer(tmp_path, steps=4).run()
    before = tensors_of(tmp_path)
    trainer = make_trainer(tmp_path, steps=8)
    trainer.save_file = _enospc_writer
    with pytest.raises(CheckpointError) as info:
        trainer.run()
    message = str(info.value)
    assert "\n" not in message and "No space left" in message and str(tmp_path) in message
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [CHECKPOINT_NAME, "config.json", "curves.png", "metrics.jsonl"]
    after = tensors_of(tmp_path)
    assert read_checkpoint_meta(tmp_path)["step"] == 4
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert make_trainer(tmp_path, steps=8).start_step == 4


def test_corrupt_latest_checkpoint_falls_back_to_prev(tmp_path):
    make_trainer(tmp_path, steps=8).run()  # checkpoints at 4 (-> prev) and 8
    latest = tmp_path / CHECKPOINT_NAME
    latest.write_bytes(latest.read_bytes()[:-1000])  # truncated, as by a crash of the disk
    with pytest.warns(UserWarning, match="unreadable; resuming from checkpoint.prev"):
        trainer = make_trainer(tmp_path, steps=8)
    assert trainer.start_step == 4 and trainer.resumed_from == tmp_path / PREV_NAME
    with pytest.warns(UserWarning):
        assert load_checkpoint_weights(tmp_path)[1]["step"] == 4
    (tmp_path / PREV_NAME).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        make_trainer(tmp_path, steps=8)


def test_resume_refuses_a_different_model(tmp_path):
    make_trainer(tmp_path, steps=4).run()
    with pytest.raises(CheckpointError, match="different model|does not fit"):
        make_trainer(tmp_path, steps=8, module=ToyModule(hidden=8))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # from torch's own compile imports
def test_resume_into_compiled_submodules(tmp_path):
    # torch.compile adds `_orig_mod.` to state-dict names; checkpoints are saved without it and
    # load into a module whose parts are compiled (compilation is lazy: nothing compiles here).
    first = make_trainer(tmp_path, steps=4)
    first.run()
    module = ToyModule()
    module.encode = torch.compile(module.encode)
    assert any("_orig_mod." in k for k in module.state_dict())
    trainer = make_trainer(tmp_path, steps=8, module=module)
    assert trainer.start_step == 4
    assert torch.equal(module.encode.weight, first.module.encode.weight)


def test_bad_clips_raise_bad_data_error(tmp_path):
    with pytest.raises(BadDataError, match="clip_len=5"):
        Trainer(ToyModule(), SpriteClips(clip_len=4), small_cfg(clip_len=5), tmp_path, "cpu").run()


# ----- processes: SIGKILL, SIGINT, SIGTERM, torchrun -------------------------------------------------
@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """An uninterrupted 12-step run of the toy entry (checkpoints every 4 steps), in this process:
    the interrupted runs in subprocesses must match it bit for bit."""
    run_dir = tmp_path_factory.mktemp("reference")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_toy(run_dir, [])
    finally:
        torch.set_num_threads(before)
    return run_dir


def assert_same_training(a: Path, b: Path) -> None:
    ta, tb = tensors_of(a), tensors_of(b)
    assert set(ta) == set(tb)
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, different  # bit-exact: model, optimiser state and RNG states
    assert losses(a) == losses(b)


def test_sigint_and_sigkill_then_rerun_resume_bit_exactly(tmp_path, reference_run):
    # Ctrl-C arrives during step 5 (0-based): the step finishes, step 6 is saved, the exit is clean.
    stopped = run_toy(tmp_path, "--sigint-at-step", "5")
    assert stopped.returncode == 0, stopped.stderr
    assert "interrupted=True" in stopped.stdout
    assert "interrupted: saved step 6" in stopped.stderr and "Traceback" not in stopped.stderr
    assert read_checkpoint_meta(tmp_path)["step"] == 6
    # The same command again resumes; this time SIGKILL hits in step 10, after the step-8 checkpoint.
    killed = run_toy(tmp_path, "--die-at-step", "10")
    assert killed.returncode == -signal.SIGKILL
    assert "from step 6" in killed.stderr and read_checkpoint_meta(tmp_path)["step"] == 8
    resumed = run_toy(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "from step 8" in resumed.stderr and "interrupted=False" in resumed.stdout
    assert read_checkpoint_meta(tmp_path)["step"] == 12
    assert_same_training(reference_run, tmp_path)  # parameters, optimiser, RNG and logged losses


def test_sigterm_finishes_the_step_and_saves(tmp_path):
    torch.manual_seed(1234)
    module = ToyModule()
    module.signal_at_step, module.signal_to_send = 2, signal.SIGTERM
    trainer = make_trainer(tmp_path, module=module, steps=100, checkpoint_every=1000)
    handler_before = signal.getsignal(signal.SIGTERM)
    trainer.run()
    assert trainer.interrupted and read_checkpoint_meta(tmp_path)["step"] == 3
    assert losses(tmp_path)[-1][0] == 3
    assert signal.getsignal(signal.SIGTERM) is handler_before  # handlers restored after run()


def wait_for_metrics(run_dir: Path, lines: int, proc: subprocess.Popen, seconds: float = 300) -> None:
    metrics, deadline = run_dir / "metrics.jsonl", time.monotonic() + seconds
    while not (metrics.exists() and metrics.read_text().count("\n") >= lines):
        assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)


def test_torchrun_two_processes_ctrl_c_resume_identical_params_one_checkpoint(tmp_path):
    run_dir, dump = tmp_path / "run", tmp_path / "params"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(TOY),
           "--run-dir", str(run_dir), "--dump-params", str(dump), "checkpoint_every=1000", "picture_every=2"]
    # Ctrl-C in a terminal signals the whole process group: torchrun and both workers.
    proc = subprocess.Popen([*cmd[:-2], "--sleep", "0.05", *cmd[-2:], "steps=400"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        wait_for_metrics(run_dir, 3, proc)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "rank 0 finished interrupted=True" in out and "rank 1 finished interrupted=True" in out, err[-3000:]
    step = read_checkpoint_meta(run_dir)["step"]
    assert 3 <= step < 400 and err.count(f"interrupted: saved step {step}") == 1  # only rank 0 prints
    # Resume under torchrun to step+2 and finish normally.
    done = subprocess.run([*cmd, f"steps={step + 2}"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 finished interrupted=False" in done.stdout and "rank 1 finished interrupted=False" in done.stdout
    assert f"from step {step}" in done.stderr and done.stderr.count(f"done: {step + 2} steps") == 1
    a, b = load_file(f"{dump}.rank0.safetensors"), load_file(f"{dump}.rank1.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    pictures = sorted(f"step_{s:06d}.png" for s in range(2, step + 3, 2))
    assert sorted(p.name for p in run_dir.rglob("*")) == sorted([CHECKPOINT_NAME, PREV_NAME, "config.json", "curves.png", "metrics.jsonl", "pictures", *pictures])
    meta = read_checkpoint_meta(run_dir)
    assert meta["step"] == step + 2 and meta["world_size"] == 2 and len(meta["rng_host"]) == 2
    saved = tensors_of(run_dir)
    assert {"rng.0.torch_cpu", "rng.1.torch_cpu"} <= set(saved)
    assert all(torch.equal(saved[f"model.{k}"], v) for k, v in a.items())
    assert [s for s, _ in losses(run_dir)] == list(range(1, step + 3))
