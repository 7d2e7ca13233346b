"""Rule kinds and validation: what each kind measures, how it compares, what scope it takes."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from core.errors import Invalid
from core.topology import TOKEN_RE
from db.rules import RuleFields
from services.alerts.store import SEVERITY_RANK

THREAT_LEVELS = {1: "LOW_THREAT", 2: "MODERATE_THREAT", 3: "HIGH_THREAT"}


@dataclass(frozen=True)
class RuleKind:
    """One kind of rule: its label, unit, comparison and whether it is per entity."""

    kind: str
    label: str
    unit: str
    op: str  # ">" fires above the threshold, "<" below, ">=" at or above
    per_entity: bool
    help: str

    def holds(self, value: float, threshold: float) -> bool:
        """True when ``value`` breaches ``threshold``."""
        if self.op == ">":
            return value > threshold
        if self.op == "<":
            return value < threshold
        return value >= threshold


KINDS: dict[str, RuleKind] = {
    k.kind: k
    for k in (
        RuleKind("offline", "Entity offline", "s", ">", True, "seconds since the entity was last seen"),
        RuleKind("battery", "Battery low", "%", "<", True, "battery remaining, percent"),
        RuleKind("threat", "Threat level", "", ">=", True, "highest threat: 1 low, 2 moderate, 3 high"),
        RuleKind("consumer_lag", "Consumer lag", "msgs", ">", False, "messages pending on a worker's consumer"),
        RuleKind("dlq_growth", "Dead-letter growth", "msgs", ">", False, "messages dead-lettered within the window"),
        RuleKind("disk_free", "Disk free", "%", "<", False, "free space on the data directory's disk"),
    )
}


class RuleForm(msgspec.Struct, kw_only=True):
    """The create/edit form (and the REST body) of a rule."""

    name: str
    kind: str
    threshold: float
    severity: str = "warning"
    duration_s: float = 0.0
    cooldown_s: float = 60.0
    window_s: float = 300.0
    enabled: str = ""  # an HTML checkbox: "on" when ticked
    org_id: str = ""
    entity_id: str = ""


class RuleSpec(RuleFields, frozen=True, kw_only=True):
    """A validated rule definition (the fields a stored rule evaluates)."""


def validate(form: RuleForm) -> RuleSpec:
    """Check a submitted rule; raise ``Invalid`` (422) with a sentence naming the field."""
    name = form.name.strip()
    if not 1 <= len(name) <= 100:
        raise Invalid("name: 1 to 100 characters")
    kind = KINDS.get(form.kind)
    if kind is None:
        raise Invalid(f"kind: one of {', '.join(KINDS)}")
    if form.severity not in SEVERITY_RANK:
        raise Invalid(f"severity: one of {', '.join(SEVERITY_RANK)}")
    for field, value, hi in (
        ("duration_s", form.duration_s, 86_400.0),
        ("cooldown_s", form.cooldown_s, 86_400.0),
        ("window_s", form.window_s, 86_400.0),
    ):
        if not 0 <= value <= hi:
            raise Invalid(f"{field}: 0 to {hi:.0f} seconds")
    if form.kind == "dlq_growth" and form.window_s < 1:
        raise Invalid("window_s: at least 1 second for dead-letter growth")
    if form.kind in ("battery", "disk_free") and not 0 <= form.threshold <= 100:
        raise Invalid("threshold: a percentage, 0 to 100")
    if form.kind == "threat" and form.threshold not in THREAT_LEVELS:
        raise Invalid("threshold: threat level 1 (low), 2 (moderate) or 3 (high)")
    if form.threshold < 0 or form.threshold != form.threshold:  # negative or NaN
        raise Invalid("threshold: a non-negative number")
    org_id, entity_id = form.org_id.strip(), form.entity_id.strip()
    for label, token in (("org_id", org_id), ("entity_id", entity_id)):
        if token and not TOKEN_RE.match(token):
            raise Invalid(f"{label}: letters, digits, '-' and '_' only")
    if not kind.per_entity and (org_id or entity_id):
        raise Invalid(f"{form.kind} rules watch the whole system: leave organisation and entity empty")
    return RuleSpec(
        name=name,
        kind=form.kind,
        threshold=float(form.threshold),
        severity=form.severity,
        duration_s=float(form.duration_s),
        cooldown_s=float(form.cooldown_s),
        window_s=float(form.window_s),
        enabled=form.enabled in ("on", "true", "1", "yes"),
        org_id=org_id,
        entity_id=entity_id,
    )


def describe(kind: str, threshold: float) -> str:
    """``battery < 20 %`` — the condition in words for lists, alerts and toasts."""
    spec = KINDS.get(kind)
    if spec is None:
        return f"{kind} {threshold:g}"
    if kind == "threat":
        return f"threat ≥ {THREAT_LEVELS.get(int(threshold), threshold)}"
    unit = f" {spec.unit}" if spec.unit else ""
    return f"{spec.label.lower()} {spec.op} {threshold:g}{unit}"
