"""The states and statuses of ``storage.states``: the database's vocabulary, unchanged by the enums."""

from __future__ import annotations

from sqlmodel import col, select

from storage.db import session as open_session
from storage.models import Arm, Creative, Experiment, PlatformMutation
from storage.states import (
    END_STATES,
    OPEN_STATES,
    STOPPED_ARMS,
    ArmStatus,
    CreativeRole,
    CreativeStatus,
    ExperimentState,
    MutationStatus,
)

from loop_helpers import make_runtime, run_days


def test_the_values_are_the_strings_rows_hold() -> None:
    # Stored rows and exported JSON hold these strings: renaming one would orphan every row that has it.
    assert [s.value for s in ExperimentState] == [
        "detected", "exploring", "awaiting_approval", "testing", "decided", "rendering", "scaled", "abandoned",
    ]  # fmt: skip
    assert [s.value for s in ArmStatus] == ["pending", "live", "paused", "eliminated"]
    assert [s.value for s in CreativeRole] == ["live", "draft", "pro", "fix"]
    assert [s.value for s in CreativeStatus] == ["active", "paused", "testing", "candidate", "untested"]
    assert [s.value for s in MutationStatus] == ["intent", "done", "failed"]
    assert set(OPEN_STATES) | set(END_STATES) == set(ExperimentState)
    assert not set(OPEN_STATES) & set(END_STATES)


def test_a_loop_run_stores_only_known_values_and_reads_them_back_as_members(engine, tmp_path, scenario_file):
    rt = make_runtime(engine, tmp_path, scenario_file)
    run_days(rt, 30)
    with open_session(engine) as s:
        stored = {
            ExperimentState: set(s.exec(select(Experiment.state).distinct()).all()),
            ArmStatus: set(s.exec(select(Arm.status).distinct()).all()),
            CreativeRole: set(s.exec(select(Creative.role).distinct()).all()),
            CreativeStatus: set(s.exec(select(Creative.status).distinct()).all()),
            MutationStatus: set(s.exec(select(PlatformMutation.status).distinct()).all()),
        }
        # Members bind as their strings in SQL, and compare equal to the strings a row reads back.
        arms = s.exec(select(Arm)).all()
        stopped = s.exec(select(Arm).where(col(Arm.status).in_(STOPPED_ARMS))).all()
        scaled = s.exec(select(Experiment).where(Experiment.state == ExperimentState.SCALED)).all()
    for enum, values in stored.items():
        assert values, enum
        assert values <= {m.value for m in enum}, (enum, values)
        assert all(type(v) is str for v in values)  # the driver hands back strings, not members
    # The hero's experiment ran its whole course: every kind of row was written by the enums' members.
    assert stored[ExperimentState] == {ExperimentState.SCALED}
    assert stored[ArmStatus] == {ArmStatus.PAUSED, ArmStatus.ELIMINATED}
    assert stored[CreativeRole] == {CreativeRole.LIVE, CreativeRole.DRAFT, CreativeRole.PRO}
    assert stored[CreativeStatus] >= {CreativeStatus.ACTIVE, CreativeStatus.PAUSED, CreativeStatus.TESTING}
    assert stored[MutationStatus] == {MutationStatus.DONE}
    assert arms and len(stopped) == len(arms) and all(a.status in STOPPED_ARMS for a in arms)
    assert [e.state for e in scaled] == [ExperimentState.SCALED] and scaled[0].state == "scaled"
