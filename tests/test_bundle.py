"""World bundle format: round trip, identity, every kind of bad file, name resolution."""
from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch

from genie_play import bundle, paths
from genie_play.errors import BadBundleError, WorldNotFoundError

CONFIG = {"tokenizer": {"frame_size": [16, 16], "patch": 4}, "dynamics": {"num_actions": 8}}
LABELS = ["right", "jump", "", "left", "a4", "a5", "a6", "a7"]


def make_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "tokenizer.w": torch.randn(4, 3, generator=g),
        "tokenizer.b": torch.randn(3, generator=g),
        "dynamics.w": torch.randn(2, 5, generator=g),
        "dynamics.count": torch.arange(6),  # integer buffer: never cast
        "actions.codebook": torch.randn(8, 2, generator=g),
    }


def expected_of(tensors: dict[str, torch.Tensor]) -> dict:
    return {k: (tuple(v.shape), str(v.dtype)) for k, v in tensors.items()}


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.safetensors"
    bundle.save_bundle(path, make_tensors(), CONFIG, labels=LABELS, card={"steps": 10}, dtype=None)
    return path


def split(path):
    """(header dict, data bytes) of a safetensors file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def join(path, header: dict, data: bytes):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def refused(path, *needles: str) -> str:
    with pytest.raises(BadBundleError) as info:
        bundle.read_bundle(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for needle in needles:
        assert needle in message, message
    return message


# --------------------------------------------------------------------------------------- good files


def test_round_trip_fp32_is_exact(good):
    b = bundle.read_bundle(good)
    src = make_tensors()
    assert set(b.tensors) == set(src)
    for name, t in src.items():
        assert b.tensors[name].dtype == t.dtype and torch.equal(b.tensors[name], t)
    assert b.config == CONFIG and b.labels == LABELS and b.card == {"steps": 10}
    assert b.format == bundle.FORMAT and len(b.world_id) == 64
    bundle.check_tensors(b, expected_of(src))


def test_default_dtype_is_bf16_and_ints_stay(tmp_path):
    path = tmp_path / "w.safetensors"
    bundle.save_bundle(path, make_tensors(), CONFIG)
    b = bundle.read_bundle(path)
    assert b.tensors["tokenizer.w"].dtype == torch.bfloat16
    assert b.tensors["dynamics.count"].dtype == torch.int64
    assert torch.equal(b.tensors["tokenizer.w"], make_tensors()["tokenizer.w"].bfloat16())
    bundle.check_tensors(b, expected_of(make_tensors()))  # fp32 expected, bf16 stored: accepted
    assert b.labels is None and b.card is None


def test_tied_weights_are_saved(tmp_path):
    w = torch.randn(3, 3)
    path = tmp_path / "t.safetensors"
    bundle.save_bundle(path, {"tokenizer.a": w, "dynamics.a": w}, CONFIG, dtype=None)
    b = bundle.read_bundle(path)
    assert torch.equal(b.tensors["tokenizer.a"], b.tensors["dynamics.a"])


def test_unnamespaced_tensor_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError):
        bundle.save_bundle(tmp_path / "x.safetensors", {"w": torch.zeros(1)}, CONFIG)


def test_world_id_stable_under_metadata_edits(good):
    before = bundle.read_bundle(good)
    bundle.update_bundle_metadata(good, labels=["x"] * 8, card={"steps": 99})
    after = bundle.read_bundle(good)
    assert after.labels == ["x"] * 8 and after.card == {"steps": 99} and after.config == CONFIG
    assert after.world_id == before.world_id
    for name, t in before.tensors.items():
        assert torch.equal(after.tensors[name], t)
    bundle.update_bundle_metadata(good, card={"steps": 1})  # labels=None keeps them
    assert bundle.read_bundle(good).labels == ["x"] * 8


def test_world_id_changes_with_weights_and_ignores_tensor_order(tmp_path):
    a, b, c = (tmp_path / f"{n}.safetensors" for n in "abc")
    tensors = make_tensors()
    bundle.save_bundle(a, tensors, CONFIG, dtype=None)
    bundle.save_bundle(b, dict(reversed(list(tensors.items()))), {"other": 1}, dtype=None)
    changed = dict(tensors, **{"tokenizer.b": tensors["tokenizer.b"] + 1})
    bundle.save_bundle(c, changed, CONFIG, dtype=None)
    ids = [bundle.read_bundle(p).world_id for p in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]


def test_save_is_atomic_and_keeps_old_file_on_failure(good, monkeypatch):
    import safetensors.torch

    old = good.read_bytes()

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    from genie_play.errors import OutputError

    with pytest.raises(OutputError, match="No space left"):
        bundle.save_bundle(good, make_tensors(), CONFIG)
    assert good.read_bytes() == old
    assert [p.name for p in good.parent.iterdir()] == [good.name]  # no temp file left behind


# ---------------------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("keep", [0, 3, 7, 8, 20, "header-1", "header", "header+5", "last-1"])
def test_truncated(good, tmp_path, keep):
    raw = good.read_bytes()
    n = 8 + struct.unpack("<Q", raw[:8])[0]
    cut = {"header-1": n - 1, "header": n, "header+5": n + 5, "last-1": len(raw) - 1}.get(keep, keep)
    path = tmp_path / "cut.safetensors"
    path.write_bytes(raw[:cut])
    refused(path)


def test_lying_header_length_allocates_nothing(good, tmp_path, monkeypatch):
    raw = good.read_bytes()
    path = tmp_path / "liar.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + raw[8:])
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: pytest.fail("loaded a lying file"))
    refused(path, "header length")
    path.write_bytes(struct.pack("<Q", 200 * 1024 * 1024) + b"{" + b" " * 100)
    refused(path, "header length")


def test_lying_tensor_offsets(good, tmp_path):
    header, data = split(good)
    header["tokenizer.w"]["data_offsets"][1] += 10**12  # points far past the end
    refused(join(tmp_path / "a.safetensors", header, data), "truncated")
    header, data = split(good)
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"] = [0, 0]
    refused(join(tmp_path / "b.safetensors", header, data))


@pytest.mark.parametrize("change", [("dtype", "F16"), ("dtype", "BF16"), ("shape", [4, 4]), ("shape", [3, 4, 1, 1, 2])])
def test_dtype_or_shape_that_does_not_fit_the_bytes(good, tmp_path, change):
    header, data = split(good)
    header["tokenizer.w"][change[0]] = change[1]
    refused(join(tmp_path / "x.safetensors", header, data), "tokenizer.w")


def test_dtype_or_shape_swapped_consistently_is_caught_by_check_tensors(good, tmp_path):
    header, data = split(good)
    header["tokenizer.w"]["dtype"] = "I32"  # same byte size: the file itself is consistent
    b = bundle.read_bundle(join(tmp_path / "i.safetensors", header, data))
    with pytest.raises(BadBundleError, match="tokenizer.w.*dtype"):
        bundle.check_tensors(b, expected_of(make_tensors()))
    header, data = split(good)
    header["tokenizer.w"]["shape"] = [3, 4]  # transposed
    b = bundle.read_bundle(join(tmp_path / "s.safetensors", header, data))
    with pytest.raises(BadBundleError, match=r"tokenizer.w.*shape \(3, 4\)"):
        bundle.check_tensors(b, expected_of(make_tensors()))


def test_missing_and_extra_tensors(tmp_path):
    tensors = make_tensors()
    path = tmp_path / "m.safetensors"
    bundle.save_bundle(path, {k: v for k, v in tensors.items() if k != "dynamics.w"}, CONFIG)
    with pytest.raises(BadBundleError, match="'dynamics.w' is missing") as info:
        bundle.check_tensors(bundle.read_bundle(path), expected_of(tensors))
    assert "\n" not in str(info.value)
    bundle.save_bundle(path, dict(tensors, **{"lam.extra": torch.zeros(2)}), CONFIG)
    with pytest.raises(BadBundleError, match="unexpected tensor 'lam.extra'"):
        bundle.check_tensors(bundle.read_bundle(path), expected_of(tensors))


@pytest.mark.parametrize("config", ["{not json", "[1, 2]", None])
def test_bad_or_missing_config(good, tmp_path, config):
    header, data = split(good)
    if config is None:
        del header["__metadata__"]["config"]
    else:
        header["__metadata__"]["config"] = config
    refused(join(tmp_path / "c.safetensors", header, data), "config")


def test_bad_labels_or_card(good, tmp_path):
    header, data = split(good)
    header["__metadata__"]["labels"] = "[1, 2]"
    refused(join(tmp_path / "l.safetensors", header, data), "labels")
    header, data = split(good)
    header["__metadata__"]["card"] = "{"
    refused(join(tmp_path / "k.safetensors", header, data), "card")


@pytest.mark.parametrize("fmt,needle", [("genie-play/2", "newer genie-play"), ("genie-play/17.3", "upgrade"),
                                        ("genie-play/0", "unknown format"), ("something-else/1", "not a genie-play"),
                                        (None, "format")])
def test_format_versions(good, tmp_path, fmt, needle):
    header, data = split(good)
    if fmt is None:
        del header["__metadata__"]["format"]
    else:
        header["__metadata__"]["format"] = fmt
    refused(join(tmp_path / "f.safetensors", header, data), needle)


def test_plain_safetensors_without_metadata(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, path)
    refused(path, "metadata")


def test_pickle_renamed_is_refused_and_never_unpickled(tmp_path, no_unpickling):
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"tokenizer.w": [1.0, 2.0] * 100, "config": CONFIG}, protocol=4))
    refused(path, "pickle")


def test_torch_zip_checkpoint_renamed_is_refused(tmp_path, no_unpickling):
    import zipfile

    path = tmp_path / "ckpt.safetensors"
    with zipfile.ZipFile(path, "w") as z:  # the layout of torch.save, made without torch.save
        z.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    refused(path, "zip")


def test_html_zero_bytes_directory_missing(tmp_path):
    html = tmp_path / "coinrun.safetensors"
    html.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>" + " " * 100)
    refused(html, "HTML")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    refused(empty, "too short")
    folder = tmp_path / "folder.safetensors"
    folder.mkdir()
    refused(folder, "directory")
    refused(tmp_path / "nope.safetensors", "no such file")


def test_garbage_header_json(tmp_path):
    path = tmp_path / "g.safetensors"
    text = b"\xff\xfe not json at all"
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 16)
    refused(path, "JSON")
    text = b"[1, 2, 3]"
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    refused(path, "JSON object")


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads everything")
def test_unreadable_bundle(good):
    good.chmod(0)
    try:
        refused(good, "permission")
    finally:
        good.chmod(0o644)


# ------------------------------------------------------------------------------------ name lookup


@pytest.fixture
def world_dirs(tmp_path, monkeypatch):
    user, bundled = tmp_path / "user" / "worlds", tmp_path / "pkg" / "weights"
    user.mkdir(parents=True)
    bundled.mkdir(parents=True)
    monkeypatch.setattr(paths, "user_worlds_dir", lambda: user)
    monkeypatch.setattr(paths, "bundled_weights_dir", lambda: bundled)
    monkeypatch.chdir(tmp_path)
    return user, bundled


def test_resolve_order(world_dirs, tmp_path):
    user, bundled = world_dirs
    bundle.save_bundle(bundled / "coinrun.safetensors", make_tensors(), CONFIG)
    assert bundle.resolve_world("coinrun") == bundled / "coinrun.safetensors"
    assert bundle.resolve_world(None) == bundled / "coinrun.safetensors"  # the default world
    bundle.save_bundle(user / "coinrun.safetensors", make_tensors(), CONFIG)
    assert bundle.resolve_world("coinrun") == user / "coinrun.safetensors"
    assert bundle.resolve_world("coinrun.safetensors") == user / "coinrun.safetensors"
    (tmp_path / "coinrun").mkdir()  # a dataset folder of the same name does not shadow the world
    assert bundle.resolve_world("coinrun") == user / "coinrun.safetensors"
    local = tmp_path / "mine.safetensors"
    bundle.save_bundle(local, make_tensors(), CONFIG)
    assert bundle.resolve_world(str(local)) == local
    assert bundle.resolve_world(local) == local


def test_not_found_lists_places(world_dirs):
    user, bundled = world_dirs
    bundle.save_bundle(bundled / "coinrun.safetensors", make_tensors(), CONFIG)
    with pytest.raises(WorldNotFoundError) as info:
        bundle.resolve_world("platformer")
    message = str(info.value)
    assert "\n" not in message
    assert str(user / "platformer.safetensors") in message and str(bundled / "platformer.safetensors") in message
    assert "available: coinrun" in message
    with pytest.raises(WorldNotFoundError, match="not found"):
        bundle.resolve_world("./no/such/file.safetensors")


def test_list_worlds(world_dirs):
    user, bundled = world_dirs
    bundle.save_bundle(bundled / "coinrun.safetensors", make_tensors(), CONFIG, labels=LABELS)
    bundle.save_bundle(user / "coinrun.safetensors", make_tensors(), CONFIG)
    (user / "broken.safetensors").write_bytes(b"nope")
    (user / "notes.txt").write_text("ignored")
    entries = bundle.list_worlds()
    assert [(e.name, e.where) for e in entries] == [("broken", "user"), ("coinrun", "user"), ("coinrun", "bundled")]
    broken, mine, shipped = entries
    assert broken.header is None and "too short" in broken.error
    assert mine.header.config == CONFIG and not mine.shadowed
    assert shipped.shadowed and shipped.header.labels == LABELS and shipped.size > 0
    assert bundle.compute_world_id(shipped.header) == bundle.read_bundle(shipped.path).world_id


def test_unreadable_bundle_simulated(good, monkeypatch):
    """The same as above, also when the tests run as root: the open itself is refused."""

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    from genie_play import safetensors_header

    monkeypatch.setattr(safetensors_header, "open", denied, raising=False)
    refused(good, "permission denied")
