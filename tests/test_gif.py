"""GIF/PNG output: exact frame count, valid files, captions, scale, atomic writes."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image, ImageSequence

from genie_play import gif
from genie_play.errors import GenieError, OutputError


def frames_of(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        assert im.format == "GIF"
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]


def clip(t=5, h=8, w=12, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_exact_frame_count_even_with_identical_frames(tmp_path):
    frames = clip(6)
    frames[2] = frames[1]
    frames[3] = frames[1]  # a held action: Pillow's writer would merge these into one frame
    path = gif.write_gif(tmp_path / "run.gif", frames, fps=10)
    assert path == tmp_path / "run.gif"
    got = frames_of(path)
    assert len(got) == 6 and all(f.shape == (8, 12, 3) for f in got)
    with Image.open(path) as im:
        assert im.n_frames == 6 and im.is_animated and im.info.get("loop") == 0


def test_few_colour_frames_are_exact(tmp_path):
    frames = np.zeros((4, 6, 6, 3), np.uint8)
    frames[0, :, :3] = [255, 0, 0]
    frames[1] = [0, 0, 255]
    frames[2, 2:4, 2:4] = [10, 200, 30]
    frames[3] = frames[2]
    got = frames_of(gif.write_gif(tmp_path / "c.gif", frames))
    assert all(np.array_equal(a, b) for a, b in zip(got, frames))


def test_random_frames_are_close(tmp_path):
    frames = clip(3, 16, 16)
    got = frames_of(gif.write_gif(tmp_path / "r.gif", frames))
    for a, b in zip(got, frames):
        assert np.abs(a.astype(int) - b).mean() < 12  # 256-colour palette per frame


def test_single_frame(tmp_path):
    assert len(frames_of(gif.write_gif(tmp_path / "one.gif", clip(1)))) == 1


def test_durations(tmp_path):
    path = gif.write_gif(tmp_path / "d.gif", clip(3), durations_ms=[100, 250, 37])
    with Image.open(path) as im:
        got = []
        for f in ImageSequence.Iterator(im):
            got.append(f.info["duration"])
    assert got == [100, 250, 40]  # GIF stores centiseconds
    path = gif.write_gif(tmp_path / "f.gif", clip(2), fps=4)
    with Image.open(path) as im:
        assert im.info["duration"] == 250
    with pytest.raises(ValueError):
        gif.write_gif(tmp_path / "x.gif", clip(3), durations_ms=[100])


def test_scale_is_nearest(tmp_path):
    frames = clip(2, 4, 5)
    got = frames_of(gif.write_gif(tmp_path / "s.gif", frames, scale=3))
    assert got[0].shape == (12, 15, 3)
    frames_exact = np.zeros((2, 4, 5, 3), np.uint8)
    frames_exact[:, 1, 2] = [255, 255, 0]
    got = frames_of(gif.write_gif(tmp_path / "n.gif", frames_exact, scale=3))
    assert (got[0][3:6, 6:9] == [255, 255, 0]).all() and (got[0][0:3, 6:9] == 0).all()


def test_captions_add_a_strip_with_text(tmp_path):
    frames = np.full((3, 16, 16, 3), 90, np.uint8)
    plain = gif.write_gif(tmp_path / "p.gif", frames, scale=4)
    captioned = gif.write_gif(tmp_path / "c.gif", frames, scale=4, captions=["prompt", "1: 3 jump", "2: 3 a very long label that cannot fit"])
    a, b = frames_of(plain), frames_of(captioned)
    assert len(b) == 3 and b[0].shape[1] == 64 and b[0].shape[0] > 64
    assert np.array_equal(b[0][:64], a[0])  # the picture itself is untouched
    strip = b[1][64:]
    assert strip.max() > 200 and strip.min() < 50  # white text on black
    assert not np.array_equal(b[1][64:], b[2][64:])  # different captions, different strips
    with pytest.raises(ValueError):
        gif.write_gif(tmp_path / "x.gif", frames, captions=["too few"])


def test_bad_frames_are_programming_errors(tmp_path):
    for bad in (np.zeros((0, 4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8), np.zeros((2, 4, 4, 3), np.float32)):
        with pytest.raises(ValueError):
            gif.write_gif(tmp_path / "x.gif", bad)
    with pytest.raises(ValueError):
        gif.write_gif(tmp_path / "x.gif", clip(2), scale=0)


def test_png(tmp_path):
    frame = clip(1, 5, 7)[0]
    path = gif.write_png(tmp_path / "f.png", frame, scale=2)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (14, 10)
        assert np.array_equal(np.asarray(im.convert("RGB"))[::2, ::2], frame)
    with Image.open(gif.write_png(tmp_path / "c.png", frame, scale=4, caption="hello")) as im:
        assert im.size[1] > 20


def test_atomic_failure_keeps_earlier_file_and_leaves_no_partial(tmp_path, monkeypatch):
    path = tmp_path / "run.gif"
    gif.write_gif(path, clip(2))
    before = path.read_bytes()
    real_open = open

    class Dying:
        """A file whose write writes half and then 'dies', like a kill or a full disk."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise KeyboardInterrupt  # not an OSError: the cleanup path must still run

        def flush(self):
            pass

    def dying_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return Dying(f) if "w" in mode and str(file).endswith(".tmp") else f

    monkeypatch.setattr("builtins.open", dying_open)
    with pytest.raises(KeyboardInterrupt):
        gif.write_gif(path, clip(4, seed=1))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["run.gif"]
    # and with no earlier file, nothing appears at the final path
    with monkeypatch.context() as m:
        m.setattr("builtins.open", dying_open)
        with pytest.raises(KeyboardInterrupt):
            gif.write_gif(tmp_path / "new.gif", clip(2))
    assert sorted(os.listdir(tmp_path)) == ["run.gif"]


def test_killed_process_never_leaves_a_partial_file(tmp_path):
    """SIGKILL in the middle of writing: the final path holds the old file or nothing."""
    import signal
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "run.gif"
    gif.write_gif(path, clip(2))
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from genie_play import gif
        real_open = open
        class Killer:
            def __init__(self, f): self.f = f
            def __enter__(self): return self
            def __exit__(self, *a): self.f.close()
            def flush(self): self.f.flush()
            def write(self, data):
                self.f.write(data[: len(data) // 2]); self.f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        import builtins
        builtins.open = lambda file, mode="r", *a, **k: (Killer(real_open(file, mode, *a, **k))
            if "w" in mode and str(file).endswith(".tmp") else real_open(file, mode, *a, **k))
        gif.write_gif({str(path)!r}, np.zeros((3, 8, 8, 3), np.uint8))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert path.read_bytes() == before
    leftovers = [n for n in os.listdir(tmp_path) if n != "run.gif"]
    assert all(n.startswith(".run.gif.") and n.endswith(".tmp") for n in leftovers)


def test_unwritable_folder_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError) as info:
        gif.write_gif(blocker / "sub" / "run.gif", clip(2))
    assert isinstance(info.value, GenieError) and "\n" not in str(info.value) and "run.gif" in str(info.value)
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(OutputError, match="ermission"):
                gif.write_png(locked / "f.png", clip(1)[0])
        finally:
            locked.chmod(0o700)


def test_missing_folder_is_created(tmp_path):
    path = gif.write_gif(tmp_path / "a" / "b" / "run.gif", clip(2))
    assert path.is_file()


def test_unwritable_folder_simulated(tmp_path, monkeypatch):
    """A folder we may not write to (also when the tests run as root), and a full disk."""
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(OutputError, match="Permission denied.*choose a folder"):
        gif.write_gif(tmp_path / "run.gif", clip(2))
    monkeypatch.undo()

    real_open = open

    def full_disk(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).endswith(".tmp"):
            raise OSError(28, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk)
    with pytest.raises(OutputError, match="No space left.*free some disk space"):
        gif.write_gif(tmp_path / "run.gif", clip(2))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []
