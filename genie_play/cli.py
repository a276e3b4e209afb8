"""The `genie-play` command: argparse front door that dispatches to one module per command.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when their command runs (and for ``--help``), so ``genie-play info`` does not pay
for pygame and ``genie-play play`` does not pay for the trainer.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import GenieError

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "play": ("genie_play.commands.play", "play a world live in a window (default command)"),
    "rollout": ("genie_play.commands.rollout", "roll out a list of actions headless and write a GIF"),
    "explore": ("genie_play.commands.explore", "write the 8-action grid of one prompt (PNG or GIF)"),
    "labels": ("genie_play.commands.labels", "show, set, bind, export or import a world's action labels"),
    "info": ("genie_play.commands.info", "list the worlds found and their configs"),
    "train": ("genie_play.train.cli", "train a tokenizer or dynamics model; export a world bundle"),
    "data": ("genie_play.train.data_cli", "make training datasets (CoinRun, videos, GIFs, image folders)"),
    "eval": ("genie_play.train.eval_cli", "evaluate a world on held-out data"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genie-play", description="Play worlds learned from unlabelled video.")
    parser.add_argument("--version", action="version", version=f"genie-play {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
        if only is None or only == name:
            importlib.import_module(module).add_arguments(p)
    return parser


def _command_of(argv: list[str]) -> str:
    """The subcommand named in argv, or 'play' when the first word is not a command."""
    for i, word in enumerate(argv):
        if word in ("-h", "--help", "--version") and i == 0:
            return ""
        if word.startswith("-"):
            continue
        return word if word in COMMANDS else "play"
    return "play"


def _misspelt_command(argv: list[str]) -> str | None:
    """The command the first word was probably meant to be (`trian` -> `train`), or None when it is a
    command, an option, an existing file or anything that looks like a path or an image name."""
    import difflib
    import os

    if not argv or argv[0] in COMMANDS or argv[0].startswith("-"):
        return None
    word = argv[0]
    if os.path.exists(word) or "." in word or os.sep in word:
        return None
    close = difflib.get_close_matches(word, list(COMMANDS), n=1, cutoff=0.6)
    return close[0] if close else None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    typo = _misspelt_command(argv)
    if typo:
        print(f"genie-play: error: unknown command {argv[0]!r}; did you mean `{typo}`? (commands: {', '.join(COMMANDS)})",
              file=sys.stderr)
        return 2
    if command == "play" and (not argv or argv[0] not in COMMANDS) and not any(a in ("-h", "--help") for a in argv[:1]):
        argv = ["play", *argv]  # `genie-play IMAGE --world W` means `genie-play play IMAGE --world W`
    parser = build_parser(only=command or None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    debug = getattr(args, "debug", False)
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except GenieError as err:
        if debug:
            raise
        print(f"genie-play: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("genie-play: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
