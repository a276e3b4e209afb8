"""`genie-play train report RUN`: a run's curves and numbers at a glance, while it trains or after.

Reads RUN/metrics.jsonl (curves.read_metrics), writes RUN/curves.png (curves.draw_curves: the
picture the run itself keeps up to date) and prints::

    runs/tok: step 6000 of 6000; 55 min 10 s of training in 2 sessions; 12 held-out evaluations took 14 s (0.4%)
    metric                      last  at step        best  at step
    loss                      0.0123     6000      0.0119     5800
    heldout/psnr               27.41     6000       27.53     5500
    wrote runs/tok/curves.png

"best" is the lowest training loss and the highest value of every held-out metric (the evaluators'
metrics are all higher-is-better: PSNRs, accuracies, NMI, action perplexity = actions in use).
The wall time adds up the sessions of a resumed run (each restarts its `elapsed_s` clock).
A missing, empty or unreadable run folder is one line (CheckpointError); so is a curves.png that
cannot be written (OutputError).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import CheckpointError, OutputError, one_line_reason
from .curves import TRAIN_CURVES, draw_curves, read_metrics
from .pictures import save_png

EVAL_SECONDS = "heldout/seconds"  # bookkeeping: summed in the header line, not a row of the table


def load_records(run: Path) -> list[dict]:
    """The run's metrics records; CheckpointError (one line) when there are none to report."""
    if not run.exists():
        raise CheckpointError(f"{run}: no such run folder; give the --run folder of a `genie-play train` command")
    if not run.is_dir():
        raise CheckpointError(f"{run}: a file, not a run folder; give the --run folder of a `genie-play train` command")
    path = run / "metrics.jsonl"
    if not path.exists():
        raise CheckpointError(f"{run}: no metrics.jsonl; not a training run folder, or its run has not logged a step yet")
    try:
        records, bad = read_metrics(path)
    except OSError as err:
        raise CheckpointError(f"cannot read {path} ({one_line_reason(err)})") from err
    if not records and not bad:
        raise CheckpointError(f"{path} is empty: the run has not logged a step yet (it logs every log_every steps)")
    if not records:
        raise CheckpointError(f"{path}: none of its {bad} lines is a metrics record; the file is damaged or not "
                              "a genie-play metrics log")
    if bad:
        print(f"warning: skipped {bad} unreadable line{'s' * (bad > 1)} of {path}", file=sys.stderr)
    return records


def wall_time(records: list[dict]) -> tuple[float, int]:
    """(seconds, sessions): a resumed run's `elapsed_s` starts again from 0, so each drop of it
    starts a new session and the run's time is the sum of each session's last value."""
    total, sessions, last = 0.0, 0, None
    for r in records:
        elapsed = r.get("elapsed_s")
        if not isinstance(elapsed, (int, float)):
            continue
        if last is None or elapsed < last:
            total += last or 0.0
            sessions += 1
        last = elapsed
    return total + (last or 0.0), sessions


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


def metric_rows(records: list[dict]) -> list[tuple[str, float, int, float, int]]:
    """(name, last, its step, best, its step) of the training loss and every held-out metric."""
    names = [n for n in TRAIN_CURVES if any(n in r for r in records)]
    for r in records:
        names += [k for k in r if k.startswith("heldout/") and k != EVAL_SECONDS and k not in names]
    rows = []
    for name in names:
        points = [(r["step"], float(r[name])) for r in records
                  if isinstance(r.get(name), (int, float)) and not isinstance(r.get(name), bool)]
        if not points:
            continue
        pick = min if name in TRAIN_CURVES else max
        best = pick(points, key=lambda p: p[1])
        rows.append((name, points[-1][1], points[-1][0], best[1], best[0]))
    return rows


def summary(run: Path, records: list[dict]) -> list[str]:
    """The header line and the table of `report` (see the module docstring)."""
    try:
        target = json.loads((run / "config.json").read_text(encoding="utf-8"))["train"]["steps"]
    except (OSError, ValueError, KeyError, TypeError):
        target = None
    step = max(r["step"] for r in records)
    head = f"{run}: step {step}" + (f" of {target}" if target else "")
    seconds, sessions = wall_time(records)
    if sessions:
        head += f"; {_duration(seconds)} of training" + (f" in {sessions} sessions" if sessions > 1 else "")
    evals = [r[EVAL_SECONDS] for r in records if isinstance(r.get(EVAL_SECONDS), (int, float))]
    if evals:
        share = f" ({100 * sum(evals) / seconds:.1f}%)" if seconds > 0 else ""
        head += f"; {len(evals)} held-out evaluation{'s' * (len(evals) > 1)} took {_duration(sum(evals))}{share}"
    rows = metric_rows(records)
    width = max([len("metric")] + [len(r[0]) for r in rows]) + 2
    lines = [head, f"{'metric':<{width}}{'last':>10}{'at step':>9}{'best':>12}{'at step':>9}"]
    lines += [f"{name:<{width}}{last:>10.4g}{last_step:>9}{best:>12.4g}{best_step:>9}"
              for name, last, last_step, best, best_step in rows]
    if not any(name.startswith("heldout/") for name, *_ in rows):
        lines.append("(no held-out metrics: the run's data have no held-out split, or eval_every=0)")
    return lines


def report(run: Path) -> int:
    """Print the summary of run folder `run` and write its curves.png; 0, or a GenieError."""
    run = Path(run)
    records = load_records(run)
    print("\n".join(summary(run, records)))
    path = run / "curves.png"
    try:
        save_png(draw_curves(records), path)
    except OSError as err:
        raise OutputError(f"cannot write {path} ({one_line_reason(err)}); check the folder's permissions and free space") from err
    print(f"wrote {path}")
    return 0
