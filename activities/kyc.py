"""Borrower screening (KYC/AML).

This is a built-in fake of a KYC vendor: the rules below run in-process against a small
built-in watch list of fictional names. A real deployment replaces `KycActivities` with a
client of the desk's screening vendor behind the same activity name and models.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from decimal import Decimal
from difflib import SequenceMatcher

from temporalio import activity

from activities.support import FakeFaults
from loanflow.effects import ActivityName, ScreeningRequest, ScreeningResult
from loanflow.money import fmt_usd

# ISO 3166-1 alpha-2: every officially assigned code.
ISO_COUNTRIES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
    """.split()
)

# Comprehensively sanctioned jurisdictions: the desk does not lend there at all.
BLOCKED_COUNTRIES = frozenset({"KP", "IR", "SY", "CU"})

# Fictional names standing in for a sanctions list (no real person is meant).
WATCH_LIST: tuple[str, ...] = (
    "Viktor Sanctionov",
    "Erika Embargo",
    "Johnny Launderwell",
    "Olga Frozenasset",
    "Marco Shellcompany",
)

# Loans this large are reviewed by a person whatever the other checks say.
REVIEW_THRESHOLD_USD = Decimal("1000000")

# Similarity (0..1) of normalised names from which a name is a possible match.
FUZZY_MATCH = 0.85

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def normalise_name(name: str) -> str:
    """Accents, case, punctuation and word order do not matter: 'Sanctionov, Víktor' and
    'viktor sanctionov' both become 'sanctionov viktor'."""
    decomposed = unicodedata.normalize("NFKD", name)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    words = re.sub(r"[^\w]+|_", " ", letters).split()
    return " ".join(sorted(words))


def name_match(name: str, listed: str) -> str | None:
    """'exact', 'close' or None. Close: a spelling variant (Victor/Viktor) or the listed name
    with extra names around it (a middle name)."""
    a, b = normalise_name(name), normalise_name(listed)
    if not a or not b:
        return None
    if a == b:
        return "exact"
    if set(b.split()) <= set(a.split()):
        return "close"
    if SequenceMatcher(None, a, b).ratio() >= FUZZY_MATCH:
        return "close"
    return None


class KycActivities:
    """Screens a borrower the way the desk's vendor would, with rules that run in-process."""

    def __init__(
        self,
        faults: FakeFaults | None = None,
        *,
        watch_list: Iterable[str] = WATCH_LIST,
        blocked_countries: Iterable[str] = BLOCKED_COUNTRIES,
        review_threshold_usd: Decimal = REVIEW_THRESHOLD_USD,
    ) -> None:
        self.faults = faults or FakeFaults()
        self.watch_list = tuple(watch_list)
        self.blocked_countries = frozenset(blocked_countries)
        self.review_threshold_usd = review_threshold_usd

    @activity.defn(name=ActivityName.SCREEN_BORROWER)
    async def screen_borrower(self, request: ScreeningRequest) -> ScreeningResult:
        """Rejected if a required field is missing or invalid, the country is blocked, or the
        name is on the watch list; sent to review on a close name match or a large loan;
        approved otherwise. Every finding is a reason a person can read."""
        await self.faults.call("kyc vendor", "screening")
        rejections = self._field_problems(request) + self._country_problems(request)
        reviews: list[str] = []
        for outcome, reason in self._watch_list_hits(request.borrower.name):
            (rejections if outcome == "exact" else reviews).append(reason)
        if request.principal_usd > self.review_threshold_usd:
            reviews.append(
                f"principal {fmt_usd(request.principal_usd)} is above the "
                f"{fmt_usd(self.review_threshold_usd)} review threshold"
            )
        if rejections:
            return ScreeningResult(outcome="rejected", reasons=rejections + reviews)
        if reviews:
            return ScreeningResult(outcome="review", reasons=reviews)
        return ScreeningResult(outcome="approved", reasons=[])

    def _field_problems(self, request: ScreeningRequest) -> list[str]:
        borrower, problems = request.borrower, []
        if not borrower.name.strip():
            problems.append("name is missing")
        if not _EMAIL.match(borrower.email.strip()):
            problems.append(f"email {borrower.email!r} is not a valid e-mail address")
        return problems

    def _country_problems(self, request: ScreeningRequest) -> list[str]:
        country = request.borrower.country.strip().upper()
        if country not in ISO_COUNTRIES:
            hint = " (use GB for the United Kingdom)" if country == "UK" else ""
            return [f"country {request.borrower.country!r} is not an ISO 3166-1 alpha-2 code{hint}"]
        if country in self.blocked_countries:
            return [
                f"country {country} is under comprehensive sanctions; the desk cannot lend there"
            ]
        return []

    def _watch_list_hits(self, name: str) -> list[tuple[str, str]]:
        hits = []
        for listed in self.watch_list:
            match = name_match(name, listed)
            if match == "exact":
                hits.append(("exact", f"name matches watch-list entry {listed!r}"))
            elif match == "close":
                hits.append(("close", f"name is similar to watch-list entry {listed!r}"))
        return hits
