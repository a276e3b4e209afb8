"""TensorBoard event files of a training run, in RUN/tensorboard/ (`tensorboard --logdir runs/`).

They are written only when the `tensorboard` package can be imported (`pip install
'genie-play[tensorboard]'`); without it `open_board` returns None and a run writes exactly what it
wrote before. `metrics.jsonl` stays the run's record either way: the events are a view of it.

`open_board(run_dir, start_step, say)` -> `Board` or None. A resumed run purges the events a killed
run wrote after its last checkpoint (TensorBoard's `purge_step`), as `trim_metrics` does for
metrics.jsonl.

- `Board.scalars(record)`: every finite number of a metrics record at its "step": the training
  numbers as "train/<key>" (loss, lr, grad_norm, throughput), held-out ones under their own
  "heldout/<metric>" names;
- `Board.pictures(png, gif, step)`: a step's sample picture as the image "samples/picture" and, for
  a dynamics run, its rollout GIF (every action beside the real clip) as "samples/rollouts", an
  animated image that TensorBoard's Images tab plays;
- `Board.close()`.

A failure to write warns once through `say` and turns the board off; it never ends a run.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

TRAIN_PREFIX = "train/"  # metrics.jsonl's training keys ("loss") are grouped under this tag prefix
FOLDER = "tensorboard"


def summary_writer(log_dir: Path, purge_step: int) -> Any:
    """torch's SummaryWriter; ImportError when the `tensorboard` package is not installed."""
    import tensorboard  # noqa: F401  (torch.utils.tensorboard imports it too, but names it less clearly)
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def open_board(run_dir: Path, start_step: int, say: Callable[[str], None]) -> "Board | None":
    """The run's Board, or None when tensorboard is not installed (or its folder cannot be made)."""
    try:
        # Events of steps after `start_step` (the checkpoint resumed from) were written by a run
        # killed after its last checkpoint; they are redone now, so TensorBoard drops the old ones.
        writer = summary_writer(Path(run_dir) / FOLDER, purge_step=start_step + 1)
    except ImportError:
        return None
    except Exception as err:  # e.g. a read-only run folder: the run itself will say more
        say(f"warning: TensorBoard events are off: {type(err).__name__}: {err}")
        return None
    return Board(writer, say)


class Board:
    """Writes metrics records and sample pictures as TensorBoard events (see the module docstring)."""

    def __init__(self, writer: Any, say: Callable[[str], None]) -> None:
        self.writer, self.say = writer, say
        self.gifs = True  # animated samples need tensorboard's protobuf classes; turned off if they fail

    def _failed(self, err: Exception) -> None:
        self.say(f"warning: could not write TensorBoard events ({type(err).__name__}: {err}); they are no longer written")
        self.close()

    def scalars(self, record: dict[str, Any]) -> None:
        if self.writer is None or not isinstance(record.get("step"), int):
            return
        try:
            for key, value in record.items():
                if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    continue
                tag = key if "/" in key else TRAIN_PREFIX + key
                self.writer.add_scalar(tag, float(value), record["step"])
            self.writer.flush()  # looked at while the run trains
        except Exception as err:
            self._failed(err)

    def pictures(self, png: Path, gif: Path, step: int) -> None:
        if self.writer is None:
            return
        import numpy as np
        from PIL import Image

        try:
            if png.exists():
                with Image.open(png) as image:
                    self.writer.add_image("samples/picture", np.asarray(image.convert("RGB")), step, dataformats="HWC")
            if gif.exists() and self.gifs:
                self._animated("samples/rollouts", gif, step)
            self.writer.flush()
        except Exception as err:
            self._failed(err)

    def _animated(self, tag: str, gif: Path, step: int) -> None:
        """A GIF file as an image event: TensorBoard shows encoded images as they are, and plays GIFs
        (torch's add_video makes the same event, but needs moviepy to encode the GIF we already have)."""
        from PIL import Image

        try:
            from tensorboard.compat.proto.summary_pb2 import Summary

            with Image.open(gif) as image:
                width, height = image.size
            encoded = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif.read_bytes())
            self.writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=encoded)]), step)
        except Exception as err:  # a tensorboard without these classes: keep the scalars and images
            self.gifs = False
            self.say(f"warning: rollout GIFs are not written to TensorBoard ({type(err).__name__}: {err})")

    def close(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # closing after a failed write: already reported
                pass
