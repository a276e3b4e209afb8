"""The evaluation protocol (docs/architecture.md, "Evaluation"), on held-out clips only.

- tokenizer PSNR: `reconstruct` of held-out clips, PSNR per frame (peak 255), averaged;
- rollout PSNR@k: prompt = first frame of a clip, actions = the LAM's inference on the real clip,
  k generated frames vs the real ones, mean over t = 1..k; beside the copy baseline (the prompt
  frame repeated) on the same clips;
- delta-t PSNR at t: PSNR(x_t, x̂_t) - PSNR(x_t, x̂'_t), x̂ from inferred actions, x̂' from uniformly
  random actions, same prompts and seed;
- action use: frequency of each inferred action, its perplexity, and where true actions exist the
  normalised mutual information between inferred and true actions.
"""
from __future__ import annotations

import math

import numpy as np
from tqdm import tqdm


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame PSNR (peak 255) over the last three axes: (..., H, W, 3) -> (...)."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(-3, -2, -1))
    return 10.0 * np.log10(255.0**2 / np.maximum(mse, 1e-10))


def normalized_mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """NMI (arithmetic normalisation, as scikit-learn's default) of two label arrays."""
    x, y = np.asarray(x).ravel(), np.asarray(y).ravel()
    if x.size == 0:
        return float("nan")
    _, xi = np.unique(x, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((xi.max() + 1, yi.max() + 1))
    np.add.at(joint, (xi, yi), 1)
    joint /= joint.sum()
    px, py = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = (joint[nz] * np.log(joint[nz] / (px[:, None] * py[None, :])[nz])).sum()
    hx, hy = -(px * np.log(px)).sum(), -(py * np.log(py)).sum()
    denom = (hx + hy) / 2
    return float(mi / denom) if denom > 0 else 0.0


def pick_clips(dataset, count: int, seed: int) -> np.ndarray:
    """`count` clip indices spread evenly over the dataset (deterministic for a seed)."""
    n = len(dataset)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    count = min(count, n)
    offset = np.random.default_rng(seed).integers(0, max(1, n // count))
    return (offset + np.arange(count) * (n // count)).astype(np.int64) % n


def evaluate(world, dataset, clips: int = 64, horizon: int = 10, delta_t: int = 4, seed: int = 0,
             batch: int = 16, progress: bool = True) -> dict:
    """Every metric of the evaluation protocol on `clips` clips of `horizon`+1 frames from `dataset`."""
    idx = pick_clips(dataset, clips, seed)
    videos = np.stack([dataset[int(i)][: horizon + 1] for i in idx])  # (C, K+1, H, W, 3)
    true_actions = np.stack([dataset.actions(int(i))[:horizon] for i in idx]) if hasattr(dataset, "actions") else None
    rng = np.random.default_rng(seed)
    recon_psnr, inferred, gen, rand_gen = [], [], [], []
    bar = tqdm(range(0, len(idx), batch), desc="eval", unit="batch", disable=not progress)
    for s in bar:
        chunk = videos[s : s + batch]
        recon_psnr += [psnr(world.reconstruct(v), v).mean() for v in chunk]
        acts = np.stack([world.infer_actions(v) for v in chunk])  # (b, K)
        inferred.append(acts)
        random_acts = rng.integers(0, world.num_actions, acts.shape)
        gen.append(world.rollout_batch(chunk[:, 0], acts, seed=seed + s)[:, 1:])
        rand_gen.append(world.rollout_batch(chunk[:, 0], random_acts, seed=seed + s)[:, 1:])
    inferred_all, gen, rand_gen = np.concatenate(inferred), np.concatenate(gen), np.concatenate(rand_gen)
    real = videos[:, 1:]
    copy = np.repeat(videos[:, :1], horizon, axis=1)
    p_gen, p_rand, p_copy = psnr(gen, real), psnr(rand_gen, real), psnr(copy, real)  # (C, K)
    counts = np.bincount(inferred_all.ravel(), minlength=world.num_actions)
    freq = counts / max(1, counts.sum())
    nz = freq[freq > 0]
    result = {
        "clips": int(len(idx)),
        "horizon": horizon,
        "seed": seed,
        "sampling": world.sampling,
        "tokenizer_psnr": float(np.mean(recon_psnr)),
        "rollout_psnr": float(p_gen.mean()),
        "copy_baseline_psnr": float(p_copy.mean()),
        "rollout_minus_copy": float(p_gen.mean() - p_copy.mean()),
        "rollout_psnr_per_t": p_gen.mean(0).round(3).tolist(),
        "copy_psnr_per_t": p_copy.mean(0).round(3).tolist(),
        "random_action_psnr_per_t": p_rand.mean(0).round(3).tolist(),
        f"delta_psnr_t{delta_t}": float(p_gen[:, delta_t - 1].mean() - p_rand[:, delta_t - 1].mean()),
        "delta_psnr_t1": float(p_gen[:, 0].mean() - p_rand[:, 0].mean()),
        "action_frequency": freq.round(4).tolist(),
        "action_perplexity": float(math.exp(-(nz * np.log(nz)).sum())),
        "actions_used_2pct": int((freq >= 0.02).sum()),
    }
    if true_actions is not None and (true_actions >= 0).all():
        result["nmi_true_actions"] = normalized_mutual_information(inferred_all, true_actions)
        # Which recorded actions each latent action stands for: the designer's starting point for labels.
        table = np.zeros((world.num_actions, int(true_actions.max()) + 1), dtype=np.int64)
        np.add.at(table, (inferred_all.ravel(), true_actions.ravel()), 1)
        result["latent_vs_true_actions"] = table.tolist()
    if hasattr(dataset, "level_of"):
        levels = [dataset.level_of(int(i)) for i in idx]
        levels = [lv for lv in levels if lv is not None]
        result["levels"] = [int(min(levels)), int(max(levels))] if levels else None
    return result


def format_report(r: dict) -> str:
    levels = f"levels {r['levels'][0]}..{r['levels'][1]}" if r.get("levels") else "levels n/a"
    lines = [
        f"held-out clips: {r['clips']} ({levels}), horizon {r['horizon']}, seed {r['seed']}, "
        f"MaskGIT steps {r['sampling']['steps']}, temperature {r['sampling']['temperature']}",
        f"tokenizer PSNR        {r['tokenizer_psnr']:7.2f} dB",
        f"rollout PSNR@{r['horizon']:<2}       {r['rollout_psnr']:7.2f} dB   (copy baseline {r['copy_baseline_psnr']:.2f} dB, "
        f"difference {r['rollout_minus_copy']:+.2f} dB)",
    ]
    for key in sorted(k for k in r if k.startswith("delta_psnr_t")):
        lines.append(f"delta PSNR at t={key[len('delta_psnr_t'):]:<3}    {r[key]:+7.2f} dB")
    lines.append("per t (rollout / copy / random): " + "  ".join(
        f"{a:.1f}/{b:.1f}/{c:.1f}" for a, b, c in zip(r["rollout_psnr_per_t"], r["copy_psnr_per_t"], r["random_action_psnr_per_t"])))
    lines.append(f"action use            {' '.join(f'{f:.3f}' for f in r['action_frequency'])}  "
                 f"(perplexity {r['action_perplexity']:.2f}, {r['actions_used_2pct']} actions >= 2%)")
    if "nmi_true_actions" in r:
        lines.append(f"NMI with true actions {r['nmi_true_actions']:.3f}")
    for latent, row in enumerate(r.get("latent_vs_true_actions", [])):
        total = sum(row)
        top = sorted(range(len(row)), key=lambda a: -row[a])[:3]
        shares = ", ".join(f"{a}: {row[a] / total:.0%}" for a in top if row[a]) if total else "never inferred"
        lines.append(f"  latent action {latent} <- true actions {shares}")
    return "\n".join(lines)
