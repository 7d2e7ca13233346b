"""The registry lives in NATS: several nodes on one NATS server agree, late nodes catch up."""

from __future__ import annotations

from typing import Any

from app.runtime import Runtime
from db import registry as registry_db
from services.schemas import EntityUpdate, OrgUpdate
from tests.helpers import eventually, seed


async def _names(rt: Runtime) -> list[tuple[str, str]]:
    rows = await registry_db.list_entities(rt.db, limit=1000)
    return sorted((r.entity_id, r.name) for r in rows)


async def test_two_nodes_agree_and_a_late_node_catches_up(runtime: Runtime, make_runtime: Any) -> None:
    node_b: Runtime = await make_runtime()
    ids = await seed(runtime, org_id="alpha", entities=3)
    await runtime.services.registry.update_entity("alpha", ids[0], EntityUpdate(name="renamed on A"))
    await runtime.services.registry.update_org("alpha", OrgUpdate(description="edited"))
    await node_b.services.registry.delete_entity("alpha", ids[2])  # a write on node B

    want = [(ids[0], "renamed on A"), (ids[1], "ent 1")]
    await eventually(lambda: _same(runtime, want), what="node A view")
    await eventually(lambda: _same(node_b, want), what="node B view")

    node_c: Runtime = await make_runtime()  # empty database, started later
    await eventually(lambda: _same(node_c, want), what="late node rebuilt")
    # The edited organisation's latest revision comes after its entities' in the bucket's replay.
    org = await eventually(lambda: _edited_org(node_c), what="late node's organisation edited")
    assert org.description == "edited"


async def _edited_org(rt: Runtime) -> Any:
    org = await registry_db.get_org(rt.db, "alpha")
    return org if org is not None and org.description == "edited" else None


async def _same(rt: Runtime, want: list[tuple[str, str]]) -> bool:
    return await _names(rt) == want
