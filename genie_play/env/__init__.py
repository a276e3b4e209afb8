"""genie-play worlds as Gymnasium environments (optional extra: `pip install "genie-play[gym]"`).

Importing this module registers two ids with Gymnasium (and imports neither torch nor a world):

- ``genie_play/CoinRun-v0``: the bundled CoinRun world;
- ``genie_play/World-v0``: any world, ``gymnasium.make("genie_play/World-v0", world=PATH)``.

Gymnasium 1.x has no plugin entry points, so an id is found after this module is imported, or
by naming the module in the id, which makes Gymnasium import it::

    gymnasium.make("genie_play.env:genie_play/CoinRun-v0")
    gymnasium.make_vec("genie_play.env:genie_play/CoinRun-v0", num_envs=8, vectorization_mode="vector_entry_point")

Both ids take GenieEnv's arguments (single.py); `make_vec` with the vector entry point builds a
GenieVectorEnv (vector.py), which steps all sub-environments in one batched pass.
"""
from __future__ import annotations

NAMESPACE = "genie_play"
ENV_IDS = {"CoinRun-v0": {"world": "coinrun"}, "World-v0": {"world": None}}
__all__ = ["GenieEnv", "GenieVectorEnv", "register_envs", "ENV_IDS", "NAMESPACE"]


try:
    import gymnasium
except ImportError as err:  # the optional extra is missing
    raise ImportError('genie_play.env needs Gymnasium: pip install "genie-play[gym]"') from err


def register_envs() -> None:
    """Register genie_play/CoinRun-v0 and genie_play/World-v0 (again: a no-op)."""
    for name, kwargs in ENV_IDS.items():
        env_id = f"{NAMESPACE}/{name}"
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point="genie_play.env.single:GenieEnv",
                               vector_entry_point="genie_play.env.vector:GenieVectorEnv", kwargs=dict(kwargs))


def __getattr__(name: str):
    # Lazy, like genie_play.World: the classes import torch and the World on first use.
    if name == "GenieEnv":
        from .single import GenieEnv

        return GenieEnv
    if name == "GenieVectorEnv":
        from .vector import GenieVectorEnv

        return GenieVectorEnv
    raise AttributeError(f"module 'genie_play.env' has no attribute {name!r}")


register_envs()
