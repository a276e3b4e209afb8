"""The runtime that carries out a Plan for one world: the per-frame calls the World makes
(`context`, `sample`, `record`, `decode`; README.md in this folder has how a frame flows).

In int8 the transformers' blocks are packed copies with one `step` signature (kernels.CBlock, and
kernels.CFrame for a whole frame, on the "c" route; fbgemm.FbgemmBlock on the "torch" route); the
models are called only for the parts around them (embeddings, the decoder's input and output).
"""
from __future__ import annotations

import torch

from ..models import maskgit
from ..models.st_block import ContextKV, FrameKV, STTransformer
from .fbgemm import FbgemmBlock, FbgemmLinear
from .kernels import CBlock, CFrame, Int8Weights
from .plan import Plan, library


class Runtime:
    """Runs `plan` for a world's tokenizer and dynamics (already on the plan's device and dtype)."""

    def __init__(self, plan: Plan, tokenizer, dynamics) -> None:
        self.plan, self.tokenizer, self.dynamics = plan, tokenizer, dynamics
        self.library = library() if plan.route == "c" else None
        if plan.route == "c" and self.library is None:
            raise ValueError(f"plan {plan.summary()} needs the C kernels, which are not available here")
        if plan.frame_kernel and (dynamics.cfg.action_mode != "add" or dynamics.cfg.vocab % 16):
            raise ValueError("the C frame kernel runs dynamics with 'add' actions and a vocabulary that is a multiple of 16")
        self._stamp: tuple = ()
        # where the parameters live (their dicts, so a replaced parameter is seen too): read once per frame
        self._slots = [(m._parameters, name) for model in (dynamics, tokenizer.decoder) for m in model.modules() for name in m._parameters]
        self.refresh()

    def _parameters(self) -> tuple:
        return tuple((id(p), p._version, p.data_ptr()) for d, name in self._slots if (p := d[name]) is not None)

    def refresh(self) -> None:
        """(Re)build the packed weights if the parameters changed since they were last built."""
        if self.plan.precision != "int8" or self._stamp == (stamp := self._parameters()):
            return
        self._stamp = stamp
        d, t, lib = self.dynamics, self.tokenizer, self.library
        block = FbgemmBlock if lib is None else (lambda b: CBlock(lib, b))
        self.dynamics_blocks = [block(b) for b in d.transformer.blocks]
        self.decoder_blocks = [block(b) for b in t.decoder.blocks]
        if lib is None:
            self.head = FbgemmLinear(d.head, d.transformer.norm)  # (B, M, D) -> logits (B, M, vocab)
            return
        weights = Int8Weights(d.head) if lib.linear_fits(d.head) else None
        norm = d.transformer.norm
        self.head = (lambda y: d.head(norm(y))) if weights is None else (lambda y: lib.linear(y, weights, norm=norm))
        self.frame = CFrame(lib, d, self.dynamics_blocks, weights) if self.plan.frame_kernel else None

    def context(self, frames: tuple[FrameKV, ...], position: int, batch: int, transformer: STTransformer) -> ContextKV:
        """The stacked keys/values of `frames` for the next frame of `transformer` (dynamics or decoder).
        A frame starts with the dynamics' context: the packed weights are checked then (`refresh`)."""
        per_frame = self.tokenizer.cfg.tokens_per_frame
        if transformer is self.dynamics.transformer:
            self.refresh()
            per_frame = self.dynamics.cfg.tokens_per_frame + (self.dynamics.cfg.action_mode == "token")
        cfg = transformer.cfg
        empty = (cfg.depth, batch * per_frame, cfg.heads, cfg.dim // cfg.heads, torch.float32, self.tokenizer.dec_out.weight.device)
        return ContextKV(list(frames), position, empty, stacker=None if self.library is None else self.library.stack_context)

    def sample(self, tokens: torch.Tensor, emb: torch.Tensor, ctx: ContextKV, steps: int, temperature: float,
               generator: torch.Generator) -> torch.Tensor:
        """MaskGIT over tokens (B, N) (all masked), emb (B, D) the frame's action embedding."""
        if self.library is not None:
            self.library.use_amx(self.plan.amx)  # a switch of the shared library: set for this world
        if getattr(self, "frame", None) is not None:  # every round and the record pass in one C call
            return self.frame.sample(tokens, emb, ctx, steps, temperature, generator)
        fn = lambda tok, pos: self._logits(tok, emb, ctx, pos)  # noqa: E731
        return maskgit.decode(fn, tokens, self.dynamics.cfg.mask_id, steps=steps, temperature=temperature, generator=generator,
                              masked_only=True, pick=maskgit.torch_pick if self.library is None else self.library.pick)

    def _logits(self, tokens: torch.Tensor, emb: torch.Tensor, ctx: ContextKV, positions: torch.Tensor) -> torch.Tensor:
        d = self.dynamics
        if self.plan.precision != "int8":
            return d.sample_logits(tokens, emb, ctx, positions)
        only = positions + (d.cfg.action_mode == "token")  # the still-masked tokens' rows: all the head reads
        return self.head(self._blocks(self.dynamics_blocks, d.transformer, d.embed_frame(tokens, emb), ctx, True, only))

    def record(self, tokens: torch.Tensor, emb: torch.Tensor, ctx: ContextKV) -> FrameKV:
        """The final tokens' keys/values (callers skip this where `sample` set ctx.recorded)."""
        d = self.dynamics
        if self.plan.precision != "int8":
            return d.record(tokens, emb, ctx)
        self._blocks(self.dynamics_blocks, d.transformer, d.embed_frame(tokens, emb), ctx, False)
        return ctx.frame_kv()

    def decode(self, tokens: torch.Tensor, ctx: ContextKV) -> tuple[torch.Tensor, FrameKV]:
        """tokens (B, N) -> (pixels (B, H, W, 3) in [0, 1], the decoder's keys/values of the frame)."""
        t = self.tokenizer
        if self.plan.precision != "int8":
            return t.decode_step(tokens, ctx)
        return t.decoder_pixels(self._blocks(self.decoder_blocks, t.decoder, t.decoder_input(tokens), ctx, True)), ctx.frame_kv()

    @staticmethod
    def _blocks(blocks: list, transformer: STTransformer, x: torch.Tensor, ctx: ContextKV, need_output: bool,
                only: torch.Tensor | None = None):
        """The int8 blocks (CBlock or FbgemmBlock) of `transformer` over x (B, N, D) against ctx; with
        only (B, M), the output of those rows alone."""
        cos, sin = ctx.rope(transformer.cfg)
        last = len(blocks) - 1
        for i, block in enumerate(blocks):
            x = block.step(x, ctx.keys[i], ctx.values[i], cos, sin, need_output or i < last, only if i == last else None)
        return x
