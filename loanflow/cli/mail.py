"""`loanflow mail`: the local mail sink (what borrowers would have received) and notice
previews. Wraps `loanflow.mail.sink` and `loanflow.mail.preview`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loanflow.cli.errors import CliError
from loanflow.cli.output import print_json, show, table
from loanflow.cli.params import AsJson
from loanflow.settings import get_settings

commands = typer.Typer()
mail = typer.Typer(help="E-mail in the local sink, and previews of every notice.",
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
        print_json([{"n": n, "id": m.id, "received_at": m.received_at, "to": m.to,
                     "subject": m.subject, "message_id": m.message_id,
                     "notice_key": m.notice_key} for n, m in enumerate(messages, 1)])
        return
    show(table(f"{len(messages)} message(s) in {folder}", ["#", "received", "to", "subject"],
               [[n, m.received_at[:19], m.to, m.subject] for n, m in enumerate(messages, 1)],
               right=("#",)))


@mail.command("show")
def show_mail(
    ref: Annotated[str, typer.Argument(metavar="MESSAGE",
                                       help="Number from `mail list`, message id or Message-ID.",
                                       show_default=False)],
    html: Annotated[bool, typer.Option("--html", help="The HTML part, not the text.")] = False,
    directory: Directory = None,
) -> None:
    """One message as the borrower reads it: the main headers, then the text (or HTML)."""
    from loanflow.mail.sink import show_message

    try:
        text = show_message(sink_dir(directory), ref, html=html)
    except LookupError as err:
        raise CliError(str(err)) from None
    typer.echo(text)


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
               [[f["kind"], f["subject"], f["html"]] for f in files]))
