"""The worker's activity list: every activity name, once, wired to fakes from the settings."""

from __future__ import annotations

from temporalio import activity

from activities.registry import build_activities
from loanflow.effects import ActivityName
from tests.support import quiet_settings

ALL_NAMES = {value for key, value in vars(ActivityName).items() if key.isupper()}


def names(activities: list) -> list[str]:
    # What the Worker itself reads off each callable to register it.
    return [activity._Definition.must_from_callable(fn).name for fn in activities]


async def test_build_activities_registers_every_effect(db) -> None:
    settings = quiet_settings()
    without_notices = names(build_activities(db, settings, notice_activities=[]))
    assert sorted(without_notices) == sorted(ALL_NAMES - {ActivityName.RECORD_NOTICE})
    # By default the notice activity of activities.notify is added (when that module is there).
    default = names(build_activities(db, settings))
    assert set(default) - set(without_notices) <= {ActivityName.RECORD_NOTICE}
    assert len(default) == len(set(default))
