"""Hostile-input tests reuse the workflow harness (time-skipping server, real activities)."""

from tests.workflows.conftest import desk, ts_env  # noqa: F401
