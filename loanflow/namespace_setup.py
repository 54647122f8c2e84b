"""Making sure the namespace has the custom search attributes the loan book needs."""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType

from loanflow import search_attributes as sa

log = logging.getLogger(__name__)


def _proto_type(key) -> IndexedValueType.ValueType:  # type: ignore[no-untyped-def]
    kind: SearchAttributeIndexedValueType = key.indexed_value_type
    return IndexedValueType.ValueType(int(kind))


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register any missing loan search attribute; returns the names it added."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    known = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = {k.name: _proto_type(k) for k in sa.ALL if k.name not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
        log.info("registered search attributes: %s", ", ".join(sorted(missing)))
    return sorted(missing)
