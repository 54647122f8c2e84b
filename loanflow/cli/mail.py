"""`loanflow mail`: the outbox (what loanflow sent, and what did not surely arrive), resending,
the local mail sink (what borrowers would have received) and notice previews. Wraps
`loanflow.mail.outbox`, `activities.notify`, `loanflow.mail.sink` and `loanflow.mail.preview`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from temporalio.exceptions import ApplicationError

from loanflow.cli.errors import CliError
from loanflow.cli.output import iso_text, print_json, show, table, when
from loanflow.cli.params import AsJson
from loanflow.mail.message import NOTICE_KEY_HEADER
from loanflow.settings import get_settings

commands = typer.Typer()
mail = typer.Typer(help="Borrower e-mail: the outbox and resending, the local sink, previews.",
                   no_args_is_help=True)
commands.add_typer(mail, name="mail", rich_help_panel="Stack")

Directory = Annotated[Path | None, typer.Option(
    "--dir", help="The sink's folder (default: $LOANFLOW_VAR_DIR/mail).", show_default=False)]


def sink_dir(directory: Path | None) -> Path:
    return directory or get_settings().var_dir / "mail"


@mail.command("list")
def list_mail(directory: Directory = None, as_json: AsJson = False) -> None:
    """Messages the local sink received, oldest first (numbered for `mail show`)."""
    from loanflow.mail.sink import list_messages

    folder = sink_dir(directory)
    messages = list_messages(folder)
    if as_json:
        print_json([{"n": n, "id": m.id, "received_at": iso_text(m.received_at), "to": m.to,
                     "subject": m.subject, "message_id": m.message_id,
                     "notice_key": m.notice_key} for n, m in enumerate(messages, 1)])
        return
    show(table(f"{len(messages)} message(s) in {folder}", ["#", "received", "to", "subject"],
               [[n, m.received_at[:19], m.to, m.subject] for n, m in enumerate(messages, 1)],
               right=("#",), keep=("received",)))


@mail.command("show")
def show_mail(
    ref: Annotated[str, typer.Argument(metavar="MESSAGE",
                                       help="Number from `mail list`, message id or Message-ID.",
                                       show_default=False)],
    html: Annotated[bool, typer.Option("--html", help="The HTML part, not the text.")] = False,
    directory: Directory = None,
    as_json: AsJson = False,
) -> None:
    """One message as the borrower reads it: the main headers, then the text (or HTML)."""
    from loanflow.mail.sink import read_message, show_message

    try:
        if as_json:
            print_json(message_json(read_message(sink_dir(directory), ref)))
            return
        text = show_message(sink_dir(directory), ref, html=html)
    except LookupError as err:
        raise CliError(str(err)) from None
    typer.echo(text)


# The headers `mail show --json` gives, under these names.
SHOWN_HEADERS = {"date": "Date", "from": "From", "to": "To", "subject": "Subject",
                 "message_id": "Message-ID", "notice_key": NOTICE_KEY_HEADER}


def message_json(msg: Any) -> dict[str, Any]:
    """A stored message for scripts: its main headers, its text and its HTML part."""
    parts = {kind: msg.get_body(preferencelist=(kind,)) for kind in ("plain", "html")}
    return {**{name: str(msg[header]) if msg[header] else None
               for name, header in SHOWN_HEADERS.items()},
            "text": parts["plain"].get_content() if parts["plain"] is not None else None,
            "html": parts["html"].get_content() if parts["html"] is not None else None}


@mail.command("preview")
def preview(
    kinds: Annotated[list[str] | None, typer.Argument(
        metavar="[KIND]...", help="Notice kinds (default: all), e.g. margin_call.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Where to write (default: $LOANFLOW_VAR_DIR/preview).", show_default=False)] = None,
    timezone: Annotated[str, typer.Option(metavar="ZONE",
                                          help="The sample borrower's IANA time zone.")] = "Asia/Tokyo",
    as_json: AsJson = False,
) -> None:
    """Render notices with realistic sample data to HTML and text files (lender branding from
    the settings)."""
    from loanflow.mail.kinds import KINDS
    from loanflow.mail.preview import SAMPLE_BORROWER, write_index, write_preview

    settings = get_settings()
    chosen = kinds or sorted(KINDS)
    unknown = [k for k in chosen if k not in KINDS]
    if unknown:
        raise CliError(f"kind: unknown notice kind(s) {', '.join(unknown)} "
                       f"(known: {', '.join(sorted(KINDS))})")
    folder = out or settings.var_dir / "preview"
    borrower = SAMPLE_BORROWER.model_copy(update={"timezone": timezone or None})
    rendered = {kind: write_preview(kind, folder, settings, borrower) for kind in chosen}
    index = write_index(folder, rendered)
    files = [{"kind": k, "subject": r.subject, "html": folder / f"{k}.html",
              "text": folder / f"{k}.txt"} for k, r in rendered.items()]
    if as_json:
        print_json({"index": index, "previews": files})
        return
    show(table(f"{len(files)} preview(s); open {index}", ["kind", "subject", "html"],
               [[f["kind"], f["subject"], f["html"]] for f in files], keep=("html",)))


# --- the outbox: what loanflow sent, and what needs a person -----------------------------------

Status = Annotated[str | None, typer.Option(
    "--status", help="Only this status: pending, sending, sent, failed or unconfirmed.",
    show_default=False)]


@mail.command("outbox")
def outbox_list(
    status: Status = None,
    loan: Annotated[str | None, typer.Option(help="Only this loan (L1 or loan-L1).",
                                             show_default=False)] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: AsJson = False,
) -> None:
    """Borrower e-mails as loanflow sent them (the database's outbox), newest first. `failed`
    and `unconfirmed` ones did not surely reach the borrower: see `mail resend`."""
    from loanflow.cli.database import database
    from loanflow.cli.errors import run
    from loanflow.cli.ids import loan_id_of
    from loanflow.mail.outbox import list_outbox
    from loanflow.notice_schema import STATUSES

    if status is not None and status not in STATUSES:
        raise CliError(f"status: unknown status {status!r} (known: {', '.join(STATUSES)})")
    loan_id = loan_id_of(loan) if loan is not None else None

    async def load() -> list[dict[str, object]]:
        async with database() as db:
            rows = await list_outbox(db, status=status, loan_id=loan_id, limit=limit)
        return [{"key": r.notice_key, "loan_id": r.loan_id, "kind": r.kind, "to": r.to_address,
                 "status": r.status, "attempts": r.attempts, "updated_at": r.updated_at,
                 "last_error": r.last_error, "smtp_response": r.smtp_response} for r in rows]

    rows = run(load())
    if as_json:
        print_json(rows)
        return
    show(table(f"{len(rows)} e-mail(s) in the outbox", ["notice", "status", "tries", "updated",
                                                        "to", "last error / reply"],
               [[r["key"], r["status"], r["attempts"], when(r["updated_at"], seconds=True),
                 r["to"], r["last_error"] or r["smtp_response"] or ""] for r in rows],
               right=("tries",), keep=("status",), drop=("updated", "to")))


@mail.command("resend")
def resend(
    key: Annotated[str, typer.Argument(metavar="NOTICE", show_default=False,
                                       help="The notice key, e.g. L1:notice:margin_call:1.")],
    to: Annotated[str | None, typer.Option(
        "--to", metavar="ADDRESS", help="Send to this corrected address instead.",
        show_default=False)] = None,
    as_json: AsJson = False,
) -> None:
    """Deliver a `failed` or `unconfirmed` notice again, rendered with today's templates.
    For `unconfirmed`, first check in the relay's log (by Message-ID) that it did not go out:
    a second margin-call e-mail is worse than a late one. A notice already sent is not sent
    again."""
    from loanflow.cli.database import database
    from loanflow.cli.errors import run
    from loanflow.mail.delivery import NoticeDelivery
    from loanflow.mail.outbox import find
    from loanflow.notice_schema import FAILED, UNCONFIRMED
    from loanflow.settings import get_settings

    if to is not None and "@" not in to.strip("@"):
        raise CliError(f"to: {to!r} is not an e-mail address")

    async def deliver() -> tuple[str, str]:
        async with database() as db:
            row = await find(db, key)
            if row is None:
                raise CliError(f"no notice {key!r} in the outbox (see `loanflow mail outbox`)")
            if row.status not in (FAILED, UNCONFIRMED):
                raise CliError(f"notice {key} is {row.status}, not failed or unconfirmed: "
                               "nothing to resend")
            try:
                status = await NoticeDelivery.for_settings(db, get_settings()).resend(key, to_address=to)
            except ValueError as err:
                raise CliError(str(err)) from None
            except ApplicationError as err:  # the mail server is unavailable: nothing sent
                raise CliError(f"not sent: {err.message}; try again later") from None
            after = await find(db, key)
            assert after is not None
            return status, (after.smtp_response if status == "sent" else after.last_error) or ""

    status, reply = run(deliver())
    if as_json:
        print_json({"key": key, "status": status, "reply": reply})
        return
    typer.echo(f"notice {key}: {status}" + (f" ({reply})" if reply else ""))
    if status != "sent":
        raise typer.Exit(1)
