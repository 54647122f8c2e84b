"""`.env.example` lists every setting, so a new one cannot be added without telling operators."""

from __future__ import annotations

import re
from pathlib import Path

from loanflow.desk_policy import env_name
from loanflow.policy import PolicyOverrides
from loanflow.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def listed() -> dict[str, str]:
    """Each `NAME=default` line (commented out or not) of the example, by name."""
    lines = EXAMPLE.read_text().splitlines()
    found = (re.fullmatch(r"#? ?([A-Z][A-Z0-9_]*)=(.*)", line) for line in lines)
    return {m[1]: m[2] for m in found if m}


def setting_names() -> list[str]:
    names = []
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.extend(alias.choices if alias is not None else [])  # type: ignore[union-attr]
    return [str(n) for n in names]


def test_every_setting_is_in_the_example_with_its_default() -> None:
    example = listed()
    expected = setting_names() + [env_name(f) for f in PolicyOverrides.model_fields]
    assert sorted(set(expected) - set(example)) == []
    defaults = Settings.model_construct()  # the defaults, without this process's environment
    for field, name in (("temporal_port", "LOANFLOW_TEMPORAL_PORT"),
                        ("ui_port", "LOANFLOW_UI_PORT"), ("smtp_port", "SMTP_PORT"),
                        ("task_queue", "LOANFLOW_TASK_QUEUE"),
                        ("mail_footer", "LOANFLOW_MAIL_FOOTER")):
        assert example[name] == str(getattr(defaults, field)), name


def test_each_setting_has_a_comment_above_it() -> None:
    """Directly above it, or above the settings grouped with it (SMTP_USERNAME, _PASSWORD)."""
    lines = EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if is_setting(line):
            above = i - 1
            while is_setting(lines[above]):
                above -= 1
            assert lines[above].startswith("# ") and not lines[above].startswith("# ---"), line


def is_setting(line: str) -> bool:
    return re.fullmatch(r"# ?[A-Z][A-Z0-9_]*=.*", line) is not None
