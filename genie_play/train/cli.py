"""`genie-play train tokenizer|dynamics|export|report` (also `python -m genie_play.train ...` for torchrun).

    genie-play train tokenizer --data DIR --run runs/tok [--preset small] [key=value ...]
    genie-play train dynamics  --data DIR --run runs/dyn --tokenizer runs/tok [key=value ...]
    genie-play train export runs/dyn --out coinrun.safetensors [--labels labels.json]
    genie-play train report runs/dyn        # curves.png and a table of the run's numbers

Overrides: `key=value` for the training loop (`steps=2000`, `lr=3e-4`, ...), `model.` keys for the
world config (`model.dynamics.st.depth=3`), `loss.` keys for the phase's loss config;
`--print-config` lists every key with its value and help. Running the same command again resumes
the run from its last checkpoint, with the schedule it had (optim.resolve_schedule).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from ..errors import BadSettingError, CheckpointError, GenieError, one_line_reason
from ..presets import (WorldConfig, describe, override, preset, preset_choices, presets_for, to_dict,
                       world_config_from_dict)

PHASE_DEFAULTS = {
    # The shipped world's schedules (see weights/README.md); small enough for a 2-core CPU. Warmup and
    # picture/eval intervals are left unset: they follow `steps` (optim.resolve_schedule).
    "tokenizer": dict(steps=6000, batch_size=8, clip_len=4, lr=3e-4),
    "dynamics": dict(steps=8000, batch_size=6, clip_len=16, lr=3e-4),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="phase", metavar="PHASE", required=True)
    for phase in ("tokenizer", "dynamics"):
        p = sub.add_parser(phase, help=f"train the {'video tokenizer' if phase == 'tokenizer' else 'LAM + dynamics model'}")
        p.add_argument("--data", required=True, type=Path, help="dataset folder (genie-play data ...)")
        # --run-dir: torchrun's own parser reads a bare --run as an abbreviation of its --run-path
        p.add_argument("--run", "--run-dir", dest="run", required=True, type=Path,
                       help="run folder: checkpoints, metrics, pictures (--run-dir under torchrun)")
        # No argparse `choices`: preset() refuses an unknown name with every preset's description.
        p.add_argument("--preset", default="small", metavar="NAME", help=f"model size (default small): {preset_choices()}")
        p.add_argument("--device", default="auto")
        p.add_argument("--init", type=Path, help="warm-start the trained parts from a world bundle")
        if phase == "dynamics":
            p.add_argument("--tokenizer", required=True, type=Path, help="phase-1 run folder or a world bundle")
            p.add_argument("--fresh-lam", action="store_true",
                           help="with --init: warm-start only the dynamics; the LAM starts from scratch")
        else:
            p.add_argument("--decoder-only", action="store_true",
                           help="freeze the encoder and codebook (tokens unchanged) and train only the decoder; use with --init")
        p.add_argument("--print-config", action="store_true",
                       help="print every setting (preset + overrides, as this command would train) as key=value "
                            "with one line of help each, and exit; nothing is written")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p = sub.add_parser("export", help="write a world bundle from a phase-2 run")
    p.add_argument("run", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--labels", type=Path, help="JSON list of 8 action labels (or a labels export)")
    p.add_argument("--decoder", type=Path,
                   help="take the tokenizer's decoder from this `train tokenizer --decoder-only` run (same encoder required)")
    p.add_argument("--no-lam", action="store_true", help="leave out the LAM encoder (smaller; no infer_actions)")
    p.add_argument("--fp32", action="store_true", help="store fp32 weights instead of bf16")
    p.add_argument("--best", action="store_true", help="export the run's best.safetensors (best held-out metric) instead of its last checkpoint")
    p = sub.add_parser("report", help="write a run's curves.png and print its last and best numbers")
    p.add_argument("run", type=Path, help="run folder (the --run of a training command)")


def _split_overrides(items: list[str]) -> tuple[list[str], list[str], list[str]]:
    train, model, loss = [], [], []
    for item in items:
        key = item.lstrip("-")
        if key.startswith("model."):
            model.append(key[len("model."):])
        elif key.startswith("loss."):
            loss.append(key[len("loss."):])
        else:
            train.append(key)
    return train, model, loss


def _check_source(path: Path, flag: str) -> None:
    """BadSettingError when `path` is neither a folder, a file nor a world name; names close folders."""
    import difflib

    from .. import bundle as bundle_io
    from ..errors import WorldNotFoundError

    if path.exists():
        return
    try:
        bundle_io.resolve_world(path if path.suffix else str(path))
        return
    except WorldNotFoundError:
        pass
    parent = path.parent if str(path.parent) else Path(".")
    try:
        near = difflib.get_close_matches(path.name, [d.name for d in parent.iterdir()], n=1)
    except OSError:
        near = []
    hint = f"; did you mean {parent / near[0]}?" if near else ""
    raise BadSettingError(f"{flag} {path}: no such run folder or world bundle{hint} (give a `genie-play train tokenizer --run` "
                          "folder or a .safetensors world)")


def _tokenizer_source(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(world config dict, tokenizer state dict) from a phase-1 run folder or a world bundle."""
    from .. import bundle as bundle_io
    from .loop import load_checkpoint_weights

    _check_source(path, "--tokenizer")
    if path.is_dir():
        state, meta = load_checkpoint_weights(path)
        extra = meta.get("extra_state", meta)
        return extra["world_config"], {k[len("tokenizer."):]: v for k, v in state.items() if k.startswith("tokenizer.")}
    b = bundle_io.read_bundle(bundle_io.resolve_world(str(path)))  # str: a bare name may be an installed world
    return b.config, {k[len("tokenizer."):]: v.float() for k, v in b.tensors.items() if k.startswith("tokenizer.")}


def _init_from_bundle(module: torch.nn.Module, path: Path, prefixes: tuple[str, ...]) -> None:
    from .. import bundle as bundle_io

    _check_source(path, "--init")
    b = bundle_io.read_bundle(bundle_io.resolve_world(str(path)))  # str: a bare name may be an installed world
    own = module.state_dict()
    loaded = {k: v.to(own[k].dtype) for k, v in b.tensors.items() if k.startswith(prefixes) and k in own and own[k].shape == v.shape}
    if not loaded:
        raise BadSettingError(f"{path}: no tensors match this model's {'/'.join(prefixes)} parts; check the preset")
    module.load_state_dict(loaded, strict=False)
    fresh = _start_new_blocks_as_identity(module, set(loaded), prefixes)
    print(f"warm start: {len(loaded)} tensors from {path}" + (f"; {fresh} new blocks start as identity" if fresh else ""))


def _start_new_blocks_as_identity(module: torch.nn.Module, loaded: set[str], prefixes: tuple[str, ...]) -> int:
    """Blocks of the warm-started parts (`prefixes`) that the bundle has no weights for (a deeper
    model than the one warm-started from, e.g. `model.tokenizer.decoder.depth=6` on a 4-layer
    decoder) get zeroed residual output projections: each starts as the identity, so step 0
    computes exactly what the warm-start world did and the new layers only add what training finds
    useful. Blocks outside `prefixes` (a frozen tokenizer loaded on its own) are never touched."""
    from ..models.st_block import STBlock

    fresh = 0
    for name, block in module.named_modules():
        if not f"{name}.".startswith(prefixes) or not isinstance(block, STBlock):
            continue
        if not any(f"{name}.{k}" in loaded for k in block.state_dict()):
            for linear in (block.spatial.out, block.temporal.out, block.ffn[2]):
                torch.nn.init.zeros_(linear.weight)
                if linear.bias is not None:
                    torch.nn.init.zeros_(linear.bias)
            fresh += 1
    return fresh


def _check_frame_size(world_cfg: WorldConfig, dataset, args: argparse.Namespace) -> None:
    """BadSettingError (before anything is written) when the model's frames are not the dataset's."""
    model, data = tuple(world_cfg.tokenizer.frame_size), tuple(dataset.frame_size)
    if model == data:
        return
    if args.phase == "dynamics":
        source = f"the tokenizer from --tokenizer {args.tokenizer}"
    elif args.init:
        source = f"the world from --init {args.init}"
    else:
        source = f"--preset {args.preset}"
    fits = presets_for(data)
    fix = f"use --preset {fits[0]} ({describe(fits[0])})" if fits and args.phase == "tokenizer" and not args.init else \
        f"import the data at {model[0]}x{model[1]} (genie-play data import ... --size {model[0]})"
    raise BadSettingError(f"{source} makes {model[0]}x{model[1]} frames but {args.data} holds "
                          f"{data[0]}x{data[1]} frames; {fix}")


def _build(args: argparse.Namespace, cfg, model_over: list[str], loss_over: list[str]):
    """(module, world config, loss config, extra_state) of a tokenizer or dynamics run."""
    from .overrides import apply_overrides

    world_cfg = preset(args.preset)
    if args.phase == "tokenizer":
        from .stage_tokenizer import TokenizerLossConfig, TokenizerTrainer

        if args.init:  # a warm start continues that world's architecture, whatever the preset says
            world_cfg = world_config_from_dict(_tokenizer_source(args.init)[0])
        world_cfg = override(world_cfg, model_over, "model.").check() if model_over else world_cfg
        if cfg.clip_len > world_cfg.tokenizer.encoder.window:
            raise BadSettingError(f"clip_len {cfg.clip_len} exceeds the tokenizer window {world_cfg.tokenizer.encoder.window}")
        if args.decoder_only and not args.init:
            raise BadSettingError("--decoder-only keeps a trained encoder: give the world it comes from with --init")
        loss_cfg = apply_overrides(TokenizerLossConfig(), loss_over, "loss.")
        if args.print_config:
            return None, world_cfg, loss_cfg, None
        module = TokenizerTrainer(world_cfg.tokenizer, beta=loss_cfg.beta, decoder_only=args.decoder_only)
        if args.init:
            _init_from_bundle(module, args.init, ("tokenizer.",))
        extra = {"phase": "tokenizer", "world_config": to_dict(world_cfg), "data": str(args.data),
                 "decoder_only": args.decoder_only, "init": str(args.init) if args.init else None}
        if loss_over:  # only then: runs started before the tokenizer had loss settings resume without a warning
            extra["loss_config"] = dataclasses.asdict(loss_cfg)
        return module, world_cfg, loss_cfg, extra
    from ..models.tokenizer import Tokenizer
    from .stage_dynamics import DynamicsLossConfig, DynamicsTrainer

    loss_cfg = apply_overrides(DynamicsLossConfig(), loss_over, "loss.")  # refused before anything loads
    tok_cfg_dict, tok_state = _tokenizer_source(args.tokenizer)
    base = to_dict(world_cfg)
    base["tokenizer"] = tok_cfg_dict["tokenizer"]
    world_cfg = world_config_from_dict(base)
    world_cfg = override(world_cfg, model_over, "model.").check() if model_over else world_cfg
    if cfg.clip_len > world_cfg.dynamics.st.window:
        raise BadSettingError(f"clip_len {cfg.clip_len} exceeds the dynamics window {world_cfg.dynamics.st.window}")
    if args.print_config:
        return None, world_cfg, loss_cfg, None
    tokenizer = Tokenizer(world_cfg.tokenizer)
    tokenizer.load_state_dict(tok_state)
    module = DynamicsTrainer(world_cfg, tokenizer, loss_cfg)
    if args.init:
        _init_from_bundle(module, args.init, ("dynamics.",) if args.fresh_lam else ("lam.", "dynamics."))
    extra = {"phase": "dynamics", "world_config": to_dict(world_cfg), "data": str(args.data),
             "loss_config": dataclasses.asdict(loss_cfg), "tokenizer_source": str(args.tokenizer)}
    return module, world_cfg, loss_cfg, extra


def _saved_train_config(run: Path) -> dict | None:
    """The train_config of the run folder's checkpoint (None for a new run), read on rank 0 and
    sent to every rank: all ranks must resolve the same schedule, shared file system or not."""
    from . import distributed as dist_utils
    from .checkpoint import read_checkpoint_meta

    meta = read_checkpoint_meta(run) if dist_utils.is_main() and run.is_dir() else None
    return dist_utils.broadcast_json((meta or {}).get("train_config"))


def _print_config(args: argparse.Namespace, cfg, world_cfg: WorldConfig, loss_cfg) -> None:
    """Every setting of the command as `key=value  # help` lines (config_text.py); the model's source first."""
    from ..config_text import config_lines

    source = f"preset {args.preset} ({describe(args.preset)})"
    if args.phase == "dynamics":
        source += f"; model.tokenizer from --tokenizer {args.tokenizer}"
    elif args.init:
        source = f"the world of --init {args.init}"
    print(f"# genie-play train {args.phase}: every setting, as it would train; any line works as an override")
    print(f"# model: {source}")
    print("\n".join(config_lines(cfg) + config_lines(world_cfg, "model.") + config_lines(loss_cfg, "loss.")))


def _next_step(args: argparse.Namespace) -> str:
    """The command to run after a finished phase, with the preset and clip length it needs."""
    if args.phase == "dynamics":
        return f"next: genie-play train export {args.run} --out world.safetensors"
    extra = f" --preset {args.preset}" if args.preset != "small" else ""
    window = preset(args.preset).dynamics.st.window
    if window < PHASE_DEFAULTS["dynamics"]["clip_len"]:  # the default clips would not fit this preset
        extra += f" clip_len={window}"
    return f"next: genie-play train dynamics --data {args.data} --run RUN --tokenizer {args.run}{extra}"


def run(args: argparse.Namespace) -> int:
    """Train a phase; 0 when it finished, 130 when Ctrl-C / SIGTERM stopped it (after saving)."""
    if args.phase == "export":
        return export(args)
    if args.phase == "report":
        from .report_cli import report

        return report(args.run)
    from ..devices import resolve_device, set_threads
    from .data import ClipDataset
    from .heldout import make_evaluator
    from .loop import Trainer, TrainConfig, init_distributed, is_main, shutdown_distributed
    from .optim import resolve_schedule
    from .overrides import apply_overrides

    train_over, model_over, loss_over = _split_overrides(args.overrides)
    cfg = apply_overrides(TrainConfig(**PHASE_DEFAULTS[args.phase]), train_over)
    init_distributed()  # idempotent; the saved schedule is broadcast from rank 0
    cfg, notes = resolve_schedule(cfg, _saved_train_config(args.run))
    cfg.validate()  # e.g. warmup_steps >= steps: refused before anything is loaded or written
    module, world_cfg, loss_cfg, extra = _build(args, cfg, model_over, loss_over)
    if args.print_config:
        _print_config(args, cfg, world_cfg, loss_cfg)
        return 0
    dataset = ClipDataset(args.data, split="train", clip_len=cfg.clip_len)
    _check_frame_size(world_cfg, dataset, args)
    rank, world_size, local_rank = init_distributed()
    device = resolve_device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
    set_threads()
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if is_main() else (lambda text: None)
    for note in notes:
        say(f"warning: {note}")
    evaluator = make_evaluator(args.phase, args.data, cfg, say) if is_main() else None
    try:
        trainer = Trainer(module.to(device), dataset, cfg, args.run, device, extra_state=extra, evaluator=evaluator)
        trainer.run()
    finally:
        shutdown_distributed()
    if trainer.interrupted:
        return 130
    say(_next_step(args))
    return 0


def _swap_decoder(cfg: WorldConfig, state: dict[str, torch.Tensor], run: Path, dtype: torch.dtype) -> WorldConfig:
    """Put the decoder of a decoder-only run into `state` (a phase-2 run's weights) and return the
    world config with that run's decoder (which may be deeper or wider). Its encoder and codebook
    must be exactly (at the bundle's storage dtype) the ones the dynamics model was trained on;
    otherwise its tokens would mean something else."""
    from .stage_tokenizer import ENCODER_PARTS

    dec_cfg, new_state = _tokenizer_source(run)
    new_tok = world_config_from_dict({**to_dict(cfg), "tokenizer": dec_cfg["tokenizer"]}).tokenizer
    if dataclasses.replace(new_tok, decoder=cfg.tokenizer.decoder) != cfg.tokenizer:
        raise BadSettingError(f"{run}: its tokenizer differs from this world's in more than the decoder")
    own = {k[len("tokenizer."):]: v for k, v in state.items() if k.startswith("tokenizer.")}
    enc = [k for k in own if k.split(".")[0] in ENCODER_PARTS]
    changed = [k for k in enc if k not in new_state or new_state[k].shape != own[k].shape
               or not torch.equal(own[k].to(dtype), new_state[k].to(dtype))]
    if changed:
        raise BadSettingError(f"{run}: its encoder differs from the one the dynamics model was trained on "
                              f"({changed[0]}, ...); train it with --decoder-only --init from that world")
    for k in own:
        del state["tokenizer." + k]
    state.update({"tokenizer." + k: v for k, v in new_state.items()})
    print(f"decoder from {run} (depth {new_tok.decoder.depth}, width {new_tok.decoder.dim})")
    return dataclasses.replace(cfg, tokenizer=new_tok)


def _check_frozen_tokenizer(run: Path, state: dict[str, torch.Tensor], source: str | None) -> None:
    """A dynamics run never trains its tokenizer: it must still be its source's, tensor for tensor
    (at the source's storage precision). One that is not (a warm start that touched it, a source
    trained on after the run began) would export a world whose tokens mean something else."""
    if not source:
        return
    try:
        _, src = _tokenizer_source(Path(source))
    except GenieError as err:  # gone or unreadable: nothing to compare with
        print(f"warning: cannot read {source}, the tokenizer {run} was trained on ({one_line_reason(err)}); "
              "its tokenizer is exported unchecked", file=sys.stderr)
        return
    own = {k[len("tokenizer."):]: v for k, v in state.items() if k.startswith("tokenizer.")}
    changed = [k for k in own if k not in src or src[k].shape != own[k].shape or not torch.equal(own[k].to(src[k].dtype), src[k])]
    if changed or not own:
        raise BadSettingError(f"{run}: its tokenizer differs from its source {source} ({(changed or ['no tensors'])[0]}, ...); "
                              "retrain the dynamics from that tokenizer, or export a run whose tokenizer is intact")


def export(args: argparse.Namespace) -> int:
    from ..labels import read_label_list
    from ..world import World, build_models
    from .loop import load_checkpoint_weights

    state, meta = load_checkpoint_weights(args.run)
    extra = meta.get("extra_state", meta)
    if args.best:
        from .heldout import load_best_weights

        state, best = load_best_weights(args.run)
        meta = {**meta, "step": best["step"]}
        print(f"best weights: step {best['step']}, {best['metric']} {best['value']:.3f}")
    if extra.get("phase") != "dynamics":
        raise CheckpointError(f"{args.run}: not a phase-2 (dynamics) run; export needs the LAM and dynamics weights")
    _check_frozen_tokenizer(args.run, state, extra.get("tokenizer_source"))
    cfg: WorldConfig = world_config_from_dict(extra["world_config"])
    if args.decoder:
        state = dict(state)
        cfg = _swap_decoder(cfg, state, args.decoder, torch.float32 if args.fp32 else torch.bfloat16)
    models = build_models(cfg)
    for name, module in models.items():
        module.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")})
    # A JSON list of labels or a `genie-play labels --export` file; checked against the action count.
    labels = read_label_list(args.labels, cfg.dynamics.num_actions) if args.labels else None
    card = {"run": str(args.run), "step": meta.get("step"), "data": extra.get("data"),
            "tokenizer_source": extra.get("tokenizer_source"), "decoder_source": str(args.decoder) if args.decoder else None,
            "action_drop": extra.get("loss_config", {}).get("action_drop", 0.0)}  # World.learned_no_action
    world = World(cfg, models["tokenizer"], models["dynamics"], models["lam"].action_codebook().detach(),
                  lam=None if args.no_lam else models["lam"], device="cpu", precision="fp32", labels=labels, card=card)
    world.save(args.out, include_lam=not args.no_lam, dtype=None if args.fp32 else torch.bfloat16)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB); next: genie-play PROMPT.png --world {args.out}")
    return 0
