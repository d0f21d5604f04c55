"""The states and statuses the tables hold, in one place.

Each is a ``StrEnum`` whose values are the strings stored in the database
and written to JSON, so a member compares equal to what a row reads back
(``exp.state == ExperimentState.TESTING`` for a row holding ``"testing"``)
and a stored row or an exported result reads the same as before these
names existed.  The columns stay plain strings (no database enum type),
so a new member needs no migration.

The experiment state machine (../shared/DESIGN.md)::

    detected → exploring → [awaiting_approval] → testing → decided → rendering
             → [awaiting_approval] → scaled
    any state → abandoned (cap reached, no winner, rejected), reason stored
"""

from __future__ import annotations

from enum import StrEnum


class ExperimentState(StrEnum):
    """``Experiment.state``."""

    DETECTED = "detected"
    EXPLORING = "exploring"
    AWAITING_APPROVAL = "awaiting_approval"
    TESTING = "testing"
    DECIDED = "decided"
    RENDERING = "rendering"
    SCALED = "scaled"
    ABANDONED = "abandoned"


# A tick advances the open ones; the end states never change again.
OPEN_STATES = (
    ExperimentState.DETECTED,
    ExperimentState.EXPLORING,
    ExperimentState.AWAITING_APPROVAL,
    ExperimentState.TESTING,
    ExperimentState.DECIDED,
    ExperimentState.RENDERING,
)
END_STATES = (ExperimentState.SCALED, ExperimentState.ABANDONED)


class ArmStatus(StrEnum):
    """``Arm.status``: whether a test arm's ad set spends."""

    PENDING = "pending"  # not launched yet
    LIVE = "live"
    PAUSED = "paused"  # daily budget 0, may run again (a wait for budget, the test's end)
    ELIMINATED = "eliminated"  # dropped by the test for good; keeps this status after the test


# The arm statuses in which its ad set no longer spends.
STOPPED_ARMS = (ArmStatus.PAUSED, ArmStatus.ELIMINATED)


class CreativeRole(StrEnum):
    """``Creative.role``: where a creative comes from."""

    LIVE = "live"  # an ad found on the platform
    DRAFT = "draft"  # a fast-tier variant of an experiment
    PRO = "pro"  # a pro-tier render (scaled, it runs as a live ad)
    FIX = "fix"  # a variant repainted by `creative-loop fix`


# The roles of creatives that run in the campaign's main ad set (the ones fatigue is tested on).
RUNNING_ROLES = (CreativeRole.LIVE, CreativeRole.PRO)


class CreativeStatus(StrEnum):
    """``Creative.status``."""

    ACTIVE = "active"  # delivering on the platform
    PAUSED = "paused"
    TESTING = "testing"  # a variant in an experiment's test
    CANDIDATE = "candidate"  # a generated variant not launched (yet)
    UNTESTED = "untested"  # a draft the test plan left out (kept in the gallery)


class MutationStatus(StrEnum):
    """``PlatformMutation.status``: its intent is written before it is sent, its result after."""

    INTENT = "intent"
    DONE = "done"
    FAILED = "failed"
