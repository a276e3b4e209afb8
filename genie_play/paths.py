"""Where bundled and user files live.

The bundled worlds and prompts sit in the repository's top-level `weights/` and `assets/`. In a
source checkout or editable install they are found there; a wheel carries them inside the package
as `genie_play/_data/{weights,assets}` (symlinks in the source tree that setuptools copies).
"""
from __future__ import annotations

from pathlib import Path

import platformdirs

PACKAGE_DIR = Path(__file__).resolve().parent
APP_NAME = "genie-play"


def _first_existing(*candidates: Path) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


def bundled_weights_dir() -> Path:
    return _first_existing(PACKAGE_DIR / "_data" / "weights", PACKAGE_DIR.parent / "weights")


def bundled_prompts_dir() -> Path:
    return _first_existing(PACKAGE_DIR / "_data" / "assets" / "prompts", PACKAGE_DIR.parent / "assets" / "prompts")


def user_worlds_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME)) / "worlds"


def user_config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME))


def user_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME))


def user_pictures_dir() -> Path:
    return Path(platformdirs.user_pictures_dir()) / APP_NAME


PROMPT_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")


def bundled_prompts() -> list[Path]:
    d = bundled_prompts_dir()
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix.lower() in PROMPT_SUFFIXES)
