"""Moved to genie_play/presets.py (configs are not nn.Modules); kept for existing imports."""
from ..presets import PRESETS, WorldConfig, from_dict, override, preset, to_dict, world_config_from_dict  # noqa: F401
