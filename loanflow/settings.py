"""Settings from the environment (and a `.env` file). Invalid values fail at start-up with a
message that names the setting. The Temporal connection itself is configured the standard
Temporal way (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, or a
temporal.toml profile): see `loanflow.temporal_client`."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from loanflow import codec_keys

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VAR_DIR = PROJECT_ROOT / "var"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    # Errors never echo a value: a key, a password or a URL with credentials stays out of logs.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True,
                                      hide_input_in_errors=True)

    task_queue: str = Field("loans", validation_alias=_env("LOANFLOW_TASK_QUEUE"), min_length=1)
    market_task_queue: str | None = Field(
        None, validation_alias=_env("LOANFLOW_MARKET_TASK_QUEUE"), min_length=1)
    var_dir: Path = Field(DEFAULT_VAR_DIR, validation_alias=_env("LOANFLOW_VAR_DIR"))
    # Run workflow code inside the SDK's sandbox (README, "The workflow sandbox"). Off in
    # production: in a crash the sandbox cost each margin call about a fifth of the worker's
    # CPU. The test suite turns it on, so workflow code is still checked under it.
    workflow_sandbox: bool = Field(False, validation_alias=_env("LOANFLOW_WORKFLOW_SANDBOX"))
    # How long the CLI waits for a worker to answer a query or an update. Nobody answers when
    # no worker polls the loan's task queue, and Temporal would keep the call waiting.
    cli_answer_seconds: float = Field(
        20, validation_alias=_env("LOANFLOW_CLI_ANSWER_SECONDS"), gt=0)
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))

    # The ports `loanflow up` listens on (its dev server's frontend and Web UI); the mail sink
    # listens on SMTP_PORT. `up --port/--ui-port/--smtp-port` override them.
    temporal_port: int = Field(7233, validation_alias=_env("LOANFLOW_TEMPORAL_PORT"), gt=0,
                               lt=65536)
    ui_port: int = Field(8233, validation_alias=_env("LOANFLOW_UI_PORT"), gt=0, lt=65536)

    # Run a notice relay in this worker (`loanflow.mail.relay`); of the workers' relays on one
    # database one sends, the others stand by (`loanflow.mail.relay_lease`).
    notice_relay: bool = Field(True, validation_alias=_env("LOANFLOW_NOTICE_RELAY"))
    # The longest the relay waits before it tries the mail server again during an outage.
    notice_relay_backoff_seconds: float = Field(
        30, validation_alias=_env("LOANFLOW_NOTICE_RELAY_BACKOFF_SECONDS"), gt=0, le=3600)
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

    # Payload encryption (README, "Borrower data and encryption"): `id:base64key,...`, first
    # current; else the keys file (var/codec.keys by default, made by `loanflow up`).
    codec_keys: SecretStr | None = Field(None, validation_alias=_env("LOANFLOW_CODEC_KEYS"))
    codec_keys_file: Path | None = Field(None, validation_alias=_env("LOANFLOW_CODEC_KEYS_FILE"))
    # The codec server for the Web UI and the stock CLI (`loanflow codec-server`).
    codec_server_host: str = Field("127.0.0.1", validation_alias=_env("LOANFLOW_CODEC_HOST"))
    codec_server_port: int = Field(
        8234, validation_alias=_env("LOANFLOW_CODEC_PORT"), gt=0, lt=65536)
    # Web UI origins allowed to call it (comma-separated); the dev server's UI (on ui_port) when
    # unset, so a UI moved with `up --ui-port` can still decrypt.
    codec_cors_origins: str | None = Field(
        None, validation_alias=_env("LOANFLOW_CODEC_CORS_ORIGINS"))
    # When set, every codec request must carry exactly this Authorization header.
    codec_auth: SecretStr | None = Field(None, validation_alias=_env("LOANFLOW_CODEC_AUTH"))

    @field_validator("codec_keys")
    @classmethod
    def _keys_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            codec_keys.parse_keys(value.get_secret_value())
            return value
        return None

    @property
    def keys_file(self) -> Path:
        return self.codec_keys_file or self.var_dir / "codec.keys"

    def keyring(self) -> codec_keys.KeyRing:
        """The payload keys; SettingsError (one line, naming the setting) when there are none
        or they cannot be used."""
        try:
            if self.codec_keys is not None:
                return codec_keys.parse_keys(self.codec_keys.get_secret_value())
            if self.keys_file.exists():
                return codec_keys.read_file(self.keys_file)
        except codec_keys.KeyConfigError as err:
            raise SettingsError(f"invalid payload keys: {err}") from None
        raise SettingsError(
            f"no payload encryption key: set LOANFLOW_CODEC_KEYS (id:base64key, see README, "
            f"'Borrower data and encryption') or LOANFLOW_CODEC_KEYS_FILE; `loanflow up` "
            f"keeps a development key in {self.keys_file}")

    @property
    def codec_origins(self) -> list[str]:
        if self.codec_cors_origins is None:
            return [f"http://127.0.0.1:{self.ui_port}", f"http://localhost:{self.ui_port}"]
        return [o.strip().rstrip("/") for o in self.codec_cors_origins.split(",") if o.strip()]

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
