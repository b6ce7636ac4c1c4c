"""Who is acting, what they may do, and which records they may see (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from leadflow.auth.models import Role
from leadflow.core.lifecycle import Stage
from leadflow.errors import Forbidden


class Perm(StrEnum):
    LEADS_READ = "leads:read"
    LEADS_WRITE = "leads:write"
    LEADS_TRANSITION = "leads:transition"
    LEADS_MERGE = "leads:merge"
    LEADS_IMPORT = "leads:import"
    LEADS_EXPORT = "leads:export"
    LEADS_DELETE = "leads:delete"
    ACCOUNTS_READ = "accounts:read"
    ACCOUNTS_WRITE = "accounts:write"
    ACTIVITIES_WRITE = "activities:write"
    AUDIT_READ = "audit:read"
    FORMS_ADMIN = "forms:admin"
    USERS_ADMIN = "users:admin"
    QUALIFICATION_ADMIN = "qualification:admin"  # questionnaires, frameworks, ICP, handoff SLA
    ASSIGNMENT_ADMIN = "assignment:admin"  # assignment rules and rep capacities
    OPPORTUNITIES_READ = "opportunities:read"
    OPPORTUNITIES_WRITE = "opportunities:write"
    PIPELINES_ADMIN = "pipelines:admin"
    REPORTS_READ = "reports:read"


_ALL = frozenset(Perm)
ROLE_PERMISSIONS: dict[Role, frozenset[Perm]] = {
    Role.ADMIN: _ALL,
    # Marketing reads deals and reports but does not work them (sales opens and closes deals).
    Role.MARKETING: _ALL - {Perm.USERS_ADMIN, Perm.OPPORTUNITIES_WRITE, Perm.PIPELINES_ADMIN},
    Role.MANAGER: _ALL - {Perm.USERS_ADMIN, Perm.FORMS_ADMIN},
    Role.SALES_REP: frozenset(
        {
            Perm.LEADS_READ,
            Perm.LEADS_WRITE,
            Perm.LEADS_TRANSITION,
            Perm.LEADS_EXPORT,
            Perm.ACCOUNTS_READ,
            Perm.ACCOUNTS_WRITE,
            Perm.ACTIVITIES_WRITE,
            Perm.AUDIT_READ,
            Perm.OPPORTUNITIES_READ,
            Perm.OPPORTUNITIES_WRITE,
            Perm.REPORTS_READ,
        }
    ),
}

# Sales decides these moves (seeds: sales accepts, qualifies and opens the deal); marketing's
# part of the funnel ends at MQL and nurture.
SALES_STAGES: frozenset[Stage] = frozenset({Stage.SAL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER})


class Visibility(StrEnum):
    ALL = "all"
    TEAM = "team"  # leads owned by the team, and unassigned ones
    OWN = "own"  # own leads, and unassigned ones


@dataclass(frozen=True)
class Principal:
    user_id: int | None
    label: str
    role: Role
    team: str | None = None
    # A token may be scoped down to part of its user's rights; empty means the role's rights.
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def permissions(self) -> frozenset[Perm]:
        perms = ROLE_PERMISSIONS[self.role]
        if self.scopes:
            perms = frozenset(p for p in perms if p.value in self.scopes)
        return perms

    def can(self, perm: Perm) -> bool:
        return perm in self.permissions

    def require(self, perm: Perm) -> None:
        """Raise Forbidden (403) naming the missing right."""

        if not self.can(perm):
            raise Forbidden(f"role {self.role.value} lacks the right {perm.value}", permission=perm.value)

    def can_move_to(self, stage: Stage) -> bool:
        return not (self.role is Role.MARKETING and stage in SALES_STAGES)

    @property
    def visibility(self) -> Visibility:
        if self.role is Role.SALES_REP:
            return Visibility.OWN
        if self.role is Role.MANAGER:
            return Visibility.TEAM
        return Visibility.ALL


SYSTEM = Principal(user_id=None, label="system", role=Role.ADMIN)
