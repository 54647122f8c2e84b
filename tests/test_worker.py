"""How the workers run workflow code: without the SDK's sandbox unless asked for (production),
with it in the test suite (`tests.support.quiet_settings`), and never visiting payloads in
tasks of their own."""

from __future__ import annotations

import pytest
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from loanflow.settings import Settings
from loanflow.worker import workflow_options
from tests.support import quiet_settings


def test_production_runs_workflows_without_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOANFLOW_WORKFLOW_SANDBOX", raising=False)
    options = workflow_options(Settings())
    assert isinstance(options["workflow_runner"], UnsandboxedWorkflowRunner)
    assert options["max_workflow_task_external_storage_concurrency"] == 1


@pytest.mark.parametrize(("value", "sandboxed"), [("1", True), ("true", True), ("0", False)])
def test_the_sandbox_is_one_setting_away(monkeypatch: pytest.MonkeyPatch, value: str,
                                         sandboxed: bool) -> None:
    monkeypatch.setenv("LOANFLOW_WORKFLOW_SANDBOX", value)
    runner = workflow_options(Settings())["workflow_runner"]
    assert isinstance(runner, SandboxedWorkflowRunner) is sandboxed


def test_the_suite_checks_workflow_code_under_the_sandbox() -> None:
    assert isinstance(workflow_options(quiet_settings())["workflow_runner"], SandboxedWorkflowRunner)


def test_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOANFLOW_WORKFLOW_SANDBOX", "perhaps")
    with pytest.raises(ValueError, match="LOANFLOW_WORKFLOW_SANDBOX"):
        Settings()
