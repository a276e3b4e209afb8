"""Moved to genie_play/overrides.py (the one override grammar); kept for existing imports."""
from ..overrides import apply_overrides, config_from_dict, config_to_dict  # noqa: F401
