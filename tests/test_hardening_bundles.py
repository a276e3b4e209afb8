"""Hostile or broken world bundles (issue 8): refused with a one-line BadBundleError naming the
file, before any allocation proportional to what the file claims, and never unpickled."""
from __future__ import annotations

import json
import pickle
import struct
import tracemalloc

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genie_play import World, bundle
from genie_play.cli import main as cli_main
from genie_play.errors import BadBundleError

CONFIG = {"tokenizer": {"patch": 4}}


def small_bundle(path):
    g = torch.Generator().manual_seed(0)
    tensors = {"tokenizer.w": torch.randn(4, 3, generator=g), "dynamics.count": torch.arange(6),
               "actions.codebook": torch.randn(8, 2, generator=g)}
    bundle.save_bundle(path, tensors, CONFIG, labels=["a"] * 8, card={"n": 1}, dtype=None)
    return path


@pytest.fixture(scope="module")
def small_bytes(tmp_path_factory) -> bytes:
    return small_bundle(tmp_path_factory.mktemp("small") / "small.safetensors").read_bytes()


def split(raw: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def join(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def refused(path, *needles: str, load=bundle.read_bundle) -> str:
    with pytest.raises(BadBundleError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for needle in needles:
        assert needle in message, message
    return message


# ----- truncation and random damage --------------------------------------------------------------------
def test_truncated_at_every_offset(tmp_path, small_bytes):
    path = tmp_path / "cut.safetensors"
    for cut in range(len(small_bytes)):
        path.write_bytes(small_bytes[:cut])
        refused(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6),
       header_only=st.booleans())
def test_random_damage_only_ever_raises_bad_bundle(tmp_path, small_bytes, flips, header_only):
    data = bytearray(small_bytes)
    (n,) = struct.unpack("<Q", small_bytes[:8])
    span = 8 + n if header_only else len(data)  # the header is where damage is interesting
    for where, value in flips:
        data[int(where * span)] = value
    path = tmp_path / "damaged.safetensors"
    path.write_bytes(bytes(data))
    try:
        b = bundle.read_bundle(path)
    except BadBundleError as err:
        assert "\n" not in str(err)
    else:  # damage in tensor bytes or a harmless header byte (a renamed tensor: check_tensors' job)
        assert len(b.tensors) == 3 and all(t.dtype in (torch.float32, torch.int64) for t in b.tensors.values())


# ----- lying headers allocate nothing --------------------------------------------------------------------
def peak_python_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("claimed", [50 * 1024 * 1024, 2**40, 2**63])
def test_lying_header_length_is_refused_without_reading_it(tmp_path, small_bytes, claimed):
    path = tmp_path / "liar.safetensors"
    path.write_bytes(struct.pack("<Q", claimed) + small_bytes[8:])

    def read():
        refused(path, "header length")

    assert peak_python_bytes(read) < 256 * 1024  # a blind read of the claimed length would allocate it


def test_lying_tensor_sizes_are_refused_without_allocating(tmp_path, small_bytes, monkeypatch):
    header, data = split(small_bytes)
    header["tokenizer.w"]["shape"] = [2**20, 2**20]  # 4 TB of float32 ...
    header["tokenizer.w"]["data_offsets"] = [0, 4 * 2**40]  # ... with offsets that agree
    path = tmp_path / "huge.safetensors"
    path.write_bytes(join(header, data))
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: pytest.fail("loaded a lying file"))
    assert peak_python_bytes(lambda: refused(path, "truncated")) < 256 * 1024


# ----- files that are not bundles --------------------------------------------------------------------------
def test_pickles_and_torch_checkpoints_renamed_are_never_unpickled(tmp_path, no_unpickling):
    raw_pickle = tmp_path / "model.safetensors"
    raw_pickle.write_bytes(pickle.dumps({"tokenizer.w": [0.5] * 64}, protocol=pickle.HIGHEST_PROTOCOL))
    refused(raw_pickle, "pickle", load=lambda p: World.load(p, device="cpu"))
    old_pickle = tmp_path / "old.safetensors"
    old_pickle.write_bytes(pickle.dumps({"w": 1}, protocol=2) + b"\0" * 64)
    refused(old_pickle, "pickle")
    torch_file = tmp_path / "ckpt.safetensors"
    torch.save({"tokenizer.w": torch.zeros(3)}, torch_file)  # a real torch.save zip, renamed
    refused(torch_file, "zip", load=lambda p: World.load(p, device="cpu"))


def test_info_and_play_refuse_a_renamed_pickle_in_one_line(tmp_path, capsys, no_unpickling):
    path = tmp_path / "coinrun.safetensors"
    path.write_bytes(pickle.dumps(list(range(100))))
    assert cli_main(["info", str(path)]) in (0, 2)  # info lists a broken world with its error
    out, err = capsys.readouterr()
    assert "pickle" in out + err
    assert cli_main(["play", "--world", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pickle" in err and str(path) in err


# ----- real worlds with a wrong inside ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_parts(tiny_world_path) -> tuple[dict, bytes]:
    return split(tiny_world_path.read_bytes())


def world_file(tmp_path, tiny_parts, name="w", header_change=None, config_change=None, extra=None):
    header, data = json.loads(json.dumps(tiny_parts[0])), tiny_parts[1]
    if config_change is not None:
        config = json.loads(header["__metadata__"]["config"])
        config_change(config)
        header["__metadata__"]["config"] = json.dumps(config)
    if header_change is not None:
        header_change(header)
    if extra is not None:  # one more tensor at the end of the data section
        name_, dtype, shape, payload = extra
        header[name_] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data = data + payload
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(join(header, data))
    return path


def load_world(path):
    return World.load(path, device="cpu", precision="fp32")


def drop_key(*keys):
    def change(config):
        node = config
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
    return change


def set_key(value, *keys):
    def change(config):
        node = config
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return change


@pytest.mark.parametrize("change,needle", [
    (drop_key("tokenizer", "patch"), "missing field 'patch'"),
    (drop_key("dynamics"), "missing field 'dynamics'"),
    (set_key("4", "tokenizer", "patch"), "must be an integer"),
    (set_key([16, 16, 3], "tokenizer", "frame_size"), "inconsistent"),
    (set_key(1, "tokenizer", "colour"), "unknown"),
    (set_key(64, "dynamics", "vocab"), "config"),  # valid on its own, but the tensors disagree
], ids=["missing-field", "missing-component", "wrong-type", "inconsistent", "unknown-field", "shape-mismatch"])
def test_config_problems_are_refused(tmp_path, tiny_parts, change, needle):
    path = world_file(tmp_path, tiny_parts, config_change=change)
    refused(path, needle, load=load_world)


def test_config_that_is_not_json_or_missing(tmp_path, tiny_parts):
    path = world_file(tmp_path, tiny_parts, "a", header_change=lambda h: h["__metadata__"].update(config="{tokenizer"))
    refused(path, "'config' metadata is not valid JSON", load=load_world)
    path = world_file(tmp_path, tiny_parts, "b", header_change=lambda h: h["__metadata__"].pop("config"))
    refused(path, "no 'config'", load=load_world)


@pytest.mark.parametrize("extra,needle", [
    (("evil.payload", "U8", [16], b"\x80\x04" + b"." * 14), "unexpected tensor 'evil.payload'"),
    (("lam.extra", "F32", [2], b"\0" * 8), "unexpected tensor 'lam.extra'"),
])
def test_extra_unknown_tensors_are_refused(tmp_path, tiny_parts, extra, needle):
    refused(world_file(tmp_path, tiny_parts, extra=extra), needle, load=load_world)


def test_dtype_or_shape_swapped_in_a_real_world(tmp_path, tiny_parts):
    name = "actions.codebook"
    swapped = world_file(tmp_path, tiny_parts, "dtype", header_change=lambda h: h[name].update(dtype="I32"))
    refused(swapped, name, "dtype", load=load_world)
    name = "tokenizer.vq.codebook"  # (32, 8): transposed, the same bytes read as (8, 32)
    transposed = world_file(tmp_path, tiny_parts, "shape",
                            header_change=lambda h: h[name].update(shape=h[name]["shape"][::-1]))
    refused(transposed, name, "shape (8, 32)", load=load_world)


def test_future_format_says_upgrade(tmp_path, tiny_parts):
    path = world_file(tmp_path, tiny_parts, header_change=lambda h: h["__metadata__"].update(format="genie-play/3"))
    refused(path, "newer genie-play", "upgrade", load=load_world)


# ----- configs that ask for an impossible or enormous model --------------------------------------------
# World.load builds the models on torch's "meta" device first (shapes only), compares them with the
# file's tensors, and only then builds them for real: an impossible value is a one-line BadBundleError
# and a config asking for a huge model allocates nothing.


@pytest.mark.parametrize("change", [
    set_key(0, "tokenizer", "patch"), set_key(3, "dynamics", "st", "heads"), set_key(-4, "dynamics", "st", "dim"),
], ids=["patch-0", "heads-not-dividing-dim", "negative-dim"])
def test_config_values_that_cannot_build_a_model_are_refused(tmp_path, tiny_parts, change):
    refused(world_file(tmp_path, tiny_parts, config_change=change), "config", load=load_world)


def test_config_asking_for_a_huge_model_is_refused_before_allocating(tmp_path, tiny_parts, monkeypatch):
    import genie_play.world

    real_build = genie_play.world.build_models

    def guarded_build(config, *args, **kwargs):
        on_meta = torch.empty(()).device.type == "meta"  # shapes only: allocates nothing
        assert on_meta or config.dynamics.st.dim < 10_000, "built a 100000-wide model from an unchecked config"
        return real_build(config, *args, **kwargs)

    monkeypatch.setattr(genie_play.world, "build_models", guarded_build)
    path = world_file(tmp_path, tiny_parts, config_change=set_key(100_000, "dynamics", "st", "dim"))
    refused(path, "dynamics", load=load_world)
