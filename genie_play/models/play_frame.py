"""A whole frame of MaskGIT play as one C call (play_frame.c), for dynamics whose blocks are fused.

With every ST block one C call (play_kernels.FusedBlock), a frame of 25 MaskGIT rounds still costs
~25 x 12 calls from Python (embedding, blocks, final norm and head, the draw, ranking and token
updates) plus the record pass, and the second core waits in OpenMP's barrier while the interpreter
runs. `FusedFrame.sample` does all of it in one call: the same kernels, the same random numbers
(maskgit.plan_rounds draws them from the World's generator first, exactly as maskgit.decode
does), and so the same tokens as the round-by-round path with the same kernels
(tests/test_play_frame.py).
"""
from __future__ import annotations

import ctypes

import torch

from . import maskgit
from .play_kernels import LANES, PlayKernels, _BlockStruct, _check, _Int8Struct
from .st_block import ContextKV


class _DynamicsStruct(ctypes.Structure):  # gp_dynamics in play_frame.c
    _fields_ = [("blocks", ctypes.c_void_p), ("tok_emb", ctypes.c_void_p), ("pos", ctypes.c_void_p),
                ("norm_w", ctypes.c_void_p), ("norm_b", ctypes.c_void_p), ("norm_eps", ctypes.c_float),
                ("head", _Int8Struct), ("depth", ctypes.c_int), ("dim", ctypes.c_int), ("tokens", ctypes.c_int),
                ("vocab", ctypes.c_int)]


class _PlanStruct(ctypes.Structure):  # gp_plan in play_frame.c
    _fields_ = [("steps", ctypes.c_int), ("keep_masked", ctypes.c_void_p), ("u", ctypes.c_void_p), ("g", ctypes.c_void_p),
                ("use_u", ctypes.c_void_p), ("use_g", ctypes.c_void_p), ("noise_scale", ctypes.c_void_p),
                ("temperature", ctypes.c_float)]


def _pointers(tensors: list[torch.Tensor]) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*(t.data_ptr() for t in tensors))


class FusedFrame:
    """MaskGIT rounds and the record pass of a DynamicsModel ("add" actions) in one C call.

    Built by `build` from the blocks' current FusedBlocks and the head's C int8 weights; `current()`
    says whether the model's parameters are still the ones it was built from."""

    def __init__(self, kernels: PlayKernels, dynamics, blocks: list, head) -> None:
        p, i = ctypes.c_void_p, ctypes.c_int
        lib = kernels.lib
        self._frame = lib.gp_frame
        self._frame.argtypes = [p, p, i, p, p, i, p, p, p, p, i, p, p, i, p, p, p, p, p, i]
        self._frame.restype = None
        self._work_floats, self._bytes = lib.gp_frame_work_floats, lib.gp_frame_bytes
        self._work_floats.argtypes, self._work_floats.restype = [p, i, i], ctypes.c_long
        self._bytes.argtypes, self._bytes.restype = [p, i], ctypes.c_long
        cfg, norm = dynamics.cfg, dynamics.transformer.norm
        self.blocks, self.head, self.tokens, self.dim, self.vocab = blocks, head, cfg.tokens_per_frame, cfg.st.dim, cfg.vocab
        self.mask_id = cfg.mask_id
        self.sources = [(t, t._version, t.data_ptr()) for t in (dynamics.tok_emb.weight, dynamics.pos.table, *norm.parameters())]
        self.keep = [t.detach().float().contiguous() for t in (dynamics.tok_emb.weight, dynamics.pos.table, norm.weight)]
        self.keep.append(None if norm.bias is None else norm.bias.detach().float().contiguous())
        self._blocks = (_BlockStruct * len(blocks))(*(b.struct for b in blocks))
        tok_emb, pos, norm_w, norm_b = self.keep
        self.struct = _DynamicsStruct(
            ctypes.addressof(self._blocks), tok_emb.data_ptr(), pos.data_ptr(), norm_w.data_ptr(),
            None if norm_b is None else norm_b.data_ptr(), norm.eps,
            _Int8Struct(head.packed.data_ptr(), head.scale.data_ptr(), head.offsets.data_ptr(),
                        None if head.bias is None else head.bias.data_ptr(), head.in_features, head.out_features),
            len(blocks), self.dim, self.tokens, self.vocab,
        )
        self._buffers: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}

    @classmethod
    def build(cls, kernels: PlayKernels | None, dynamics) -> "FusedFrame | None":
        """The frame kernel for `dynamics` when every block is fused and the head runs on the C int8
        linear (World._pack_kernels arranges both on int8 worlds), else None."""
        if kernels is None or dynamics.cfg.action_mode != "add" or dynamics.cfg.vocab % LANES:
            return None
        blocks = [block.current_fused() for block in dynamics.transformer.blocks]
        packed = dynamics.head.__dict__.get("_packed")
        if any(b is None for b in blocks) or packed is None or packed.kernels is None or not packed.valid_for(dynamics.head):
            return None
        return cls(kernels, dynamics, blocks, packed.packed)

    def current(self, dynamics) -> bool:
        """Still what `dynamics` would run: the same fused blocks installed (and current), the same
        packed head, the same embeddings and final norm."""
        packed = dynamics.head.__dict__.get("_packed")
        installed = zip(dynamics.transformer.blocks, self.blocks)
        return (all(block.__dict__.get("_fused") is fused and fused.current() for block, fused in installed)
                and packed is not None and packed.packed is self.head
                and packed.valid_for(dynamics.head) and all(t._version == v and t.data_ptr() == ptr for t, v, ptr in self.sources))

    def _buffers_for(self, items: int, threads: int) -> tuple[torch.Tensor, ...]:
        key = (items, threads)
        if key not in self._buffers:  # reused: fresh megabytes per frame would be mapped and faulted in each time
            ref, rows = ctypes.byref(self.struct), items * self.tokens
            self._buffers = {key: (torch.empty(self._work_floats(ref, items, threads)),
                                   torch.empty(self._bytes(ref, items), dtype=torch.uint8),
                                   torch.empty(rows, dtype=torch.long), torch.empty(rows, dtype=torch.long),
                                   torch.empty(rows, dtype=torch.int32))}
        return self._buffers[key]

    @torch.inference_mode()
    def sample(self, tokens: torch.Tensor, emb: torch.Tensor, context: ContextKV, transformer, steps: int = 25,
               temperature: float = 1.0, generator: torch.Generator | None = None,
               schedule=maskgit.cosine_schedule, choice_temperature: float = 1.0, record: bool = True) -> torch.Tensor:
        """maskgit.decode(..., masked_only=True) over tokens (B, N) with this model's logits and the
        C pick: the filled tokens (B, N). emb (B, D): the frame's action embedding (frame_action).
        With record, the final tokens' keys/values are left in the context's scratch slot (what
        DynamicsModel.record would write), and `context.recorded` is set."""
        if steps < 1:
            raise ValueError("steps must be >= 1")
        tokens = tokens.to(torch.long).contiguous().clone()
        b, n = tokens.shape
        masked = tokens == self.mask_id
        m = int(masked[0].sum())
        if int(masked.sum()) != b * m:
            raise ValueError("every row must start with the same number of masked positions")
        positions = torch.zeros(b, n, dtype=torch.int32)
        positions[:, :m] = masked.nonzero()[:, 1].view(b, m).to(torch.int32)  # ascending in each row
        rounds = maskgit.plan_rounds(m, n, steps, temperature, generator, schedule, choice_temperature)
        zeros = torch.zeros(n)
        u = torch.stack([zeros if r.u is None else r.u.float() for r in rounds])  # (steps, N)
        g = torch.stack([zeros if r.g is None else r.g[0].float() for r in rounds])
        counts = torch.tensor([[r.keep_masked, r.u is not None, r.g is not None] for r in rounds], dtype=torch.int32).T.contiguous()
        noise = torch.tensor([r.noise_scale for r in rounds], dtype=torch.float32)
        plan = _PlanStruct(steps, counts[0].data_ptr(), u.data_ptr(), g.data_ptr(), counts[1].data_ptr(), counts[2].data_ptr(),
                           noise.data_ptr(), temperature)
        cos, sin, _ = context.prepared(transformer)
        keys_t = context.keys_transposed()
        ks, vs = [k for k, _ in context.buffers], [v for _, v in context.buffers]
        length = ks[0].shape[2]
        _check(*ks, *vs, *keys_t)  # contiguous fp32 on the CPU, as the C code reads them
        if any(t.shape[0] != b * n for t in (*ks, *vs, *keys_t)):
            raise ValueError(f"play frame: context {tuple(ks[0].shape)} does not fit tokens {tuple(tokens.shape)}")
        emb = emb.detach().float().contiguous()
        threads = torch.get_num_threads()
        work, scratch, sampled, rows_at, order = self._buffers_for(b, threads)
        self._frame(
            ctypes.byref(self.struct), ctypes.byref(plan), b, tokens.data_ptr(), positions.data_ptr(), m, emb.data_ptr(),
            _pointers(ks), _pointers(keys_t), _pointers(vs), length, cos.data_ptr(), sin.data_ptr(), int(record),
            work.data_ptr(), scratch.data_ptr(), sampled.data_ptr(), rows_at.data_ptr(), order.data_ptr(), threads,
        )
        context.recorded = record
        return tokens
