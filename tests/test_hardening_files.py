"""Files the user cares about under stress (issue 8): recordings into a folder that cannot be
written, and labels written by two player processes at once."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pygame
import pytest
from PIL import Image

from genie_play.errors import OutputError
from genie_play.labels import ActionLabels
from genie_play.player import hud, session
from genie_play.player.session import FileWriter, Recording
from test_player import make_app, pump, tap  # noqa: F401 -- make_app is a fixture

REPO = Path(__file__).resolve().parents[1]
WORLD = "c" * 64
DEFAULTS = ["right", "jump", "left", "stay", "", "", "", ""]


# ----- recording into a folder that cannot be written ------------------------------------------------------
@pytest.fixture
def spare_dir(tmp_path, monkeypatch):
    """Where recordings go when the chosen folder fails (instead of the system temp dir)."""
    spare = tmp_path / "spare"
    monkeypatch.setattr(session, "default_fallback_dir", lambda: spare)
    return spare


def gif_frames(path: Path) -> int:
    with Image.open(path) as im:
        assert im.format == "GIF"
        return im.n_frames


def test_unwritable_record_dir_is_reported_on_screen_and_play_goes_on(make_app, tmp_path, spare_dir):  # noqa: F811
    (tmp_path / "out").write_text("a file where the record folder should be")  # mkdir fails, even as root
    app, spy = make_app()
    tap(pygame.K_g)
    pump(app, lambda: app.recorder.active)
    tap(pygame.K_1, pygame.K_2)
    pump(app, lambda: app.settled() and app.state.step == 2)
    tap(pygame.K_g)
    pump(app, lambda: not app.recorder.active)
    app.wait_for_files()
    app.tick()
    # on screen: what went wrong, where the GIF went instead, and how to choose a folder
    assert str(tmp_path / "out") in app.message and "not writable" in app.message, app.message
    assert str(spare_dir / "genie_play.gif") in app.message and "--record-dir" in app.message
    assert app._message_colour == hud.ERROR
    assert gif_frames(spare_dir / "genie_play.gif") == 3  # nothing lost: start + 2 steps
    assert (tmp_path / "out").read_text().startswith("a file")  # and nothing was overwritten
    # play goes on, and so does recording
    tap(pygame.K_3, pygame.K_p)
    pump(app, lambda: app.settled() and app.state.step == 3)
    app.wait_for_files()
    app.tick()
    assert app.running and (spare_dir / "genie_play-frame.png").is_file()


def test_when_no_folder_at_all_can_be_written_the_message_says_so(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    writer = FileWriter(lambda: blocker / "out", fallback=lambda: blocker / "spare")
    rec = Recording()
    for t in range(3):
        rec.add(np.full((8, 8, 3), 40 * t, np.uint8), float(t), f"{t}")
    writer.save_gif(rec, 3.0, fps=None, scale=1, captions=False)
    writer.join()
    ok, text = writer.messages.popleft()
    assert not ok and "could not save" in text and str(blocker / "out") in text and "--record-dir" in text
    assert "\n" not in text


def test_permission_denied_from_the_gif_writer_falls_back(tmp_path, monkeypatch):
    """A folder that exists but refuses writes (simulated: the tests may run as root)."""
    import genie_play.gif

    real = genie_play.gif.write_gif
    chosen = tmp_path / "locked"

    def write_gif(path, *args, **kwargs):
        if Path(path).parent == chosen:
            raise OutputError(f"{path}: cannot write (Permission denied); choose a folder you can write to")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(genie_play.gif, "write_gif", write_gif)
    writer = FileWriter(lambda: chosen, fallback=lambda: tmp_path / "spare")
    rec = Recording()
    rec.add(np.zeros((8, 8, 3), np.uint8), 0.0, "start")
    writer.save_gif(rec, 1.0, fps=10, scale=1, captions=True)
    writer.join()
    ok, text = writer.messages.popleft()
    assert not ok and "Permission denied" in text and str(tmp_path / "spare" / "genie_play.gif") in text
    assert gif_frames(tmp_path / "spare" / "genie_play.gif") == 1


# ----- two player windows writing the labels of the same world -------------------------------------------
WRITER = r"""
import sys
sys.path.insert(0, {repo!r})
from genie_play.labels import ActionLabels
n, saves = int(sys.argv[1]), int(sys.argv[2])
table = ActionLabels({world!r}, {defaults!r}, config_dir={config_dir!r})
for i in range(saves):
    for a in range(8):
        table.set_label(a, f"p{{n}} save {{i}} " + "x" * (a * 3))
    if n == 1:  # one window also changes a key binding, so the two files differ in shape
        table.bind(5, "k") if i % 2 == 0 else table.unbind(5, "k")
    table.save()
print("done", flush=True)
"""


def check_whole(text: str) -> tuple[str, int]:
    """A labels file as one writer saved it: (writer, save number)."""
    data = json.loads(text)
    labels = [data["labels"][str(a)] for a in range(8)]
    owners = {tuple(label.split()[:3]) for label in labels}
    assert len(owners) == 1, labels  # never a mix of two saves
    writer, _, number = owners.pop()
    return writer, int(number)


def test_two_processes_writing_labels_never_leave_a_torn_file(tmp_path):
    config_dir = tmp_path / "config"
    saves = 60
    script = WRITER.format(repo=str(REPO), world=WORLD, defaults=DEFAULTS, config_dir=str(config_dir))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n), str(saves)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in (1, 2)]
    path = ActionLabels(WORLD, DEFAULTS, config_dir=config_dir).path
    reads, seen = 0, set()
    deadline = time.monotonic() + 120
    while any(p.poll() is None for p in procs):  # read as fast as possible while both write
        assert time.monotonic() < deadline, "writers did not finish"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        seen.add(check_whole(text)[0])
        reads += 1
        if reads % 25 == 0:
            assert ActionLabels.load(WORLD, DEFAULTS, config_dir=config_dir).notice is None
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and "done" in out, err
    writer, number = check_whole(path.read_text(encoding="utf-8"))
    assert number == saves - 1  # the last write wins, whole: the final save of whoever saved last
    loaded = ActionLabels.load(WORLD, DEFAULTS, config_dir=config_dir)
    assert loaded.notice is None and loaded.label(0) == f"{writer} save {number}"
    leftovers = sorted(p.name for p in path.parent.iterdir() if p != path)
    assert leftovers == [], leftovers  # no temp files, no ".corrupt-" backups
    assert reads > 0 and seen, "the reader never saw the file while it was being written"
