"""loanflow's processes run on uvloop where it is installed (`loanflow.event_loop`)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from loanflow import event_loop


async def loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_runs_on_uvloop_and_returns_the_result() -> None:
    assert event_loop.run(loop_type()) is uvloop.Loop


def test_a_failure_comes_out_as_it_was_raised() -> None:
    async def fails() -> None:
        raise LookupError("no such loan")

    with pytest.raises(LookupError, match="no such loan"):
        event_loop.run(fails())
