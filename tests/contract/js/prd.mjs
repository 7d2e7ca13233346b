// The downstream PRD's and the KV EntityState spec's JavaScript, as they run against Overwatch
// with the official NATS JavaScript client (v3: @nats-io/transport-node, /jetstream, /kv).
//
// The seeds were written for the older `nats` package; with v3 the same code reads
// `jetstream(nc)` for `nc.jetstream()`, `new Kvm(js).open(...)` for `js.views.kv(...)`,
// `DeliverPolicy.StartTime` for `ByStartTime` and `msg.json()` for `JSONCodec`. The only
// Overwatch-specific lines are the credentials and the inbox prefix in `connect` (and the
// same prefix for watchers in `jetstream`). An organisation reader (READER=org) uses the
// documented equivalents of docs/integrators.md: it has no JetStream consumers, so it reads
// live data by core subscription (events, and its keys' `$KV.…` subjects for changes),
// current values by direct get, and history over REST.
//
// Environment: NATS_URL, NATS_SEED, NATS_INBOX, READER (fabric|org), ORG, CAMERA, HTTP_URL and
// API_KEY (REST, for the organisation reader's history),
// ENTITIES (comma list, for the organisation reader), OTHER_ENTITY, OTHER_ORG (another
// organisation's, which an organisation reader must never reach). Prints one JSON object.
import { connect, createInbox, nkeyAuthenticator } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";

const env = process.env;
const fabric = env.READER !== "org";
const out = { reader: env.READER, pattern1: {}, pattern2: {}, pattern3: {}, pattern4: {}, queries: {}, kvspec: {}, refused: {} };
const deadline = (ms) => Date.now() + ms;

async function take(iterable, n, ms, each) {
  // Reads at most n items or until ms pass; returns how many were read.
  const until = deadline(ms);
  let count = 0;
  const it = iterable[Symbol.asyncIterator]();
  while (count < n && Date.now() < until) {
    let timer;
    const expired = new Promise((r) => { timer = setTimeout(() => r({ timeout: true }), until - Date.now()); });
    const next = await Promise.race([it.next(), expired]);
    clearTimeout(timer); // a pending timer would keep node running after the script is done
    if (next.timeout || next.done) break;
    await each(next.value);
    count++;
  }
  return count;
}

const started = Date.now();
const step = (s) => process.stderr.write(`step ${Date.now() - started} ms: ${s}\n`); // progress: a test that times out says where
const nc = await connect({
  servers: env.NATS_URL,
  authenticator: nkeyAuthenticator(new TextEncoder().encode(env.NATS_SEED)),
  inboxPrefix: env.NATS_INBOX,
});
const js = jetstream(nc, { watcherPrefix: env.NATS_INBOX });
step("kv");
const kv = await new Kvm(js).open("CONSTELLATION_GLOBAL_STATE", { allow_direct: true });

// Every entity to look at: the whole bucket for a fabric reader, its organisation's for the other.
let entityIds = [];
if (fabric) {
  for await (const key of await kv.keys()) entityIds.push(key);
} else {
  entityIds = env.ENTITIES.split(",");
}
out.entities = entityIds.length;

// ------------------------------------------------------------------ Pattern 1: real-time event processing
step('Pattern 1: real-time event processing');
const alerts = [];
async function sendAlert(entityId, detection) {
  alerts.push({ entityId, track: detection.track_id, label: detection.label });
}
// An organisation reader: a core subscription to its organisation's detections (live, no acks).
const messages1 = fabric
  ? await (await js.consumers.get("CONSTELLATION_EVENTS", "detection-processor")).consume()
  : nc.subscribe(`constellation.events.isr.${env.ORG}.>`);
const p1 = { events: 0, detections: 0, types: {}, orgs: {} };
await take(messages1, 20, 8000, async (msg) => {
  const event = JSON.parse(msg.string());
  p1.events++;
  p1.types[event.event_type] = (p1.types[event.event_type] || 0) + 1;
  p1.orgs[event.organization_id] = true;
  if (event.event_type === "detection") {
    const detection = event.detection;
    p1.detections++;
    if (detection.metadata.threat_level === "HIGH_THREAT") {
      await sendAlert(event.entity_id, detection);
    }
  }
  if (fabric) msg.ack();
});
if (fabric) messages1.stop(); else messages1.unsubscribe();
p1.alerts = alerts.length;
out.pattern1 = p1;

// ------------------------------------------------------------------ Pattern 2: current state queries
step('Pattern 2: current state queries');
const p2 = { read: 0, activeObjects: 0, alertLevels: [] };
for (const entityId of entityIds) {
  const entry = await kv.get(entityId);
  const entityState = JSON.parse(entry.string());
  const activeObjects = Object.values(entityState.detections.objects).filter((obj) => obj.is_active);
  const threatLevel = entityState.c4isr?.threat_intelligence?.threat_summary?.alert_level;
  const activeCount = entityState.analytics.summary.active_objects_count;
  if (typeof activeCount !== "number") throw new Error(`${entityId}: no active_objects_count`);
  p2.read++;
  p2.activeObjects += activeObjects.length;
  if (threatLevel) p2.alertLevels.push(threatLevel);
}
out.pattern2 = p2;

// ------------------------------------------------------------------ Pattern 3: watch state changes
step('Pattern 3: watch state changes');
const p3 = { updates: 0, keys: [] };
function updateEntityCard(s) { return `${s.status} ${s.is_live}`; }
function updateObjectList(objects) { return Object.keys(objects).length; }
function updateThreatPanel(intel) { return intel?.threat_summary?.alert_level; }
function updateMetrics(analytics) { return analytics.summary.total_frames_processed; }
// An organisation reader: every put of the key is a message on its `$KV.…` subject.
const KEY_PREFIX = "$KV.CONSTELLATION_GLOBAL_STATE.";
const watch = fabric ? await kv.watch({ key: env.CAMERA }) : nc.subscribe(KEY_PREFIX + env.CAMERA);
await take(watch, 2, 8000, async (entry) => {
  const entityState = JSON.parse(entry.string());
  updateEntityCard(entityState);
  updateObjectList(entityState.detections.objects);
  updateThreatPanel(entityState.c4isr?.threat_intelligence);
  updateMetrics(entityState.analytics);
  p3.updates++;
  p3.keys.push(fabric ? entry.key : entry.subject.slice(KEY_PREFIX.length));
});
if (fabric) watch.stop(); else watch.unsubscribe();
out.pattern3 = p3;

// ------------------------------------------------------------------ Pattern 4: historical replay
step('Pattern 4: historical replay');
const p4 = { replayed: 0, detections: 0, first: null };
const since = new Date(Date.now() - 3600_000).toISOString();
if (fabric) {
  const consumer4 = await js.consumers.get("CONSTELLATION_EVENTS", {
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: since,
  });
  const messages4 = await consumer4.consume();
  await take(messages4, 10, 8000, async (msg) => {
    const event = JSON.parse(msg.string());
    if (event.event_type === "detection") p4.detections++;
    p4.first = p4.first || event.timestamp;
    p4.replayed++;
    msg.ack();
  });
  messages4.stop();
} else {
  // An organisation reader: the detection history over REST, with the key's API key.
  const url = `${env.HTTP_URL}/api/v1/organizations/${env.ORG}/entities/${env.CAMERA}/detections?limit=10`;
  const res = await fetch(url, { headers: { Authorization: `Bearer ${env.API_KEY}` } });
  if (!res.ok) throw new Error(`detection history: HTTP ${res.status}`);
  for (const detection of (await res.json()).items) {
    p4.detections++;
    p4.first = p4.first || detection.timestamp || true;
    p4.replayed++;
  }
}
out.pattern4 = p4;

// ------------------------------------------------------------------ Example Queries (JavaScript/TypeScript)
step('Example Queries (JavaScript/TypeScript)');
const q = {};
const entry = await kv.get(env.CAMERA);
q.state = entry.json().entity_id;
const watchQ = fabric ? await kv.watch({ key: env.CAMERA }) : nc.subscribe(KEY_PREFIX + env.CAMERA);
await take(watchQ, 1, 5000, async (e) => { q.watched = e.json().entity_id; });
if (fabric) watchQ.stop(); else watchQ.unsubscribe();
const sub = nc.subscribe(fabric ? "constellation.events.isr.>" : `constellation.events.isr.${env.ORG}.>`);
q.events = await take(sub, 2, 8000, async (msg) => { msg.json(); });
sub.unsubscribe();
out.queries = q;

// ------------------------------------------------------------------ KV EntityState spec: UI components
step('KV EntityState spec: UI components');
const k = { cards: 0 };
for (const entityId of entityIds) {
  const entityState = JSON.parse((await kv.get(entityId)).string());
  const card = {
    entity_id: entityState.entity_id,
    status: entityState.status,
    is_live: entityState.is_live,
    last_update: entityState.updated_at,
    active_objects: entityState.analytics.summary.active_objects_count,
  };
  const panel = Object.values(entityState.detections.objects)
    .filter((obj) => obj.is_active)
    .map((obj) => ({ id: obj.track_id, label: obj.label, confidence: obj.confidence, threat: obj.threat_level, bbox: obj.current_bbox }));
  const threatAlerts = entityState.c4isr?.threat_intelligence?.threat_alerts || [];
  const dashboard = {
    totalObjects: entityState.analytics.summary.total_unique_objects,
    activeCount: entityState.analytics.summary.active_objects_count,
    framesProcessed: entityState.analytics.summary.total_frames_processed,
    threatDistribution: entityState.analytics.c4isr_summary?.threat_distribution,
  };
  if (card.active_objects === undefined || dashboard.framesProcessed === undefined) throw new Error(entityId);
  k.cards++;
  k.panelObjects = (k.panelObjects || 0) + panel.length + threatAlerts.length * 0;
  if (dashboard.threatDistribution) k.distribution = Object.keys(dashboard.threatDistribution).sort();
}
out.kvspec = k;

// ------------------------------------------------------------------ what an organisation reader may not do
step('what an organisation reader may not do');
if (!fabric) {
  try {
    await kv.get(env.OTHER_ENTITY);
    out.refused.otherKey = false;
  } catch (err) {
    out.refused.otherKey = String(err.message || err);
  }
  const foreign = nc.subscribe(`constellation.telemetry.${env.OTHER_ORG}.>`);
  try {
    const got = await take(foreign, 1, 2000, async () => {});
    out.refused.otherSubject = got === 0 ? "nothing arrived" : false;
  } catch (err) {
    out.refused.otherSubject = String(err.message || err);
  }
  try {
    // Every organisation's detections: its info (pending counts) and its messages are refused.
    const shared = await js.consumers.get("CONSTELLATION_EVENTS", "detection-processor");
    const got = await take(await shared.consume(), 1, 2000, async () => {});
    out.refused.sharedConsumer = got === 0 ? "nothing arrived" : false;
  } catch (err) {
    out.refused.sharedConsumer = String(err.message || err);
  }
  try {
    // No consumers at all, not even inside its organisation (a deliver subject is not checked).
    const jsm = await jetstreamManager(nc, { timeout: 2000 });
    await jsm.consumers.add("CONSTELLATION_EVENTS", {
      name: `${env.ORG}-own`,
      filter_subject: `constellation.events.isr.${env.ORG}.>`,
      deliver_subject: createInbox(env.NATS_INBOX),
      ack_policy: AckPolicy.Explicit,
    });
    out.refused.ownConsumer = false;
  } catch (err) {
    out.refused.ownConsumer = String(err.message || err);
  }
}

await nc.close();
console.log(JSON.stringify(out));
