"""What is true of a creative or an experiment right now, in words a marketer can act on.

One place decides every status the dashboard, the report and the CLI show:
:func:`experiment_status` for an experiment, :func:`creative_status` for a
live creative (which names the experiment replacing it, or the creative that
replaced it).  A new state is one more branch here, never a template change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from storage.models import Creative, Experiment
from storage.states import OPEN_STATES, CreativeStatus, ExperimentState


@dataclass(frozen=True)
class Status:
    """``tone`` picks the colour (ok | warn | alert | info | muted); ``text`` is the short label; ``detail`` the sentence."""

    key: str
    tone: str
    text: str
    detail: str = ""
    experiment_id: str | None = None


def _name(names: Mapping[str, str], creative_id: str | None) -> str:
    if not creative_id:
        return "–"
    return names.get(creative_id) or creative_id


def experiment_status(exp: Experiment, names: Mapping[str, str] | None = None) -> Status:
    """The experiment's state and what it waits for (``names``: creative id → shown name)."""
    names = names or {}
    winner = _name(names, exp.winner_creative_id)
    if exp.waiting_until is not None and exp.state in OPEN_STATES:
        # Caps per period (loop.budget_wait): the experiment resumes by itself when its period turns.
        doing = "testing paused" if exp.state == ExperimentState.TESTING else exp.state
        return Status(
            "waiting_for_budget", "warn", f"waiting for budget until {exp.waiting_until}",
            f"{doing}: a cap of this period is used; waiting for budget until {exp.waiting_until}", exp.id,
        )  # fmt: skip
    if exp.state == ExperimentState.DETECTED:
        return Status(
            ExperimentState.DETECTED,
            "info",
            "fatigue detected",
            f"detected on {exp.detected_on}; variants are next",
            exp.id,
        )
    if exp.state == ExperimentState.EXPLORING:
        return Status(
            ExperimentState.EXPLORING, "info", "generating variants", "the variants are being generated", exp.id
        )
    if exp.state == ExperimentState.AWAITING_APPROVAL:
        what = "the pro render" if exp.waiting_for == "pro" else "the drafts"
        if exp.approved_stage is not None and exp.approved_stage == exp.waiting_for:
            return Status("approved", "info", f"{what} approved", f"{what} approved; the next tick acts on it", exp.id)
        return Status(
            ExperimentState.AWAITING_APPROVAL, "warn", f"waiting for approval of {what}",
            f"a person must approve or reject {what}" + (f" of {winner}" if exp.waiting_for == "pro" else ""), exp.id,
        )  # fmt: skip
    if exp.state == ExperimentState.TESTING:
        since = f" since {exp.testing_started_on}" if exp.testing_started_on else ""
        return Status(ExperimentState.TESTING, "info", "testing", f"the bandit splits the test budget{since}", exp.id)
    if exp.state == ExperimentState.DECIDED:
        return Status(
            ExperimentState.DECIDED, "info", f"{winner} won", f"{winner} won the test; its pro render is next", exp.id
        )
    if exp.state == ExperimentState.RENDERING:
        return Status(
            ExperimentState.RENDERING,
            "info",
            f"{winner} rendered",
            f"the pro render of {winner} goes live next",
            exp.id,
        )
    if exp.state == ExperimentState.SCALED:
        live = _name(names, exp.scaled_creative_id)
        return Status(ExperimentState.SCALED, "ok", f"live as {live}", f"{live} replaced the fatigued creative", exp.id)
    if exp.state == ExperimentState.ABANDONED:
        return Status(ExperimentState.ABANDONED, "alert", "abandoned", exp.reason or "ended without a winner", exp.id)
    return Status(exp.state, "muted", exp.state, exp.reason, exp.id)


def creative_status(
    creative: Creative,
    latest: Experiment | None,
    verdict: str,
    names: Mapping[str, str] | None = None,
    *,
    fatigue_day: date | None = None,
) -> Status:
    """A live creative's status: healthy, fatigued, being replaced (by which experiment) or replaced (by which creative).

    ``latest`` is the newest experiment opened for it (None: never fatigued
    as far as the loop acted), ``verdict`` the detector's reading of its
    series now ("healthy", "fatigued", "too little data"), ``fatigue_day``
    the day the detector first saw the drop when no experiment exists yet.
    """
    names = names or {}
    live = creative.status == CreativeStatus.ACTIVE
    if latest is not None:
        detected = f"fatigue detected on {latest.detected_on}" if latest.detected_on else "fatigue detected"
        if latest.state == ExperimentState.SCALED:
            by = _name(names, latest.scaled_creative_id)
            return Status("replaced", "muted", f"replaced by {by}", f"{detected}; replaced by {by}", latest.id)
        if latest.state in OPEN_STATES:
            step = experiment_status(latest, names)
            return Status(
                "replacing", "warn", f"fatigued, being replaced ({step.text})",
                f"{detected}; experiment {latest.id} is replacing it: {step.detail}", latest.id,
            )  # fmt: skip
        if latest.state == ExperimentState.ABANDONED:
            why = latest.reason or "no winner"
            if live:
                return Status(
                    "fatigued", "alert", "live and fatigued, not replaced",
                    f"{detected}; the experiment to replace it was abandoned ({why})", latest.id,
                )  # fmt: skip
            return Status("paused", "muted", "paused", f"{detected}; its replacement was abandoned ({why})", latest.id)
    if not live:
        return Status("paused", "muted", "paused", f"the ad is {creative.status} on the platform")
    if verdict == "fatigued":
        seen = f" from {fatigue_day}" if fatigue_day else ""
        return Status(
            "fatigued", "alert", "live and fatigued",
            f"the detector sees the drop{seen}; the next tick opens an experiment",
        )  # fmt: skip
    if verdict == "healthy":
        return Status("healthy", "ok", "healthy", "no significant drop against its own baseline")
    return Status("too-little-data", "muted", verdict, "not enough delivery yet to form a baseline")
