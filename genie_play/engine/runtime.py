"""The runtime that carries out a Plan for one world: the three per-frame calls the World makes.

    sample(tokens, emb, ctx, ...)  the MaskGIT rounds of the new frame's tokens
    record(tokens, emb, ctx)       the final tokens' keys/values (skipped where `sample` recorded them)
    decode(tokens, ctx)            the frame's pixels and the decoder's keys/values

The "torch" route calls the models' own cached steps (DynamicsModel.sample_logits / record,
Tokenizer.decode_step); for int8 it first gives the play copies of the dynamics and decoder fbgemm
int8 linears (`FbgemmLinear`, an nn.Linear with the same parameters). The "c" route packs the
weights into C blocks (kernels.CBlock, kernels.CFrame) and calls the models only for the parts
around the transformer (embeddings, the decoder's input and output layers). Packed weights are
copies made from the parameters when the runtime is built; `Runtime.refresh` rebuilds them if the
parameters changed since (checked once per frame).
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn as nn

from ..models import maskgit
from ..models.st_block import ContextKV, FrameKV, STTransformer
from .kernels import CBlock, CFrame, Int8Weights
from .plan import Plan, library


class FbgemmLinear(nn.Linear):
    """nn.Linear run by fbgemm's dynamic int8 linear (per-channel int8 weights, activations quantised
    per call). fbgemm quantises with one scale per call, so each batch item (a leading index of a 3-d
    input, or `rows_per_item` rows of a 2-d one) gets its own call: batches equal single items."""

    def __init__(self, linear: nn.Linear, rows_per_item: int) -> None:
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        self.weight, self.bias, self.rows_per_item = linear.weight, linear.bias, rows_per_item
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
        from torch.ao.quantization import per_channel_dynamic_qconfig

        twin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        twin.load_state_dict({k: v.detach().float() for k, v in linear.state_dict().items()})
        twin.qconfig = per_channel_dynamic_qconfig
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
            warnings.simplefilter("ignore")
            self.packed = DynamicLinear.from_float(twin)._packed_params._packed_params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        if x.dim() == 3 and x.shape[0] > 1:
            items = x.unbind(0)
        elif rows.shape[0] > self.rows_per_item:
            items = rows.split(self.rows_per_item)
        else:
            return torch.ops.quantized.linear_dynamic(rows, self.packed, True).view(*x.shape[:-1], self.out_features)
        y = torch.cat([torch.ops.quantized.linear_dynamic(item, self.packed, True) for item in items])
        return y.view(*x.shape[:-1], self.out_features)


def with_fbgemm_linears(module: nn.Module, rows_per_item: int) -> nn.Module:
    """A copy of `module` whose nn.Linears are FbgemmLinears (the same parameters, no copies)."""
    module = copy.copy(module)
    module._modules = {name: (FbgemmLinear(child, rows_per_item) if type(child) is nn.Linear else with_fbgemm_linears(child, rows_per_item))
                       for name, child in module._modules.items()}
    return module


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
        d, t = self.dynamics, self.tokenizer
        if self.plan.route == "torch":  # play copies with fbgemm linears (rows per item: one frame's tokens)
            rows = d.cfg.tokens_per_frame + (d.cfg.action_mode == "token")
            self.play_dynamics = copy.copy(d)
            self.play_dynamics._modules = {**d._modules, "transformer": with_fbgemm_linears(d.transformer, rows),
                                           "head": FbgemmLinear(d.head, rows)}
            self.play_decoder = with_fbgemm_linears(t.decoder, t.cfg.tokens_per_frame)
            return
        lib = self.library
        self.dynamics_blocks = [CBlock(lib, block) for block in d.transformer.blocks]
        self.decoder_blocks = [CBlock(lib, block) for block in t.decoder.blocks]
        self.head = Int8Weights(lib, d.head) if lib.linear_fits(d.head) else None
        self.frame = CFrame(lib, d, self.dynamics_blocks, self.head) if self.plan.frame_kernel else None

    def context(self, frames: tuple[FrameKV, ...], position: int, batch: int, transformer: STTransformer) -> ContextKV:
        """The stacked keys/values of `frames` for the next frame of `transformer` (dynamics or decoder).
        A frame starts with the dynamics' context: the packed weights are checked then (`refresh`)."""
        per_frame = self.tokenizer.cfg.tokens_per_frame
        if transformer is self.dynamics.transformer:
            self.refresh()
            per_frame = self.dynamics.cfg.tokens_per_frame + (self.dynamics.cfg.action_mode == "token")
        cfg = transformer.cfg
        empty = (cfg.depth, batch * per_frame, cfg.heads, cfg.dim // cfg.heads, torch.float32, self.tokenizer.dec_out.weight.device)
        stacker = self.library.stack_context if self.library is not None else None
        return ContextKV(list(frames), position, empty, stacker=stacker)

    def sample(self, tokens: torch.Tensor, emb: torch.Tensor, ctx: ContextKV, steps: int, temperature: float,
               generator: torch.Generator) -> torch.Tensor:
        """MaskGIT over tokens (B, N) (all masked), emb (B, D) the frame's action embedding."""
        if self.library is not None:
            self.library.use_amx(self.plan.amx)  # a switch of the shared library: set for this world
        if getattr(self, "frame", None) is not None:  # every round and the record pass in one C call
            rope = ctx.rope(self.dynamics.transformer.cfg)
            tokens = self.frame.sample(tokens, emb, ctx, rope, steps, temperature, generator)
            ctx.recorded = True
            return tokens
        fn = lambda tok, pos: self._logits(tok, emb, ctx, pos)  # noqa: E731
        return maskgit.decode(fn, tokens, self.dynamics.cfg.mask_id, steps=steps, temperature=temperature, generator=generator,
                              masked_only=True, pick=maskgit.torch_pick if self.library is None else self.library.pick)

    def _logits(self, tokens: torch.Tensor, emb: torch.Tensor, ctx: ContextKV, positions: torch.Tensor) -> torch.Tensor:
        d = self.dynamics
        if self.plan.route == "torch":
            return getattr(self, "play_dynamics", d).sample_logits(tokens, emb, ctx, positions)
        y = self._c_blocks(self.dynamics_blocks, d.transformer, d.embed_frame(tokens, emb), ctx, True)
        if self.head is None:
            return d.logits_at(y, positions)
        if d.cfg.action_mode == "token":
            y = y[:, 1:]
        b, n, dim = y.shape
        y = y.reshape(b * n, dim).index_select(0, (positions + torch.arange(0, b * n, n)[:, None]).view(-1)).view(b, -1, dim)
        return self.library.linear(y, self.head, norm=d.transformer.norm)

    def record(self, tokens: torch.Tensor, emb: torch.Tensor, ctx: ContextKV) -> FrameKV:
        """The final tokens' keys/values (callers skip this where `sample` set ctx.recorded)."""
        d = self.dynamics
        if self.plan.route == "torch":
            return getattr(self, "play_dynamics", d).record(tokens, emb, ctx)
        self._c_blocks(self.dynamics_blocks, d.transformer, d.embed_frame(tokens, emb), ctx, False)
        return ctx.frame_kv()

    def decode(self, tokens: torch.Tensor, ctx: ContextKV) -> tuple[torch.Tensor, FrameKV]:
        """tokens (B, N) -> (pixels (B, H, W, 3) in [0, 1], the decoder's keys/values of the frame)."""
        t = self.tokenizer
        if self.plan.route == "torch":
            decoder = getattr(self, "play_decoder", t.decoder)
            return t.decoder_pixels(decoder.step(t.decoder_input(tokens), ctx)), ctx.frame_kv()
        y = self._c_blocks(self.decoder_blocks, t.decoder, t.decoder_input(tokens), ctx, True)
        return t.decoder_pixels(y), ctx.frame_kv()

    @staticmethod
    def _c_blocks(blocks: list[CBlock], transformer: STTransformer, x: torch.Tensor, ctx: ContextKV, need_output: bool):
        cos, sin = ctx.rope(transformer.cfg)
        last = len(blocks) - 1
        for i, block in enumerate(blocks):
            x = block.step(x, ctx.keys[i], ctx.keys_t[i], ctx.values[i], cos, sin, need_output or i < last)
        return x
