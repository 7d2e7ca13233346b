"""The hub offers an update only to the clients indexed under its topic or (topic, key)."""

from __future__ import annotations

from services.hub import Hub, Update


def test_keyed_clients_get_only_their_key_and_topic_clients_get_the_topic() -> None:
    hub = Hub()
    calls: list[str] = []

    def counting(name: str):  # type: ignore[no-untyped-def]
        def accepts(_update: Update) -> bool:
            calls.append(name)
            return True

        return accepts

    keyed = [hub.subscribe(counting(f"k{i}"), topics=(), keys=[("state", f"e{i}")]) for i in range(1000)]
    topical = hub.subscribe(counting("topic"), topics={"state"})
    everything = hub.subscribe(counting("all"))
    alerts_only = hub.subscribe(counting("alerts"), topics={"alerts"})

    hub.publish(Update("state", "e7"))
    assert sorted(calls) == ["all", "k7", "topic"]  # 3 filter calls, not 1,003
    assert [u.key for u in keyed[7].pending.values()] == ["e7"]
    assert not keyed[8].pending and not alerts_only.pending
    assert topical.pending and everything.pending

    hub.unsubscribe(keyed[7])
    calls.clear()
    hub.publish(Update("state", "e7"))
    assert sorted(calls) == ["all", "topic"]
    assert hub.client_count == 1002

    hub.close_all()
    assert all(c.closed for c in (*keyed, topical, everything, alerts_only))
