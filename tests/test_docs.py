"""Documentation stays true: every setting, stream, bucket, consumer and subject is documented."""

from __future__ import annotations

import re
from pathlib import Path

from core import topology
from core.settings import SETTINGS
from workers.detect.config import DETECT_SETTINGS

ROOT = Path(__file__).resolve().parent.parent


def _readme_table_vars() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z_*]+)`", section, flags=re.M))


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    documented = _readme_table_vars()
    missing = [spec.env for spec in (*SETTINGS, *DETECT_SETTINGS) if spec.env not in documented]
    assert not missing, f"settings missing from README configuration table: {missing}"


def test_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().splitlines()[:8]
    assert any(line.startswith("make run") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_topology_is_documented() -> None:
    doc = (ROOT / "docs" / "nats.md").read_text()
    names = [s.config.name for s in topology.STREAMS] + [b.bucket for b in topology.BUCKETS]
    names += [c.config.durable_name for c in topology.CONSUMERS]
    names += [s.config.subjects[0] for s in topology.STREAMS if s.config.subjects]
    missing = [n for n in names if f"`{n}`" not in doc]
    assert not missing, f"missing from docs/nats.md: {missing}"


def test_subject_patterns_are_documented() -> None:
    doc = (ROOT / "docs" / "nats.md").read_text()
    samples = {
        topology.telemetry_subject("A", "B"): "constellation.telemetry.{org_id}.{entity_id}",
        topology.detection_subject("A", "B"): "constellation.events.isr.{org_id}.{entity_id}",
        topology.event_subject("K", "A", "B"): "constellation.events.{kind}.{org_id}.{entity_id}",
        topology.command_subject("A", "B"): "constellation.commands.{org_id}.{entity_id}",
        topology.command_ack_subject("A", "B"): "constellation.commands.{org_id}.{entity_id}.ack",
        topology.video_subject("B"): "constellation.video.{entity_id}",
        topology.dlq_subject("S"): "constellation.dlq.{stream}",
    }
    for built, pattern in samples.items():
        assert f"`{pattern}`" in doc, pattern
        assert built.count(".") == pattern.count("."), (built, pattern)


def test_dlq_headers_are_documented() -> None:
    from workers import base

    doc = (ROOT / "docs" / "nats.md").read_text()
    for name in (base.DLQ_REASON, base.DLQ_SUBJECT, base.DLQ_STREAM, base.DLQ_SEQUENCE, base.DLQ_WORKER, base.DLQ_TIME):
        assert f"`{name}`" in doc, name


def test_every_sse_event_is_documented() -> None:
    """Event names come from the templates' ``sse-swap`` and the JSON events in code."""
    doc = (ROOT / "docs" / "console.md").read_text()
    names: set[str] = set()
    for template in (ROOT / "templates").rglob("*.html"):
        names |= set(re.findall(r'sse-swap="([a-z-]+)', template.read_text()))
    for module in (p for pkg in ("web", "services", "workers") for p in (ROOT / pkg).rglob("*.py")):
        names |= set(re.findall(r'_json_event\("([a-z-]+)"', module.read_text()))
    assert {"entity-card", "map-entity"} <= names  # the scan itself works
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, f"SSE events missing from docs/console.md: {missing}"
    for name in names:
        if not name.startswith("map-"):
            assert (ROOT / "templates" / "partials" / f"{name}.html").exists(), f"event {name} has no partial"


def test_every_console_stream_is_documented() -> None:
    doc = (ROOT / "docs" / "console.md").read_text()
    paths: set[str] = set()
    for module in (ROOT / "web" / "console").rglob("*.py"):
        paths |= set(re.findall(r'@get\("(/(?:embed/)?events/[a-z]+)', module.read_text()))
    assert paths
    missing = sorted(p for p in paths if p not in doc)
    assert not missing, f"streams missing from docs/console.md: {missing}"
