"""The `loanflow` command: one tool for every desk operation."""

from __future__ import annotations

from loanflow.cli.app import app, main

__all__ = ["app", "main"]
