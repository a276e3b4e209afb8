"""Ctrl-C / SIGTERM handling of the training loop: the first signal asks the loop to finish its step
and save; a second one (more than a second later) aborts at once without saving.

`StopOnSignal` is a mixin: the class using it calls `_install_signal_handlers()` when its loop
starts and `_restore_signal_handlers(previous)` when it ends, and reads `_stop_signal` (None until
a signal arrives) after each step. `say(text)` reports what happens.
"""
from __future__ import annotations

import signal
import threading
import time
from typing import Any, Callable


class StopOnSignal:
    _stop_signal: int | None = None
    _stop_time: float = 0.0
    say: Callable[[str], None] = print

    def _install_signal_handlers(self) -> dict[int, Any]:
        """Install the handlers (main thread only; elsewhere nothing); returns the previous ones."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    def _restore_signal_handlers(self, previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self._stop_signal is not None:
            # A second Ctrl-C stops at once, without saving. torchrun re-sends the terminal's
            # SIGINT to its workers within milliseconds: that repeat is not a second Ctrl-C.
            if now - self._stop_time > 1.0:
                raise KeyboardInterrupt
            return
        self._stop_signal, self._stop_time = signum, now
        self.say(f"{signal.Signals(signum).name}: finishing this step and saving a checkpoint (again to abort without saving)")
