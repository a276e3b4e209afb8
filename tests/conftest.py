"""Shared fixtures: a tiny real world bundle made from the 'tiny' preset (random weights)."""
from __future__ import annotations

import os

import numpy as np
import pytest

# Tests use tiny models: one thread is faster than two, and it keeps the suite from spinning
# against other work on the machine (OpenMP busy-waits when cores are oversubscribed).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


def make_tiny_world(path, seed: int = 0, labels=None) -> None:
    """Write a tiny world bundle with random weights to `path` (fp32, so tests can compare exactly)."""
    import torch

    from genie_play import bundle
    from genie_play.presets import preset, to_dict
    from genie_play.world import build_models, export_tensors

    torch.manual_seed(seed)
    cfg = preset("tiny")
    m = build_models(cfg)
    tensors = export_tensors(m["tokenizer"], m["dynamics"], m["lam"].action_codebook(), m["lam"])
    labels = labels or ["right", "jump", "left", "stay", "a4", "a5", "a6", "a7"]
    bundle.save_bundle(path, tensors, to_dict(cfg), labels=labels, card={"note": "tiny test world"}, dtype=None)


@pytest.fixture(scope="session")
def tiny_world_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("worlds") / "tiny.safetensors"
    make_tiny_world(path)
    return path


@pytest.fixture(scope="session")
def tiny_world_path_b(tmp_path_factory):
    """A second, different tiny world (other weights, so another world_id)."""
    path = tmp_path_factory.mktemp("worlds_b") / "tiny_b.safetensors"
    make_tiny_world(path, seed=1)
    return path


@pytest.fixture
def prompt_image():
    """A 16x16 RGB uint8 prompt with some structure."""
    rng = np.random.default_rng(0)
    img = np.zeros((16, 16, 3), np.uint8)
    img[8:, :, 1] = 180
    img[4:8, 4:8] = rng.integers(0, 255, (4, 4, 3))
    return img


@pytest.fixture
def prompt_path(tmp_path, prompt_image):
    """The prompt image saved as a PNG file."""
    from PIL import Image

    path = tmp_path / "prompt.png"
    Image.fromarray(prompt_image).save(path)
    return path


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail the test if anything tries to unpickle (pickle.* or torch.load) while it runs."""
    import pickle

    import torch

    def boom(*args, **kwargs):
        pytest.fail("something tried to unpickle / torch.load a bundle")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, name, boom)


@pytest.fixture
def one_thread():
    """Tiny training models: a second torch thread only adds contention on a 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
