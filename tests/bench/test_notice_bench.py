"""The notice benchmark (`python -m bench.notice`) as a smoke test: a few fresh notices through
the real activity, and as many loans' margin-call writes through the relay, to the sink in its
own process, on SQLite and PostgreSQL. No timing is asserted; only that every notice arrived
once and what a fresh notice costs the database on each path."""

from __future__ import annotations

from pathlib import Path

from bench.notice import run


async def test_the_notice_benchmark_delivers_every_notice_once(db_url: str,
                                                               tmp_path: Path) -> None:
    result = await run(5, db_url, tmp_path)
    assert result["delivered"] == 2 * (5 + 5)  # both paths, their warm-up notices too
    activity, write, send = (result["activity"], result["relay"]["write"],
                             result["relay"]["send"])
    # The contact read, the claimed insert (2), the commit before DATA, the sent mark.
    assert (activity["statements_per_notice"], activity["commits_per_notice"]) == (5, 3)
    # The snapshot, the audit entry, the contact read, the notice and its outbox row: on
    # PostgreSQL one transaction; on SQLite the two upserts commit alone, the notice in one.
    sqlite = result["database"] == "sqlite"
    assert (write["statements_per_notice"], write["commits_per_notice"]) == (5, 3 if sqlite else 1)
    # The commit before DATA and the sent mark each; the pass's query and its lanes' claims
    # (one for each lane's rows) shared by its five notices.
    assert send["statements_per_notice"] <= 3 and send["commits_per_notice"] <= 3
    assert all(path["cpu_ms_per_notice"] > 0 for path in (activity, write, send))
