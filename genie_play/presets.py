"""Named model configs and (de)serialisation of nested config dataclasses.

A world's config is one dict {"tokenizer": ..., "lam": ..., "dynamics": ...}; the bundle stores it
as JSON and the models are rebuilt from it alone. Presets (`PRESETS`; the first line of each preset
function's docstring is its description, shown by `describe`, in --help, errors and --print-config):
- "tiny":  for tests (trains in seconds);
- "small": the bundled CoinRun world (64x64 frames, 8x8 tokens, sized for ~12 fps on 2 CPU cores).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from .errors import BadSettingError
from .models.dynamics import DynamicsConfig
from .models.lam import LAMConfig
from .models.st_block import STConfig
from .models.tokenizer import TokenizerConfig
from .models.vq import VQConfig
from .overrides import apply_overrides


@dataclass
class WorldConfig:
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    lam: LAMConfig = field(default_factory=LAMConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)

    def check(self) -> "WorldConfig":
        """Components must agree on frame size, grid, vocabulary and actions."""
        t, l, d = self.tokenizer, self.lam, self.dynamics
        problems = []
        if tuple(t.frame_size) != tuple(l.frame_size):
            problems.append(f"tokenizer frame_size {t.frame_size} != lam frame_size {l.frame_size}")
        if tuple(t.grid) != tuple(d.grid):
            problems.append(f"tokenizer grid {t.grid} != dynamics grid {d.grid}")
        if t.vq.num_codes != d.vocab:
            problems.append(f"tokenizer codebook {t.vq.num_codes} != dynamics vocab {d.vocab}")
        if l.vq.num_codes != d.num_actions or l.vq.code_dim != d.action_dim:
            problems.append("lam codebook does not match dynamics num_actions/action_dim")
        if problems:
            raise BadSettingError("inconsistent world config: " + "; ".join(problems))
        return self


def tiny() -> WorldConfig:
    """16x16 frames, one- or two-layer models: trains in a minute, for tests and checking a set-up."""
    st = lambda dim, depth, window: STConfig(dim=dim, depth=depth, heads=2, window=window)  # noqa: E731
    return WorldConfig(
        tokenizer=TokenizerConfig(
            frame_size=(16, 16), patch=4, vq=VQConfig(num_codes=32, code_dim=8),
            encoder=st(32, 1, 4), decoder=st(32, 1, 4),
        ),
        lam=LAMConfig(frame_size=(16, 16), patch=8, vq=VQConfig(num_codes=8, code_dim=8, dead_after=10),
                      encoder=st(32, 1, 6), decoder=st(32, 1, 6)),
        dynamics=DynamicsConfig(grid=(4, 4), vocab=32, action_dim=8, num_actions=8, st=st(32, 2, 6)),
    )


def small() -> WorldConfig:
    """64x64 frames, the shipped CoinRun world's size: about 55 min (tokenizer) + 2.5 h (dynamics) on 2 cores."""
    return WorldConfig()  # the defaults of the component configs are the shipped world's


PRESETS = {"tiny": tiny, "small": small}


def describe(name: str) -> str:
    """The one-line description of preset `name`."""
    return (PRESETS[name].__doc__ or "").strip().splitlines()[0].rstrip(".")


def preset_choices() -> str:
    """Every preset with its description, for help texts and errors."""
    return "; ".join(f"{name} ({describe(name)})" for name in PRESETS)


def presets_for(frame_size: tuple[int, int]) -> list[str]:
    """The presets whose worlds make frames of `frame_size` (height, width)."""
    return [name for name in PRESETS if tuple(PRESETS[name]().tokenizer.frame_size) == tuple(frame_size)]


def preset(name: str) -> WorldConfig:
    if name not in PRESETS:
        raise BadSettingError(f"unknown preset {name!r}: choose one of {preset_choices()}")
    return PRESETS[name]().check()


# -- dict <-> dataclass ------------------------------------------------------------------------------
def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict):
    """Rebuild a (nested) config dataclass from a dict; unknown or missing keys are errors, except
    fields a class lists in its ADDED_FIELDS (added after bundles existed), which take the value
    listed there: what the bundles made before them did."""
    if not isinstance(data, dict):
        raise BadSettingError(f"config for {cls.__name__} must be a JSON object")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise BadSettingError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data and f.name in getattr(cls, "ADDED_FIELDS", {}):
            kwargs[f.name] = cls.ADDED_FIELDS[f.name]
            continue
        if f.name not in data:
            raise BadSettingError(f"{cls.__name__} config is missing field {f.name!r}")
        kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{cls.__name__}.{f.name}")
    return cls(**kwargs)


def _convert(tp, value, where: str):
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value)
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise BadSettingError(f"{where} must be a list, got {value!r}")
        return tuple(_convert(typing.get_args(tp)[0], v, where) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise BadSettingError(f"{where} must be true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadSettingError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadSettingError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise BadSettingError(f"{where} must be a string, got {value!r}")
        return value
    return value


def world_config_from_dict(data: dict) -> WorldConfig:
    return from_dict(WorldConfig, data).check()


def override(cfg, assignments: list[str], prefix: str = ""):
    """Apply 'a.b.c=value' overrides: overrides.apply_overrides, the one grammar of every config
    (`prefix`, e.g. "model.", is how error messages spell the keys)."""
    return apply_overrides(cfg, assignments, prefix)
