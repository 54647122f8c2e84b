"""Settings from the environment (and a `.env` file). Invalid values fail at start-up with a
message that names the setting. The Temporal connection itself is configured the standard
Temporal way (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, or a
temporal.toml profile): see `loanflow.temporal_client`."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VAR_DIR = PROJECT_ROOT / "var"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    task_queue: str = Field("loans", validation_alias=_env("LOANFLOW_TASK_QUEUE"), min_length=1)
    market_task_queue: str | None = Field(
        None, validation_alias=_env("LOANFLOW_MARKET_TASK_QUEUE"), min_length=1)
    var_dir: Path = Field(DEFAULT_VAR_DIR, validation_alias=_env("LOANFLOW_VAR_DIR"))
    # How long the CLI waits for a worker to answer a query or an update. Nobody answers when
    # no worker polls the loan's task queue, and Temporal would keep the call waiting.
    cli_answer_seconds: float = Field(
        20, validation_alias=_env("LOANFLOW_CLI_ANSWER_SECONDS"), gt=0)
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))

    smtp_host: str = Field("127.0.0.1", validation_alias=_env("SMTP_HOST"))
    smtp_port: int = Field(8025, validation_alias=_env("SMTP_PORT"), gt=0, lt=65536)
    smtp_username: str | None = Field(None, validation_alias=_env("SMTP_USERNAME"))
    smtp_password: str | None = Field(None, validation_alias=_env("SMTP_PASSWORD"))
    smtp_security: str = Field(
        "none", validation_alias=_env("SMTP_SECURITY"), pattern="^(none|starttls|tls)$"
    )
    smtp_timeout_seconds: float = Field(10, validation_alias=_env("SMTP_TIMEOUT_SECONDS"), gt=0)
    mail_from: str = Field("loans@loanflow.example", validation_alias=_env("LOANFLOW_MAIL_FROM"))

    lender_name: str = Field("Loanflow Lending", validation_alias=_env("LOANFLOW_LENDER_NAME"))
    support_email: str = Field(
        "support@loanflow.example", validation_alias=_env("LOANFLOW_SUPPORT_EMAIL")
    )
    mail_footer: str = Field(
        "Loanflow Lending Ltd. Collateralised loans carry the risk of liquidation.",
        validation_alias=_env("LOANFLOW_MAIL_FOOTER"),
    )

    # Built-in fakes of outside services (custodian, exchange, payouts, KYC vendor).
    fake_latency_ms: int = Field(40, validation_alias=_env("LOANFLOW_FAKE_LATENCY_MS"), ge=0)
    fake_failure_rate: Decimal = Field(
        Decimal("0.02"), validation_alias=_env("LOANFLOW_FAKE_FAILURE_RATE"), ge=0, le=1
    )
    fake_seed: int | None = Field(None, validation_alias=_env("LOANFLOW_FAKE_SEED"))

    @property
    def market_queue(self) -> str:
        """The market monitor's task queue: its own, so a price tick is never queued behind
        the loans' work in a crash. `<task queue>-market` unless set."""
        return self.market_task_queue or f"{self.task_queue}-market"

    @property
    def db_url(self) -> str:
        """The async SQLAlchemy URL; SQLite file under var/ unless DATABASE_URL says otherwise."""
        if self.database_url:
            return async_url(self.database_url)
        return f"sqlite+aiosqlite:///{self.var_dir / 'loanflow.db'}"


def async_url(url: str) -> str:
    """Accept the usual URL spellings and pick the async driver loanflow ships with."""
    for prefix, replacement in (
        ("postgres://", "postgresql+psycopg://"),
        ("postgresql://", "postgresql+psycopg://"),
        ("sqlite:///", "sqlite+aiosqlite:///"),
    ):
        if url.startswith(prefix):
            return replacement + url[len(prefix):]
    return url


class SettingsError(RuntimeError):
    pass


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; a bad value raises SettingsError naming the variable."""
    try:
        return Settings()
    except ValidationError as err:
        problems = []
        for e in err.errors():
            field = str(e["loc"][0]) if e["loc"] else "?"
            problems.append(f"{field}: {e['msg']}")
        raise SettingsError("invalid setting: " + "; ".join(problems)) from None
