"""The core package never reaches up into the layers built on it.

`workflows/` and `activities/` import `loanflow/`; if `loanflow/` imported them back, a change to
an activity could break the CLI, and the core could not be read (or tested) on its own. Only the
modules that wire a worker together (the workflows and activities it registers) may import
both. Every import counts: at the top of a module, inside a function, or under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "loanflow"
UPPER = ("activities", "workflows")
# The worker wiring: they hand the workflows and activities to a Temporal worker.
WIRING = {"loanflow/worker.py", "loanflow/stress/workers.py"}


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import in the tree, relative imports resolved to nothing (a
    relative import inside `loanflow/` stays inside it)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def reaches_up(module: str) -> bool:
    return module.split(".")[0] in UPPER


def violations(root: Path, wiring: set[str]) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root.parent).as_posix()
        if name in wiring:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=name)
        problems += [f"{name}:{line} imports {module}"
                     for line, module in imported_modules(tree) if reaches_up(module)]
    return problems


def test_nothing_in_the_core_imports_activities_or_workflows() -> None:
    assert violations(CORE, WIRING) == []


def test_the_wiring_modules_exist_and_do_wire() -> None:
    # A renamed wiring module must be renamed here too, not silently exempt nothing.
    for name in WIRING:
        tree = ast.parse((ROOT / name).read_text(encoding="utf-8"))
        assert any(reaches_up(module) for _, module in imported_modules(tree)), name


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "loanflow"
    (package / "cli").mkdir(parents=True)
    (package / "cli" / "late.py").write_text(
        "def f():\n    from activities.pricing import latest_observation\n")
    (package / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import workflows.loan\n")
    (package / "fine.py").write_text("from loanflow.store import prices\nfrom . import typed\n")
    (package / "worker.py").write_text("from workflows.loan import LoanWorkflow\n")
    assert violations(package, {"loanflow/worker.py"}) == [
        "loanflow/cli/late.py:2 imports activities.pricing",
        "loanflow/typed.py:3 imports workflows.loan",
    ]


def test_only_the_cli_imports_the_cli() -> None:
    """The CLI is the top of `loanflow/`: the importer, the stress runner and the stack are
    used by it, so they take what they share with it (ids, the desk's policy) from the core."""
    problems = []
    for path in sorted(CORE.rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name.startswith("loanflow/cli/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=name)
        problems += [f"{name}:{line} imports {module}" for line, module in imported_modules(tree)
                     if module == "loanflow.cli" or module.startswith("loanflow.cli.")]
    assert problems == []
