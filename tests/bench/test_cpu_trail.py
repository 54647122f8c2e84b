"""Cutting a window out of a phase's CPU readings (bench/profiling.py `CpuTrail`): the
same-work baseline's CPU over exactly its timed part."""

from __future__ import annotations

import asyncio
import os

import pytest

from bench.profiling import CpuTrail, Processes, trail


def readings() -> CpuTrail:
    # Two processes of two kinds, read at t = 0, 1, 2, 3: the server busy throughout, the
    # worker only in the second second.
    samples = [(0.0, {1: 10.0, 2: 5.0}), (1.0, {1: 10.8, 2: 5.0}),
               (2.0, {1: 11.6, 2: 5.9}), (3.0, {1: 12.4, 2: 5.9})]
    return CpuTrail({"temporal_server": [1], "worker": [2]}, samples)


def test_a_window_is_cut_at_the_readings_either_side() -> None:
    report = readings().report(1.0, 1.6)  # readings at 1.0 and 2.0
    kinds = report["by_kind"]
    assert report["wall_seconds"] == 1.0
    assert kinds["temporal_server"]["cpu_seconds"] == pytest.approx(0.8)
    assert kinds["worker"]["cpu_seconds"] == pytest.approx(0.9)
    assert kinds["worker"]["cores_busy"] == pytest.approx(0.9)


def test_a_window_past_the_readings_takes_the_last() -> None:
    report = readings().report(0.5, 9.0)  # from the reading at 0.0 to the last, at 3.0
    assert report["wall_seconds"] == 3.0
    assert report["by_kind"]["temporal_server"]["cpu_seconds"] == pytest.approx(2.4)


async def test_a_trail_reads_this_process_through_the_phase() -> None:
    async with trail(Processes({"driver": [os.getpid()]}), every=0.01) as found:
        while len(found.samples) < 5:
            await asyncio.sleep(0.01)
    times = [t for t, _ in found.samples]
    assert times == sorted(times) and len(times) >= 6  # the last is read on the way out
    first, last = found.samples[0][1][os.getpid()], found.samples[-1][1][os.getpid()]
    assert last >= first
