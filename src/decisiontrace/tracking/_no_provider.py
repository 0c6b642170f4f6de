"""One warning per process when recording goes nowhere because no SDK is installed.

Without an OpenTelemetry SDK ``TracerProvider`` the API hands out non-recording spans:
a tracker or a decorated function then runs normally and records nothing, which a new
user cannot tell from a bug. The first time that happens, one warning names the fix.
"""

from __future__ import annotations

import sys

from opentelemetry import trace

from decisiontrace._internal.errors import PROCESS, warn_once

_checked_outside_run = False

MESSAGE = (
    "decisiontrace: no OpenTelemetry SDK TracerProvider is installed, so runs and "
    "decisions are not recorded; call dt.configure() first (it stores runs locally and "
    "exports nothing unless an endpoint is set), or pass tracer_provider= to the tracker"
)


#: The key of :data:`MESSAGE` in the process's log-once set.
_KEY = "no-sdk-provider"


def warn() -> None:
    """Log :data:`MESSAGE` once per process."""
    warn_once(_KEY, MESSAGE)


def check_outside_run() -> None:
    """A decorated function ran outside a run: warn if no SDK provider is installed.

    Checked once per process (the first such call), to keep the call path cheap.
    """
    global _checked_outside_run
    if _checked_outside_run:
        return
    _checked_outside_run = True
    if not is_sdk_provider(trace.get_tracer_provider()):
        warn()


def is_sdk_provider(provider: object) -> bool:
    """Whether ``provider`` is the SDK's ``TracerProvider`` (or a subclass).

    The SDK is not imported for the check: a provider of the SDK exists only once the
    SDK was imported, so ``import decisiontrace`` need not pay for it.
    """
    sdk_trace = sys.modules.get("opentelemetry.sdk.trace")
    return sdk_trace is not None and isinstance(provider, sdk_trace.TracerProvider)


def reset() -> None:
    """Forget that the warning was given (tests)."""
    global _checked_outside_run
    PROCESS.forget(_KEY)
    _checked_outside_run = False
