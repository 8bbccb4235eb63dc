"""Error types that the CLI turns into one-line messages and exit codes.

User mistakes (bad flags, malformed input files) must never surface as tracebacks:
everything a user can cause derives from :class:`VcmError`.
"""

from __future__ import annotations


class VcmError(Exception):
    """A failure the user can understand and fix; exit code 1."""

    exit_code = 1


class UsageError(VcmError):
    """Wrong or missing options; exit code 2 (click's convention)."""

    exit_code = 2


class InputError(VcmError):
    """An input file is unreadable or malformed."""


class EncoderError(VcmError):
    """An encoder is missing, refused the settings or failed."""


class ModelError(VcmError):
    """A model file is missing or corrupt."""
