"""Links into the Temporal Web UI: the loan book's workflow list, filtered with a visibility
query the way an operator types it into the list's query box."""

from __future__ import annotations

from urllib.parse import quote

# Loans in margin call now. `ExecutionStatus` leaves out the earlier runs of a loan that
# continued as new: a closed run keeps the search attributes it had when it handed over.
MARGIN_CALLS = 'LoanState="MARGIN_CALL" AND ExecutionStatus="Running"'


def workflows_url(ui_url: str, query: str | None = None, namespace: str = "default") -> str:
    """The workflow list, filtered by `query` (URL-encoded: quotes, `=` and spaces)."""
    url = f"{ui_url}/namespaces/{namespace}/workflows"
    return url if query is None else f"{url}?query={quote(query, safe='')}"
