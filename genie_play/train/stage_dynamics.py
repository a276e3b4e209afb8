"""Phase 2: train the latent action model and the dynamics model together.

On each clip (B, T, H, W, 3):
- the frozen tokenizer turns frames into token grids (B, T, N);
- the LAM infers the action of every transition from pixels and predicts frame t+1 from frames
  1..t and that action (MSE + VQ losses); random context patches are dropped so that the action,
  not the context, has to carry the change;
- the dynamics model sees the token grids with frames 2..T masked at a rate drawn per frame from
  U[mask_min, 1] (the paper's U[0.5, 1]) and the LAM's actions with a stop-gradient; loss =
  cross-entropy on the masked tokens. Frame 1 is never masked: at play time it is the prompt.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import BadSettingError
from ..models.dynamics import DynamicsModel
from ..models.lam import LatentActionModel
from ..presets import WorldConfig
from ..models.tokenizer import Tokenizer
from ..models.vq import VQOutput
from .codebook import batch_perplexity, restart_dead_codes, usage_entropy, usage_perplexity
from .pictures import grid, save_png
from .stage_tokenizer import psnr_from_mse


@dataclass
class DynamicsLossConfig:
    mask_min: float = 0.5  # mask rate ~ U[mask_min, 1] per frame
    lam_beta: float = 0.25  # commitment weight of the LAM's VQ
    lam_context_drop: float = 0.5  # max fraction of LAM decoder context patches dropped
    lam_weight: float = 1.0  # weight of the LAM's loss (reconstruction + VQ) beside the dynamics' cross-entropy
    # With the LAM's soft VQ (model.lam.vq.soft_temperature > 0): weight of the batch's action-usage
    # entropy (maximised, so all actions stay in use) and of each transition's own entropy
    # (minimised, so each transition commits to one action).
    lam_usage_weight: float = 0.01  # soft VQ: weight of the batch's action-usage entropy (maximised)
    lam_confidence_weight: float = 0.001  # soft VQ: weight of each transition's own entropy (minimised)
    # Probability that a transition's action is replaced by the dynamics' "no action" vector, so the
    # model also learns what happens next when no key is pressed (world.NO_ACTION: a released key,
    # a jump that comes back down). 0 (the default) = never.
    action_drop: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.action_drop < 1.0:
            raise BadSettingError(f"loss.action_drop must be in [0, 1), got {self.action_drop}")


def lam_losses(lam: LatentActionModel, frames: torch.Tensor, lc: DynamicsLossConfig) -> tuple[VQOutput, torch.Tensor, torch.Tensor]:
    """The LAM's part of phase 2 on clips (B, T, H, W, 3) uint8: (its actions over (B, T-1), the
    decoder's pixel MSE, the quantiser's loss). The decoder predicts frame t+1 from frames 1..t with
    random context patches dropped, so the action, not the context, has to carry the change."""
    b, t = frames.shape[:2]
    act = lam.infer(frames)
    drop_rate = torch.rand(b, t - 1, 1, device=frames.device) * lc.lam_context_drop
    drop = torch.rand(b, t - 1, lam.cfg.tokens_per_frame, device=frames.device) < drop_rate
    pred = lam.predict_next(frames[:, :-1], act.quantized, drop=drop).float()
    mse = F.mse_loss(pred, frames[:, 1:].float() / 255.0)
    if act.probs is None:  # straight-through VQ: codebook and commitment losses (and dead-code restarts)
        vq = F.mse_loss(act.z_q, act.z_e.detach()) + lc.lam_beta * F.mse_loss(act.z_e, act.z_q.detach())
    else:  # soft VQ: the decoder's gradient moves codes and encoder; a commitment pull would
        # collapse the encoder onto one code before the actions start to help the decoder
        own = -(act.probs * torch.log(act.probs.clamp(min=1e-12))).sum(-1).mean()
        vq = lc.lam_confidence_weight * own - lc.lam_usage_weight * usage_entropy(act.probs)
    return act, mse, vq


def dynamics_loss(dynamics: DynamicsModel, tokens: torch.Tensor, actions: torch.Tensor,
                  mask_min: float, action_drop: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The MaskGIT objective on token grids (B, T, N) given actions (B, T-1, action_dim): frames 2..T
    are masked at a rate drawn per frame from U[mask_min, 1] (frame 1 never: at play time it is the
    prompt), and each action is replaced by 'no action' with probability action_drop. Returns
    (cross-entropy on the masked tokens, their top-1 accuracy, no gradient)."""
    b, t = tokens.shape[:2]
    rate = mask_min + (1 - mask_min) * torch.rand(b, t, 1, device=tokens.device)
    masked = torch.rand(tokens.shape, device=tokens.device) < rate
    masked[:, 0] = False
    inputs = torch.where(masked, torch.full_like(tokens, dynamics.cfg.mask_id), tokens)
    drop = torch.rand(b, t - 1, device=tokens.device) < action_drop if action_drop > 0 else None
    logits = dynamics(inputs, actions, drop=drop)[masked].float()  # (M, vocab)
    with torch.no_grad():
        acc = (logits.argmax(-1) == tokens[masked]).float().mean()
    return F.cross_entropy(logits, tokens[masked]), acc


class DynamicsTrainer(nn.Module):
    def __init__(self, cfg: WorldConfig, tokenizer: Tokenizer, loss_cfg: DynamicsLossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.loss_cfg = loss_cfg or DynamicsLossConfig()
        self.lam = LatentActionModel(cfg.lam)
        self.dynamics = DynamicsModel(cfg.dynamics)
        # Frozen: not a submodule parameter for the optimiser or DDP, but moved with the module.
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.tokens_per_frame = cfg.dynamics.tokens_per_frame  # for the loop's tokens/s

    def train(self, mode: bool = True) -> "DynamicsTrainer":
        super().train(mode)
        self.tokenizer.eval()  # the frozen tokenizer never updates its VQ statistics
        return self

    def forward(self, frames: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lc = self.loss_cfg
        with torch.no_grad():
            tokens = self.tokenizer.encode(frames)  # (B, T, N)

        act, lam_mse, lam_vq = lam_losses(self.lam, frames, lc)  # act over (B, T-1)

        ce, acc = dynamics_loss(self.dynamics, tokens, act.quantized.detach(), lc.mask_min, lc.action_drop)  # stop-gradient into the LAM
        loss = ce + lc.lam_weight * (lam_mse + lam_vq)

        # straight-through VQ only (the soft VQ keeps its codes in use through lam_usage_weight)
        restarted = restart_dead_codes(self.lam.vq, step, act.z_e) if self.training and act.probs is None else 0
        metrics = {
            "ce": ce.detach(),
            "token_acc": acc,
            "lam_psnr": psnr_from_mse(lam_mse.detach()),
            "action_perplexity": batch_perplexity(act.indices, self.cfg.lam.num_actions),
            "action_perplexity_ema": usage_perplexity(self.lam.vq).detach(),
            "actions_restarted": torch.tensor(float(restarted)),
        }
        return loss, metrics

    def world(self, device: str | torch.device = "cpu", precision: str = "fp32"):
        """A playable World from copies of the current weights (training modules stay untouched)."""
        from ..world import World

        return World(
            self.cfg, copy.deepcopy(self.tokenizer), copy.deepcopy(self.dynamics),
            self.lam.action_codebook().detach().clone(), lam=copy.deepcopy(self.lam),
            device=device, precision=precision,
        )

    @torch.no_grad()
    def write_pictures(self, frames: torch.Tensor, path: Path, num_frames: int = 6) -> None:
        """One prompt (the first frame of the batch) rolled out under each action, a row per action,
        plus the real clip and the actions the LAM infers on it."""
        world = self.world(device=frames.device, precision="auto")
        world.sampling = {"steps": 8}
        prompt = frames[0, 0].cpu().numpy()
        world.seed(0)
        world.reset(prompt)
        rows = list(world.explore(num_frames=num_frames))
        real = frames[0, : num_frames + 1].cpu().numpy()
        inferred = world.infer_actions(real)
        labels = [f"action {a}" for a in range(len(rows))] + ["real " + "".join(map(str, inferred[:num_frames]))]
        save_png(grid(rows + [real[1:]], scale=2, labels=labels), path)
