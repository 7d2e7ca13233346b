"""``/metrics`` (Prometheus text from the OpenTelemetry SDK), the sampler and the metrics page."""

from __future__ import annotations

import time
from typing import Any

import httpx
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.runtime import Runtime
from db import metrics as metrics_db
from services.metrics.sampler import Sampler
from services.schemas import EntityCreate
from tests.helpers import eventually, seed

PIPELINE = {
    "fps": 9.5,
    "frames_processed": 1234,
    "frames_dropped": 7,
    "inference_ms_p50": 21.5,
    "events_published": 42,
    "kv_conflicts": 1,
    "nats_reconnects": 0,
    "source_connected": True,
}


def samples(text: str) -> dict[str, list[Any]]:
    """Every sample by name, parsed with prometheus_client's own text parser."""
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


async def _camera(runtime: Runtime) -> None:
    await seed(runtime, entities=1)
    # Registered: only the state of registered entities is shown (and counted).
    await runtime.services.registry.create_entity("org1", EntityCreate(entity_id="cam-1", entity_type="isr_sensor"))
    state = {"entity_id": "cam-1", "org_id": "org1", "is_live": True, "analytics": {"pipeline": PIPELINE}}
    await runtime.kv_state.put("cam-1", msgspec.json.encode(state))
    cache = runtime.services.state_cache
    await eventually(lambda: cache.get("cam-1") is not None, what="camera in cache")


async def test_metrics_parse_and_have_worker_sse_http_and_detection_series(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await _camera(runtime)
    assert (await client.get("/alerts")).status_code == 200
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    workers = {s.labels["worker"] for s in found["overwatch_worker_processed_total"]}
    assert {"telemetry", "rules", "status-events"} <= workers, workers
    assert "overwatch_worker_dead_lettered_total" in found and "overwatch_worker_failed_total" in found
    assert {s.labels["consumer"] for s in found["overwatch_consumer_lag"]} >= {"telemetry-processor"}
    assert "overwatch_sse_clients" in found
    fps = {s.labels["entity_id"]: s.value for s in found["overwatch_detect_fps"]}
    assert fps == {"cam-1": 9.5}
    assert found["overwatch_detect_inference_ms_p50"][0].value == 21.5
    assert found["overwatch_detect_source_connected"][0].value == 1.0
    assert "overwatch_kv_writes_total" in found and "overwatch_kv_conflicts_total" in found
    routes = {
        (s.labels["http_route"], s.labels["http_response_status_code"]) for s in found["overwatch_http_requests_total"]
    }
    assert ("/alerts", "200") in routes
    assert any(s.labels.get("http_route") == "/alerts" for s in found["overwatch_http_request_duration_seconds_count"])


async def test_metrics_need_credentials_unless_public(
    runtime: Runtime, anon_client: httpx.AsyncClient, make_runtime: Any
) -> None:
    assert (await anon_client.get("/metrics")).status_code == 401
    viewer = await runtime.services.apikeys.create("tests", "viewer", ["read"], None)
    response = await anon_client.get("/metrics", headers={"X-API-Key": viewer.key})
    assert response.status_code == 200
    public = await make_runtime(metrics_public=True)
    transport = httpx.ASGITransport(app=create_app(public))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as anon:
        response = await anon.get("/metrics")
    assert response.status_code == 200 and "overwatch_sse_clients" in response.text


async def test_sampler_stores_prunes_and_the_page_charts_it(runtime: Runtime, client: httpx.AsyncClient) -> None:
    await _camera(runtime)
    s = runtime.settings
    sampler = Sampler(runtime.metrics, runtime.db, runtime.hub, s.metrics_interval, s.metrics_retention_hours)
    await metrics_db.insert_samples(runtime.db, time.time() - 30 * 3600, [("sse.clients", 1.0)])  # beyond retention
    for _ in range(3):
        await client.get("/fleet")
        assert await sampler.sample_once() > 5
    series = await metrics_db.series_since(runtime.db, 0)
    assert min(t for t, _ in series["sse.clients"]) > time.time() - 3600, "old sample pruned"
    assert {"http.requests", "workers.processed", "disk.free", "detect.fps:cam-1"} <= set(series)
    assert any(k.startswith("consumer.lag:") for k in series)
    assert series["detect.fps:cam-1"][-1][1] == 9.5
    assert max(v for _, v in series["http.requests"]) > 0
    page = await client.get("/system/metrics")
    assert page.status_code == 200
    assert 'sse-swap="metrics-charts"' in page.text and "Detection fps: cam-1" in page.text
    assert page.text.count("<polyline") >= 4


async def test_background_sampler_runs_on_its_interval(make_runtime: Any) -> None:
    rt = await make_runtime(metrics_interval=0.2)

    async def rounds() -> bool:
        series = await metrics_db.series_since(rt.db, 0)
        return len(series.get("disk.free", [])) >= 3

    await eventually(rounds, timeout=10, what="three sampling rounds")
