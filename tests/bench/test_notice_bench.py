"""The notice benchmark (`python -m bench.notice`) as a smoke test: a few fresh notices through
the real activity to the sink in its own process, on SQLite and PostgreSQL. No timing is
asserted; only that every notice arrived once and what a fresh notice costs the database."""

from __future__ import annotations

from pathlib import Path

from bench.notice import run


async def test_the_notice_benchmark_delivers_every_notice_once(db_url: str,
                                                               tmp_path: Path) -> None:
    result = await run(5, db_url, tmp_path)
    assert result["delivered"] == 5 + 5  # the warm-up notices too
    # The contact read, the claimed insert (2), the commit before DATA, the sent mark.
    assert (result["statements_per_notice"], result["commits_per_notice"]) == (5, 3)
    assert result["cpu_ms_per_notice"] > 0
