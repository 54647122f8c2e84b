"""The profile categoriser on a hand-written py-spy raw file (frames as py-spy writes them:
`Class.method (package/module.py:line)`, root first, sample count last)."""

from __future__ import annotations

from pathlib import Path

from bench.profile_summary import categorise, main, parse_frame, parse_line, summarise_dir

LOOP = "_run_once (asyncio/base_events.py:1922);Handle._run (asyncio/events.py:84)"
ACT = f"{LOOP};_ActivityWorker._execute_activity (temporalio/worker/_activity.py:600)"
NOTICE = f"{ACT};NoticeActivities.record_notice (activities/notify.py:20)"
WF = f"{LOOP};_WorkflowWorker._handle_activation (temporalio/worker/_workflow.py:300)"

RAW = "\n".join([
    f"{NOTICE};Template.render (jinja2/environment.py:1293);escape (markupsafe/__init__.py:45) 7",
    f"{NOTICE};AsyncSession.execute (sqlalchemy/ext/asyncio/session.py:461) 5",
    # a JSON column encoded inside SQLAlchemy is database time (the outermost library wins)
    f"{NOTICE};AsyncSession.flush (sqlalchemy/orm/session.py:4300);dumps (json/__init__.py:231) 1",
    f"{NOTICE};SMTP.send_message (aiosmtplib/smtp.py:600) 4",
    f"{NOTICE};Message.as_bytes (email/message.py:170) 1",
    f"{NOTICE};render_subject (loanflow/notify/text.py:12) 2",
    f"{ACT};LoanStore.publish_loan (activities/store.py:40) 3",
    f"{ACT};_ActivityWorker._complete (temporalio/worker/_activity.py:700) 1",
    f"{WF};_WorkflowInstanceImpl.activate (temporalio/worker/_workflow_instance.py:400) 6",
    f"{WF};decode (temporalio/converter.py:1500);AESGCM.decrypt (cryptography/aead.py:10) 2",
    f"{WF};Codec.decode (loanflow/codec.py:50) 1",
    f"{LOOP};WorkerRef.poll_workflow_activation (temporalio/bridge/worker.py:150) 2",
    f"{LOOP};Logger.warning (logging/__init__.py:1500) 3",
    "garbage line without a count",
    "",
])


def test_frames_and_lines_are_parsed() -> None:
    frame = parse_frame("Template.render (jinja2/environment.py:1293)")
    assert (frame.name, frame.file) == ("Template.render", "jinja2/environment.py")
    assert parse_frame("<module> (<string>:6)").file == "<string>"
    frames, count = parse_line("a (x.py:1);b (y.py:2) 12")  # type: ignore[misc]
    assert [f.name for f in frames] == ["a", "b"] and count == 12
    assert parse_line("no count here") is None


def test_each_sample_lands_in_one_category(tmp_path: Path) -> None:
    half = RAW.splitlines()
    (tmp_path / "worker-0.txt").write_text("\n".join(half[:7]))
    (tmp_path / "worker-1.txt").write_text("\n".join(half[7:]))
    (tmp_path / "worker-0.log").write_text("not a profile")
    samples, files = summarise_dir(tmp_path)
    assert [f.name for f in files] == ["worker-0.txt", "worker-1.txt"]
    assert dict(samples) == {
        "Jinja rendering": 7,
        "SQLAlchemy/database": 6,
        "SMTP": 5,
        "activity: NoticeActivities.record_notice": 2,
        "activity: LoanStore.publish_loan": 3,
        "activity: (SDK)": 1,
        "workflow task": 6,
        "payload conversion/codec": 3,
        "Temporal bridge/RPC": 2,
        "other": 3,
    }


def test_a_workflow_task_without_a_library_is_a_workflow_task() -> None:
    frames, _ = parse_line(f"{WF};LoanWorkflow.on_price (workflows/loan.py:10) 1")  # type: ignore[misc]
    assert categorise(frames) == "workflow task"


def test_the_command_prints_a_table(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "worker-0.txt").write_text(RAW)
    main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "38 samples from 1 processes" in out
    assert "Jinja rendering" in out and "18.4%" in out  # 7 of 38
