"""Hostile-input tests reuse the workflow harness (time-skipping server, real activities) and
the notice tests' mail sink."""

from tests.notify.conftest import sink  # noqa: F401
from tests.workflows.conftest import desk, ts_env  # noqa: F401
