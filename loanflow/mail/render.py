"""Notice -> e-mail text: a subject, an HTML body and a plain-text body from `templates/`.

Each kind has `<kind>.txt.j2` (whose `subject` block is the subject line) and `<kind>.html.j2`;
both extend one base layout. HTML is autoescaped, text is not (a text body shows `<script>` as
the characters it is). Undefined names fail (StrictUndefined): a template never prints an empty
figure because the sender forgot it. Figures are formatted by `loanflow.money`, never as floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    UndefinedError,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context

from loanflow.effects import Notice
from loanflow.mail.kinds import KINDS, NoticeKind
from loanflow.money import ASSETS, fmt_ratio, fmt_units, fmt_usd
from loanflow.settings import PROJECT_ROOT, Settings

TEMPLATE_DIR = PROJECT_ROOT / "templates"
NA = "n/a"
# Names the layout itself provides; a data key with one of these names is ignored.
RESERVED = frozenset(
    {"borrower", "loan_id", "notice_key", "kind", "lender_name", "support_email", "footer",
     "subject", "tz"}
)


class RenderError(Exception):
    """A notice that cannot become an e-mail (a bug in the sender or in the templates)."""


class NoticeTemplateError(RenderError, LookupError):
    """No template for this notice kind."""


class NoticeDataError(RenderError, ValueError):
    """A required figure is missing or is not what its name says (a number, a time)."""


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    html: str
    text: str


def render_notice(
    notice: Notice, settings: Settings, *, template_dir: Path | None = None
) -> RenderedMessage:
    """Render one notice; raises NoticeTemplateError or NoticeDataError with the reason."""
    env = environment(template_dir or TEMPLATE_DIR)
    text_t, html_t = _templates(env, notice.kind)
    values = _context(notice, settings, KINDS.get(notice.kind, NoticeKind()))
    try:
        subject = " ".join(_render_block(text_t, "subject", values).split())
        text = text_t.render(values, subject=subject)
        html = html_t.render(values, subject=subject)
    except UndefinedError as err:
        raise NoticeDataError(f"{notice.kind} notice {notice.key}: {err}") from err
    if not subject:
        raise NoticeTemplateError(f"{notice.kind}.txt.j2 has no subject block")
    return RenderedMessage(subject=subject, html=html, text=text)


@lru_cache(maxsize=4)
def environment(template_dir: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(template_dir)),
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html"),
                                     default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        usd=usd, units=units, pct=pct, when=when, utc=utc, local=local, dec=to_decimal,
        due_in=due_in,
    )
    return env


def template_kinds(template_dir: Path | None = None) -> set[str]:
    """Every kind that has a text template (for tests and the preview)."""
    root = template_dir or TEMPLATE_DIR
    return {p.name.removesuffix(".txt.j2") for p in root.glob("[!_]*.txt.j2")} - {"base"}


def _templates(env: Environment, kind: str) -> tuple[Template, Template]:
    if not kind or not kind.replace("_", "").isalnum() or kind.startswith("_") or kind == "base":
        raise NoticeTemplateError(f"no template for notice kind {kind!r}")
    try:
        return env.get_template(f"{kind}.txt.j2"), env.get_template(f"{kind}.html.j2")
    except TemplateNotFound as err:
        raise NoticeTemplateError(
            f"no template for notice kind {kind!r}: {err.name} is missing from templates/"
        ) from None


def _render_block(template: Template, block: str, values: dict[str, Any]) -> str:
    if block not in template.blocks:
        return ""
    return "".join(template.blocks[block](template.new_context(values)))


def _context(notice: Notice, settings: Settings, kind: NoticeKind) -> dict[str, Any]:
    missing = [k for k in kind.required if notice.data.get(k) in (None, "")]
    if missing:
        raise NoticeDataError(
            f"{notice.kind} notice {notice.key} lacks required figures: {', '.join(missing)}"
        )
    values: dict[str, Any] = {name: None for name in kind.optional}
    values.update({k: v for k, v in notice.data.items() if k not in RESERVED})
    values.update(
        borrower=notice.borrower,
        loan_id=notice.loan_id,
        notice_key=notice.key,
        kind=notice.kind,
        lender_name=settings.lender_name,
        support_email=settings.support_email,
        footer=settings.mail_footer,
        tz=borrower_zone(notice.borrower.timezone),
    )
    return values


# --- figures ------------------------------------------------------------------------------------


def to_decimal(value: object) -> Decimal:
    """A figure from JSON as a Decimal. Floats are taken by their shortest repr (never by their
    binary value), but senders should send strings."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise NoticeDataError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise NoticeDataError(f"expected a number, got {value!r}") from None
    if not result.is_finite():
        raise NoticeDataError(f"expected a finite number, got {value!r}")
    return result


def to_datetime(value: object) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (a time without a zone is taken as UTC)."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise NoticeDataError(f"expected an ISO 8601 time, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def usd(value: object) -> str:
    """$1,234,567.89"""
    return NA if _absent(value) else fmt_usd(to_decimal(value))


def units(value: object, asset: object = None) -> str:
    """1,234.5678 BTC: up to 8 places, trailing zeros dropped."""
    if _absent(value):
        return NA
    amount = to_decimal(value)
    if asset in ASSETS:
        return fmt_units(str(asset), amount)
    return f"{fmt_units('BTC', amount).removesuffix(' BTC')} {asset or ''}".rstrip()


def pct(value: object) -> str:
    """0.70125 -> 70.13%"""
    return NA if _absent(value) else fmt_ratio(to_decimal(value))


def utc(value: object) -> str:
    """9 Nov 2022, 23:00 UTC"""
    return NA if _absent(value) else _clock(to_datetime(value)) + " UTC"


@pass_context
def local(ctx: Context, value: object) -> str:
    """The same moment on the borrower's clock, "10 Nov 2022, 08:00 JST in Asia/Tokyo", or
    "" when the borrower's time zone is unknown or is UTC."""
    zone: ZoneInfo | None = ctx.get("tz")
    if _absent(value) or zone is None:
        return ""
    moment = to_datetime(value).astimezone(zone)
    return f"{_clock(moment)} {_abbreviation(moment)} in {zone.key}"


@pass_context
def when(ctx: Context, value: object) -> str:
    """UTC, then the borrower's local time in brackets when known."""
    shown = utc(value)
    there = local(ctx, value)
    return f"{shown} ({there})" if there else shown


def due_in(days: object) -> str:
    """"today", "in 1 day", "in 7 days"; "soon" when the number is unknown."""
    if _absent(days):
        return "soon"
    count = int(to_decimal(days))
    if count <= 0:
        return "today"
    return "in 1 day" if count == 1 else f"in {count} days"


def borrower_zone(name: str | None) -> ZoneInfo | None:
    """The borrower's IANA zone; None if unknown, invalid or UTC (nothing to add to UTC)."""
    if not name:
        return None
    try:
        zone = ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    if zone.key.upper() in _UTC_NAMES:
        return None
    return zone


_UTC_NAMES = frozenset(
    {"UTC", "UCT", "ZULU", "UNIVERSAL", "GMT", "ETC/UTC", "ETC/UCT", "ETC/ZULU",
     "ETC/UNIVERSAL", "ETC/GMT"}
)


def _clock(moment: datetime) -> str:
    return f"{moment.day} {moment:%b %Y, %H:%M}"


def _abbreviation(moment: datetime) -> str:
    name = moment.tzname() or ""
    if name and name[0] not in "+-":
        return name
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{mins:02d}"


def _absent(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
