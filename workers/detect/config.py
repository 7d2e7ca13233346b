"""Settings of the detection worker (``overwatch detect``): environment (upstream names), ``.env``, flags.

Declared like the server's settings (``DETECT_SETTINGS``), each documented in the
README's configuration table (a test checks). Invalid identities, sources, models or
auth combinations fail at start with a message naming the variable — the worker
never asks interactively.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from core.camera.pose import PoseError, parse_pose_setting
from core.settings import ConfigError, SettingSpec, raw_values, redacted_repr
from core.topology import TOKEN_RE

EXIT_CONFIG = 78  # EX_CONFIG: what the upstream deploy wrappers use for bad configuration

DETECT_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("org_id", "CONSTELLATION_ORG_ID", "", "Organisation of the camera entity (required)"),
    SettingSpec("entity_id", "CONSTELLATION_ENTITY_ID", "", "The camera entity this worker reports as (required)"),
    SettingSpec("nats_url", "NATS_URL", "nats://127.0.0.1:4222", "NATS server(s) to connect to, comma-separated"),
    SettingSpec("nats_token", "NATS_AUTH_TOKEN", "", "Token auth (at most one auth method)"),
    SettingSpec("nats_user", "NATS_USER", "", "User/password auth: the user"),
    SettingSpec("nats_password", "NATS_PASSWORD", "", "User/password auth: the password"),
    SettingSpec("nats_creds", "NATS_CREDS_FILE", "", "JWT credentials file"),
    SettingSpec("nats_nkey_seed_file", "NATS_NKEY_SEED_FILE", "", "NKey seed file (permissions must be 0600)"),
    SettingSpec("nats_nkey_seed", "NATS_NKEY_SEED_STR", "", "NKey seed string (starts with `S`)"),
    SettingSpec(
        "nats_tls_ca", "NATS_TLS_CA", "", "CA bundle or the server's own certificate to verify a TLS NATS server by"
    ),
    SettingSpec(
        "nats_tls_verify_hostname",
        "NATS_TLS_VERIFY_HOSTNAME",
        True,
        "Check the server certificate's names (false: trust exactly `NATS_TLS_CA`, any name)",
    ),
    SettingSpec("device_id", "DEVICE_ID", "", "Stable device id; unset derives one from the host and entity"),
    SettingSpec(
        "source", "DETECT_SOURCE", "synthetic", "`synthetic[:seed]`, a video file, `rtsp://…`, `/dev/videoN`, index"
    ),
    SettingSpec("source_fps", "DETECT_SOURCE_FPS", 15.0, "Frame rate of the synthetic source"),
    SettingSpec("loop", "DETECT_LOOP", False, "Play a video file in a loop instead of stopping at its end"),
    SettingSpec("stall_seconds", "DETECT_STALL_SECONDS", 10.0, "A stream without frames this long is reopened"),
    SettingSpec(
        "every_frame",
        "DETECT_EVERY_FRAME",
        False,
        "Video files: read the next frame only once the last one was taken (none dropped, as fast as processed)",
    ),
    SettingSpec(
        "model",
        "DETECT_MODEL",
        "",
        "ONNX model; unset: the synthetic-scene model for `synthetic`, the COCO model for real sources",
    ),
    SettingSpec("labels", "DETECT_LABELS", "", "Labels file (one class per line); unset reads the model's metadata"),
    SettingSpec(
        "conf",
        "DETECT_CONF",
        None,
        "Confidence above which detections are published; unset: the model's own (COCO 0.4, otherwise 0.3)",
    ),
    SettingSpec(
        "class_conf",
        "DETECT_CLASS_CONF",
        "",
        "Per-class thresholds over `DETECT_CONF`: `label=0.5,other label=0.6`",
    ),
    SettingSpec("iou", "DETECT_IOU", 0.5, "NMS IoU threshold"),
    SettingSpec("threads", "DETECT_THREADS", 1, "onnxruntime intra-op threads (1 leaves a core for the rest)"),
    SettingSpec("max_fps", "DETECT_MAX_FPS", 0.0, "Cap on frames processed per second (0 = as fast as frames come)"),
    SettingSpec("track_buffer", "DETECT_TRACK_BUFFER", 30, "Frames a lost track is kept to re-identify its object"),
    SettingSpec("min_hits", "DETECT_MIN_HITS", 3, "A track is published once seen in this many of the last M frames"),
    SettingSpec("hit_window", "DETECT_HIT_WINDOW", 5, "M of `DETECT_MIN_HITS`: the frames looked back over"),
    SettingSpec(
        "camera_pose",
        "DETECT_CAMERA_POSE",
        "",
        "Camera pose `lat,lon,height_m,heading,tilt,hfov` when the entity's record and telemetry give none",
    ),
    SettingSpec("lost_after", "DETECT_LOST_AFTER", 2.0, "Seconds unseen before an object is lost (leaves KV)"),
    SettingSpec("threat_table", "DETECT_THREAT_TABLE", "", "JSON file of label → threat level merged over the default"),
    SettingSpec("movement", "SIGINT_MOVEMENT_THRESHOLD", 0.05, "Publish when the bbox centre moved more than this"),
    SettingSpec("confidence", "SIGINT_CONFIDENCE_THRESHOLD", 0.1, "Publish when confidence changed more than this"),
    SettingSpec("kv_mode", "DETECT_KV_MODE", "full", "`full` writes EntityState scopes; `off` publishes events only"),
    SettingSpec("kv_hz", "DETECT_KV_HZ", 2.0, "Max EntityState writes per second (threat changes go at once)"),
    SettingSpec("event_buffer", "DETECT_EVENT_BUFFER", 2000, "Events kept while NATS is unreachable"),
    SettingSpec("video", "ENABLE_FRAME_STREAMING", True, "Publish JPEG frames on `constellation.video.{entity_id}`"),
    SettingSpec("video_fps", "FRAME_TARGET_FPS", 10.0, "Max video frames per second"),
    SettingSpec("video_max_dimension", "FRAME_MAX_DIMENSION", 960, "Frames are scaled down to this many pixels"),
    SettingSpec("video_quality", "FRAME_JPEG_QUALITY", 70, "JPEG quality 1–100"),
    SettingSpec("video_annotated", "FRAME_INCLUDE_DETECTIONS", True, "Draw boxes on published frames"),
)


class DetectSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Configuration of one detection worker; see ``DETECT_SETTINGS``."""

    org_id: str = ""
    entity_id: str = ""
    nats_url: str = "nats://127.0.0.1:4222"
    nats_token: str = ""
    nats_user: str = ""
    nats_password: str = ""
    nats_creds: str = ""
    nats_nkey_seed_file: str = ""
    nats_nkey_seed: str = ""
    nats_tls_ca: str = ""
    nats_tls_verify_hostname: bool = True
    device_id: str = ""
    source: str = "synthetic"
    source_fps: float = 15.0
    loop: bool = False
    stall_seconds: float = 10.0
    every_frame: bool = False
    model: str = ""
    labels: str = ""
    conf: float | None = None
    class_conf: str = ""
    iou: float = 0.5
    threads: int = 1
    max_fps: float = 0.0
    track_buffer: int = 30
    min_hits: int = 3
    hit_window: int = 5
    camera_pose: str = ""
    lost_after: float = 2.0
    threat_table: str = ""
    movement: float = 0.05
    confidence: float = 0.1
    kv_mode: str = "full"
    kv_hz: float = 2.0
    event_buffer: int = 2000
    video: bool = True
    video_fps: float = 10.0
    video_max_dimension: int = 960
    video_quality: int = 70
    video_annotated: bool = True

    @property
    def class_thresholds(self) -> dict[str, float]:
        """``DETECT_CLASS_CONF`` as label → threshold (validated by ``validate``)."""
        return parse_class_conf(self.class_conf)

    @property
    def servers(self) -> list[str]:
        """NATS server URLs."""
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    def __repr__(self) -> str:
        return redacted_repr(self, {"nats_token", "nats_password", "nats_nkey_seed"})


def parse_class_conf(text: str) -> dict[str, float]:
    """``label=0.5,other label=0.6`` → {label: threshold}; labels are lower-cased, values in 0..1."""
    out: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        label, sep, value = item.rpartition("=")
        label = label.strip().lower()
        try:
            threshold = float(value)
        except ValueError:
            threshold = -1.0
        if not sep or not label or not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"DETECT_CLASS_CONF: {item.strip()!r} is not label=threshold with a threshold in 0..1")
        out[label] = threshold
    return out


def _env(name: str) -> str:
    return next(s.env for s in DETECT_SETTINGS if s.field == name)


def validate(s: DetectSettings) -> None:
    """Raise ``ConfigError`` naming the variable for anything unusable."""
    for field in ("org_id", "entity_id"):
        value = getattr(s, field)
        if not value:
            raise ConfigError(f"{_env(field)} is required (or --{field.replace('_id', '')})")
        if not TOKEN_RE.match(value):
            raise ConfigError(f"{_env(field)} {value!r} must be 1–128 letters, digits, '-' or '_'")
    if s.device_id and not TOKEN_RE.match(s.device_id):
        raise ConfigError(f"DEVICE_ID {s.device_id!r} must be 1–128 letters, digits, '-' or '_'")
    auths = [
        _env(f)
        for f in ("nats_token", "nats_creds", "nats_nkey_seed_file", "nats_nkey_seed", "nats_user")
        if getattr(s, f)
    ]
    if len(auths) > 1:
        raise ConfigError(f"use at most one NATS auth method (got {', '.join(auths)})")
    if s.nats_user and not s.nats_password:
        raise ConfigError("NATS_USER needs NATS_PASSWORD")
    if s.nats_nkey_seed and not s.nats_nkey_seed.startswith("S"):
        raise ConfigError("NATS_NKEY_SEED_STR must be an NKey seed (it starts with 'S')")
    for field in ("nats_nkey_seed_file", "nats_creds"):
        path = getattr(s, field)
        if path:
            if not Path(path).is_file():
                raise ConfigError(f"{_env(field)}: file not found: {path}")
            if Path(path).stat().st_mode & 0o077:
                raise ConfigError(f"{_env(field)}: {path} is readable by others; chmod 600 it")
    if s.nats_tls_ca and not Path(s.nats_tls_ca).is_file():
        raise ConfigError(f"NATS_TLS_CA: file not found: {s.nats_tls_ca}")
    if not s.servers:
        raise ConfigError("NATS_URL is empty")
    if s.conf is not None and not 0.0 <= s.conf <= 1.0:
        raise ConfigError(f"DETECT_CONF must be between 0 and 1, got {s.conf}")
    parse_class_conf(s.class_conf)
    if not 1 <= s.min_hits <= s.hit_window <= 64:
        raise ConfigError(f"need 1 ≤ DETECT_MIN_HITS ≤ DETECT_HIT_WINDOW ≤ 64, got {s.min_hits} of {s.hit_window}")
    if s.camera_pose:
        try:
            parse_pose_setting(s.camera_pose)
        except PoseError as exc:
            raise ConfigError(f"DETECT_CAMERA_POSE: {exc}") from None
    for field in ("iou", "movement", "confidence"):
        if not 0.0 <= getattr(s, field) <= 1.0:
            raise ConfigError(f"{_env(field)} must be between 0 and 1, got {getattr(s, field)}")
    for field in ("source_fps", "stall_seconds", "lost_after", "kv_hz", "video_fps"):
        if getattr(s, field) <= 0:
            raise ConfigError(f"{_env(field)} must be positive, got {getattr(s, field)}")
    for field in ("threads", "track_buffer", "event_buffer", "video_max_dimension"):
        if getattr(s, field) < 1:
            raise ConfigError(f"{_env(field)} must be at least 1, got {getattr(s, field)}")
    if s.max_fps < 0:
        raise ConfigError(f"DETECT_MAX_FPS must be 0 (no cap) or positive, got {s.max_fps}")
    if not 1 <= s.video_quality <= 100:
        raise ConfigError(f"FRAME_JPEG_QUALITY must be 1..100, got {s.video_quality}")
    if s.kv_mode not in ("full", "off"):
        raise ConfigError(f"DETECT_KV_MODE must be full or off, got {s.kv_mode!r}")


def load_detect_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv: Path | None = Path(".env"),
) -> DetectSettings:
    """Flags (``overrides``) > environment > ``.env`` > defaults, validated."""
    raw = raw_values(DETECT_SETTINGS, overrides, environ, dotenv)
    try:
        settings = msgspec.convert(raw, DetectSettings, strict=False)
    except msgspec.ValidationError as exc:
        field = str(exc).rpartition("$.")[2].strip("`' ")
        env_name = next((s.env for s in DETECT_SETTINGS if s.field == field), field)
        raise ConfigError(f"{env_name}: {exc}") from None
    validate(settings)
    return settings
