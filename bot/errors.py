"""The one root error type and its user-facing families."""
from __future__ import annotations


class GuardianError(Exception):
    """Root of every error we raise on purpose.

    ``code`` is stable and machine-readable; ``message`` is one plain sentence that says
    what happened and what to do next. Neither ever contains a secret.
    """

    code = "guardian-error"

    def __init__(self, message: str, *, code: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def __str__(self) -> str:
        return self.message


class ConfigError(GuardianError):
    """Configuration file or environment is missing or invalid."""

    code = "config-error"


class UsageError(ConfigError):
    """A command line, lint config or input that cannot work as given (exit 2, like argparse's usage errors)."""

    code = "usage-error"


class StoreError(GuardianError):
    """The bot's own state could not be read or written."""

    code = "store-error"


class TransitionConflict(StoreError):
    """A compare-and-set status change lost: someone else moved the request first."""

    code = "transition-conflict"


class NotFound(GuardianError):
    code = "not-found"


class PolicyDenied(GuardianError):
    """A person or request is not allowed to do this (approval policy, freeze, window)."""

    code = "policy-denied"


class ConfirmationNeeded(GuardianError):
    """A production approval or a restore must be confirmed by typing the environment's name."""

    code = "confirmation-needed"


class PreviewOutdated(PolicyDenied):
    """A decision was clicked under a preview that is no longer the request's current one."""

    code = "preview-outdated"


class TargetError(GuardianError):
    """A target database is unreachable or refused us; the message names the environment only."""

    code = "target-error"


class SourceError(GuardianError):
    """A migration file or repository cannot be read as the configured layout."""

    code = "source-error"
