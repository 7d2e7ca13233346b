"""Alert rules and their events (one row per firing, resolved in place)."""

from __future__ import annotations

from typing import Any

import msgspec

from db.database import Database


class RuleFields(msgspec.Struct, frozen=True, kw_only=True):
    """What a rule evaluates (``services.alerts.model.RuleSpec``; a stored ``RuleRow`` adds the rest)."""

    name: str
    kind: str
    threshold: float
    severity: str
    duration_s: float
    cooldown_s: float
    window_s: float
    enabled: bool
    org_id: str
    entity_id: str


class RuleRow(RuleFields, frozen=True, kw_only=True):
    """One alert rule."""

    rule_id: str
    snoozed_until: float | None
    snoozed_by: str | None
    created_by: str
    created_at: str
    updated_at: str
    builtin: str = ""  # a default rule: the built-in alert it stands for (offline, battery, threat)


class RuleEventRow(msgspec.Struct, kw_only=True):
    """One firing of a rule for one subject (an entity, a consumer, the disk...)."""

    event_id: str
    rule_id: str
    rule_name: str
    kind: str
    subject: str
    org_id: str
    entity_id: str
    severity: str
    value: float
    threshold: float
    alert_id: str
    fired_at: str
    resolved_at: str | None
    resolved_value: float | None
    acknowledged_by: str | None
    acknowledged_at: str | None


_RULE_COLUMNS = tuple(RuleRow.__struct_fields__)
_EVENT_COLUMNS = tuple(RuleEventRow.__struct_fields__)


async def list_rules(db: Database, org_ids: list[str] | None = None) -> list[RuleRow]:
    """Rules by name; with ``org_ids``, only rules scoped to those organisations."""
    if org_ids is None:
        return await db.fetch_all(RuleRow, "SELECT * FROM alert_rules ORDER BY name, rule_id")
    marks = ", ".join("?" for _ in org_ids) or "NULL"
    return await db.fetch_all(
        RuleRow, f"SELECT * FROM alert_rules WHERE org_id IN ({marks}) ORDER BY name, rule_id", tuple(org_ids)
    )


async def get_rule(db: Database, rule_id: str) -> RuleRow | None:
    """One rule by id."""
    return await db.fetch_one(RuleRow, "SELECT * FROM alert_rules WHERE rule_id = ?", (rule_id,))


async def save_rule(db: Database, row: RuleRow) -> None:
    """Insert or replace a rule."""
    values = tuple(getattr(row, c) for c in _RULE_COLUMNS)
    await db.execute(
        f"INSERT OR REPLACE INTO alert_rules({', '.join(_RULE_COLUMNS)})"
        f" VALUES ({', '.join('?' for _ in _RULE_COLUMNS)})",
        values,
    )


async def delete_rule(db: Database, rule_id: str) -> int:
    """Delete a rule (its events stay as history); returns rows deleted."""
    return await db.execute("DELETE FROM alert_rules WHERE rule_id = ?", (rule_id,))


async def insert_event(db: Database, row: RuleEventRow) -> None:
    """Record a firing."""
    await db.execute(
        f"INSERT INTO rule_events({', '.join(_EVENT_COLUMNS)}) VALUES ({', '.join('?' for _ in _EVENT_COLUMNS)})",
        tuple(getattr(row, c) for c in _EVENT_COLUMNS),
    )


async def resolve_event(db: Database, alert_id: str, value: float | None, at: str) -> RuleEventRow | None:
    """Mark the open firing behind ``alert_id`` resolved; return it (None if none was open)."""
    row = await db.fetch_one(
        RuleEventRow,
        "SELECT * FROM rule_events WHERE alert_id = ? AND resolved_at IS NULL ORDER BY fired_at DESC LIMIT 1",
        (alert_id,),
    )
    if row is None:
        return None
    await db.execute(
        "UPDATE rule_events SET resolved_at = ?, resolved_value = ? WHERE event_id = ?", (at, value, row.event_id)
    )
    return msgspec.structs.replace(row, resolved_at=at, resolved_value=value)


async def get_event(db: Database, event_id: str) -> RuleEventRow | None:
    """One event by id."""
    return await db.fetch_one(RuleEventRow, "SELECT * FROM rule_events WHERE event_id = ?", (event_id,))


async def acknowledge_events(db: Database, alert_id: str, org_id: str, user: str, at: str) -> int:
    """Acknowledge every unacknowledged firing behind one alert of one organisation."""
    return await db.execute(
        "UPDATE rule_events SET acknowledged_by = ?, acknowledged_at = ?"
        " WHERE alert_id = ? AND org_id = ? AND acknowledged_at IS NULL",
        (user, at, alert_id, org_id),
    )


async def list_events(db: Database, *, org_ids: list[str] | None = None, limit: int = 50) -> list[RuleEventRow]:
    """Latest events first; with ``org_ids`` only those organisations' events."""
    where = ""
    params: tuple[Any, ...] = ()
    if org_ids is not None:
        where = f"WHERE org_id IN ({', '.join('?' for _ in org_ids) or 'NULL'})"
        params = tuple(org_ids)
    return await db.fetch_all(
        RuleEventRow, f"SELECT * FROM rule_events {where} ORDER BY fired_at DESC LIMIT ?", (*params, limit)
    )


async def open_events(db: Database) -> list[RuleEventRow]:
    """Firings not yet resolved (the evaluator resumes them after a restart)."""
    return await db.fetch_all(RuleEventRow, "SELECT * FROM rule_events WHERE resolved_at IS NULL")


async def firing_counts(db: Database) -> dict[str, int]:
    """``{rule_id: open firings}`` of every rule that is firing."""
    rows = await db.fetch_rows("SELECT rule_id, COUNT(*) FROM rule_events WHERE resolved_at IS NULL GROUP BY rule_id")
    return {str(r[0]): int(r[1]) for r in rows}
