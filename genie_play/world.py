"""World: the playable environment (DESIGN.md section 3).

A World holds the three trained parts (tokenizer, dynamics, the LAM's action codebook and optionally
the LAM encoder) and the play state: the temporal keys/values of the last frames for the dynamics
model and for the tokenizer's decoder, the position of the next frame and the sampling RNG.

Per new frame (`step`): the dynamics context is stacked once (ContextKV), MaskGIT runs `steps` rounds
over the new frame's tokens only, one more pass with the final tokens records the frame's own
keys/values, and the decoder turns the tokens into pixels once, against its own cache. The "fast"
engine does this with fewer operations, prepacked kernels and the head on masked tokens only (in
int8 worlds on the C kernels, all rounds and the record pass as one C call: models/play_frame.py),
and gives the "reference" (plain) engine's frames bit for bit in fp32 (tests/test_fast_path.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import bundle as bundle_io
from .devices import PRECISIONS, autocast_dtype, c_int8_linear, cpu_int8_kernels, describe, pack_for_play, pack_linears, resolve_device
from .errors import BadActionError, BadSettingError
from .images import load_image
from .models import maskgit, play_kernels
from .models.dynamics import DynamicsModel
from .models.lam import LatentActionModel
from .models.play_frame import FusedFrame
from .models.presets import WorldConfig, to_dict, world_config_from_dict
from .models.st_block import ContextKV, FrameKV
from .models.tokenizer import Tokenizer

MAX_STEPS = 1000
ENGINES = ("fast", "reference")  # reference: the plain cached path, kept to test the fast one against


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
        engine: str = "fast", kernels: bool = True,
    ) -> None:
        if engine not in ENGINES or precision not in PRECISIONS:
            raise BadSettingError(f"unknown engine {engine!r} or precision {precision!r}: use {'/'.join(ENGINES)} and {'/'.join(PRECISIONS)}")
        self.config, self.engine, self.device = config, engine, resolve_device(device)
        if precision == "auto" and engine == "fast" and self.device.type == "cpu" and cpu_int8_kernels():
            precision = "int8"  # the dynamics' linears in int8: faster, and within 0.2 dB of fp32 held out
        self.precision = precision
        if precision == "int8" and self.device.type != "cpu":
            raise BadSettingError(f"precision int8 runs on the CPU only (its kernels are fbgemm's); use auto on {self.device.type}")
        # Inference runs with weights cast to the compute dtype (faster than autocast on the CPU,
        # which re-casts weights on every call); fp32 when the device has no fast bf16. int8 = the
        # dynamics' linears in int8 with fp32 activations (the decoder's too where the C linear
        # runs them), everything else as "auto".
        self.dtype = autocast_dtype(self.device, "auto" if precision == "int8" else precision) or torch.float32
        self.kernels = kernels  # allow play_kernels' fused attentions (int8 / bf16 on the CPU)
        if precision == "int8" and self._c_int8():
            # the decoder runs int8 on the C linear too (fused blocks, int8 throughout): faster than
            # bf16 and closer to fp32 (weights/README.md), so the rest of the tokenizer stays fp32
            self.dtype = torch.float32
        dyn_dtype = torch.float32 if precision == "int8" else self.dtype
        self.tokenizer = tokenizer.to(self.device, self.dtype).eval()
        self.dynamics = dynamics.to(self.device, dyn_dtype).eval()
        self.lam = lam.to(self.device, self.dtype).eval() if lam is not None else None
        self.action_codes = action_codes.to(self.device, dyn_dtype)  # (num_actions, action_dim)
        # fp32 cache whatever the compute dtype: the hundreds of tiny batched products of attention
        # against the context run ~2.5x faster in fp32 than in bf16 on the CPU (and it is a few MB).
        self.kv_dtype = torch.float32 if engine == "fast" else self.dtype
        self._pick = maskgit.torch_pick  # MaskGIT's per-round draw (the C one where play is reduced precision)
        self.frame_kernel = True  # run whole frames in one C call where the dynamics are fused (play_frame.py)
        self._frame: FusedFrame | None = None
        self._pack_kernels()
        self.labels = list(labels) if labels else [""] * self.num_actions
        self.world_id, self.card, self.path = world_id, card or {}, path
        self._sampling = {"steps": 25, "temperature": 1.0}
        self._generator = torch.Generator(device="cpu").manual_seed(0)
        self._state: WorldState | None = None
        self._sample_ms = 0.0  # MaskGIT time of the frame being generated
        self._timings: dict[str, float] = {}
        self.last_timings: dict[str, float] = {"encode": 0.0, "dynamics": 0.0, "decode": 0.0}

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def load(cls, name: str | Path = "coinrun", device: str | torch.device = "auto", precision: str = "auto",
             engine: str = "fast", kernels: bool = True) -> "World":
        """Load a world bundle by name or path (see bundle.resolve_world for the search order).
        precision: auto (int8 dynamics on x86 CPUs, else bf16 where it is fast) | fp32 | bf16 | int8;
        engine: fast | reference (the plain path); kernels: False keeps the attentions of the int8
        and bf16 paths on PyTorch operations instead of the fused C kernels (models/play_kernels.py)."""
        path = bundle_io.resolve_world(name)
        b = bundle_io.read_bundle(path)
        with_lam = any(k.startswith("lam.") for k in b.tensors)
        try:
            config = world_config_from_dict(b.config)
            with torch.device("meta"):  # shapes only: a config asking for a huge model allocates nothing
                shapes = build_models(config, with_lam=with_lam)
        except BadSettingError as err:
            raise bundle_io.BadBundleError(f"{path}: bad config in bundle ({err}); re-export it with genie-play train export") from None
        except Exception as err:  # noqa: BLE001 -- a value no model can be built from (patch 0, heads, ...)
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
            raise bundle_io.BadBundleError(f"{path}: bad config in bundle (cannot build the model: {reason}); "
                                           "re-export it with genie-play train export") from None
        expected = {}
        for prefix, module in shapes.items():
            for key, value in module.state_dict().items():
                expected[f"{prefix}.{key}"] = (tuple(value.shape), str(value.dtype).replace("torch.", ""))
        expected["actions.codebook"] = ((config.lam.num_actions, config.lam.vq.code_dim), "float32")
        bundle_io.check_tensors(b, expected)  # the file's tensors fit: building allocates what the file holds
        models = build_models(config, with_lam=with_lam)
        for prefix, module in models.items():
            sd = {k[len(prefix) + 1 :]: v for k, v in b.tensors.items() if k.startswith(prefix + ".")}
            module.load_state_dict({k: v.to(module.state_dict()[k].dtype) for k, v in sd.items()})
        return cls(
            config, models["tokenizer"], models["dynamics"], b.tensors["actions.codebook"].float(),
            lam=models.get("lam"), device=device, precision=precision, labels=b.labels,
            world_id=b.world_id, card=b.card, path=path, engine=engine, kernels=kernels,
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
        if self.precision == "int8":
            return f"{self.device.type} int8"
        return describe(self.device, None if self.dtype == torch.float32 else self.dtype)

    @property
    def _dynamics_reduced(self) -> bool:
        """The dynamics already round differently from fp32 in play (int8 or bf16 compute)."""
        return self.precision == "int8" or self.dtype == torch.bfloat16

    @property
    def attention_path(self) -> str:
        """How the dynamics' attentions run in play: the fused C kernels or PyTorch operations (why)."""
        if self.dynamics.transformer.blocks[0].__dict__.get("_kernels") is not None:
            return "fused C kernels"
        why = play_kernels.unavailable_reason() if self.kernels and self._dynamics_reduced else None
        return "PyTorch operations" + (f" (fused kernels: {why})" if why else "")

    @property
    def linear_path(self) -> str:
        """Which kernels run the dynamics' linears in play: the C int8 linear, fbgemm's int8,
        oneDNN's prepacked bf16, or PyTorch's own (the exact fp32 path)."""
        packed = self.dynamics.transformer.blocks[0].spatial.qkv.__dict__.get("_packed")
        if packed is None:
            return "PyTorch"
        if packed.kind == "bf16":
            return "oneDNN bf16"
        if packed.kernels is None:
            return "fbgemm int8"
        return "C int8 " + ("(AMX)" if packed.kernels.linear_amx else "(AVX-512 VNNI)" if packed.kernels.linear_vnni else "(AVX2)")

    @property
    def frame_path(self) -> str:
        """How a frame's MaskGIT rounds run: one C call per frame (models/play_frame.py) or round by round from Python."""
        return "one C call per frame" if self._fused_frame() is not None else "round by round"

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
        self._state = self._start(pixels[None])
        return self._state.frame[0]

    def _start(self, pixels: np.ndarray) -> WorldState:
        """Encode prompts (B, H, W, 3) uint8 and record them as frame 0."""
        t0 = time.perf_counter()
        tokens = self.tokenizer.encode(torch.from_numpy(np.array(pixels, dtype=np.uint8)).to(self.device)[:, None])[:, 0]  # (B, N)
        t1 = time.perf_counter()
        state = WorldState((), (), tokens, np.empty(0), -1, self._generator.get_state())
        state = self._advance(state, tokens, None, None)
        self.last_timings = {"encode": (t1 - t0) * 1e3, **self._timings}
        return state

    @torch.inference_mode()
    def rollout_batch(self, prompts: np.ndarray, actions: np.ndarray, seed: int = 0) -> np.ndarray:
        """Batched rollouts for evaluation: prompts (B, H, W, 3) uint8, actions (B, K) ints ->
        (B, K+1, H, W, 3) uint8. Row b equals rollout(prompts[b], actions[b], seed) (shared noise).
        The play state is left unchanged."""
        prompts, actions = np.asarray(prompts), np.asarray(actions)
        if prompts.ndim != 4 or prompts.shape[1:] != (*self.frame_size, 3) or actions.shape[:1] != prompts.shape[:1]:
            raise BadSettingError(f"rollout_batch needs prompts (B, {self.frame_size[0]}, {self.frame_size[1]}, 3) and actions (B, K)")
        if actions.size and (actions.min() < 0 or actions.max() >= self.num_actions):
            raise BadActionError(f"actions must be in [0, {self.num_actions})")
        saved_state, saved_rng = self._state, self._generator.get_state()
        self.seed(seed)
        out = [(state := self._start(prompts.astype(np.uint8))).frame]
        for k in range(actions.shape[1]):
            codes = self.action_codes[torch.from_numpy(actions[:, k].astype(np.int64)).to(self.device)]
            tokens, ctx = self._sample_tokens(state, codes)
            state = self._advance(state, tokens, codes, ctx)
            out.append(state.frame)
        self._state = saved_state
        self._generator.set_state(saved_rng)
        return np.stack(out, axis=1)

    @torch.inference_mode()
    def step(self, action: int) -> np.ndarray:
        """Advance one frame with latent action `action`; returns the new frame (H, W, 3) uint8."""
        self._require_state()
        action = self.check_action(action)
        codes = self.action_codes[action][None]  # (1, action_dim)
        tokens, ctx = self._sample_tokens(self._state, codes)
        self._state = self._advance(self._state, tokens, codes, ctx)
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
        actions = [self.check_action(a) for a in actions]
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
        a = self.num_actions
        s = self._state
        state = WorldState(
            tuple(f.repeat_batch(a) for f in s.dynamics_kv), tuple(f.repeat_batch(a) for f in s.decoder_kv),
            s.tokens.repeat(a, 1), np.repeat(s.frame, a, axis=0), s.position, s.rng_state,
        )
        out = []
        for _ in range(int(num_frames)):
            tokens, ctx = self._sample_tokens(state, self.action_codes)
            state = self._advance(state, tokens, self.action_codes, ctx)
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

    def check_action(self, action) -> int:
        if isinstance(action, bool) or not isinstance(action, (int, np.integer)) or not 0 <= int(action) < self.num_actions:
            raise BadActionError(f"action must be an integer in [0, {self.num_actions}), got {action!r}")
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

    def _pack_kernels(self) -> None:
        """Prepare the play path once: its linears (devices.pack_for_play: int8 for the dynamics when
        asked, oneDNN-prepacked bf16 where the compute dtype is bf16 on a CPU that runs it natively)
        and the C kernels (models/play_kernels.py)."""
        if self.engine == "fast" and self.device.type == "cpu":
            # Where play already rounds differently from fp32 (int8 or bf16 compute), the attentions,
            # int8 linears and MaskGIT's draw may take the C kernels; fp32 keeps PyTorch's
            # operations, which the reference path matches exactly.
            reduced = {self.dynamics.transformer: self._dynamics_reduced,
                       self.tokenizer.decoder: self.dtype == torch.bfloat16 or self.precision == "int8"}
            kernels = play_kernels.load() if self.kernels and any(reduced.values()) else None
            d, t = self.config.dynamics, self.config.tokenizer  # fbgemm quantises per frame of tokens (see devices)
            pack_for_play(self.dynamics, int8=self.precision == "int8", rows_per_item=d.tokens_per_frame + (d.action_mode == "token"),
                          kernels=kernels)
            # The decoder: int8 on the C linear in an int8 world where that runs (on an AVX2 EPYC ~2x
            # faster than its fp32 decode, within 0.01 dB; weights/README.md), else bf16 where native
            decoder_int8 = self.precision == "int8" and self._c_int8()  # the decision __init__ made the dtype fp32 for
            pack_for_play(self.tokenizer.decoder, int8=decoder_int8, rows_per_item=t.tokens_per_frame, kernels=kernels)
            pack_for_play(self.tokenizer.dec_out)
            for transformer, fused in reduced.items():  # after packing: blocks of C int8 linears become one call
                fused = fused and kernels is not None and play_kernels.supports_head_dim(transformer.head_dim)
                transformer.use_kernels(kernels if fused else None)
            self._pick = kernels.maskgit_pick if kernels is not None and self._dynamics_reduced else maskgit.torch_pick
            self._frame = FusedFrame.build(kernels if self.frame_kernel else None, self.dynamics)

    def _c_int8(self) -> bool:
        """The play path's int8 linears run on the C kernels here (devices.c_int8_linear)."""
        fast_cpu = self.engine == "fast" and self.device.type == "cpu" and self.kernels
        return fast_cpu and c_int8_linear(play_kernels.load())

    def _fused_frame(self) -> FusedFrame | None:
        """The whole-frame C kernel (models/play_frame.py) if installed and built from the current weights."""
        frame = self._frame
        return frame if frame is not None and frame.current(self.dynamics) else None

    def compile(self) -> bool:
        """torch.compile the play path's transformer layers (MaskGIT rounds, record pass, decoder),
        warmed up by a throw-away session (tens of seconds the first time, cached on disk after).
        False, eager path kept, if compiling fails (e.g. no C++ compiler) or for int8. Opt-in: it
        gave 1.1-1.25x over eager PyTorch operations on this CPU, but the eager path with the fused
        C kernels is faster still (124 vs 208 ms/frame in bf16, after 89 s of compiling)."""
        if self.engine != "fast" or self.precision == "int8":
            return False
        import torch._inductor.config as inductor_config

        parts, saved = (self.dynamics.transformer, self.tokenizer.decoder), (self._state, self._generator.get_state(), self.sampling)
        try:
            inductor_config.freezing = True  # inductor prepacks the (now plain) linears itself
            torch._dynamo.config.cache_size_limit = 64  # one code object, 2 models x shapes x need_output
            for t in parts:
                pack_linears(t, "plain")
                t.use_kernels(None)  # inductor fuses the attention itself; a ctypes call would break its graph
                t.compile_play()
            self.sampling = {"steps": 2}
            self.rollout(np.zeros((*self.frame_size, 3), np.uint8), [0] * (self.config.dynamics.st.window + 1))
            return True
        except Exception:  # noqa: BLE001 - any compiler failure: back to the eager kernels
            for t in parts:
                t.compile_play(False)
            self._pack_kernels()
            return False
        finally:
            self._state, self.sampling = saved[0], saved[2]
            self._generator.set_state(saved[1])

    def _context(self, frames: tuple[FrameKV, ...], position: int, batch: int, transformer) -> ContextKV:
        d = self.config.dynamics
        per_frame = d.tokens_per_frame + (d.action_mode == "token") if transformer is self.dynamics.transformer else self.config.tokenizer.tokens_per_frame
        empty = (transformer.cfg.depth, batch * per_frame, transformer.cfg.heads, transformer.head_dim, self.kv_dtype, self.device)
        kernels = transformer.blocks[0].__dict__.get("_kernels")  # installed: they stack the context too
        return ContextKV(list(frames), position, empty, stacker=kernels)

    def _sample_tokens(self, state: WorldState, codes: torch.Tensor) -> tuple[torch.Tensor, ContextKV]:
        """MaskGIT over the next frame's tokens (B, N) for codes (B, action_dim); returns them and
        the stacked context, which `_advance` reuses."""
        t0 = time.perf_counter()
        batch, n = state.tokens.shape
        ctx = self._context(state.dynamics_kv, state.position + 1, batch, self.dynamics.transformer)
        mask_id = self.config.dynamics.mask_id
        masked = torch.full((batch, n), mask_id, dtype=torch.long, device=self.device)
        options = dict(steps=self._sampling["steps"], temperature=self._sampling["temperature"], generator=self._generator)
        if self.engine == "reference":
            fn = lambda tok: self.dynamics.step(tok, codes, ctx, reference=True)[0]  # noqa: E731
            tokens = maskgit.decode_reference(fn, masked, mask_id, **options)
        else:
            emb = self.dynamics.frame_action(codes, batch)  # once per frame, not per round
            frame = self._fused_frame()
            if frame is not None:  # every round and the record pass in one C call
                tokens = frame.sample(masked, emb, ctx, self.dynamics.transformer, **options)
            else:
                fn = lambda tok, pos: self.dynamics.sample_logits(tok, emb, ctx, pos)  # noqa: E731
                tokens = maskgit.decode(fn, masked, mask_id, masked_only=True, pick=self._pick, **options)
        self._sample_ms = (time.perf_counter() - t0) * 1e3  # read by the next _advance for last_timings
        return tokens, ctx

    def _advance(
        self, state: WorldState, tokens: torch.Tensor, codes: torch.Tensor | None, ctx: ContextKV | None = None
    ) -> WorldState:
        """Record the new frame's keys/values (dynamics and decoder) and decode its pixels."""
        t0 = time.perf_counter()
        batch, position, reference = tokens.shape[0], state.position + 1, self.engine == "reference"
        ctx = ctx or self._context(state.dynamics_kv, position, batch, self.dynamics.transformer)
        if reference:
            kv = self.dynamics.step(tokens, codes, ctx, reference=True)[1]
        elif ctx.recorded:  # the frame kernel ran the record pass already
            kv = ctx.frame_kv()
        else:  # the record pass: no head, no last-layer FFN
            kv = self.dynamics.record(tokens, self.dynamics.frame_action(codes, batch), ctx)
        dynamics_kv = _window(state.dynamics_kv, kv, self.config.dynamics.st.window)
        t1 = time.perf_counter()
        dctx = self._context(state.decoder_kv, position, batch, self.tokenizer.decoder)
        pixels, dkv = self.tokenizer.decode_step(tokens, dctx, reference=reference)
        decoder_kv = _window(state.decoder_kv, dkv, self.config.tokenizer.decoder.window)
        frame = to_uint8(pixels)
        t2 = time.perf_counter()
        sample_ms = self._sample_ms if codes is not None else 0.0
        self._timings = {"dynamics": sample_ms + (t1 - t0) * 1e3, "decode": (t2 - t1) * 1e3}
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


def load_world(name: str | Path = "coinrun", device: str = "auto", precision: str = "auto", engine: str = "fast",
               kernels: bool = True) -> World:
    return World.load(name, device=device, precision=precision, engine=engine, kernels=kernels)
