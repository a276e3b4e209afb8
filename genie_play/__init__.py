"""genie-play: play worlds learned from unlabelled video (Genie, Bruce et al. 2024).

Public API::

    from genie_play import World, load_world
    world = World.load("coinrun")
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["World", "load_world", "GenieError", "__version__"]

from .errors import GenieError


def __getattr__(name: str):
    # Lazy: importing genie_play must not import torch (the CLI's --help and the player's UI
    # process stay light). `from genie_play import World` still works.
    if name in ("World", "load_world"):
        from . import world

        return getattr(world, name)
    raise AttributeError(f"module 'genie_play' has no attribute {name!r}")
