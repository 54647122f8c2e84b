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
from loanflow.failures import StartupError, missing_namespace, missing_namespace_in, unreachable
from loanflow.settings import Settings, get_settings

def connect_config(**overrides: Any) -> dict[str, Any]:
    """The connection's options; StartupError (one line) when the configuration is broken."""
    try:
        config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    except Exception as err:  # noqa: BLE001  (a bad profile file, TLS option, ...)
        raise StartupError(f"invalid Temporal configuration (TEMPORAL_*, temporal.toml): {err}"
                           ) from None
    if "target_host" not in config:
        # Where `loanflow up` runs its dev server (LOANFLOW_TEMPORAL_PORT, 7233 by default).
        config["target_host"] = f"localhost:{get_settings().temporal_port}"
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def data_converter(settings: Settings | None = None) -> DataConverter:
    """The converter for every client, worker and test environment: raises SettingsError (one
    line) when no usable payload key is configured."""
    return encrypted_converter((settings or get_settings()).keyring())


async def connect(*, settings: Settings | None = None, **overrides: Any) -> Client:
    """A client for the configured Temporal (overrides win over the environment); a server
    that cannot be reached is StartupError, one line saying how to start one."""
    converter = data_converter(settings)
    config = connect_config(**overrides)
    try:
        return await Client.connect(**config, data_converter=converter)
    except RuntimeError as err:
        if not str(err).startswith("Failed client connect"):
            raise
        reason = str(err)
        plain = any(s in reason for s in ("tcp connect error", "dns error", "not healthy"))
        message = unreachable(config["target_host"])
        raise StartupError(message if plain else f"{message} ({reason})") from None


async def require_namespace(client: Client) -> None:
    """StartupError (one line naming it) if the client's namespace does not exist on the
    server. Checked before a command does anything: with a mistyped TEMPORAL_NAMESPACE every
    loan is "unknown", and a price would be stored that no loan is told of. Any other answer
    (a key not allowed to describe namespaces, say) leaves the command to find out itself."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.service import RPCError

    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace))
    except RPCError as err:
        if missing_namespace_in(err) is not None or err.status.name == "NOT_FOUND":
            raise StartupError(missing_namespace(
                client.namespace, client.service_client.config.target_host)) from None
