"""The controllability report (issue 17): does the world's latent action do what a CoinRun key does?

Protocol (`genie-play eval WORLD --control --data D`):

- states: `control_states.collect_states` (saved CoinRun states and their real futures).
- rollouts: from each prompt, every latent action held for `horizon` frames, all with the same seed
  (common random numbers; seed = `seed` * 1_000_003 + clip index).
- metrics (`control_metrics`, a pure function of arrays): clips are split into even and odd
  indices. A map class -> latent is fitted on one half (for each class, the latent whose rollouts
  have the lowest mean MSE to that class's real futures) and scored on the other: for clip i and
  class c, the rollout under map[c] is correct when c's real future is strictly the closest to it
  (MSE over the horizon) among the six classes' real futures of clip i; a tie counts as wrong, so a
  world that ignores its actions scores at most chance (1/6). `control_accuracy` is 2-fold: every
  clip scored once, with the map fitted on the other half. `label_accuracy` scores the world's own
  labels as the map (a class maps to the first latent whose label equals its name, case-insensitive
  and stripped; a class no label names is wrong on every clip). `class_to_latent`, the distinct
  count and `suggested_labels` use the map fitted on all clips; the mapped-rollout PSNR uses the
  cross-fitted maps, beside the copy baseline (the prompt repeated). Per-frame PSNR is capped at
  `PSNR_CAP` (the PSNR of 8-bit rounding noise, MSE 1/12): a standing agent's idle future often equals
  the prompt exactly, and the uncapped 148 dB of such frames would make the copy baseline unbeatable.
- taps (`press=P`, `eval --control --press P`): each class is pressed for the first P frames of its
  future and then released (procgen's no-key action), and each latent is held for P frames and then
  replaced by the world's latent labelled "idle" (or, with `--release none`, by no action at all:
  `world.NO_ACTION`, meaningful for worlds trained with `loss.action_drop`). Holding asks "does the
  key move the world?"; a tap asks what players see next: does a tapped jump come back down, does a
  step stop.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from ..errors import BadSettingError, OutputError, one_line_reason
from ..world import NO_ACTION
from .coinrun_policy import ACTION_CLASSES
from .control_states import NUM_CLASSES, ControlStates
from .evaluate import psnr
from .pictures import grid, save_png

PSNR_CAP = 10.0 * np.log10(255.0**2 * 12)  # about 58.9 dB: a frame within 8-bit rounding noise is perfect


def rollout_latents(world, prompts: np.ndarray, horizon: int, seed: int = 0, progress: bool = False,
                    press: int | None = None, idle: int | None = None) -> np.ndarray:
    """prompts (C, H, W, 3) uint8 -> rolled (C, A, K, H, W, 3): every latent action held for `horizon`
    frames from each prompt, or for `press` frames and then latent `idle` (one `rollout_batch` per
    clip, seed = seed * 1_000_003 + clip index)."""
    a = world.num_actions
    held = np.repeat(np.arange(a)[:, None], horizon, axis=1)  # (A, K)
    if press is not None:
        held[:, press:] = idle
    bar = tqdm(range(len(prompts)), desc="control", unit="clip", disable=not progress)
    return np.stack([world.rollout_batch(np.repeat(prompts[i][None], a, 0), held, seed=seed * 1_000_003 + i)[:, 1:]
                     for i in bar])


def future_distances(real: np.ndarray, rolled: np.ndarray) -> np.ndarray:
    """real (C, 6, K, H, W, 3), rolled (C, A, K, H, W, 3) -> mse (C, 6, A): mse[i, c, a] is the mean squared
    pixel error between latent a's rollout and class c's real future of clip i (exact integer sums)."""
    c, n = real.shape[:2]
    a = rolled.shape[1]
    mse = np.zeros((c, n, a))
    for i in range(c):
        r = real[i].reshape(n, -1).astype(np.int32)  # (6, D)
        for j in range(a):
            diff = r - rolled[i, j].reshape(1, -1).astype(np.int32)
            mse[i, :, j] = np.einsum("kd,kd->k", diff, diff, dtype=np.int64) / diff.shape[1]
    return mse


def fit_map(mse: np.ndarray) -> np.ndarray:
    """mse (C, 6, A) over the fitting clips -> (6,) latent per class (lowest mean MSE, first on ties)."""
    return np.argmin(mse.mean(axis=0), axis=1)


def map_correct(mse: np.ndarray, class_to_latent) -> np.ndarray:
    """mse (C, 6, A), a map (6,) of latents (-1: unmapped) -> correct (C, 6) bool: the rollout under
    map[c] is strictly closer to c's real future than to every other class's (ties are wrong)."""
    latents = np.asarray(class_to_latent)
    d = mse[:, :, np.maximum(latents, 0)]  # (C, 6 real futures k, 6 classes c)
    own = np.diagonal(d, axis1=1, axis2=2)  # (C, 6): d[i, c, c]
    others = d.copy()
    idx = np.arange(NUM_CLASSES)
    others[:, idx, idx] = np.inf
    return (own < others.min(axis=1)) & (latents >= 0)[None]


def label_map(labels: list[str]) -> list[int]:
    """The world's labels as a map: per class the first latent labelled with its name, else -1."""
    names = [str(label).strip().lower() for label in labels]
    return [names.index(c) if c in names else -1 for c in ACTION_CLASSES]


def suggest_labels(class_to_latent, class_latent_mse: np.ndarray) -> list[str]:
    """One label per latent, from the map fitted on all clips (`class_to_latent` (6,)) and the mean
    MSE of each class's real future to each latent's rollout (`class_latent_mse` (6, A)).

    A latent that classes map to takes the plain name of the one it fits best (lowest MSE), so every
    mapped class's name is on exactly one latent and the arrows can bind to it. A latent no class
    maps to is named after the class whose best latent it comes closest to (lowest MSE relative to
    that class's best) with a "?": an honest guess at what it does, never a plain name."""
    mse = np.asarray(class_latent_mse, dtype=np.float64)
    best_per_class = mse.min(axis=1, keepdims=True)  # (6, 1)
    ratio = mse / np.maximum(best_per_class, 1e-9)   # (6, A): 1.0 at each class's own latent
    out = []
    for a in range(mse.shape[1]):
        classes = [c for c in range(NUM_CLASSES) if class_to_latent[c] == a]
        if classes:
            out.append(ACTION_CLASSES[min(classes, key=lambda c: mse[c, a])])
        else:
            out.append(ACTION_CLASSES[int(np.argmin(ratio[:, a]))] + "?")
    return out


def control_metrics(real: np.ndarray, rolled: np.ndarray, prompts: np.ndarray, labels: list[str] | None = None) -> dict:
    """Every metric of the report from arrays: real (C, 6, K, H, W, 3), rolled (C, A, K, H, W, 3),
    prompts (C, H, W, 3), all uint8; `labels` the world's A labels. Needs C >= 2 (two halves)."""
    c, a = real.shape[0], rolled.shape[1]
    if real.shape[1] != NUM_CLASSES or rolled.shape[0] != c or rolled.shape[2:] != real.shape[2:] \
            or prompts.shape != (c, *real.shape[3:]) or a < 1 or c < 2:
        raise BadSettingError(f"control metrics need real (C>=2, 6, K, H, W, 3), rolled (C, A, K, H, W, 3) and prompts "
                              f"(C, H, W, 3); got {real.shape}, {rolled.shape}, {prompts.shape}")
    labels = list(labels) if labels is not None else [""] * a
    mse = future_distances(real, rolled)  # (C, 6, A)
    halves = [np.arange(0, c, 2), np.arange(1, c, 2)]
    fold_maps = [fit_map(mse[h]) for h in halves]  # fold_maps[f] fitted on halves[f]
    clip_map = np.zeros((c, NUM_CLASSES), np.int64)  # the map each clip is scored with (the other half's)
    clip_map[halves[1]], clip_map[halves[0]] = fold_maps[0], fold_maps[1]
    correct = np.stack([map_correct(mse[i:i + 1], clip_map[i])[0] for i in range(c)])  # (C, 6)
    fold_acc = [float(correct[halves[1]].mean()), float(correct[halves[0]].mean())]
    by_label = label_map(labels)
    label_correct = map_correct(mse, by_label)
    class_latent_mse = mse.mean(axis=0)  # (6, A)
    full_map = fit_map(mse)
    # Per clip (a float64 copy of all clips at once would be large): (C, 6, K) each.
    p_mapped = np.stack([psnr(rolled[i, clip_map[i]], real[i]) for i in range(c)])  # cross-fitted map's rollouts
    p_copy = np.stack([psnr(np.broadcast_to(prompts[i], real.shape[1:]), real[i]) for i in range(c)])
    identical_copy = float((p_copy >= PSNR_CAP).mean())
    p_mapped, p_copy = np.minimum(p_mapped, PSNR_CAP), np.minimum(p_copy, PSNR_CAP)
    per_class = lambda x: {name: float(v) for name, v in zip(ACTION_CLASSES, x.mean(axis=0))}  # noqa: E731
    return {
        "clips": int(c),
        "horizon": int(real.shape[2]),
        "num_actions": int(a),
        "chance": 1.0 / NUM_CLASSES,
        "control_accuracy": float(correct.mean()),
        "control_accuracy_kind": "2-fold: even and odd clips, each half scored with the map fitted on the other",
        "control_accuracy_folds": fold_acc,  # [fit even -> test odd, fit odd -> test even]
        "control_accuracy_per_class": per_class(correct),
        "fold_maps": [[int(v) for v in m] for m in fold_maps],
        "label_accuracy": float(label_correct.mean()),
        "label_accuracy_per_class": per_class(label_correct),
        "label_map": by_label,
        "labels": labels,
        "class_to_latent": [int(v) for v in full_map],
        "distinct_classes": int(len(set(full_map.tolist()))),
        "distinct_classes_folds": [int(len(set(m.tolist()))) for m in fold_maps],
        "class_latent_mse": class_latent_mse.round(2).tolist(),
        "suggested_labels": suggest_labels(full_map, class_latent_mse),
        "mapped_psnr": float(p_mapped.mean()),
        "copy_baseline_psnr": float(p_copy.mean()),
        "mapped_minus_copy": float(p_mapped.mean() - p_copy.mean()),
        # idle's real future is the prompt itself, which copying matches exactly and no world can (its
        # frames pass through the tokenizer): the moving classes alone say whether rollouts beat copying
        "mapped_minus_copy_moving": float(np.delete(p_mapped - p_copy, ACTION_CLASSES.index("idle"), axis=1).mean()),
        "mapped_psnr_per_t": p_mapped.mean(axis=(0, 1)).round(3).tolist(),
        "copy_psnr_per_t": p_copy.mean(axis=(0, 1)).round(3).tolist(),
        "mapped_psnr_per_class": per_class(p_mapped.mean(axis=2)),
        "copy_psnr_per_class": per_class(p_copy.mean(axis=2)),
        "psnr_cap": float(PSNR_CAP),
        "copy_identical_frames": identical_copy,  # share of real frames equal to the prompt (PSNR capped)
    }


def control_report(world, states: ControlStates, seed: int = 0, progress: bool = False,
                   picture: str | Path | None = None, picture_clips: int = 2, release: str = "idle") -> dict:
    """Roll out every latent from each state's prompt and score them (`control_metrics`), plus the
    settings; writes the picture (`control_picture`) when `picture` is a path. In a tap report the
    world releases the key with its latent labelled 'idle' (release="idle") or with no action at
    all (release="none": the dynamics' 'no action' input, for worlds trained with loss.action_drop)."""
    if tuple(world.frame_size) != tuple(states.prompts.shape[1:3]):
        raise BadSettingError(f"the control report plays CoinRun at {states.prompts.shape[1]}x{states.prompts.shape[2]} "
                              f"pixels; this world's frames are {world.frame_size[0]}x{world.frame_size[1]}")
    horizon, press = states.real.shape[2], states.settings.get("press")
    if release not in ("idle", "none"):
        raise BadSettingError(f"release must be 'idle' or 'none', not {release!r}")
    idle = None  # what the world plays after a tap's release
    if press is not None:
        idle = NO_ACTION if release == "none" else label_map(world.labels)[ACTION_CLASSES.index("idle")]
    if release == "idle" and idle is not None and idle < 0:  # no action labelled "idle"
        raise BadSettingError("a tap report releases the key with the world's 'idle' latent: label one action "
                              "'idle' first (genie-play labels WORLD --set N=idle)")
    rolled = rollout_latents(world, states.prompts, horizon, seed=seed, progress=progress, press=press, idle=idle)
    result = control_metrics(states.real, rolled, states.prompts, world.labels)
    result.update({"press": press, "idle_latent": idle, "release": None if press is None else release, "seed": int(seed),
                   "sampling": world.sampling, "skipped": dict(states.skipped),
                   "level_seeds_distinct": int(len(set(states.level_seeds.tolist()))),
                   "states": dict(states.settings)})
    result["levels"] = states.settings.get("levels")
    if picture is not None:
        image = control_picture(states, rolled, result["class_to_latent"], clips=picture_clips)
        try:
            save_png(image, Path(picture))
        except OSError as err:
            raise OutputError(f"{picture}: cannot write the picture ({one_line_reason(err)})") from err
        result["picture"] = str(picture)
    return result


def control_picture(states: ControlStates, rolled: np.ndarray, class_to_latent, clips: int = 2) -> Image.Image:
    """For the first `clips` clips, one row per class: prompt, the real future (K frames), a gap, the
    world's rollout under the class's mapped latent (K frames); rows labelled 'class -> latent'."""
    rows, names = [], []
    gap = np.zeros_like(states.prompts[0])[None]
    for i in range(min(clips, len(states.prompts))):
        if rows:  # a blank row between clips
            rows.append(np.zeros_like(rows[-1]))
            names.append("")
        for c, name in enumerate(ACTION_CLASSES):
            a = class_to_latent[c]
            rows.append(np.concatenate([states.prompts[i][None], states.real[i, c], gap, rolled[i, a]]))
            names.append(f"{name} -> {a}")
    h = states.prompts.shape[1]
    scale, label_w, header = max(1, 64 // h), 96, 16
    body = grid(rows, scale=scale)
    canvas = Image.new("RGB", (label_w + body.width, header + body.height), (24, 24, 24))
    canvas.paste(body, (label_w, header))
    draw = ImageDraw.Draw(canvas)
    cell = h * scale + 2
    k = states.real.shape[2]
    draw.text((label_w + 2, 2), "prompt", fill=(230, 230, 230))
    press = states.settings.get("press")
    real_text = f"real future (hold the class {k} frames)" if press is None else f"real future (press the class {press}, then release)"
    draw.text((label_w + 2 + cell, 2), real_text, fill=(230, 230, 230))
    draw.text((label_w + 2 + (k + 2) * cell, 2), "world: " + ("hold" if press is None else "tap") + " the mapped latent",
              fill=(230, 230, 230))
    for r, name in enumerate(names):
        draw.text((4, header + 2 + r * cell + cell // 2 - 6), name, fill=(230, 230, 230))
    return canvas


def format_control_report(r: dict) -> str:
    """The report as a text table (what `genie-play eval --control` prints)."""
    st = r.get("states", {})
    levels = f"levels {r['levels'][0]}:{r['levels'][1]}" if r.get("levels") else "levels n/a"
    skipped = ", ".join(f"{v} {k}" for k, v in r.get("skipped", {}).items() if v) or "none"
    per = lambda d: "  ".join(f"{k} {v:.2f}" for k, v in d.items())  # noqa: E731
    lines = [
        f"control clips: {r['clips']} ({levels}, {st.get('mode', '?')} mode, {r.get('level_seeds_distinct', '?')} distinct "
        f"levels), horizon {r['horizon']} frames of {st.get('frame_skip', 1)} game step(s), seed {r.get('seed')}, MaskGIT steps {r['sampling']['steps']}, "
        f"temperature {r['sampling']['temperature']}",
        f"states: held-policy prefix of 0..{st.get('prefix_max', '?')} frames, then idle {st.get('settle', '?')} "
        f"frames; skipped: {skipped}",
        "futures: each class held for the whole horizon" if r.get("press") is None else
        f"futures: each class pressed for {r['press']} frame(s), then released (the world: "
        + ("no action)" if r.get("release") == "none" else f"latent {r['idle_latent']}, labelled 'idle')"),
        f"control accuracy      {r['control_accuracy']:.3f}   (chance {r['chance']:.3f}; {r['control_accuracy_kind']}; "
        f"folds {r['control_accuracy_folds'][0]:.3f} / {r['control_accuracy_folds'][1]:.3f})",
        f"  per class           {per(r['control_accuracy_per_class'])}",
        f"label accuracy        {r['label_accuracy']:.3f}   (the world's labels as the map, all clips)",
        f"  per class           {per(r['label_accuracy_per_class'])}",
        f"distinct classes      {r['distinct_classes']} of {NUM_CLASSES}   (map fitted on all clips; folds "
        f"{r['distinct_classes_folds'][0]} and {r['distinct_classes_folds'][1]})",
        f"mapped rollout PSNR   {r['mapped_psnr']:7.2f} dB   (copy baseline {r['copy_baseline_psnr']:.2f} dB, "
        f"difference {r['mapped_minus_copy']:+.2f} dB; cross-fitted map; per frame, capped at {r['psnr_cap']:.1f} dB: "
        f"{r['copy_identical_frames']:.0%} of real frames equal the prompt)",
        f"  without idle        {r['mapped_minus_copy_moving']:+.2f} dB   (idle's future is the prompt: copying it is exact)",
        "  per class (mapped / copy) " + "  ".join(f"{k} {v:.1f}/{r['copy_psnr_per_class'][k]:.1f}"
                                                    for k, v in r["mapped_psnr_per_class"].items()),
        "per t (mapped / copy): " + "  ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(r["mapped_psnr_per_t"], r["copy_psnr_per_t"])),
        "mean MSE of each latent's rollouts to each class's real futures (* = the class's latent, all clips):",
        "              " + "".join(f"{a:>9}" for a in range(r["num_actions"])),
    ]
    for c, name in enumerate(ACTION_CLASSES):
        row = "".join(f"{v:8.1f}{'*' if a == r['class_to_latent'][c] else ' '}" for a, v in enumerate(r["class_latent_mse"][c]))
        lines.append(f"  {name:<12}{row}")
    lines.append("world labels          " + ", ".join(f"{a}: {lb!r}" for a, lb in enumerate(r["labels"])))
    lines.append("suggested labels      " + ", ".join(f"{a}: {lb!r}" for a, lb in enumerate(r["suggested_labels"])))
    if r.get("picture"):
        lines.append(f"picture               {r['picture']}")
    return "\n".join(lines)
