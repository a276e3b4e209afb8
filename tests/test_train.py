"""End to end on the tiny preset: both training phases lower their loss on a moving-sprite video,
export writes a playable bundle, and eval prints every metric beside the copy baseline."""
from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from genie_play import World
from genie_play.cli import main
from genie_play.train.data import DatasetWriter

SIZE = 16


def sprite_episode(rng: np.random.Generator, length: int) -> tuple[np.ndarray, np.ndarray]:
    """A 3x3 sprite that moves left/right/up/stays by a random action every frame."""
    frames = np.zeros((length, SIZE, SIZE, 3), np.uint8)
    frames[..., 2] = 60  # blue-ish background
    frames[:, 12:, :, 1] = 150  # green ground
    y, x = 8, int(rng.integers(2, SIZE - 5))
    actions = rng.integers(0, 4, length)
    for t in range(length):
        frames[t, y : y + 3, x : x + 3] = (250, 220, 40)
        dx, dy = [(1, 0), (-1, 0), (0, -1), (0, 0)][actions[t]]
        x, y = int(np.clip(x + dx, 0, SIZE - 3)), int(np.clip(y + dy, 2, 9))
    actions[-1] = -1
    return frames, actions


@pytest.fixture(scope="module")
def sprite_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sprite")
    rng = np.random.default_rng(0)
    with DatasetWriter(folder, SIZE) as writer:
        for e in range(12):
            frames, actions = sprite_episode(rng, 40)
            writer.append_episode(frames, actions, split="heldout" if e >= 10 else "train", source=f"ep{e}", level=e)
    return folder


def losses(run, key="loss"):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if key in r]  # training records (held-out records have other keys)


def test_two_phases_train_export_and_evaluate(sprite_data, tmp_path, capsys):
    common = ["log_every=1", "checkpoint_every=20", "picture_every=20", "num_workers=0", "warmup_steps=5", "lr=2e-3"]
    tok_run, dyn_run = tmp_path / "tok", tmp_path / "dyn"
    assert main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(tok_run), "--preset", "tiny",
                 "steps=40", "batch_size=8", "clip_len=4", *common]) == 0
    tok = losses(tok_run)
    assert np.mean(tok[-5:]) < 0.7 * np.mean(tok[:5]), tok
    assert list((tok_run / "pictures").glob("*.png"))

    assert main(["train", "dynamics", "--data", str(sprite_data), "--run", str(dyn_run), "--preset", "tiny",
                 "--tokenizer", str(tok_run), "steps=40", "batch_size=4", "clip_len=6", "loss.action_drop=0.2", *common]) == 0
    ce = losses(dyn_run, "ce")
    assert np.mean(ce[-5:]) < np.mean(ce[:5]), ce
    assert list((dyn_run / "pictures").glob("*.png"))

    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["right", "left", "up", "stay", "a", "b", "c", "d"]))
    bundle = tmp_path / "sprite.safetensors"
    assert main(["train", "export", str(dyn_run), "--out", str(bundle), "--labels", str(labels)]) == 0
    world = World.load(bundle, device="cpu")
    assert world.labels[:2] == ["right", "left"]
    assert world.card["action_drop"] == 0.2 and world.learned_no_action  # what the player's coasting asks
    assert world.rollout(np.zeros((SIZE, SIZE, 3), np.uint8), [0, 1], seed=0).shape == (3, SIZE, SIZE, 3)

    capsys.readouterr()
    assert main(["eval", str(bundle), "--data", str(sprite_data), "--clips", "6", "--horizon", "4",
                 "--delta-t", "2", "--steps", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("tokenizer_psnr", "rollout_psnr", "copy_baseline_psnr", "delta_psnr_t2", "action_frequency",
                "action_perplexity", "nmi_true_actions", "levels"):
        assert key in result, key
    assert result["clips"] == 6 and result["levels"][0] >= 10  # held-out episodes only
    table = np.array(result["latent_vs_true_actions"])  # (latent, true) counts of every transition
    assert table.shape[0] == 8 and table.sum() == 6 * 4
    assert np.allclose(table.sum(1) / table.sum(), result["action_frequency"], atol=1e-4)

    # the copy baseline is computed from the very clips evaluated
    from genie_play.train.data import ClipDataset
    from genie_play.train.evaluate import pick_clips, psnr

    ds = ClipDataset(sprite_data, split="heldout", clip_len=5)
    clips = np.stack([ds[int(i)] for i in pick_clips(ds, 6, 0)])
    copy = psnr(np.repeat(clips[:, :1], 4, axis=1), clips[:, 1:]).mean()
    assert abs(copy - result["copy_baseline_psnr"]) < 1e-6


def test_export_refuses_a_tokenizer_run(sprite_data, tmp_path):
    run = tmp_path / "tok"
    main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(run), "--preset", "tiny",
          "steps=2", "batch_size=2", "clip_len=2", "num_workers=0", "picture_every=0"])
    assert main(["train", "export", str(run), "--out", str(tmp_path / "x.safetensors")]) == 2


FAST_RUN = ["num_workers=0", "picture_every=0", "log_every=1", "warmup_steps=1", "lr=2e-3"]  # warmup < every run's steps


def _tiny_world_from_runs(data, tmp_path, tokenizer_steps: int, *export_flags: str):
    """A tiny tokenizer run, a 2-step dynamics run on its tokens, and their export: (dyn run, bundle)."""
    tok, dyn, bundle = tmp_path / "tok", tmp_path / "dyn", tmp_path / "w.safetensors"
    assert main(["train", "tokenizer", "--data", str(data), "--run", str(tok), "--preset", "tiny",
                 f"steps={tokenizer_steps}", "batch_size=4", "clip_len=4", *FAST_RUN]) == 0
    assert main(["train", "dynamics", "--data", str(data), "--run", str(dyn), "--preset", "tiny",
                 "--tokenizer", str(tok), "steps=2", "batch_size=2", "clip_len=4", *FAST_RUN]) == 0
    assert main(["train", "export", str(dyn), "--out", str(bundle), *export_flags]) == 0
    return dyn, bundle


def test_decoder_only_run_keeps_tokens_and_upgrades_an_exported_world(sprite_data, tmp_path):
    """A decoder-only run never changes a frame's tokens, so its decoder can be swapped into a world
    whose dynamics were trained on those tokens; a run that changed the encoder is refused."""
    dyn, bundle = _tiny_world_from_runs(sprite_data, tmp_path, 6)

    dec = tmp_path / "dec"
    assert main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(dec), "--preset", "tiny",
                 "--init", str(bundle), "--decoder-only", "steps=20", "batch_size=8", "clip_len=4", *FAST_RUN]) == 0
    mse = losses(dec, "mse")
    assert np.mean(mse[-5:]) < np.mean(mse[:5]), mse

    upgraded = tmp_path / "up.safetensors"
    assert main(["train", "export", str(dyn), "--out", str(upgraded), "--decoder", str(dec)]) == 0
    old, new = World.load(bundle, device="cpu", precision="fp32"), World.load(upgraded, device="cpu", precision="fp32")
    from genie_play.train.data import ClipDataset

    clip = torch.from_numpy(ClipDataset(sprite_data, split="heldout", clip_len=4)[0])[None]
    assert torch.equal(old.tokenizer.encode(clip), new.tokenizer.encode(clip))  # same tokens
    old_dec = {k: v for k, v in old.tokenizer.state_dict().items() if k.startswith("decoder.")}
    assert any(not torch.equal(v, new.tokenizer.state_dict()[k]) for k, v in old_dec.items())  # new decoder

    # a full tokenizer run from the same world changes the encoder: not a decoder upgrade for it
    other = tmp_path / "other"
    assert main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(other), "--preset", "tiny",
                 "--init", str(bundle), "steps=3", "batch_size=4", "clip_len=4", *FAST_RUN]) == 0
    assert main(["train", "export", str(dyn), "--out", str(tmp_path / "bad.safetensors"), "--decoder", str(other)]) == 2
    assert not (tmp_path / "bad.safetensors").exists()


def test_a_deeper_decoder_starts_as_the_old_one_and_exports(sprite_data, tmp_path):
    """`model.tokenizer.decoder.depth=N` on a decoder-only warm start: the new blocks start as the
    identity (same pixels at step 0), and export builds the world with the deeper decoder."""
    from genie_play.train.cli import _init_from_bundle
    from genie_play.train.stage_tokenizer import TokenizerTrainer

    dyn, bundle = _tiny_world_from_runs(sprite_data, tmp_path, 3, "--fp32")
    old = World.load(bundle, device="cpu", precision="fp32")
    depth = old.config.tokenizer.decoder.depth

    deeper_cfg = dataclasses.replace(old.config.tokenizer, decoder=dataclasses.replace(old.config.tokenizer.decoder, depth=depth + 2))
    trainer = TokenizerTrainer(deeper_cfg, decoder_only=True)
    _init_from_bundle(trainer, bundle, ("tokenizer.",))
    from genie_play.train.data import ClipDataset

    clip = torch.from_numpy(ClipDataset(sprite_data, split="heldout", clip_len=4)[0])[None]
    tokens = old.tokenizer.encode(clip)
    with torch.no_grad():
        torch.testing.assert_close(trainer.tokenizer.decode(tokens), old.tokenizer.decode(tokens), atol=1e-5, rtol=0)

    dec = tmp_path / "dec"
    assert main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(dec), "--preset", "small",
                 "--init", str(bundle), "--decoder-only", f"model.tokenizer.decoder.depth={depth + 2}",
                 "steps=4", "batch_size=4", "clip_len=4", *FAST_RUN]) == 0  # --init's tokenizer wins over the preset
    up = tmp_path / "up.safetensors"
    assert main(["train", "export", str(dyn), "--out", str(up), "--decoder", str(dec), "--fp32"]) == 0
    new = World.load(up, device="cpu", precision="fp32")
    assert new.config.tokenizer.decoder.depth == depth + 2
    assert torch.equal(new.tokenizer.encode(clip), tokens)
    old_dyn = old.dynamics.state_dict()
    assert all(torch.equal(v, old_dyn[k]) for k, v in new.dynamics.state_dict().items())  # same dynamics


def test_export_refuses_a_tokenizer_that_is_no_longer_its_source(sprite_data, tmp_path, capsys):
    """A dynamics run's tokenizer must be its source's: export refuses one that differs (here the
    source folder now holds another tokenizer run), and exports unchecked, with a warning, when
    the source is gone."""
    import shutil

    dyn, _ = _tiny_world_from_runs(sprite_data, tmp_path, 3)
    other = tmp_path / "tok_other"
    assert main(["train", "tokenizer", "--data", str(sprite_data), "--run", str(other), "--preset", "tiny",
                 "steps=4", "batch_size=4", "clip_len=4", *FAST_RUN]) == 0
    shutil.rmtree(tmp_path / "tok")
    other.rename(tmp_path / "tok")
    capsys.readouterr()
    assert main(["train", "export", str(dyn), "--out", str(tmp_path / "bad.safetensors")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "its tokenizer differs from its source" in error[0], error
    assert not (tmp_path / "bad.safetensors").exists()
    shutil.rmtree(tmp_path / "tok")
    assert main(["train", "export", str(dyn), "--out", str(tmp_path / "ok.safetensors")]) == 0
    assert "exported unchecked" in capsys.readouterr().err


def test_dynamics_warm_start_keeps_the_frozen_tokenizer_intact(sprite_data, tmp_path):
    """`train dynamics --tokenizer B --init B`: the tokenizer is loaded from B on its own, the
    LAM and dynamics from B by the warm start, and no tokenizer block is mistaken for a new one
    (its residual projections zeroed), so the dynamics trains on B's real tokens."""
    from genie_play.train.cli import _init_from_bundle
    from genie_play.train.stage_dynamics import DynamicsTrainer

    _, bundle = _tiny_world_from_runs(sprite_data, tmp_path, 3, "--fp32")
    world = World.load(bundle, device="cpu", precision="fp32")
    trainer = DynamicsTrainer(world.config, copy.deepcopy(world.tokenizer))
    _init_from_bundle(trainer, bundle, ("lam.", "dynamics."))
    for k, v in world.tokenizer.state_dict().items():
        assert torch.equal(trainer.tokenizer.state_dict()[k], v), k
    assert any(v.abs().sum() > 0 for k, v in trainer.tokenizer.state_dict().items() if k.endswith("spatial.out.weight"))
    for k, v in world.dynamics.state_dict().items():
        assert torch.equal(trainer.dynamics.state_dict()[k], v), k
