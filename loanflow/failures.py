"""Failures an operator can act on that happen outside a command's own checks: a port taken, the
Temporal server unreachable or gone, the dev server refusing to start, a database not ready.
`explain` turns each into one line saying what to do; the CLI and `python worker.py` print it
as `error: ...` and exit 1, never a traceback. (Anything else is a bug and keeps its traceback.)

Light on purpose: the libraries whose errors it explains are looked up only if already loaded,
so a command that never touched them starts without importing them."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from loanflow.settings import SettingsError


class StartupError(RuntimeError):
    """Its message is printed as it is, never with a traceback."""


def explain(err: BaseException) -> str | None:
    """The one line for a failure an operator can act on; None for anything else."""
    if isinstance(err, (StartupError, SettingsError)):
        return str(err)
    # A payload this process has no key for (it names the key id).
    codec = sys.modules.get("loanflow.codec")
    if codec is not None and isinstance(err, codec.PayloadKeyError):
        return str(err.message)
    # A database that is not loanflow's (`loanflow up`, `db upgrade` refuse to migrate it).
    migrations = sys.modules.get("loanflow.migrations")
    if migrations is not None and isinstance(err, migrations.MigrationError):
        return str(err)
    exc = sys.modules.get("sqlalchemy.exc")
    if exc is not None and isinstance(err, (exc.OperationalError, exc.ProgrammingError)):
        return database_problem(err)
    return temporal_problem(err)


def database_problem(err: Any) -> str:
    """The database's own first line, with a hint for the usual causes."""
    detail = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
    if "no such table" in detail or ("relation" in detail and "does not exist" in detail):
        return f"the database has no loanflow tables ({detail}): run `loanflow db upgrade`"
    return f"database error: {detail} (check DATABASE_URL)"


def temporal_problem(err: BaseException) -> str | None:
    """Temporal's failures that reach here past a command's own handling: an update a
    workflow's validator refused, the server gone mid-command, a call it refused."""
    client = sys.modules.get("temporalio.client")
    if client is not None and isinstance(err, client.WorkflowUpdateFailedError):
        cause = err.cause
        return str(getattr(cause, "message", None) or cause or err)
    service = sys.modules.get("temporalio.service")
    if service is not None and isinstance(err, service.RPCError):
        namespace = missing_namespace_in(err)
        if namespace is not None:
            return missing_namespace(namespace, temporal_address())
        if err.status == service.RPCStatusCode.UNAVAILABLE:
            return (f"lost the Temporal server at {temporal_address()} ({err.message}): check "
                    "it runs (`make run` or `loanflow up`) and try again")
        return f"Temporal refused the call ({err.status.name}): {err.message}"
    return None


# How the server says a namespace does not exist (NOT_FOUND): "Namespace nope is not found."
NAMESPACE_NOT_FOUND = re.compile(r"^Namespace (?P<name>\S+) is not found")


def missing_namespace_in(err: Any) -> str | None:
    """The namespace an RPCError says does not exist; None for any other error."""
    service = sys.modules.get("temporalio.service")
    if service is None or not isinstance(err, service.RPCError):
        return None
    if err.status != service.RPCStatusCode.NOT_FOUND:
        return None
    found = NAMESPACE_NOT_FOUND.match(err.message or "")
    return found.group("name").rstrip(".") if found else None


def missing_namespace(namespace: str, address: str) -> str:
    """One line for a namespace the server does not have (a typo in TEMPORAL_NAMESPACE, or a
    namespace not created yet): the CLI would otherwise call every loan unknown."""
    return (f"Temporal namespace '{namespace}' does not exist on {address}: set "
            "TEMPORAL_NAMESPACE to one that does (`temporal operator namespace list`), or "
            f"create it (`temporal operator namespace create --namespace {namespace}`)")


def unreachable(address: str) -> str:
    return (f"cannot reach Temporal at {address}: start the stack with `make run` "
            "(or `loanflow up`), or set TEMPORAL_ADDRESS")


def temporal_address() -> str:
    from loanflow.temporal_client import connect_config

    try:
        return str(connect_config()["target_host"])
    except StartupError:  # the configuration itself is broken: say where it comes from
        return "the configured address (TEMPORAL_ADDRESS, temporal.toml)"


def silence_stdout() -> None:
    """Point stdout at /dev/null once its reader is gone (a pipe closed): what is still
    buffered, and anything printed later, cannot fail again (at exit, or in a `finally`)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
