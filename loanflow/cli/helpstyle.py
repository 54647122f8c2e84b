"""How `--help` shows arguments and options: without Typer's type labels (`<bool>`, `<str>`,
`<list[str]>`), which say nothing an operator needs. A flag shows no value; an option shows
its metavar, or its name in upper case (`--tx-id TX_ID`); an argument's name is its label."""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperOption


def option_label(option: TyperOption, ctx: Any) -> str | None:
    if option.metavar is not None:
        return option.metavar
    if option.is_flag or option.is_bool_flag:
        return None
    label = (option.name or "value").upper()
    return f"{label}..." if option.multiple else label


def argument_label(argument: TyperArgument, ctx: Any) -> str | None:
    return None  # the name column already shows it (LOAN_ID, AMOUNT)


def install() -> None:
    """Replace the labels for every command (called once, where the root command is made)."""
    TyperOption.display_type_rich = option_label  # type: ignore[method-assign]
    TyperArgument.display_type_rich = argument_label  # type: ignore[method-assign]
