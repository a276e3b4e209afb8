"""Per-world labels and key bindings: persistence, corrupt files, conflicts, the labels CLI."""
from __future__ import annotations

import json
import threading

import pytest

from genie_play.cli import main as cli_main
from genie_play.errors import BadSettingError
from genie_play.labels import LABELS_FORMAT, ActionLabels, BadLabelsFileError, read_label_list
from genie_play.keymap import KeyMap, check_bindings, default_key_bindings, parse_key

WORLD_A = "a" * 64
WORLD_B = "b" * 64
DEFAULTS = ["right", "jump", "left", "stay", "", "", "", ""]


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # what the CLI's platformdirs uses
    return tmp_path / "xdg" / "genie-play"


def test_default_keys_follow_direction_labels_and_digits():
    keys = default_key_bindings(8, DEFAULTS)
    assert [k[0] for k in keys] == ["1", "2", "3", "4", "5", "6", "7", "8"]
    assert "right" in keys[0] and "up" in keys[1] and "left" in keys[2]
    keyboard = [[k for k in keys if not k.startswith("pad:")] for keys in default_key_bindings(8, [""] * 8)]
    assert keyboard[:4] == [["1", "left", "a"], ["2", "right", "d"], ["3", "up", "w"], ["4", "down", "s"]]
    check_bindings(keys, 8)
    km = KeyMap(keys)
    assert km.action_for("Right") == 0 and km.action_for("3") == 2 and km.action_for("q") is None
    assert parse_key("Esc") == "escape" and parse_key("left arrow") == "left"
    with pytest.raises(BadSettingError):
        parse_key("hyperspace")


def test_labels_survive_a_restart_and_are_per_world(config_dir):
    a = ActionLabels.load(WORLD_A, DEFAULTS, config_dir=config_dir)
    assert a.label(1) == "jump" and a.source(1) == "bundle" and a.source(5) == "none"
    a.set_label(5, "  dash\tforward ")
    a.bind(5, "j")
    a.save()
    again = ActionLabels.load(WORLD_A, DEFAULTS, config_dir=config_dir)
    assert again.label(5) == "dash forward" and again.source(5) == "user"
    assert again.keymap().action_for("j") == 5
    other = ActionLabels.load(WORLD_B, DEFAULTS, config_dir=config_dir)
    assert other.label(5) == "" and other.keymap().action_for("j") is None
    # an empty label goes back to the bundle default
    again.set_label(1, "")
    assert again.label(1) == "jump"


def test_real_bundles_have_their_own_label_files(config_dir, tiny_world_path, tiny_world_path_b):
    from genie_play import World
    from genie_play.commands.labels import world_identity

    _, id_a, labels_a, n = world_identity(str(tiny_world_path))
    _, id_b, _, _ = world_identity(str(tiny_world_path_b))
    world = World.load(tiny_world_path, device="cpu", precision="fp32")
    assert id_a == world.world_id and labels_a == world.labels and n == world.num_actions == 8
    assert id_a != id_b
    table = ActionLabels.load(id_a, labels_a, n, config_dir=config_dir)
    table.set_label(3, "duck")
    table.save()
    assert ActionLabels.load(id_a, labels_a, n, config_dir=config_dir).label(3) == "duck"
    assert ActionLabels.load(id_b, labels_a, n, config_dir=config_dir).label(3) == "stay"


@pytest.mark.parametrize("content", [
    "{not json",
    json.dumps({"format": "something-else/9", "labels": {}}),
    json.dumps({"format": LABELS_FORMAT, "labels": {"3": "x"}, "keys": {"3": ["1"]}}),  # "1" is action 0's
    json.dumps({"format": LABELS_FORMAT, "keys": {"2": ["space"]}}),  # a reserved key
    json.dumps({"format": LABELS_FORMAT, "keys": {"2": []}}),  # action 2 unreachable
    json.dumps({"format": LABELS_FORMAT, "labels": {"11": "x"}}),
])
def test_corrupt_file_is_backed_up_reported_and_replaced_by_defaults(config_dir, content):
    table = ActionLabels(WORLD_A, DEFAULTS, config_dir=config_dir)
    table.path.parent.mkdir(parents=True)
    table.path.write_text(content)
    loaded = ActionLabels.load(WORLD_A, DEFAULTS, config_dir=config_dir)
    assert loaded.notice and "broken" in loaded.notice and str(loaded.path) in loaded.notice
    assert [loaded.label(i) for i in range(8)] == DEFAULTS
    assert loaded.keymap().as_lists() == default_key_bindings(8, DEFAULTS)
    backups = list(table.path.parent.glob(f"{table.path.name}.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_text() == content
    assert not table.path.exists()
    loaded.set_label(0, "go")  # and it can be written again
    loaded.save()
    assert ActionLabels.load(WORLD_A, DEFAULTS, config_dir=config_dir).notice is None


def test_conflicting_binding_is_refused_and_every_action_stays_reachable(config_dir):
    table = ActionLabels.load(WORLD_A, DEFAULTS, config_dir=config_dir)
    before = table.keymap().as_lists()
    with pytest.raises(BadSettingError, match="already bound to action 0"):
        table.bind(3, "1")
    with pytest.raises(BadSettingError, match="pause"):
        table.bind(3, "space")  # a player control key
    with pytest.raises(BadSettingError, match="last key"):
        table.unbind(4, "5")
    assert table.keymap().as_lists() == before
    table.unbind(0, "right")
    table.bind(3, "right")  # free now
    assert table.keymap().action_for("right") == 3
    assert all(table.keys_for(a) for a in range(8))


def test_concurrent_writers_never_leave_a_torn_file(config_dir):
    def writer(n: int) -> None:
        table = ActionLabels(WORLD_A, DEFAULTS, config_dir=config_dir)
        for i in range(15):
            table.set_label(i % 8, f"writer {n} save {i} " + "x" * 30)
            table.save()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loaded = ActionLabels.load(WORLD_A, DEFAULTS, config_dir=config_dir)
    assert loaded.notice is None and loaded.label(6).startswith("writer")
    assert not list(loaded.path.parent.glob(".*.tmp"))


def test_import_of_a_broken_file_changes_nothing(config_dir, tmp_path):
    table = ActionLabels.load(WORLD_A, DEFAULTS, config_dir=config_dir)
    table.set_label(2, "west")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "genie-play-labels/1", "keys": {"0": ["2"]}}')
    with pytest.raises(BadLabelsFileError, match="bad.json"):
        table.import_file(bad)
    assert table.label(2) == "west"


def test_cli_round_trips_export_reset_import(config_dir, tiny_world_path, tmp_path, capsys):
    world, exported = str(tiny_world_path), tmp_path / "mine.json"
    assert cli_main(["labels", world, "--set", "3=crouch", "--set", "5=dash", "--bind", "3=c",
                     "--export", str(exported)]) == 0
    out = capsys.readouterr().out
    assert "crouch" in out and "exported" in out
    assert json.loads(exported.read_text())["labels"] == {"3": "crouch", "5": "dash"}
    assert cli_main(["labels", world, "--reset"]) == 0
    out = capsys.readouterr().out
    assert "crouch" not in out and "stay" in out
    assert cli_main(["labels", world, "--import", str(exported)]) == 0
    out = capsys.readouterr().out
    row3 = next(line for line in out.splitlines() if line.strip().startswith("3 "))
    assert "crouch" in row3 and "C" in row3 and "user" in row3
    # a conflicting binding: a one-line error, exit 2, nothing saved
    assert cli_main(["labels", world, "--bind", "4=c"]) == 2
    err = capsys.readouterr().err
    assert "already bound to action 3" in err and len(err.strip().splitlines()) == 1
    assert cli_main(["labels", world, "--bind", "4=space"]) == 2
    assert "pause" in capsys.readouterr().err
    # an exported file also serves `train export --labels FILE` (the bundle's default labels)
    assert read_label_list(exported, 8) == ["", "", "", "crouch", "", "dash", "", ""]
