"""The desk's risk-policy overrides from the environment: `LOANFLOW_POLICY_<FIELD>`, one per
field of `RiskPolicy` (`LOANFLOW_POLICY_MARGIN_CALL_LTV=0.72`,
`LOANFLOW_POLICY_REMINDER_HOURS=[24,4]`).

A workflow cannot read the environment (it must replay the same anywhere), so the overrides
travel in each application: `loanflow open` writes them into the application's `policy`, under
any the application names itself. A loan keeps the policy it was opened with.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import ValidationError, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from loanflow.policy import PolicyOverrides, RiskPolicy, new_loan_problem
from loanflow.settings import SettingsError

PREFIX = "LOANFLOW_POLICY_"


class _PolicyEnv(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore")


# The same fields as PolicyOverrides (all optional), read from the environment.
PolicyEnv = create_model(  # type: ignore[call-overload]
    "PolicyEnv",
    __base__=_PolicyEnv,
    **{name: (field.annotation, None) for name, field in PolicyOverrides.model_fields.items()},
)


def env_name(field: str) -> str:
    return PREFIX + field.upper()


@lru_cache(maxsize=1)
def desk_policy() -> PolicyOverrides:
    """The overrides set in the environment (none set: an empty PolicyOverrides). A bad value
    or a combination `RiskPolicy` refuses raises SettingsError naming the variable."""
    try:
        values = PolicyEnv().model_dump(exclude_none=True)
    except ValidationError as err:
        problems = [f"{env_name(str(e['loc'][0]))}: {e['msg']}" for e in err.errors()]
        raise SettingsError("invalid setting: " + "; ".join(problems)) from None
    overrides = PolicyOverrides.model_validate(values)
    problem = refusal(overrides)
    if problem:
        names = ", ".join(env_name(k) for k in values)
        raise SettingsError(f"invalid setting: {names}: {problem}")
    return overrides


def refusal(overrides: PolicyOverrides) -> str | None:
    """Why `RiskPolicy` refuses these overrides together (a margin call above liquidation, ...),
    or None if it takes them."""
    try:
        policy = overrides.apply(RiskPolicy())
    except ValidationError as err:
        return "; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())
    return new_loan_problem(policy)


def with_desk_policy(application: dict[str, Any]) -> dict[str, Any]:
    """The application with the desk's overrides under its own `policy` (its own win)."""
    desk = desk_policy().model_dump(mode="json", exclude_none=True)
    own = application.get("policy") or {}
    if not desk or not isinstance(own, dict):
        return application
    return {**application, "policy": {**desk, **own}}
