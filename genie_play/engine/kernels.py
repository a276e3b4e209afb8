"""ctypes bindings of the C library (build.load()): int8 weights, the C int8 linear, the context
stacker, one ST block per call (`CBlock`) and one MaskGIT frame per call (`CFrame`).

Every entry point takes contiguous fp32 (int8 / int32 / int64 where said) CPU tensors and checks
them before passing raw pointers. Results depend on each row alone, never on the batch or the
thread count.
"""
from __future__ import annotations

import ctypes

import torch

from ..models import maskgit

MAX_HEAD_DIM, MAX_LENGTH, LANES = 256, 4096, 16  # as in play_kernels.c and play_vec.h (LANES: the widest)
_p, _i, _f, _l = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_long


def _bind(lib: ctypes.CDLL, name: str, argtypes: list, restype=None):
    fn = getattr(lib, name)
    fn.argtypes, fn.restype = argtypes, restype
    return fn


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def check(*tensors: torch.Tensor) -> None:
    """The C code reads raw pointers: every tensor must be contiguous fp32 on the CPU."""
    for t in tensors:
        if t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"play kernels need contiguous fp32 CPU tensors, got {t.dtype} {t.device} {tuple(t.stride())}")


def supports_head_dim(head_dim: int) -> bool:
    return head_dim % LANES == 0 and head_dim <= MAX_HEAD_DIM


class _Int8Struct(ctypes.Structure):  # gp_int8 in play_vec.h
    _fields_ = [("packed", _p), ("scale", _p), ("offsets", _p), ("bias", _p), ("k", _i), ("n", _i)]


class _BlockStruct(ctypes.Structure):  # gp_block in play_frame.c
    _fields_ = [("norm_w", _p * 3), ("norm_b", _p * 3), ("norm_eps", _f * 3), ("linear", _Int8Struct * 6),
                ("gain_s", _p * 2), ("gain_t", _p * 2), ("qk_eps", _f), ("scale", _f), ("dim", _i), ("heads", _i), ("hidden", _i)]


class _DynamicsStruct(ctypes.Structure):  # gp_dynamics in play_frame.c
    _fields_ = [("blocks", _p), ("tok_emb", _p), ("pos", _p), ("norm_w", _p), ("norm_b", _p), ("norm_eps", _f),
                ("head", _Int8Struct), ("depth", _i), ("dim", _i), ("tokens", _i), ("vocab", _i)]


class _PlanStruct(ctypes.Structure):  # gp_plan in play_frame.c
    _fields_ = [("steps", _i), ("keep_masked", _p), ("u", _p), ("g", _p), ("use_u", _p), ("use_g", _p),
                ("noise_scale", _p), ("temperature", _f)]


class Library:
    """The library's Python face: its ISA, the AMX switch, the int8 linear, the C pick and the context
    stacker. amx=False never turns AMX on (GENIE_PLAY_AMX=0)."""

    def __init__(self, lib: ctypes.CDLL, amx: bool = True) -> None:
        self.isa = ("", "AVX2", "AVX-512 VNNI")[lib.gp_linear_isa()]  # the int8 product without AMX (a switch: has_amx)
        self.linear_available = bool(self.isa)
        self._use_amx = _bind(lib, "gp_linear_use_amx", [_i], _i)
        self.has_amx = self.use_amx(amx)  # asks Linux for the AMX tile state once, if amx
        self._linear = _bind(lib, "gp_linear", [_p, _i, _p, _p, _p, _p, _p, _p, _f, _i])
        self._stack = _bind(lib, "gp_stack_context", [_p, _p, _i, _l, _i, _p, _p, _i])
        self.block_step = _bind(lib, "gp_block_step", [_p, _p, _i, _i, _p, _p, _i, _p, _p, _i, _p, _p, _p, _i])
        self.block_work = _bind(lib, "gp_block_work_floats", [_p, _i, _i, _i], _l)
        self.block_bytes = _bind(lib, "gp_block_bytes", [_p, _i], _l)
        self.frame = _bind(lib, "gp_frame", [_p, _p, _i, _p, _p, _i, _p, _p, _p, _i, _p, _p, _p, _p, _p, _p, _p, _i])
        self.frame_work = _bind(lib, "gp_frame_work_floats", [_p, _i, _i], _l)
        self.frame_bytes = _bind(lib, "gp_frame_bytes", [_p, _i], _l)
        self._pick = _bind(lib, "gp_maskgit_pick", [_p, _i, _i, _p, _p, _f, _p, _f, _p, _p, _i])

    def use_amx(self, on: bool) -> bool:
        """Run the int8 products' 32-row blocks on AMX tiles where the CPU allows (a switch of the
        library, shared by every world; the sums are exact integers either way). Returns whether on."""
        return bool(self._use_amx(int(on)))

    def linear_fits(self, linear: torch.nn.Linear) -> bool:
        return self.linear_available and linear.in_features % LANES == 0 and linear.out_features % 16 == 0

    def linear(self, x: torch.Tensor, w: "Int8Weights", norm: torch.nn.LayerNorm | None = None) -> torch.Tensor:
        """x (..., K) -> (..., N) fp32: norm?(x) W^T + b with x quantised per row to 7 bits."""
        rows = x.reshape(-1, w.in_features).float().contiguous()
        m = rows.shape[0]
        y, scratch, a_scale = torch.empty(m, w.out_features), torch.empty(m * w.in_features, dtype=torch.uint8), torch.empty(m)
        nw, nb = (None, None) if norm is None else (norm.weight.detach().float().contiguous(), norm.bias.detach().float().contiguous())
        self._linear(rows.data_ptr(), m, ctypes.byref(w.struct()), y.data_ptr(), scratch.data_ptr(), a_scale.data_ptr(), _ptr(nw),
                     _ptr(nb), 0.0 if norm is None else norm.eps, torch.get_num_threads())
        return y.view(*x.shape[:-1], w.out_features)

    def pick(self, logits: torch.Tensor, u: torch.Tensor | None, positions: torch.Tensor, temperature: float,
             g: torch.Tensor | None, noise_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """maskgit.torch_pick in one C call (play_frame.c, the frame kernel's draw), for vocabularies
        that are a multiple of LANES (else torch_pick): the same draws up to float rounding at the CDF's steps."""
        b, m, v = logits.shape
        if v % LANES:
            return maskgit.torch_pick(logits, u, positions, temperature, g, noise_scale)
        logits, positions, u, g = logits.float().contiguous(), positions.contiguous(), _f32(u), _f32(g)
        sampled, logp = torch.empty(b, m, dtype=torch.long), torch.empty(b, m)
        self._pick(logits.data_ptr(), b * m, v, positions.data_ptr(), _ptr(u), temperature, _ptr(g), noise_scale,
                   sampled.data_ptr(), logp.data_ptr(), torch.get_num_threads())
        return sampled, logp

    def stack_context(self, frames: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer's context from its frames' (k, v), each (R, H, 1, hd), oldest first -> (ctx_k,
        ctx_v), each (R, H, L+1, hd), the last slot left for the new frame."""
        check(*(t for kv in frames for t in kv))
        r, h, _, hd = frames[0][0].shape
        length = len(frames) + 1
        ctx_k, ctx_v = torch.empty(r, h, length, hd), torch.empty(r, h, length, hd)
        ks = (_p * len(frames))(*(k.data_ptr() for k, _ in frames))
        vs = (_p * len(frames))(*(v.data_ptr() for _, v in frames))
        self._stack(ks, vs, len(frames), r * h, hd, ctx_k.data_ptr(), ctx_v.data_ptr(), torch.get_num_threads())
        return ctx_k, ctx_v


class Int8Weights:
    """An nn.Linear's weight for the C int8 linear: int8 per output channel (symmetric, scale =
    max |w| / 127) in blocks of 16 output columns, each a run of groups of 4 inputs x 16 columns
    (64 bytes, a column's 4 inputs together: AMX's B-tile layout), with the fp32 bias."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        w = linear.weight.detach().float()
        self.out_features, self.in_features = w.shape
        self.scale = (w.abs().amax(1).clamp_min(1e-30) / 127).contiguous()  # (N,)
        q = torch.round(w / self.scale[:, None]).clamp_(-127, 127).to(torch.int8).contiguous()  # (N, K)
        self.offsets = (64 * q.sum(1, dtype=torch.int32)).to(torch.int32).contiguous()  # the activations' +64
        self.packed = q.view(self.out_features // 16, 16, self.in_features // 4, 4).transpose(1, 2).contiguous()
        self.bias = None if linear.bias is None else linear.bias.detach().float().contiguous()

    def struct(self) -> _Int8Struct:
        return _Int8Struct(self.packed.data_ptr(), self.scale.data_ptr(), self.offsets.data_ptr(), _ptr(self.bias),
                           self.in_features, self.out_features)


def _f32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().float().contiguous()


class CBlock:
    """One ST block's cached step as one C call (play_frame.c): LayerNorms, the six int8 linears and
    both attentions. Holds copies of the block's parameters, made when built."""

    def __init__(self, library: Library, block) -> None:
        linears = [block.spatial.qkv, block.spatial.out, block.temporal.qkv, block.temporal.out, block.ffn[0], block.ffn[2]]
        self.library, self.heads, self.dim = library, block.cfg.heads, block.cfg.dim
        self.weights = [Int8Weights(m) for m in linears]
        norms = (block.norm_s, block.norm_t, block.norm_f)
        self.keep = [(_f32(n.weight), _f32(n.bias)) for n in norms]
        gain_s, gain_t, scale = block.qk_gains()
        self.gains = [g.contiguous() for g in (gain_s[0, 0], gain_s[1, 0], gain_t[0, 0], gain_t[1, 0])]
        st = self.struct = _BlockStruct()
        for i, ((w, b), n) in enumerate(zip(self.keep, norms)):
            st.norm_w[i], st.norm_b[i], st.norm_eps[i] = w.data_ptr(), _ptr(b), n.eps
        for i, weights in enumerate(self.weights):
            st.linear[i] = weights.struct()
        st.gain_s[0], st.gain_s[1], st.gain_t[0], st.gain_t[1] = (g.data_ptr() for g in self.gains)
        st.qk_eps, st.scale, st.dim, st.heads, st.hidden = block.spatial.q_norm.eps, scale, self.dim, self.heads, self.weights[4].out_features
        self._work: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def step(self, x: torch.Tensor, ctx_k: torch.Tensor, ctx_v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
             need_output: bool, only: torch.Tensor | None = None) -> torch.Tensor | None:
        """x (B, N, D) -> (B, N, D) (with only (B, M), those rows alone: (B, M, D)), or None without
        need_output (only the keys/values written)."""
        b, n, d = x.shape
        rows, length, threads = b * n, ctx_k.shape[2], torch.get_num_threads()
        x = x.float().contiguous()
        check(ctx_k, ctx_v, cos, sin)
        hd = d // self.heads
        if ctx_k.shape != (rows, self.heads, length, hd) or ctx_v.shape != ctx_k.shape or length > MAX_LENGTH:
            raise ValueError(f"play kernels: context {tuple(ctx_k.shape)} does not fit x {tuple(x.shape)}")
        key = (rows, n, threads)
        if key not in self._work:  # reused: a fresh ~1 MB buffer per call would be mapped and faulted in each time
            ref = ctypes.byref(self.struct)
            self._work = {key: (torch.empty(self.library.block_work(ref, rows, n, threads)),
                                torch.empty(self.library.block_bytes(ref, rows), dtype=torch.uint8))}
        work, scratch = self._work[key]
        out = torch.empty(rows, d) if need_output else None
        self.library.block_step(ctypes.byref(self.struct), x.data_ptr(), b, n, ctx_k.data_ptr(), ctx_v.data_ptr(),
                                length, cos.data_ptr(), sin.data_ptr(), int(need_output), _ptr(out), work.data_ptr(),
                                scratch.data_ptr(), threads)
        if out is None:
            return None
        return out.view(b, n, d) if only is None else out.view(b, n, d).gather(1, only[..., None].expand(-1, -1, d))


class CFrame:
    """All MaskGIT rounds of a frame and its record pass in one C call (play_frame.c), for dynamics
    with "add" actions: the same kernels as the CBlocks, the same random numbers drawn in the same
    order as maskgit.decode, so the same tokens as the per-block loop with the C blocks."""

    def __init__(self, library: Library, dynamics, blocks: list[CBlock], head: Int8Weights) -> None:
        cfg, norm = dynamics.cfg, dynamics.transformer.norm
        self.library, self.blocks, self.head, self.cfg = library, blocks, head, cfg
        self.keep = [_f32(t) for t in (dynamics.tok_emb.weight, dynamics.pos.table, norm.weight, norm.bias)]
        self._blocks = (_BlockStruct * len(blocks))(*(b.struct for b in blocks))
        tok_emb, pos, norm_w, norm_b = self.keep
        self.struct = _DynamicsStruct(ctypes.addressof(self._blocks), tok_emb.data_ptr(), pos.data_ptr(), norm_w.data_ptr(),
                                      _ptr(norm_b), norm.eps, head.struct(), len(blocks), cfg.st.dim, cfg.tokens_per_frame, cfg.vocab)
        self._buffers: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}

    def sample(self, tokens: torch.Tensor, emb: torch.Tensor, context, steps: int, temperature: float,
               generator: torch.Generator | None) -> torch.Tensor:
        """maskgit.decode over tokens (B, N) (every row with the same number masked) with this
        model's logits; emb (B, D) the frame's action embedding; context: a ContextKV.
        Returns the filled tokens; the final tokens' keys/values are left in the context's scratch
        slot (context.recorded)."""
        tokens = tokens.to(torch.long).contiguous().clone()
        b, n = tokens.shape
        masked = maskgit.masked_positions(tokens, self.cfg.mask_id)
        m = masked.shape[1]
        positions = torch.zeros(b, n, dtype=torch.int32)
        positions[:, :m] = masked
        rounds = maskgit.plan_rounds(m, n, steps, temperature, generator)
        zeros = torch.zeros(n)
        u = torch.stack([zeros if r.u is None else r.u.float() for r in rounds])  # (steps, N)
        g = torch.stack([zeros if r.g is None else r.g[0].float() for r in rounds])
        counts = torch.tensor([[r.keep_masked, r.u is not None, r.g is not None] for r in rounds], dtype=torch.int32).T.contiguous()
        noise = torch.tensor([r.noise_scale for r in rounds], dtype=torch.float32)
        plan = _PlanStruct(steps, counts[0].data_ptr(), u.data_ptr(), g.data_ptr(), counts[1].data_ptr(), counts[2].data_ptr(),
                           noise.data_ptr(), temperature)
        ks, vs = context.keys, context.values
        cos, sin = context.rope(self.cfg.st)
        check(*ks, *vs, cos, sin)
        if any(t.shape[0] != b * n for t in (*ks, *vs)):
            raise ValueError(f"play frame: context {tuple(ks[0].shape)} does not fit tokens {tuple(tokens.shape)}")
        emb = emb.detach().float().contiguous()
        threads = torch.get_num_threads()
        if (b, threads) not in self._buffers:  # reused: fresh megabytes per frame would be mapped and faulted in each time
            ref, rows = ctypes.byref(self.struct), b * self.cfg.tokens_per_frame
            self._buffers = {(b, threads): (torch.empty(self.library.frame_work(ref, b, threads)),
                                            torch.empty(self.library.frame_bytes(ref, b), dtype=torch.uint8),
                                            torch.empty(rows, dtype=torch.long), torch.empty(rows, dtype=torch.long),
                                            torch.empty(rows, dtype=torch.int32))}
        work, scratch, sampled, rows_at, order = self._buffers[b, threads]
        arrays = [(_p * len(ts))(*(t.data_ptr() for t in ts)) for ts in (ks, vs)]
        self.library.frame(ctypes.byref(self.struct), ctypes.byref(plan), b, tokens.data_ptr(), positions.data_ptr(), m,
                           emb.data_ptr(), *arrays, ks[0].shape[2], cos.data_ptr(), sin.data_ptr(), work.data_ptr(),
                           scratch.data_ptr(), sampled.data_ptr(), rows_at.data_ptr(), order.data_ptr(), threads)
        context.recorded = True
        return tokens
