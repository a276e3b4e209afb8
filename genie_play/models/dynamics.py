"""MaskGIT dynamics model: past token grids + latent actions -> logits for the next frame's tokens.

Input token grids (B, T, N) may contain the mask id (= vocab size) anywhere; the model returns
logits over the codebook for every position of every frame (B, T, N, vocab). The action that led
from frame t-1 to frame t conditions frame t (frame 0 gets a learned "no action" vector). Actions
arrive as vectors from the LAM's codebook (stop-gradient in training), projected to the model width.
Training may replace some transitions' actions by the same "no action" vector (`drop`), so that the
model also learns what happens next when no action is given: what a world does when no key is
pressed (`world.NO_ACTION`).

Two ways in for the action (`action_mode`):
- "add":   added to every token embedding of its frame (the Genie paper);
- "token": one extra token per frame that spatial attention can read (one reimplementation found
  this essential for faithful CoinRun generations). Its output is discarded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .patches import PositionTable
from .st_block import ContextKV, FrameKV, STConfig, STTransformer, init_weights


@dataclass
class DynamicsConfig:
    grid: tuple[int, int] = (8, 8)  # tokens per frame, rows and columns (the tokenizer's grid)
    vocab: int = 1024  # token vocabulary (the tokenizer's codebook size)
    action_dim: int = 32  # width of a latent action vector (the LAM's code_dim)
    num_actions: int = 8  # latent actions (the LAM's codebook size): the keys a player gets
    action_mode: str = "add"  # "add" | "token": how the action enters (module docstring)
    # 3 layers, FFN x3: ~3.3M parameters, about compute-optimal for the tokens a few CPU-hours see,
    # and ~0.4 GFLOP per MaskGIT step (25 steps + 1 per frame must fit in ~100 ms on 2 cores).
    st: STConfig = field(default_factory=lambda: STConfig(dim=256, depth=3, heads=4, mlp_ratio=3.0, window=16))

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def mask_id(self) -> int:
        return self.vocab


class DynamicsModel(nn.Module):
    def __init__(self, cfg: DynamicsConfig) -> None:
        super().__init__()
        if cfg.action_mode not in ("add", "token"):
            raise ValueError(f"action_mode must be 'add' or 'token', not {cfg.action_mode!r}")
        self.cfg = cfg
        d = cfg.st.dim
        self.tok_emb = nn.Embedding(cfg.vocab + 1, d)  # + the mask token
        self.pos = PositionTable(cfg.tokens_per_frame + (cfg.action_mode == "token"), d)
        self.action_proj = nn.Linear(cfg.action_dim, d)
        self.no_action = nn.Parameter(torch.zeros(d))
        self.transformer = STTransformer(cfg.st)
        self.head = nn.Linear(d, cfg.vocab)
        init_weights(self)

    def _embed(self, tokens: torch.Tensor, action_emb: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, N), action_emb (B, T, D) -> (B, T, N or N+1, D)."""
        x = self.tok_emb(tokens)
        if self.cfg.action_mode == "add":
            x = x + action_emb[:, :, None, :]
        else:
            x = torch.cat([action_emb[:, :, None, :].to(x.dtype), x], dim=2)
        return self.pos(x)

    def action_embedding(self, actions: torch.Tensor | None, batch: int, drop: torch.Tensor | None = None) -> torch.Tensor:
        """actions (B, T-1, action_dim) or None -> (B, T, D) with 'no action' for frame 0 and for the
        transitions where drop (B, T-1) bool is True."""
        first = self.no_action.expand(batch, 1, -1)
        if actions is None or actions.shape[1] == 0:
            return first
        projected = self.action_proj(actions)
        if drop is not None:
            projected = torch.where(drop[..., None], self.no_action.to(projected.dtype), projected)
        return torch.cat([first.to(projected.dtype), projected], dim=1)

    def forward(self, tokens: torch.Tensor, actions: torch.Tensor, t0: int = 0, drop: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T, N) (mask id allowed), actions (B, T-1, action_dim) -> logits (B, T, N, vocab);
        drop (B, T-1) bool: transitions given 'no action' instead.

        actions[:, t] is the action from frame t to frame t+1 and conditions frame t+1."""
        b, t, _ = tokens.shape
        if actions.shape[1] != t - 1:
            raise ValueError(f"need T-1={t - 1} actions for {t} frames, got {actions.shape[1]}")
        y = self.transformer(self._embed(tokens, self.action_embedding(actions, b, drop)), t0=t0)
        return self.head(y[..., 1:, :] if self.cfg.action_mode == "token" else y)  # the action tokens' outputs dropped

    # -- play: one frame at a time against cached context ----------------------------------------
    def frame_action(self, action: torch.Tensor | None, batch: int, drop: torch.Tensor | None = None) -> torch.Tensor:
        """The action embedding (B, D) of one new frame: action (B, action_dim) that led to it, or
        None for the first frame; rows where drop (B,) bool is True get 'no action', as in
        `action_embedding`. Computed once per frame, not once per MaskGIT step, and one row at a
        time: a product's rounding can depend on its row count (one row takes MKL's gemv, a few its
        gemm, ~5e-7 apart), and a batch of rollouts must give exactly single rollouts' frames."""
        if action is None:
            return self.no_action.expand(batch, -1)
        emb = torch.cat([self.action_proj(row[None]) for row in action])
        return emb if drop is None else torch.where(drop[:, None], self.no_action.to(emb.dtype), emb)

    def embed_frame(self, tokens: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """tokens (B, N), emb (B, D) from `frame_action` -> (B, N or N+1, D), the values `_embed`
        gives (for "add", its sums in its order, in place and without module calls)."""
        if self.cfg.action_mode != "add":
            return self._embed(tokens[:, None], emb[:, None])[:, 0]
        x = F.embedding(tokens, self.tok_emb.weight)
        return x.add_(emb[:, None, :].to(x.dtype)).add_(self.pos.table.to(x.dtype))

    def sample_logits(self, tokens: torch.Tensor, emb: torch.Tensor, context: ContextKV, positions: torch.Tensor | None = None) -> torch.Tensor:
        """The cached step of one new frame (one MaskGIT round): tokens (B, N) at context.position
        (mask id allowed), emb (B, D) from `frame_action` -> logits (B, M, vocab) for `positions`
        (B, M) only (all N if None). Revealed tokens are never resampled, so their final norm, head
        (8% of a round's FLOPs at vocab 1024) and sampling work are skipped. The frame's keys/values
        stay in the context's scratch slot (`context.frame_kv()`)."""
        y = self.transformer.step(self.embed_frame(tokens, emb), context)
        if self.cfg.action_mode == "token":
            y = y[:, 1:]
        b, n, d = y.shape
        if positions is not None:  # rows of the flattened batch: a copy of M rows, cheaper than gather
            rows = (positions + torch.arange(0, b * n, n, device=y.device)[:, None]).view(-1)
            y = y.reshape(b * n, d).index_select(0, rows).view(b, -1, d)
        return self.head(self.transformer.norm(y))

    def record(self, tokens: torch.Tensor, emb: torch.Tensor, context: ContextKV) -> FrameKV:
        """The final tokens' keys/values (B, N) -> FrameKV, without the last layer's FFN and head."""
        self.transformer.step(self.embed_frame(tokens, emb), context, need_output=False)
        return context.frame_kv()
