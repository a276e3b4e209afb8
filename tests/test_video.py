"""MP4 video (issue 19): exact frame count and timing, atomic writes, the player's Shift+G, rollout --out .mp4."""
from __future__ import annotations

import os
import sys

import numpy as np
import pygame
import pytest

from genie_play import cli, video
from genie_play.errors import BadSettingError, OutputError
from test_player import make_app, pump, tap  # noqa: F401 -- make_app is a fixture

pytest.importorskip("av")


def clip(t=5, h=8, w=12, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_mp4_has_every_frame_with_its_real_timing(tmp_path):
    frames = clip(6)
    frames[2] = frames[3] = frames[1]  # identical frames are still frames of their own
    path = video.write_mp4(tmp_path / "run.mp4", frames, durations_ms=[100, 250, 37, 40, 500, 80], scale=4)
    got, times = video.read_video_frames(path)
    assert got.shape == (6, 32, 48, 3)
    assert times == pytest.approx([0.0, 0.1, 0.35, 0.387, 0.427, 0.927], abs=1e-3)
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert float(stream.duration * stream.time_base) == pytest.approx(1.007, abs=2e-3)  # the last frame too


def test_mp4_pixels_are_close_and_odd_sides_are_padded(tmp_path):
    frames = np.zeros((3, 7, 9, 3), np.uint8)
    frames[:, :, :4] = [200, 40, 40]
    frames[1, 3:] = [30, 180, 60]
    got, _ = video.read_video_frames(video.write_mp4(tmp_path / "odd.mp4", frames, fps=5, scale=3))
    assert got.shape == (3, 22, 28, 3)  # 21x27 made even
    assert np.abs(got[:, :21, :27].astype(int) - np.repeat(np.repeat(frames, 3, 1), 3, 2)).mean() < 8


def test_fixed_fps_keeps_its_average():
    assert video.frame_durations_ms(3, 30, None) == [33, 34, 33]
    assert video.frame_durations_ms(2, None, [12.4, 0]) == [12, 1]
    with pytest.raises(ValueError):
        video.frame_durations_ms(3, None, [1, 2])


def test_a_full_disk_keeps_the_earlier_video_and_leaves_nothing_else(tmp_path, monkeypatch):
    path = video.write_mp4(tmp_path / "run.mp4", clip(2))
    before = path.read_bytes()

    def full(target, frames, durations_ms, crf=18):
        with open(target, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(video, "encode_mp4", full)
    with pytest.raises(OutputError, match="No space left.*free some disk space"):
        video.write_mp4(path, clip(4, seed=1))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["run.mp4"]


def test_an_encoder_failure_is_a_one_line_output_error(tmp_path, monkeypatch):
    import av

    def broken(target, frames, durations_ms, crf=18):
        raise av.ExternalError(-542398533, "Generic error in an external library")

    monkeypatch.setattr(video, "encode_mp4", broken)
    with pytest.raises(OutputError, match="encoder failed") as info:
        video.write_mp4(tmp_path / "x.mp4", clip(2))
    assert "\n" not in str(info.value) and os.listdir(tmp_path) == []


def test_without_pyav_the_message_says_how_to_install_it(tmp_path, monkeypatch, capsys, prompt_path,
                                                        tiny_world_path):
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(BadSettingError, match=r"genie-play\[video\]"):
        video.write_mp4(tmp_path / "x.mp4", clip(2))
    code = cli.main(["rollout", str(prompt_path), "--world", str(tiny_world_path), "--actions", "0",
                     "--out", str(tmp_path / "run.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "pip install" in err[-1] and not (tmp_path / "run.mp4").exists()
    code = cli.main(["play", "--world", str(tiny_world_path), "--record-format", "mp4"])
    assert code == 2 and "PyAV" in capsys.readouterr().err


def test_rollout_writes_an_mp4_of_the_worlds_frames(tiny_world_path, prompt_path, tmp_path, capsys):
    out = tmp_path / "run.mp4"
    code = cli.main(["rollout", str(prompt_path), "--world", str(tiny_world_path), "--actions", "0,3x3",
                     "--out", str(out), "--steps", "2", "--scale", "2", "--fps", "8", "--device", "cpu"])
    assert code == 0 and capsys.readouterr().out.strip() == str(out)
    got, times = video.read_video_frames(out)
    assert got.shape == (5, 32, 32, 3) and times == pytest.approx([0, 0.125, 0.25, 0.375, 0.5], abs=1e-3)


def shift_g() -> None:
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_g, mod=pygame.KMOD_LSHIFT, unicode="G"))
    pygame.event.post(pygame.event.Event(pygame.KEYUP, key=pygame.K_g, mod=pygame.KMOD_LSHIFT))


def test_shift_g_records_an_mp4_with_the_recorded_frame_count(make_app, tmp_path):  # noqa: F811
    app, spy = make_app(record_scale=2)
    shift_g()
    pump(app, lambda: app.recorder.active)
    assert app.recorder.current.video_format == "mp4" and "MP4" in app.message
    tap(pygame.K_1, pygame.K_2, pygame.K_3)
    pump(app, lambda: app.settled() and app.state.step == 3)
    recorded = len(app.recorder.current.frames)
    tap(pygame.K_g)
    pump(app, lambda: not app.recorder.active)
    app.wait_for_files()
    app.tick()
    got, times = video.read_video_frames(tmp_path / "out" / "genie_play.mp4")
    assert recorded == 4 and got.shape[:3:2] == (4, 32) and got.shape[1] > 32  # start + 3 steps, scale 2, captions
    assert times == sorted(times) and "saved MP4 (4 frames)" in app.message
    assert not (tmp_path / "out" / "genie_play.gif").exists()


def test_record_format_mp4_makes_g_record_mp4_and_shift_g_gif(make_app):  # noqa: F811
    app, spy = make_app(record_format="mp4")
    tap(pygame.K_g)
    pump(app, lambda: app.recorder.active)
    assert app.recorder.current.video_format == "mp4"
    tap(pygame.K_g)
    pump(app, lambda: not app.recorder.active)
    shift_g()
    pump(app, lambda: app.recorder.active)
    assert app.recorder.current.video_format == "gif"
