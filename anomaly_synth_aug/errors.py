"""Error types whose messages name the offending file and the fix.

Every user-facing validation error in the package is one of these, so callers
can catch one family (``AnomalySynthError``) and users always see *what* is
wrong, *where*, and *what to do*.
"""

from __future__ import annotations

from pathlib import Path


class AnomalySynthError(Exception):
    """Base class of all errors raised by anomaly_synth_aug."""


class InvalidInputError(AnomalySynthError, ValueError):
    """Bad user input: a file, a mask, a parameter. The message says how to fix it."""

    def __init__(self, problem: str, *, path: str | Path | None = None, fix: str | None = None) -> None:
        self.problem = problem
        self.path = Path(path) if path is not None else None
        self.fix = fix
        parts = [f"{self.path}: {problem}" if self.path is not None else problem]
        if fix:
            parts.append(f"Fix: {fix}")
        super().__init__(" ".join(parts))


class CorruptFileError(InvalidInputError):
    """A file exists but cannot be decoded (truncated, not an image, ...)."""


class MaskError(InvalidInputError):
    """A mask is missing, empty where a defect is required, or the wrong size."""


class UnknownDefectTypeError(InvalidInputError, KeyError):
    """A defect type name that the generator was not fitted on."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0] if self.args else ""


class CheckpointMismatchError(AnomalySynthError, ValueError):
    """A saved generator/cache does not match the current category, size or config."""


class NotFittedError(AnomalySynthError, RuntimeError):
    """``generate`` was called on a learned generator before ``fit``/``load``."""


class MissingDependencyError(InvalidInputError):
    """An optional package that a feature needs is not installed; the message names it."""
