"""Training data: shard writer/reader, clip sampling, importers, CoinRun generation, `genie-play data`."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genie_play.cli import main as cli_main
from genie_play.errors import BadDataError, GenieError
from genie_play.train import data as data_mod
from genie_play.train.data import ClipDataset, DatasetWriter, open_dataset
from genie_play.train.importers import import_paths

H = W = 8
FRAME_BYTES = H * W * 3


def tagged_episode(ep_id: int, length: int) -> np.ndarray:  # (L, H, W, 3): channel 0 = episode id, 1 = frame
    frames = np.zeros((length, H, W, 3), np.uint8)
    frames[..., 0] = ep_id
    frames[..., 1] = np.arange(length, dtype=np.uint8)[:, None, None]
    return frames


def write_tagged(folder: Path, lengths: list[int], shard_frames: int = 20, **kw: object) -> None:
    with DatasetWriter(folder, (H, W), shard_bytes=shard_frames * FRAME_BYTES, **kw) as w:
        for i, n in enumerate(lengths):
            acts = np.arange(n, dtype=np.int16) % 7
            w.append_episode(tagged_episode(i + 1, n), acts, split="heldout" if i % 4 == 3 else "train",
                             source=f"ep{i}", level=100 + i)


def test_round_trip_and_clips_stay_inside_episodes(tmp_path: Path) -> None:
    lengths = [5, 12, 3, 9, 20, 7, 45]  # 45 > one shard of 20 frames: stored as parts
    write_tagged(tmp_path / "d", lengths)
    data = open_dataset(tmp_path / "d")
    assert data.frame_size == (H, W)
    assert sum(ep["length"] for ep in data.episodes) == sum(lengths)
    assert all(s["frames"] <= 20 for s in data.shards)
    for split in ("train", "heldout"):
        clips = ClipDataset(tmp_path / "d", split=split, clip_len=4)
        expected = sum(max(0, n - 3) for i, n in enumerate(lengths) if (i % 4 == 3) == (split == "heldout"))
        assert 0 < len(clips) <= expected  # parts lose the clips that would cross a part boundary
        for i in range(len(clips)):
            clip = clips[i]
            assert clip.shape == (4, H, W, 3) and clip.dtype == np.uint8
            assert len(np.unique(clip[..., 0])) == 1, "clip crosses an episode boundary"
            frame_no = clip[:, 0, 0, 1].astype(int)
            assert np.all(np.diff(frame_no) == 1)
            ep_id = int(clip[0, 0, 0, 0])
            assert clips.level_of(i) == 100 + ep_id - 1
            assert data.episodes[clips.episode_of(i)]["source"] == f"ep{ep_id - 1}"
            acts = clips.actions(i)
            assert acts.shape == (3,) and np.array_equal(acts, frame_no[:3] % 7)
    only = ClipDataset(tmp_path / "d", clip_len=4, levels=[101])
    assert {only.level_of(i) for i in range(len(only))} == {101} and len(only) == 12 - 3
    with pytest.raises(BadDataError):
        ClipDataset(tmp_path / "d", clip_len=100)
    with pytest.raises(IndexError):
        only[len(only)]


def test_sample_indices_pure_and_disjoint_across_ranks(tmp_path: Path) -> None:
    write_tagged(tmp_path / "d", [30, 30, 30], shard_frames=40)
    clips = ClipDataset(tmp_path / "d", clip_len=2)
    a = clips.sample_indices(8, seed=3, step=17)
    assert np.array_equal(a, ClipDataset(tmp_path / "d", clip_len=2).sample_indices(8, seed=3, step=17))
    assert not np.array_equal(a, clips.sample_indices(8, seed=3, step=18))
    assert a.min() >= 0 and a.max() < len(clips)
    ranks = [clips.sample_indices(8, seed=3, step=17, rank=r, world_size=4) for r in range(4)]
    assert len(np.unique(np.concatenate(ranks))) == 32
    assert np.array_equal(np.concatenate(ranks), clips.sample_indices(32, seed=3, step=17))
    assert len(clips.spread_indices(5)) == 5


def test_interrupted_write_leaves_only_complete_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "d"
    real_replace, calls = os.replace, []

    def failing_replace(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 5:  # shard 0, actions 0, index, shard 1, then the actions of shard 1 fail
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(data_mod.os, "replace", failing_replace)
    writer = DatasetWriter(folder, (H, W), shard_bytes=10 * FRAME_BYTES)
    with pytest.raises(OSError):
        for i in range(6):
            writer.append_episode(tagged_episode(i + 1, 8), np.zeros(8, np.int16), source=f"ep{i}")
    monkeypatch.setattr(data_mod.os, "replace", real_replace)
    # a killed run's leftovers: a temp file and a shard that never made it into the index
    (folder / ".shard_00009.npy.123.tmp").write_bytes(b"partial")
    (folder / "shard_00001.npy").write_bytes(b"\x93NUMPY garbage")
    data = open_dataset(folder)
    assert len(data.shards) == 1 and [ep["source"] for ep in data.episodes] == ["ep0"]
    assert len(ClipDataset(folder, clip_len=8)) == 1
    # appending later removes the leftovers and continues after the complete shard
    write_tagged(folder, [8, 8], shard_frames=10)
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
    assert [ep["source"] for ep in open_dataset(folder).episodes] == ["ep0", "ep0", "ep1"]
    with pytest.raises(ValueError):  # a bad episode is refused before anything is buffered
        DatasetWriter(folder, (H, W)).append_episode(np.zeros((3, H, W + 1, 3), np.uint8))
    assert len(open_dataset(folder).episodes) == 3


def test_bad_datasets_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(BadDataError, match="index.json missing"):
        open_dataset(tmp_path)
    write_tagged(tmp_path / "d", [10, 10])
    shard = tmp_path / "d" / "shard_00000.npy"
    shard.write_bytes(shard.read_bytes()[:-5])
    with pytest.raises(BadDataError, match="truncated") as err:
        open_dataset(tmp_path / "d")
    assert "\n" not in str(err.value) and str(tmp_path / "d") in str(err.value)
    (tmp_path / "d" / "index.json").write_text("{not json")
    with pytest.raises(BadDataError, match="corrupt"):
        open_dataset(tmp_path / "d")
    with pytest.raises(BadDataError, match="--overwrite"):
        DatasetWriter(tmp_path / "d", (H, W))
    write_tagged(tmp_path / "d", [10], overwrite=True)
    assert len(open_dataset(tmp_path / "d").episodes) == 1
    with pytest.raises(BadDataError, match="frames"):
        DatasetWriter(tmp_path / "d", (16, 16))


def make_sources(folder: Path) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    gif = [Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)) for _ in range(20)]
    gif[0].save(folder / "anim.gif", save_all=True, append_images=gif[1:], duration=50, loop=0)
    images = folder / "shots"
    images.mkdir()
    for i in range(18):  # frame2 must sort before frame10
        Image.new("RGB", (32, 24) if i else (24, 32), (i * 10, 0, 0)).save(images / f"frame{i}.png")
    av = pytest.importorskip("av")
    with av.open(str(folder / "clip.mp4"), "w") as out:
        stream = out.add_stream("mpeg4", rate=20)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(24):
            arr = np.zeros((64, 64, 3), np.uint8)
            arr[:, : 2 * i + 2] = 200
            out.mux(stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        out.mux(stream.encode())
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    (folder / "still.png").write_bytes((images / "frame0.png").read_bytes())
    return [folder / "anim.gif", images, folder / "clip.mp4", folder / "broken.mp4", folder / "still.png"]


def test_import_gif_images_video_and_skip_bad_files(tmp_path: Path) -> None:
    sources = make_sources(tmp_path / "src")
    log = io.StringIO()
    with DatasetWriter(tmp_path / "d", (16, 16), shard_bytes=10_000_000) as writer:
        report = import_paths(sources, writer, size=16, log=log, progress=False)
    lines = [line for line in log.getvalue().splitlines() if "skipped" in line]
    assert len(report.imported) == 3 and len(report.skipped) == 2, log.getvalue()
    assert any("broken.mp4" in line for line in lines) and any("single image" in line for line in lines)
    assert report.summary().startswith("imported 3 of 5 sources")
    data = open_dataset(tmp_path / "d")
    lengths = {Path(ep["source"]).name: ep["length"] for ep in data.episodes}
    assert lengths == {"anim.gif": 20, "shots": 18, "clip.mp4": 24}
    assert {ep["split"] for ep in data.episodes} == {"train", "heldout"}
    shots = next(e for e, ep in enumerate(data.episodes) if ep["source"].endswith("shots"))
    assert list(data.episode_frames(shots)[:3, 8, 8, 0] // 10) == [0, 1, 2]  # natural sort
    # re-running adds nothing; 20 -> 10 fps halves the video; a single source is split in time
    with DatasetWriter(tmp_path / "d", (16, 16)) as writer:
        again = import_paths(sources, writer, size=16, log=io.StringIO(), progress=False)
    assert len(again.already_present) == 3 and len(open_dataset(tmp_path / "d").episodes) == 3
    with DatasetWriter(tmp_path / "e", (16, 16), shard_bytes=10_000_000) as writer:
        import_paths([sources[2]], writer, size=16, fps=10, min_frames=4, heldout_fraction=0.5, log=io.StringIO(), progress=False)
    eps = open_dataset(tmp_path / "e").episodes
    assert sum(ep["length"] for ep in eps) == 12 and {ep["split"] for ep in eps} == {"train", "heldout"}


def test_cli_import_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources = make_sources(tmp_path / "src")
    assert cli_main(["data", "import", str(tmp_path / "src"), "--out", str(tmp_path / "d"), "--size", "32"]) == 0
    out = capsys.readouterr()
    assert "imported 3 of 4 sources (62 frames), 1 skipped" in out.err and "broken.mp4: skipped" in out.err
    assert cli_main(["data", "info", str(tmp_path / "d")]) == 0
    assert "32x32 frames" in capsys.readouterr().out
    assert cli_main(["data", "info", str(tmp_path / "nothing")]) == 2
    assert "index.json missing" in capsys.readouterr().err
    assert cli_main(["data", "install-coinrun", "--dry-run"]) == 0
    assert "--no-deps procgen-mirror" in capsys.readouterr().out
    assert sources


def test_coinrun_tiny_generation(tmp_path: Path) -> None:
    pytest.importorskip("procgen")
    out = tmp_path / "c"
    args = ["data", "coinrun", "--out", str(out), "--levels", "0:50", "--frames", "300", "--heldout-levels",
            "50:60", "--heldout-frames", "100", "--max-episode-frames", "60", "--envs", "4", "--seed", "1"]
    assert cli_main(args) == 0
    data = open_dataset(out)
    index = json.loads((out / "index.json").read_text())
    assert index["level_ranges"] == {"train": [[0, 50]], "heldout": [[50, 60]]}
    train = [ep for ep in data.episodes if ep["split"] == "train"]
    held = [ep for ep in data.episodes if ep["split"] == "heldout"]
    assert sum(ep["length"] for ep in train) >= 300 and sum(ep["length"] for ep in held) >= 100
    assert all(16 <= ep["length"] <= 60 for ep in data.episodes)
    assert {ep["level"] for ep in train} <= set(range(50)) and {ep["level"] for ep in held} <= set(range(50, 60))
    clips = ClipDataset(out, split="heldout", clip_len=16)
    acts = np.stack([clips.actions(i) for i in clips.spread_indices(10)])
    assert acts.min() >= 0 and acts.max() < 15  # a clip's inner actions are all known
    assert (data.actions(0) == -1).sum() == sum(1 for ep in data.episodes if ep["shard"] == 0)
    frames_a = data.episode_frames(0).copy()
    assert cli_main([*args[:3], str(tmp_path / "again"), *args[4:]]) == 0  # same seed, same data
    assert np.array_equal(open_dataset(tmp_path / "again").episode_frames(0), frames_a)
    assert cli_main([*args[:-6], "--heldout-levels", "40:60"]) == 2  # overlapping ranges refused
    assert cli_main(args) == 2  # the same generation twice is refused


def test_coinrun_missing_procgen_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from genie_play.train import coinrun

    monkeypatch.setitem(sys.modules, "procgen", None)
    with pytest.raises(GenieError, match="install-coinrun"):
        coinrun.import_procgen()
