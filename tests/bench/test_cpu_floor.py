"""The CPU floor of the one-tick ratio and the seeding ceiling, from per-unit CPU figures."""

from __future__ import annotations

from bench.crash import cpu_floor, seeding_ceiling

# The figures of a 1,000-loan run (2026-12-04, 16:15 UTC): CPU ms per unit of work.
SIGNALLED = {"worker": 19.0, "temporal_server": 13.4, "smtp_sink": 1.8, "driver": 0.3,
             "postgresql": 3.0}
BASELINE = {"worker": 4.3, "temporal_server": 6.8, "smtp_sink": 0.0, "driver": 0.4,
            "postgresql": 0.0}


def test_the_ratio_of_cpu_and_its_floor_without_workers() -> None:
    # 37.5 / 11.5 in all; without the workers' 19.0: 18.5 / 11.5.
    assert cpu_floor(SIGNALLED, BASELINE) == {"all": 3.26, "without_workers": 1.61}


def test_the_profiler_is_not_counted_as_work() -> None:
    profiled = SIGNALLED | {"py-spy": 3.7}
    assert cpu_floor(profiled, BASELINE | {"py-spy": 1.0}) == cpu_floor(SIGNALLED, BASELINE)


def test_a_baseline_that_measured_nothing_gives_no_ratio() -> None:
    assert cpu_floor(SIGNALLED, {}) == {"all": 0.0, "without_workers": 0.0}


def test_seeding_ceiling_is_the_cores_over_what_the_rest_costs_per_loan() -> None:
    # 2 cores, 116.7 CPU-ms of server, sink, driver and database per onboarded loan.
    per_loan = {"worker": 103.2, "temporal_server": 87.7, "smtp_sink": 9.7, "driver": 1.7,
                "postgresql": 17.6}
    assert seeding_ceiling(per_loan, 2) == 17.1
    assert seeding_ceiling({"worker": 50.0}, 2) == 0.0  # nothing else measured: no ceiling
