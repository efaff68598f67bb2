"""Which model profile actually runs: the requested one when its models are here, else `offline`, with a reason.

The `full` profile needs hub downloads; a machine that never had internet must still ingest. So a missing
`full` model is not an error: the engine falls back to `offline` and says so once (the caller prints the
warning this returns), naming what is missing and how to upgrade.
"""

from __future__ import annotations

from typing import Any

from catalog.model_config import active_profile_name
from tools.models import models_report

OFFLINE = "offline"


def _missing(profile: str) -> list[dict[str, Any]]:
    return [row for row in models_report(profile)["models"] if not row["present"]]


def _names(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{row['family']}: {row['model']}" for row in rows)


def resolve_profile(requested: str | None = None, fetch: bool = False) -> tuple[str, str | None]:
    """(profile to run, one-line warning or None).

    `requested` defaults to the active profile (env or models.yaml). With `fetch=True` missing models are
    downloaded first (`tools.fetch.fetch_models`, which fails fast offline); by default nothing is downloaded,
    since `photo-engine models fetch` is the one place that spends bandwidth.
    """
    name = requested or active_profile_name()
    missing = _missing(name)
    if not missing:
        return name, None
    if name == OFFLINE:  # nothing to fall back to: those analyzers are skipped
        hints = "; ".join(f"{row['family']}: {row['detail']}" for row in missing)
        return name, f"offline models not installed ({hints}); those analyzers are skipped"
    if fetch:
        from tools.fetch import FetchError, fetch_models

        try:
            fetch_models(name, progress=True)
        except FetchError:
            pass  # the fallback message below says what is missing and what to do
        missing = _missing(name)
        if not missing:
            return name, None
    return OFFLINE, (f"{name} models not present ({_names(missing)}); running on the offline profile — "
                     "run `photo-engine models fetch` with internet to upgrade")
