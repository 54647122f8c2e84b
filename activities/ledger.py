"""The `post_ledger` activity: postings that move nothing outside (interest, fees, repayments
booked by the workflow). The ledger's tables are `loanflow.store.ledger`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.support import conflict, refuse, write_once
from loanflow.db import Database
from loanflow.effects import ActivityName, LedgerPosting, PostingReceipt
from loanflow.ledger import check_balanced, same_lines
from loanflow.store.ledger import entry_lines, find_entry, post_entry


class LedgerActivities:
    """Posts entries the workflow computes itself (no outside effect to go with them)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @activity.defn(name=ActivityName.POST_LEDGER)
    async def post_ledger(self, posting: LedgerPosting) -> PostingReceipt:
        """Post once per key. An unbalanced posting, or a key reused for different lines, is
        refused (non-retryable: the caller has a bug that a retry will not fix)."""
        try:
            check_balanced(posting.lines)
        except ValueError as err:
            raise refuse(f"posting {posting.key!r}: {err}", "UnbalancedPosting") from None

        async def lookup(session: AsyncSession) -> PostingReceipt | None:
            entry = await find_entry(session, posting.key)
            if entry is None:
                return None
            if entry.loan_id != posting.loan_id or not same_lines(
                entry_lines(entry), posting.lines
            ):
                raise conflict(posting.key, "ledger posting")
            return PostingReceipt(key=posting.key, created=False)

        # Written first, looked up only if the key is taken (a retry, a duplicate): a posting
        # is almost always new, and the unique key refuses a second one either way, so a
        # lookup before the write cost every posting a transaction that found nothing.
        async def write(session: AsyncSession) -> PostingReceipt:
            await post_entry(
                session,
                key=posting.key,
                loan_id=posting.loan_id,
                memo=posting.memo,
                lines=posting.lines,
            )
            return PostingReceipt(key=posting.key, created=True)

        receipt, _ = await write_once(self.db, write, lookup)
        return receipt
