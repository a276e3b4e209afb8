"""Errors a user can cause. Each carries a one-line message naming the file and the fix.

The CLI prints `str(err)` and exits with status 2, without a traceback (``--debug`` shows it).
"""
from __future__ import annotations


class GenieError(Exception):
    """Base class of every error caused by user input (files, arguments, settings)."""

    exit_code = 2


class BadImageError(GenieError):
    """A prompt image that cannot be opened or used."""


class BadBundleError(GenieError):
    """A world bundle that is missing, truncated, foreign or inconsistent with its config."""


class WorldNotFoundError(GenieError):
    """A world name that resolves to no file."""


class BadActionError(GenieError, ValueError):
    """An action index outside [0, num_actions) or not an integer."""


class BadSettingError(GenieError, ValueError):
    """A sampling setting (steps, temperature, ...) or config override out of range."""


class BadDataError(GenieError):
    """A training data file or dataset folder that cannot be used."""


class CheckpointError(GenieError):
    """A training checkpoint that cannot be written or read."""


class OutputError(GenieError):
    """A file that cannot be written: its folder is missing or not writable, or the disk is full."""


def one_line_reason(err: BaseException) -> str:
    """One line saying why an operation (usually a write) failed: the OS's words for an OSError,
    else the first line of the message (safetensors reports I/O errors as SafetensorError)."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    lines = str(err).strip().splitlines()
    return lines[0][:160] if lines else type(err).__name__
