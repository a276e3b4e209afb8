"""World: the playable environment (docs/architecture.md has the layers and how a frame flows).

A World holds the three trained parts (tokenizer, dynamics, the LAM's action codebook and optionally
the LAM encoder), its play plan (engine.Plan: how this machine computes a frame, decided when it
loads) and the play state: the temporal keys/values of the last frames for the dynamics model and
for the tokenizer's decoder, the position of the next frame and the sampling RNG. In fp32 the
frames depend only on the weights, the prompt, the actions and the seed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import bundle as bundle_io
from .devices import describe
from .engine.plan import Plan, make_plan
from .engine.runtime import Runtime
from .errors import BadActionError, BadSettingError
from .images import load_image
from .labels import NO_ACTION  # noqa: F401 -- part of this module's API (World.step, rollout_batch)
from .models.dynamics import DynamicsModel
from .models.lam import LatentActionModel
from .presets import WorldConfig, to_dict, world_config_from_dict
from .models.st_block import ContextKV, FrameKV
from .models.tokenizer import Tokenizer

MAX_STEPS = 1000


@dataclass(frozen=True)
class WorldState:
    """Everything `step` depends on. Immutable: snapshots share tensors, they never copy them."""

    dynamics_kv: tuple[FrameKV, ...]  # last (window-1) frames
    decoder_kv: tuple[FrameKV, ...]
    tokens: torch.Tensor  # (B, N) tokens of the current frame
    frame: np.ndarray  # (B, H, W, 3) uint8 current frame
    position: int  # index of the current frame since reset
    rng_state: torch.Tensor


class World:
    def __init__(
        self, config: WorldConfig, tokenizer: Tokenizer, dynamics: DynamicsModel, action_codes: torch.Tensor,
        lam: LatentActionModel | None = None, device: str | torch.device = "cpu", precision: str = "auto",
        labels: list[str] | None = None, world_id: str = "", card: dict | None = None, path: Path | None = None,
        kernels: bool = True, plan: Plan | None = None,
    ) -> None:
        """plan: how to compute frames (engine.make_plan's choice for device, precision and kernels if None)."""
        self.config = config
        self.plan = plan or make_plan(config, device, precision, kernels)
        self.device, self.dtype = torch.device(self.plan.device), self.plan.dtype
        self.tokenizer = tokenizer.to(self.device, self.dtype).eval()
        self.dynamics = dynamics.to(self.device, self.dtype).eval()
        self.lam = lam.to(self.device, self.dtype).eval() if lam is not None else None
        self.action_codes = action_codes.to(self.device, self.dtype)  # (num_actions, action_dim)
        self.runtime = Runtime(self.plan, self.tokenizer, self.dynamics)
        self.labels = list(labels) if labels else [""] * self.num_actions
        self.world_id, self.card, self.path = world_id, card or {}, path
        self._sampling = {"steps": 25, "temperature": 1.0}
        self._generator = torch.Generator(device="cpu").manual_seed(0)
        self._state: WorldState | None = None
        self._timings: dict[str, float] = {}
        self.last_timings: dict[str, float] = {"encode": 0.0, "dynamics": 0.0, "decode": 0.0}

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def load(cls, name: str | Path = "coinrun", device: str | torch.device = "auto", precision: str = "auto",
             kernels: bool = True, plan: Plan | None = None) -> "World":
        """Load a world bundle by name or path (see bundle.resolve_world for the search order).
        precision: auto (int8 on x86 CPUs, else bf16 where it is fast) | fp32 | bf16 | int8;
        kernels: False keeps int8 on PyTorch operations (fbgemm) instead of the C kernels; plan: a
        plan to use instead of engine.make_plan's (device, precision and kernels are then ignored)."""
        path = bundle_io.resolve_world(name)
        b = bundle_io.read_bundle(path)
        with_lam = any(k.startswith("lam.") for k in b.tensors)
        try:
            config = world_config_from_dict(b.config)
            with torch.device("meta"):  # shapes only: a config asking for a huge model allocates nothing
                shapes = build_models(config, with_lam=with_lam)
        except Exception as err:  # noqa: BLE001 -- a bad setting, or a value no model can be built from (patch 0, heads, ...)
            reason = err if isinstance(err, BadSettingError) else \
                f"cannot build the model: {(str(err).strip().splitlines() or [type(err).__name__])[0][:120]}"
            raise bundle_io.BadBundleError(f"{path}: bad config in bundle ({reason}); re-export it with genie-play train export") from None
        expected = {f"{prefix}.{key}": (tuple(value.shape), str(value.dtype).replace("torch.", ""))
                    for prefix, module in shapes.items() for key, value in module.state_dict().items()}
        expected["actions.codebook"] = ((config.lam.num_actions, config.lam.vq.code_dim), "float32")
        bundle_io.check_tensors(b, expected)  # the file's tensors fit: building allocates what the file holds
        models = build_models(config, with_lam=with_lam)
        for prefix, module in models.items():
            sd = {k[len(prefix) + 1 :]: v for k, v in b.tensors.items() if k.startswith(prefix + ".")}
            module.load_state_dict({k: v.to(module.state_dict()[k].dtype) for k, v in sd.items()})
        return cls(
            config, models["tokenizer"], models["dynamics"], b.tensors["actions.codebook"].float(),
            lam=models.get("lam"), device=device, precision=precision, labels=b.labels,
            world_id=b.world_id, card=b.card, path=path, kernels=kernels, plan=plan,
        )

    def save(self, path: str | Path, include_lam: bool = True, labels: list[str] | None = None, card: dict | None = None, dtype: torch.dtype | None = torch.bfloat16) -> None:
        """Write this world as a bundle (what `genie-play train export` does)."""
        tensors = export_tensors(self.tokenizer, self.dynamics, self.action_codes, self.lam if include_lam else None)
        bundle_io.save_bundle(path, tensors, to_dict(self.config), labels=labels or self.labels, card=card or self.card, dtype=dtype)

    # -- properties --------------------------------------------------------------------------------
    @property
    def num_actions(self) -> int:
        return self.config.dynamics.num_actions

    @property
    def frame_size(self) -> tuple[int, int]:
        return tuple(self.config.tokenizer.frame_size)

    @property
    def device_description(self) -> str:
        return f"{self.device.type} int8" if self.precision == "int8" else describe(self.device, None if self.precision == "fp32" else self.dtype)

    @property
    def learned_no_action(self) -> bool:
        """The world was trained with dropped actions (`loss.action_drop`, recorded in its card), so
        NO_ACTION means "no key pressed" to it; for other worlds NO_ACTION is an untrained input."""
        value = self.card.get("action_drop")
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0

    @property
    def precision(self) -> str:
        return self.plan.precision

    @property
    def sampling(self) -> dict:
        return dict(self._sampling)

    @sampling.setter
    def sampling(self, values: dict) -> None:
        new = dict(self._sampling)
        for key, value in dict(values).items():
            if key == "steps":
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_STEPS:
                    raise BadSettingError(f"steps must be an integer in 1..{MAX_STEPS}, got {value!r}")
                new["steps"] = int(value)
            elif key == "temperature":
                if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not (0 <= float(value) <= 100):
                    raise BadSettingError(f"temperature must be a number in [0, 100] (0 = greedy), got {value!r}")
                new["temperature"] = float(value)
            else:
                raise BadSettingError(f"unknown sampling setting {key!r}: use steps or temperature")
        self._sampling = new

    def seed(self, seed: int) -> None:
        self._generator.manual_seed(int(seed))

    # -- play ----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def reset(self, image) -> np.ndarray:
        """Start from a prompt (path, PIL image or (H,W,3) uint8 array); returns the world's view of
        it (the tokenizer's reconstruction) as (H, W, 3) uint8."""
        pixels = load_image(image, self.frame_size)
        self._state = self.start(pixels[None])
        return self._state.frame[0]

    @torch.inference_mode()
    def start(self, pixels: np.ndarray) -> WorldState:
        """Batched reset: encode prompts (B, H, W, 3) uint8 and record them as frame 0; returns
        their state (the play state is left unchanged; the generator's state is recorded in it)."""
        t0 = time.perf_counter()
        tokens = self.tokenizer.encode(torch.from_numpy(np.array(pixels, dtype=np.uint8)).to(self.device)[:, None])[:, 0]  # (B, N)
        t1 = time.perf_counter()
        state = WorldState((), (), tokens, np.empty(0), -1, self._generator.get_state())
        state = self._record(state, tokens, self.dynamics.frame_action(None, len(tokens)), t1)
        self.last_timings = {"encode": (t1 - t0) * 1e3, **self._timings}
        return state

    @torch.inference_mode()
    def rollout_batch(self, prompts: np.ndarray, actions: np.ndarray, seed: int = 0) -> np.ndarray:
        """Batched rollouts for evaluation: prompts (B, H, W, 3) uint8, actions (B, K) ints (or
        NO_ACTION) -> (B, K+1, H, W, 3) uint8. Row b equals rollout(prompts[b], actions[b], seed)
        (shared noise). The play state is left unchanged."""
        prompts, actions = np.asarray(prompts), np.asarray(actions)
        if prompts.ndim != 4 or prompts.shape[1:] != (*self.frame_size, 3) or actions.shape[:1] != prompts.shape[:1]:
            raise BadSettingError(f"rollout_batch needs prompts (B, {self.frame_size[0]}, {self.frame_size[1]}, 3) and actions (B, K)")
        if actions.size and (actions.min() < NO_ACTION or actions.max() >= self.num_actions):
            raise BadActionError(f"actions must be in [0, {self.num_actions}) or NO_ACTION ({NO_ACTION})")
        saved_state, saved_rng = self._state, self._generator.get_state()
        self.seed(seed)
        out = [(state := self.start(prompts.astype(np.uint8))).frame]
        for k in range(actions.shape[1]):
            state = self.advance(state, actions[:, k], rng=False)
            out.append(state.frame)
        self._state = saved_state
        self._generator.set_state(saved_rng)
        return np.stack(out, axis=1)

    @torch.inference_mode()
    def step(self, action: int) -> np.ndarray:
        """Advance one frame with latent action `action` (or NO_ACTION); returns the new frame (H, W, 3) uint8."""
        self._require_state()
        self._state = self.advance(self._state, [self.check_action(action, allow_none=True)], rng=False)
        self.last_timings = {"encode": 0.0, **self._timings}
        return self._state.frame[0]

    def snapshot(self) -> WorldState:
        self._require_state()
        return WorldState(**{**self._state.__dict__, "rng_state": self._generator.get_state()})

    def restore(self, snapshot: WorldState) -> np.ndarray:
        if not isinstance(snapshot, WorldState):
            raise BadSettingError("restore() needs a value returned by snapshot()")
        self._state = snapshot
        self._generator.set_state(snapshot.rng_state)
        return snapshot.frame[0]

    @property
    def frame(self) -> np.ndarray:
        self._require_state()
        return self._state.frame[0]

    @property
    def position(self) -> int:
        return self._state.position if self._state else 0

    def rollout(self, image, actions, seed: int = 0) -> np.ndarray:
        """reset(image) with `seed`, then step through `actions`: (len(actions)+1, H, W, 3) uint8."""
        actions = [self.check_action(a, allow_none=True) for a in actions]
        self.seed(seed)
        frames = [self.reset(image)]
        frames += [self.step(a) for a in actions]
        return np.stack(frames)

    @torch.inference_mode()
    def explore(self, num_frames: int = 4, seed: int | None = None) -> np.ndarray:
        """From the current state, hold each action for `num_frames` frames, all actions as one
        batch: (num_actions, num_frames, H, W, 3) uint8. The play state is left unchanged. Equals
        num_actions separate rollouts with the same RNG state (noise is shared across the batch)."""
        self._require_state()
        if not 1 <= int(num_frames) <= 64:
            raise BadSettingError(f"explore frames must be in 1..64, got {num_frames}")
        saved = self.snapshot()
        if seed is not None:
            self.seed(seed)
        a, s = self.num_actions, self._state
        state = WorldState(tuple(f.repeat_batch(a) for f in s.dynamics_kv), tuple(f.repeat_batch(a) for f in s.decoder_kv),
                           s.tokens.repeat(a, 1), np.repeat(s.frame, a, axis=0), s.position, s.rng_state)
        out = []
        for _ in range(int(num_frames)):
            state = self.advance(state, np.arange(a), rng=False)
            out.append(state.frame)
        self.restore(saved)
        return np.stack(out, axis=1)

    # -- analysis ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def infer_actions(self, video: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T-1,) latent actions, via the LAM encoder."""
        if self.lam is None:
            raise BadSettingError("this world bundle has no LAM encoder (exported without lam.*): cannot infer actions")
        frames = self._video_tensor(video)
        return self.lam.infer(frames.to(self.dtype) / 255.0).indices[0].cpu().numpy()

    @torch.inference_mode()
    def reconstruct(self, video: np.ndarray) -> np.ndarray:
        """Tokenizer round trip of (T, H, W, 3) uint8 -> same shape uint8."""
        frames = self._video_tensor(video)
        tokens = self.tokenizer.encode(frames.to(self.dtype) / 255.0)
        return to_uint8(self.tokenizer.decode(tokens))[0]

    def check_action(self, action, allow_none: bool = False) -> int:
        """action as an int in [0, num_actions), or NO_ACTION with allow_none; else BadActionError."""
        low = NO_ACTION if allow_none else 0
        if isinstance(action, bool) or not isinstance(action, (int, np.integer)) or not low <= int(action) < self.num_actions:
            extra = f" or NO_ACTION ({NO_ACTION})" if allow_none else ""
            raise BadActionError(f"action must be an integer in [0, {self.num_actions}){extra}, got {action!r}")
        return int(action)

    # -- internals -----------------------------------------------------------------------------------
    def _require_state(self) -> None:
        if self._state is None:
            raise BadSettingError("call reset(image) before stepping the world")

    def _video_tensor(self, video) -> torch.Tensor:
        video = np.asarray(video)
        if video.ndim != 4 or video.shape[1:] != (*self.frame_size, 3) or video.dtype != np.uint8:
            raise BadSettingError(f"video must be (T, {self.frame_size[0]}, {self.frame_size[1]}, 3) uint8, got {video.shape} {video.dtype}")
        return torch.from_numpy(np.ascontiguousarray(video)).to(self.device)[None]

    @torch.inference_mode()
    def advance(self, state: WorldState, actions, rng: bool = True) -> WorldState:
        """Batched step: `state` (B rows at one position, e.g. from `start`) one frame on under
        actions (B,) ints or NO_ACTION (checked by the caller); returns the new state (the play state
        is left unchanged). With rng, the noise continues from state.rng_state, else from the generator's
        current state. Row b equals a single rollout's frame (the noise is shared across rows)."""
        if rng:
            self._generator.set_state(state.rng_state)
        ids = np.asarray(actions, dtype=np.int64)
        none = ids == NO_ACTION
        drop = torch.from_numpy(none).to(self.device) if none.any() else None
        codes = self.action_codes[torch.as_tensor(np.maximum(ids, 0), device=self.device)]
        t0 = time.perf_counter()
        batch, n = state.tokens.shape
        ctx = self.runtime.context(state.dynamics_kv, state.position + 1, batch, self.dynamics.transformer)
        emb = self.dynamics.frame_action(codes, batch, drop=drop)  # once per frame, not per round
        masked = torch.full((batch, n), self.config.dynamics.mask_id, dtype=torch.long, device=self.device)
        tokens = self.runtime.sample(masked, emb, ctx, self._sampling["steps"], self._sampling["temperature"], self._generator)
        return self._record(state, tokens, emb, t0, ctx)

    @property
    def timings(self) -> dict[str, float]:
        """ms of the last `start` or `advance` (encode, dynamics, decode)."""
        return dict(self._timings)

    def _record(self, state: WorldState, tokens: torch.Tensor, emb: torch.Tensor, t0: float,
                ctx: ContextKV | None = None) -> WorldState:
        """The state after the new frame's tokens (B, N), emb (B, D) its action embedding: its
        keys/values (dynamics and decoder) recorded and its pixels decoded; dynamics time from t0."""
        batch, position = tokens.shape[0], state.position + 1
        ctx = ctx or self.runtime.context(state.dynamics_kv, position, batch, self.dynamics.transformer)
        # the C frame kernel records the final tokens' keys/values itself, else the record pass (no head, no last FFN)
        kv = ctx.frame_kv() if ctx.recorded else self.runtime.record(tokens, emb, ctx)
        dynamics_kv = _window(state.dynamics_kv, kv, self.config.dynamics.st.window)
        t1 = time.perf_counter()
        dctx = self.runtime.context(state.decoder_kv, position, batch, self.tokenizer.decoder)
        pixels, dkv = self.runtime.decode(tokens, dctx)
        decoder_kv = _window(state.decoder_kv, dkv, self.config.tokenizer.decoder.window)
        frame = to_uint8(pixels)
        t2 = time.perf_counter()
        self._timings = {"dynamics": (t1 - t0) * 1e3, "decode": (t2 - t1) * 1e3}
        return WorldState(dynamics_kv, decoder_kv, tokens, frame, position, self._generator.get_state())


def _window(frames: tuple[FrameKV, ...], new: FrameKV, window: int) -> tuple[FrameKV, ...]:
    """The last window-1 frames' keys/values (the context of the next frame)."""
    return (frames + (new,))[-(window - 1):] if window > 1 else ()


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """float pixels in [0, 1] -> uint8 numpy array of the same shape."""
    return (pixels.float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


def build_models(config: WorldConfig, with_lam: bool = True) -> dict[str, torch.nn.Module]:
    models = {"tokenizer": Tokenizer(config.tokenizer), "dynamics": DynamicsModel(config.dynamics)}
    if with_lam:
        models["lam"] = LatentActionModel(config.lam)
    return models


def export_tensors(tokenizer, dynamics, action_codes, lam=None) -> dict[str, torch.Tensor]:
    """The namespaced tensors of a world bundle."""
    tensors = {f"tokenizer.{k}": v for k, v in tokenizer.state_dict().items()}
    tensors |= {f"dynamics.{k}": v for k, v in dynamics.state_dict().items()}
    if lam is not None:
        tensors |= {f"lam.{k}": v for k, v in lam.state_dict().items()}
    tensors["actions.codebook"] = action_codes.detach().float()
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def load_world(name: str | Path = "coinrun", device: str = "auto", precision: str = "auto", kernels: bool = True) -> World:
    return World.load(name, device=device, precision=precision, kernels=kernels)
