"""Risk policies to compare: `--policy FILE` (TOML or JSON with any fields of `RiskPolicy`),
each on top of the desk's own policy (defaults and `LOANFLOW_POLICY_*`). Without a file the
run has one policy, the desk's, named `default`."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from loanflow.desk_policy import desk_policy, refusal
from loanflow.policy import PolicyOverrides

@dataclass(frozen=True)
class NamedPolicy:
    name: str
    overrides: PolicyOverrides | None = None


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,23}$")


class PolicyFileError(ValueError):
    pass


def load_policies(paths: Sequence[Path]) -> list[NamedPolicy]:
    if not paths:
        return [NamedPolicy("default", desk_policy())]
    policies = [load_policy(p) for p in paths]
    names = [p.name for p in policies]
    for name in names:
        if names.count(name) > 1:
            raise PolicyFileError(f"--policy: two policies named {name!r} (name them apart "
                                  f"with distinct file names)")
    return policies


def load_policy(path: Path) -> NamedPolicy:
    """A policy file; its name (the file name without extension) prefixes its loans' ids."""
    name = path.stem
    if not NAME.match(name):
        raise PolicyFileError(f"--policy {path}: the file name {name!r} names the policy and "
                              f"must be 1-24 letters, digits, '.', '_' or '-'")
    values = _read(path)
    merged = {**desk_policy().model_dump(mode="json", exclude_none=True), **values}
    try:
        overrides = PolicyOverrides.model_validate(merged)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(x) for x in first["loc"]) or "?"
        raise PolicyFileError(f"--policy {path}: {field}: {first['msg']}") from None
    problem = refusal(overrides)
    if problem:
        raise PolicyFileError(f"--policy {path}: {problem}")
    return NamedPolicy(name, overrides)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PolicyFileError(f"--policy {path}: no such file")
    text = path.read_text()
    try:
        values = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise PolicyFileError(f"--policy {path}: not valid {kind}: {err}") from None
    if not isinstance(values, dict):
        raise PolicyFileError(f"--policy {path}: expected an object of policy fields")
    return values
