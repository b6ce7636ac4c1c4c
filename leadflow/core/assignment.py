"""Lead assignment rules as data, evaluated in order (pure).

Each rule has match conditions (country, region, industry, source; empty means any) and a
strategy: ``account_owner`` (the owner of the lead's existing account wins), ``user`` (a named
rep) or ``round_robin`` (the next rep of a team, in turn). Capacity caps per rep (open leads)
skip a full rep: a ``user`` rule whose rep is full falls through to the next rule, a round-robin
takes the next rep with room. The account owner wins regardless of caps: splitting one account
between reps is worse than one busy rep.

:class:`Assigner` holds the reps' loads and the round-robin positions, so a batch of leads
(import, a rescoring that makes many MQLs) is spread evenly in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from leadflow.core.qualification import DefinitionError

Strategy = Literal["account_owner", "user", "round_robin"]
STRATEGIES: tuple[str, ...] = ("account_owner", "user", "round_robin")

# Sales territories by ISO country code. EMEA is every country not listed in another region.
_NA = {"US", "CA", "PM", "BM", "GL"}
_LATAM = set(
    [
        "MX",
        "GT",
        "BZ",
        "SV",
        "HN",
        "NI",
        "CR",
        "PA",
        "CU",
        "DO",
        "HT",
        "JM",
        "TT",
        "BB",
        "BS",
        "PR",
        "AG",
        "DM",
        "GD",
        "KN",
        "LC",
        "VC",
        "AW",
        "CW",
        "SX",
        "BQ",
        "KY",
        "TC",
        "VG",
        "VI",
        "AI",
        "MS",
        "GP",
        "MQ",
        "BL",
        "MF",
        "CO",
        "VE",
        "EC",
        "PE",
        "BO",
        "CL",
        "AR",
        "UY",
        "PY",
        "BR",
        "GY",
        "SR",
        "GF",
        "FK",
    ]
)
_APAC = set(
    [
        "CN",
        "JP",
        "KR",
        "KP",
        "TW",
        "HK",
        "MO",
        "MN",
        "IN",
        "PK",
        "BD",
        "LK",
        "NP",
        "BT",
        "MV",
        "AF",
        "SG",
        "MY",
        "ID",
        "TH",
        "VN",
        "PH",
        "KH",
        "LA",
        "MM",
        "BN",
        "TL",
        "AU",
        "NZ",
        "PG",
        "FJ",
        "SB",
        "VU",
        "NC",
        "PF",
        "WS",
        "TO",
        "KI",
        "TV",
        "NR",
        "FM",
        "MH",
        "PW",
        "GU",
        "MP",
        "AS",
        "CK",
        "NU",
        "TK",
        "WF",
        "PN",
        "NF",
        "CX",
        "CC",
    ]
)
REGIONS = ("NA", "LATAM", "APAC", "EMEA")


def region_of(country: str | None) -> str | None:
    if not country:
        return None
    c = country.upper()
    if c in _NA:
        return "NA"
    if c in _LATAM:
        return "LATAM"
    if c in _APAC:
        return "APAC"
    return "EMEA"


@dataclass(frozen=True)
class Rule:
    name: str
    strategy: str
    id: int | None = None
    countries: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    industries: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    user_id: int | None = None
    team: str | None = None

    def matches(self, lead: LeadFacts) -> bool:
        if self.countries and (lead.country or "").upper() not in self.countries:
            return False
        if self.regions and region_of(lead.country) not in self.regions:
            return False
        if self.industries and (lead.industry or "").strip().lower() not in self.industries:
            return False
        return not (self.sources and (lead.source or "") not in self.sources)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "strategy": self.strategy,
            "match": {
                "countries": sorted(self.countries),
                "regions": sorted(self.regions),
                "industries": sorted(self.industries),
                "sources": sorted(self.sources),
            },
            "user_id": self.user_id,
            "team": self.team,
        }


def parse_rule(data: Any, *, rule_id: int | None = None) -> Rule:
    if not isinstance(data, Mapping):
        raise DefinitionError([], "must be an object")
    unknown = sorted(set(data) - {"name", "strategy", "match", "user_id", "team"})
    if unknown:
        raise DefinitionError([unknown[0]], "is not a field of an assignment rule")
    name = str(data.get("name") or "").strip()
    if not name or len(name) > 200:
        raise DefinitionError(["name"], "is required (at most 200 characters)")
    strategy = str(data.get("strategy") or "")
    if strategy not in STRATEGIES:
        raise DefinitionError(["strategy"], f"must be one of {', '.join(STRATEGIES)}")
    match = data.get("match") or {}
    if not isinstance(match, Mapping):
        raise DefinitionError(["match"], "must be an object")
    unknown = sorted(set(match) - {"countries", "regions", "industries", "sources"})
    if unknown:
        raise DefinitionError(
            ["match", unknown[0]], "is not a match condition (countries, regions, industries, sources)"
        )
    lists: dict[str, frozenset[str]] = {}
    for key in ("countries", "regions", "industries", "sources"):
        raw = match.get(key) or []
        if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
            raise DefinitionError(["match", key], "must be a list of non-empty strings")
        lists[key] = frozenset(x.strip() for x in raw)
    countries = frozenset(c.upper() for c in lists["countries"])
    if any(len(c) != 2 or not c.isalpha() for c in countries):
        raise DefinitionError(["match", "countries"], "use ISO 3166 two-letter country codes")
    regions = frozenset(r.upper() for r in lists["regions"])
    if not regions <= set(REGIONS):
        raise DefinitionError(["match", "regions"], f"regions are {', '.join(REGIONS)}")
    user_id = data.get("user_id")
    team = data.get("team")
    if strategy == "user" and (isinstance(user_id, bool) or not isinstance(user_id, int)):
        raise DefinitionError(["user_id"], "a 'user' rule names the rep's user id")
    if strategy == "round_robin" and not (isinstance(team, str) and team.strip()):
        raise DefinitionError(["team"], "a 'round_robin' rule names the team whose reps take turns")
    return Rule(
        id=rule_id,
        name=name,
        strategy=strategy,
        countries=countries,
        regions=regions,
        industries=frozenset(i.lower() for i in lists["industries"]),
        sources=lists["sources"],
        user_id=user_id if strategy == "user" else None,
        team=team.strip() if strategy == "round_robin" and isinstance(team, str) else None,
    )


@dataclass(frozen=True)
class LeadFacts:
    lead_id: int
    country: str | None = None
    industry: str | None = None
    source: str | None = None
    account_owner_id: int | None = None


@dataclass
class Rep:
    user_id: int
    team: str | None
    load: int = 0  # open leads owned now
    cap: int | None = None  # None: no cap

    @property
    def has_room(self) -> bool:
        return self.cap is None or self.load < self.cap


@dataclass(frozen=True)
class Decision:
    lead_id: int
    owner_id: int | None
    rule: Rule | None
    explanation: str


@dataclass
class Assigner:
    """Evaluates the rules for one lead after another, keeping loads and turns up to date."""

    rules: Sequence[Rule]
    reps: dict[int, Rep]
    cursors: dict[int, int] = field(default_factory=dict)  # rule id -> last user id given a lead
    active_users: frozenset[int] = frozenset()  # account owners may be any active user

    def _team(self, team: str) -> list[Rep]:
        return sorted((r for r in self.reps.values() if r.team == team), key=lambda r: r.user_id)

    def decide(self, lead: LeadFacts) -> Decision:
        skipped: list[str] = []
        for rule in self.rules:
            if not rule.matches(lead):
                continue
            if rule.strategy == "account_owner":
                owner = lead.account_owner_id
                if owner is not None and (owner in self.active_users or owner in self.reps):
                    self._take(owner)
                    return Decision(lead.lead_id, owner, rule, f"{rule.name}: owner of the lead's account")
                continue
            if rule.strategy == "user":
                rep = self.reps.get(rule.user_id or -1)
                if rep is None:
                    skipped.append(f"{rule.name}: user {rule.user_id} is not an active rep")
                    continue
                if not rep.has_room:
                    skipped.append(f"{rule.name}: user {rep.user_id} is at capacity ({rep.cap})")
                    continue
                self._take(rep.user_id)
                return Decision(
                    lead.lead_id, rep.user_id, rule, f"{rule.name}: assigned to user {rep.user_id}"
                )
            team = self._team(rule.team or "")
            if not team:
                skipped.append(f"{rule.name}: team {rule.team!r} has no active reps")
                continue
            last = self.cursors.get(rule.id if rule.id is not None else -1)
            # The turn passes in user-id order; a rep who left the team simply drops out.
            start = 0 if last is None else next((i for i, r in enumerate(team) if r.user_id > last), 0)
            for k in range(len(team)):
                rep = team[(start + k) % len(team)]
                if rep.has_room:
                    self.cursors[rule.id if rule.id is not None else -1] = rep.user_id
                    self._take(rep.user_id)
                    return Decision(
                        lead.lead_id,
                        rep.user_id,
                        rule,
                        f"{rule.name}: round-robin in team {rule.team}, user {rep.user_id}'s turn",
                    )
            skipped.append(f"{rule.name}: every rep of team {rule.team!r} is at capacity")
        why = "; ".join(skipped) if skipped else "no rule matched"
        return Decision(lead.lead_id, None, None, why)

    def _take(self, user_id: int) -> None:
        rep = self.reps.get(user_id)
        if rep is not None:
            rep.load += 1

    def decide_all(self, leads: Iterable[LeadFacts]) -> list[Decision]:
        return [self.decide(lead) for lead in leads]


DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "Account owner", "strategy": "account_owner"},
]
