"""Connecting to Temporal the standard way: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS* or a temporal.toml profile (Temporal's environment
configuration), with the pydantic data converter so Decimals travel as JSON strings."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

DEFAULT_ADDRESS = "localhost:7233"


def connect_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", DEFAULT_ADDRESS)
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


async def connect(**overrides: Any) -> Client:
    """A client for the configured Temporal (overrides win over the environment)."""
    config = connect_config(**overrides)
    return await Client.connect(**config, data_converter=pydantic_data_converter)
