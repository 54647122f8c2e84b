"""The notice activity: record a borrower notice and deliver its e-mail exactly once per server
acceptance. How "once" is kept, and where it has a limit, is `loanflow.mail.delivery`, which
`loanflow mail resend` and the notice relay use too. Loans started since
NOTICES_WITH_WRITES (`workflows.base`) record their notices with their read-model writes and
the relay (`loanflow.mail.relay`) mails them; this activity serves the loans started before."""

from __future__ import annotations

from temporalio import activity

from activities.support import heartbeating
from loanflow.effects import ActivityName, Notice, NoticeReceipt
from loanflow.mail.delivery import NoticeDelivery


class NotifyActivities(NoticeDelivery):
    @activity.defn(name=ActivityName.RECORD_NOTICE)
    async def record_notice(self, notice: Notice) -> NoticeReceipt:
        """Record the notice and deliver its e-mail; status "sent", "failed" or "unconfirmed".
        Raises a retryable ApplicationError while the mail server cannot take the message."""
        async with heartbeating():
            if activity.info().attempt == 1:  # nearly always a new notice: the short way
                created, status = await self.record_and_deliver(notice)
            else:  # a retry: the notice is most likely recorded, read it first
                created = await self.record(notice)
                status = await self.deliver(notice.key)
        return NoticeReceipt(key=notice.key, created=created, status=status)
