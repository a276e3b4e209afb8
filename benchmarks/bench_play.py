"""Play speed of a world on this machine, against the machine's own matmul rate (issue 7).

    python benchmarks/bench_play.py [--world coinrun | --preset small [--override KEY=VALUE ...]] [--steps 25] [--frames 20]
                                    [--quick] [--no-memory] [--isa native|avx2|avx512-vnni]

One run prints: the FLOPs one frame needs (counted from the config); the fp32 and bf16 matmul rate at
the model's own shapes (M = tokens per frame, K, N = its widths); ms per frame split into dynamics /
decode (encode per prompt), frames per second and achieved GFLOP/s for each precision and thread
count, with the full context window; the same with the cache off (full recompute of the context at
every MaskGIT step, the baseline of other open implementations); a sweep over MaskGIT steps and
threads; and the resident memory of a 2,000-frame headless session (it must not grow). Each row's
world gets its play plan passed in (engine.make_plan, then dataclasses.replace for the variants).
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import resource

import torch

from genie_play.devices import cpu_has_bf16
from genie_play.engine import build, make_plan
from genie_play.presets import override, preset
from genie_play.speed import frame_flops, matmul_rate, model_shapes, time_full_recompute, time_play
from genie_play.world import World, build_models

# Rows: a precision, plus the "befores" of the int8 default, each one optimisation less:
# "int8-torch"  PyTorch operations with fbgemm's int8 linears (what a machine without a C compiler runs);
# "int8-blocks" the C kernels, one call per ST block, MaskGIT driven round by round from Python;
# "int8-vnni"   the whole frame in one C call, the products on AVX-512 VNNI, not AMX;
# "int8"        the default: the same with AMX where the CPU has it.
# bf16 rows run only on CPUs with native bf16; rows that would repeat another on this CPU are left out.
VARIANTS = {"int8-torch": {"kernels": False}, "int8-blocks": {"frame_kernel": False}, "int8-vnni": {"amx": False}}


def make_world(args, row: str) -> World:
    precision = "int8" if row.startswith("int8") else row
    changes = dict(VARIANTS.get(row, {}))
    if args.preset:
        torch.manual_seed(0)
        cfg = override(preset(args.preset), args.override)
    else:
        cfg = World.load(args.world, device="cpu", precision="fp32").config
    plan = make_plan(cfg, "cpu", precision, kernels=changes.pop("kernels", True))
    plan = dataclasses.replace(plan, **changes) if plan.route == "c" else plan
    if not args.preset:
        return World.load(args.world, plan=plan)
    m = build_models(cfg)
    return World(cfg, m["tokenizer"], m["dynamics"], m["lam"].action_codebook().detach(), lam=m["lam"], plan=plan)


def rows_here() -> list[str]:
    """The int8 rows that differ on this CPU (no AMX: no VNNI row; no C kernels: only the torch row)."""
    plan = make_plan(preset("small"), "cpu", "int8")
    if plan.route != "c":
        return ["int8"]
    return ["int8-torch", "int8-blocks"] + (["int8-vnni"] if plan.amx else []) + ["int8"]


# --isa: the kernel library built for less than this CPU has, to estimate what other CPUs play.
ISA_FLAGS = {"native": "-march=native", "avx2": "-march=haswell", "avx512-vnni": "-march=icelake-server"}


def hold_to_isa(isa: str) -> None:
    """Build the play kernels with ISA_FLAGS[isa] instead of -march=native (before any world loads)."""
    if isa != "native":
        build.FLAGS = [ISA_FLAGS[isa] if f == "-march=native" else f for f in build.FLAGS]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_session(world: World, frames: int, marks: list[int]) -> list[tuple[int, float]]:
    """RSS after `marks` frames of a headless session (World.step in a loop, 1 MaskGIT step:
    memory does not depend on the step count, and this keeps 2,000 frames to seconds)."""
    world.sampling = {"steps": 1}
    world.seed(0)
    world.reset(torch.randint(0, 256, (*world.frame_size, 3), dtype=torch.uint8).numpy())
    out = [(0, rss_mb())]
    for i in range(1, frames + 1):
        world.step(i * 7 % world.num_actions)
        if i in marks:
            out.append((i, rss_mb()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="coinrun", help="world name or path (default: the bundled coinrun)")
    ap.add_argument("--preset", help="use random weights of this preset instead of a world (e.g. small)")
    ap.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for --preset, e.g. tokenizer.patch=4 dynamics.grid=[16,16] (a 256-token world)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--frames", type=int, default=20, help="timed frames per row")
    ap.add_argument("--quick", action="store_true", help="a ~20 s version: fewer rows, frames and memory frames")
    ap.add_argument("--no-memory", action="store_true", help="skip the 2,000-frame memory session")
    ap.add_argument("--isa", default="native", choices=sorted(ISA_FLAGS),
                    help="build the play kernels for an older instruction set than this CPU's (what CPUs without it would run)")
    args = ap.parse_args()
    hold_to_isa(args.isa)
    if args.quick:
        args.frames = min(args.frames, 8)
    threads_all = sorted({1, torch.get_num_threads()})
    main_threads = max(threads_all)
    # The float baseline is bf16 where the CPU runs it natively, else fp32 (emulated bf16 runs ~100x
    # slower than fp32: no row). "auto" is what the player runs; the quick version times it alone.
    native_bf16 = cpu_has_bf16()
    float_row = "bf16" if native_bf16 else "fp32"
    default_row = "auto" if args.quick else "int8"
    if args.quick:
        precisions = ["auto", float_row]
    else:
        precisions = (["bf16"] if native_bf16 else []) + ["fp32"] + rows_here()

    cfg = make_world(args, "fp32").config
    d = cfg.dynamics
    flops = frame_flops(cfg, args.steps)
    shapes = model_shapes(cfg)
    print(f"world: {args.preset or args.world}  CPU: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads available, torch {torch.__version__}")
    print(f"frame {cfg.tokenizer.frame_size[0]}x{cfg.tokenizer.frame_size[1]}, {d.tokens_per_frame} tokens/frame, "
          f"context {d.st.window} frames (full), {args.steps} MaskGIT steps")
    print(f"FLOPs per frame (from the config): dynamics {flops['dynamics'] / 1e9:.2f} G ({args.steps} rounds + 1 "
          f"record pass, head on masked tokens only), decode {flops['decode'] / 1e9:.2f} G; encode "
          f"{flops['encode'] / 1e9:.2f} G per prompt")
    peaks = {}
    for th in threads_all:
        torch.set_num_threads(th)
        for dt in (torch.float32, torch.bfloat16):
            peaks[th, dt] = matmul_rate(shapes, dt)
    shape_text = ", ".join(sorted({f"{k}x{n}" for _, k, n in shapes}))
    print(f"matmul rate at the model's shapes (M={d.tokens_per_frame}; KxN {shape_text}), GFLOP/s: "
          + "; ".join(f"{th} thread{'s' * (th > 1)}: fp32 {peaks[th, torch.float32]:.0f}, bf16 {peaks[th, torch.bfloat16]:.0f}"
                      for th in threads_all) + ("" if native_bf16 else " (this CPU has no native bf16: no bf16 rows)"))
    peak_dtype = torch.bfloat16 if native_bf16 else torch.float32  # the fastest float matmul here
    print()
    print("| path | precision | threads | encode ms/prompt | dynamics ms | decode ms | total ms/frame | frames/s "
          "| dynamics GFLOP/s | % of matmul rate |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    # The rows are timed interleaved (round-robin, several rounds, the median round kept): this
    # shared VM's speed drifts by tens of percent within minutes, which would otherwise land on
    # whichever row ran then and distort the ratios between them.
    worlds = {prec: make_world(args, prec) for prec in precisions}
    runs = [(prec, th) for prec in precisions for th in (threads_all if prec == default_row else [main_threads])]
    rounds = 1 if args.quick else 3
    samples, fulls = {key: [] for key in runs}, []
    for _ in range(rounds):
        for prec, th in runs:
            torch.set_num_threads(th)
            samples[prec, th].append(time_play(worlds[prec], args.steps, max(2, args.frames // rounds)))
        torch.set_num_threads(main_threads)  # the baseline, in the same rounds
        fulls.append(time_full_recompute(worlds[float_row], args.steps, 1))
    rows = {key: sorted(v, key=lambda r: r["total"])[len(v) // 2] for key, v in samples.items()}
    for (prec, th), r in rows.items():
        world = worlds[prec]
        gflops = flops["dynamics"] / r["dynamics"] / 1e6
        ref_dtype = torch.float32 if prec == "fp32" else peak_dtype  # int8 against the fastest float rate
        label = f"{world.device_description}, {world.plan.linears} linears, {world.plan.attention} attention, MaskGIT {world.plan.rounds}"
        print(f"| cached | {label} | {th} | {r['encode']:.1f} | {r['dynamics']:.1f} "
              f"| {r['decode']:.1f} | {r['total']:.1f} | {r['fps']:.1f} | {gflops:.0f} "
              f"| {100 * gflops / peaks[th, ref_dtype]:.0f}% of {'fp32' if ref_dtype == torch.float32 else 'bf16'} |")
    torch.set_num_threads(main_threads)
    world = worlds[float_row]
    full = sorted(fulls)[len(fulls) // 2]
    print(f"| full recompute (cache off) | {world.device_description} | {main_threads} | - | - | - | {full:.0f} | "
          f"{1e3 / full:.2f} | - | - |")
    th_text = f"{main_threads} thread{'s' * (main_threads > 1)}"
    print(f"\ncached vs full recompute at a full context ({th_text}, {float_row}): "
          f"{full / rows[float_row, main_threads]['total']:.1f}x faster")
    default = rows[default_row, main_threads]["total"]
    print(f"cached default ({worlds[default_row].device_description}) vs the {float_row} full recompute: {full / default:.1f}x faster")
    chain = [row for row in precisions if row.startswith("int8")]
    if len(chain) > 1:
        steps_text = "; ".join(f"{a} -> {b}: {rows[a, main_threads]['total'] / rows[b, main_threads]['total']:.2f}x"
                               for a, b in zip(chain, chain[1:]))
        print(f"int8, one optimisation at a time (ms/frame ratios, {th_text}): {steps_text}; "
              f"all together {rows[chain[0], main_threads]['total'] / default:.2f}x")

    steps_list = sorted({1, 8, args.steps} if args.quick else {1, 2, 4, 8, 16, 25, args.steps})
    sweep_world = make_world(args, "auto")  # what the player runs
    print(f"\nframes/s by MaskGIT steps ({sweep_world.plan.summary()}):")
    print("| threads | " + " | ".join(str(s) for s in steps_list) + " |")
    print("|---|" + "---|" * len(steps_list))
    for th in threads_all:
        torch.set_num_threads(th)
        fps = [time_play(sweep_world, s, max(3, args.frames // 3))["fps"] for s in steps_list]
        print(f"| {th} | " + " | ".join(f"{v:.1f}" for v in fps) + " |")
    torch.set_num_threads(main_threads)

    if not args.no_memory:
        frames = 300 if args.quick else 2000
        marks = [m for m in (50, 100, 250, 500, 1000, 1500, 2000) if m <= frames]
        session = memory_session(sweep_world, frames, marks)
        print(f"\nresident memory of a {frames:,}-frame headless session ({sweep_world.device_description}, "
              f"1 MaskGIT step; memory does not depend on the steps):")
        print("| frames | " + " | ".join(str(f) for f, _ in session) + " |")
        print("|---|" + "---|" * len(session))
        print("| RSS MB | " + " | ".join(f"{m:.0f}" for _, m in session) + " |")
        growth = session[-1][1] - session[min(2, len(session) - 1)][1]
        print(f"growth from frame {session[min(2, len(session) - 1)][0]} to {session[-1][0]}: {growth:+.1f} MB; "
              f"peak RSS of the whole benchmark process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
