"""`genie-play rollout` and `genie-play info` end to end on the tiny world."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageSequence

from genie_play import bundle, cli, paths
from genie_play.commands import rollout
from genie_play.errors import BadActionError
from genie_play.labels import NO_ACTION


@pytest.fixture
def prompt_png(tmp_path, prompt_image):
    path = tmp_path / "prompt.png"
    Image.fromarray(prompt_image).save(path)
    return path


def gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]


def test_parse_actions():
    assert rollout.parse_actions("0,3,3,7") == [0, 3, 3, 7]
    assert rollout.parse_actions(" 1, 2x3 ,0") == [1, 2, 2, 2, 0]
    for bad in ["", " ", "a", "1,,2", "1.5", "3x0", "0x99999999", "1;2", "2**40"]:
        with pytest.raises(BadActionError) as info:
            rollout.parse_actions(bad)
        assert "\n" not in str(info.value)
    assert rollout.parse_actions("-2") == [-2]  # syntax is fine; the range check refuses it
    assert rollout.parse_actions("3, nx2") == [3, NO_ACTION, NO_ACTION]  # n: no action (a released key)
    with pytest.raises(BadActionError, match=r"outside \[0, 8\)"):
        rollout.check_action_range([0, -2], 8, "w")
    rollout.check_action_range([0, NO_ACTION], 8, "w")
    with pytest.raises(BadActionError, match="outside"):
        rollout.check_action_range([2**40], 8, "w")


def test_rollout_writes_the_worlds_frames(tiny_world_path, prompt_png, tmp_path, capsys):
    out = tmp_path / "out" / "run.gif"
    code = cli.main(["rollout", str(prompt_png), "--world", str(tiny_world_path), "--actions", "0,3,3,7",
                     "--out", str(out), "--steps", "2", "--seed", "5", "--scale", "1", "--device", "cpu"])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(out)
    got = gif_frames(out)
    assert len(got) == 5 and got[0].shape == (16, 16, 3)

    from genie_play import World

    world = World.load(tiny_world_path, device="cpu")
    world.sampling = dict(steps=2, temperature=1.0)
    want = world.rollout(np.asarray(Image.open(prompt_png).convert("RGB")), [0, 3, 3, 7], seed=5)
    for a, b in zip(got, want):  # 16x16 frames have <= 256 colours: the GIF palette is exact
        assert np.array_equal(a, b)


def test_rollout_captions_and_scale(tiny_world_path, prompt_png, tmp_path):
    out = tmp_path / "cap.gif"
    assert cli.main(["rollout", str(prompt_png), "--world", str(tiny_world_path), "--actions", "1x2",
                     "--out", str(out), "--steps", "1", "--scale", "4", "--captions", "--device", "cpu"]) == 0
    got = gif_frames(out)
    assert len(got) == 3 and got[0].shape[1] == 64 and got[0].shape[0] > 64
    assert rollout.captions_for([1, 1], ["right", "jump"]) == ["prompt", "1: 1 jump", "2: 1 jump"]
    assert rollout.captions_for([1, NO_ACTION], ["right", "jump"])[2] == "2: no action"


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--actions", "0,8"], "outside [0, 8)"),
        (["--actions", "0,-2"], "outside"),
        (["--actions", "1099511627776"], "outside"),
        (["--actions", "left"], "not an action index"),
        (["--actions", "0", "--steps", "0"], "--steps"),
        (["--actions", "0", "--steps", "1000000"], "--steps"),
        (["--actions", "0", "--temperature", "-1"], "--temperature"),
        (["--actions", "0", "--temperature", "nan"], "--temperature"),
        (["--actions", "0", "--out-suffix", ".avi"], ".gif or .mp4"),
    ],
)
def test_rollout_bad_input_exits_2_with_one_line(tiny_world_path, prompt_png, tmp_path, capsys, extra, needle):
    out = tmp_path / "bad.gif"
    if "--out-suffix" in extra:
        out, extra = tmp_path / f"bad{extra[-1]}", extra[:-2]
    code = cli.main(["rollout", str(prompt_png), "--world", str(tiny_world_path), "--out", str(out),
                     "--device", "cpu", "--steps", "1", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len([line for line in err if line.startswith("genie-play: error:")]) == 1 and needle in err[-1]
    assert not out.exists()


def test_rollout_bad_image_and_world(tiny_world_path, tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    out = tmp_path / "x.gif"
    assert cli.main(["rollout", str(text), "--world", str(tiny_world_path), "--actions", "0", "--out", str(out)]) == 2
    assert "notes.png" in capsys.readouterr().err
    png = tmp_path / "ok.png"
    Image.new("RGB", (8, 8)).save(png)
    assert cli.main(["rollout", str(png), "--world", "no-such-world", "--actions", "0", "--out", str(out)]) == 2
    assert "no-such-world" in capsys.readouterr().err
    assert not out.exists()


# ----------------------------------------------------------------------------------------- info


@pytest.fixture
def world_dirs(tmp_path, monkeypatch, tiny_world_path):
    user, bundled = tmp_path / "user", tmp_path / "bundled"
    user.mkdir()
    bundled.mkdir()
    shutil.copy(tiny_world_path, bundled / "coinrun.safetensors")
    shutil.copy(tiny_world_path, user / "mine.safetensors")
    (user / "broken.safetensors").write_bytes(b"<html>oops</html>")
    monkeypatch.setattr(paths, "user_worlds_dir", lambda: user)
    monkeypatch.setattr(paths, "bundled_weights_dir", lambda: bundled)
    return user, bundled


def test_info_lists_worlds(world_dirs, tiny_world_path, capsys):
    assert cli.main(["info"]) == 0
    text = capsys.readouterr().out
    world_id = bundle.read_bundle(tiny_world_path).world_id
    assert "coinrun  [bundled]" in text and "mine  [user]" in text and "broken  [user]" in text
    assert world_id[:12] in text and "genie-play/1" in text
    assert "frames 16x16" in text and "16 tokens/frame" in text and "32 codes" in text and "8 actions" in text
    assert "tokenizer:" in text and "dynamics:" in text and "M params" in text
    assert "0=right" in text and "BROKEN" in text


def test_info_json(world_dirs, tiny_world_path, capsys):
    assert cli.main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_name = {w["name"]: w for w in data["worlds"]}
    assert set(by_name) == {"coinrun", "mine", "broken"}
    assert by_name["coinrun"]["world_id"] == bundle.read_bundle(tiny_world_path).world_id
    assert by_name["coinrun"]["labels"][0] == "right" and by_name["coinrun"]["params"]["tokenizer"] > 0
    assert by_name["broken"]["error"] and "HTML" in by_name["broken"]["error"]
    assert data["search"]["user"].endswith("user")


def test_info_one_world_and_empty(world_dirs, tiny_world_path, capsys, tmp_path, monkeypatch):
    assert cli.main(["info", str(tiny_world_path)]) == 0
    assert "tiny  [path]" in capsys.readouterr().out
    assert cli.main(["info", "nothing-here"]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(paths, "user_worlds_dir", lambda: empty)
    monkeypatch.setattr(paths, "bundled_weights_dir", lambda: empty / "missing")
    assert cli.main(["info"]) == 0
    assert "no worlds found" in capsys.readouterr().out
