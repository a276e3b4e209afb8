"""Default arrow bindings from a world's labels (issue 19) and the HUD's frame-rate line."""
from __future__ import annotations

import pytest

from genie_play.player.hud import HudState, rate_line
from genie_play.keymap import KeyMap, check_bindings, default_key_bindings, direction_actions
from genie_play.player.session import FrameTimer, RateMeter

COINRUN = ["idle", "jump right", "jump left", "right", "jump", "step right", "drop", "stay"]
PLAIN = ["idle", "left", "right", "jump", "jump left", "jump right"]


def test_exact_label_beats_a_word_inside_a_label():
    km = KeyMap(default_key_bindings(8, COINRUN))
    assert km.action_for("right") == 3 and km.action_for("d") == 3  # not "jump right" or "step right"
    assert km.action_for("up") == 4 and km.action_for("w") == 4  # "jump", not "jump left"
    assert km.action_for("left") == 2  # the only label naming left
    assert km.action_for("down") == 6  # "drop"
    assert km.action_for("1") == 0 and km.action_for("8") == 7


def test_plain_word_labels_bind_the_obvious_actions():
    km = KeyMap(default_key_bindings(6, PLAIN))
    assert (km.action_for("right"), km.action_for("left"), km.action_for("up")) == (2, 1, 3)
    assert km.action_for("down") is None  # no label means down


@pytest.mark.parametrize("labels", [
    COINRUN, PLAIN, ["right", "jump", "left", "stay", "", "", "", ""], ["idle", "jump right", "stay", "", ""],
    ["jump right", "jump left", "jump"], ["a", "b", "c"], [""] * 8, ["idle", "stay", "wait", "right"],
])
def test_left_right_and_up_are_never_unbound(labels):
    bindings = default_key_bindings(len(labels), labels)
    check_bindings(bindings, len(labels))
    km = KeyMap(bindings)
    for arrow in ("left", "right", "up"):
        assert km.action_for(arrow) is not None, (arrow, labels)
    assert len({km.action_for(a) for a in ("left", "right", "up")}) == 3  # three different actions


def test_unclaimed_directions_prefer_unlabelled_then_labelled_then_resting_actions():
    assert direction_actions(5, ["idle", "jump right", "stay", "", ""]) == {"right": 1, "left": 3, "up": 4}
    moves = direction_actions(4, ["idle", "stay", "wait", "right"])
    assert moves == {"right": 3, "left": 0, "up": 1}  # only resting actions left: they still get an arrow
    assert direction_actions(4, ["idle", "dash", "stay", "right"])["left"] == 1  # a labelled action before a resting one


def test_labels_that_say_nothing_keep_the_positional_arrows():
    keys = default_key_bindings(8, [""] * 8)
    assert keys[:4] == [["1", "left", "a", "pad:dpad_left", "pad:lstick_left"],
                        ["2", "right", "d", "pad:dpad_right", "pad:lstick_right"],
                        ["3", "up", "w", "pad:dpad_up", "pad:lstick_up", "pad:south"],
                        ["4", "down", "s", "pad:dpad_down", "pad:lstick_down"]]


def test_legend_can_show_every_key():
    km = KeyMap([["1", "left", "a", "z"], ["2"]])
    assert km.describe(0) == "1/Left/A" and km.describe(0, limit=None) == "1/Left/A/Z"


def test_frame_rate_comes_from_the_time_per_frame_and_is_never_zero_when_tapping():
    timer, meter = FrameTimer(), RateMeter(window=2.0)
    assert timer.rate() is None and meter.rate(0.0) is None
    timer.add(50.0)  # one tap: a 50 ms frame, then nothing for a while
    meter.tick(0.0)
    state = HudState(world_fps=timer.rate(), world_ms=timer.ms_per_frame(), shown_fps=meter.rate(10.0))
    assert timer.rate() == pytest.approx(20.0)
    line = rate_line(state)
    assert "world 20.0 fps (50 ms)" in line and "shown --/s" in line and " 0.0 " not in line
    for t in range(1, 5):
        timer.add(100.0)
        meter.tick(10.0 + t * 0.5)
    assert meter.rate(12.0) == pytest.approx(2.0)  # shown: 2 frames/s (keys held slowly)
    assert timer.rate() == pytest.approx(1000.0 / 90.0)  # world: mean of 50, 100 x4
    assert rate_line(HudState()) == "world -- fps   shown --/s"
