"""Connecting to Temporal the standard way: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS* or a temporal.toml profile (Temporal's environment
configuration), with loanflow's data converter: pydantic (Decimals travel as JSON strings) and
every payload encrypted with the configured keys (`loanflow.codec`).

Every client and test environment loanflow creates goes through `connect` or `data_converter`,
so nothing it writes to Temporal is left in clear."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig

from loanflow.codec import encrypted_converter
from loanflow.settings import Settings, get_settings

DEFAULT_ADDRESS = "localhost:7233"


def connect_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", DEFAULT_ADDRESS)
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def data_converter(settings: Settings | None = None) -> DataConverter:
    """The converter for every client, worker and test environment: raises SettingsError (one
    line) when no usable payload key is configured."""
    return encrypted_converter((settings or get_settings()).keyring())


async def connect(*, settings: Settings | None = None, **overrides: Any) -> Client:
    """A client for the configured Temporal (overrides win over the environment)."""
    converter = data_converter(settings)
    config = connect_config(**overrides)
    return await Client.connect(**config, data_converter=converter)
