"""``overwatch detect``: the detection worker process (flags override the environment)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from app.cmdline import Flags, add_flags, env_file, flag_overrides, stop_on_signals
from app.logs import setup_logging
from core.settings import ConfigError
from workers.detect.config import EXIT_CONFIG, DetectSettings, load_detect_settings

FLAGS: Flags = {
    "org": ("org_id", str, "organisation id (CONSTELLATION_ORG_ID)"),
    "entity": ("entity_id", str, "camera entity id (CONSTELLATION_ENTITY_ID)"),
    "nats-url": ("nats_url", str, "NATS server(s) (NATS_URL)"),
    "source": ("source", str, "synthetic[:seed], a file, rtsp://…, /dev/videoN or an index (DETECT_SOURCE)"),
    "model": ("model", str, "ONNX model file (DETECT_MODEL)"),
    "labels": ("labels", str, "labels file (DETECT_LABELS)"),
    "conf": ("conf", float, "publish threshold (DETECT_CONF; unset: the model's own)"),
    "class-conf": ("class_conf", str, "per-class thresholds label=0.5,... (DETECT_CLASS_CONF)"),
    "camera-pose": ("camera_pose", str, "lat,lon,height_m,heading,tilt,hfov (DETECT_CAMERA_POSE)"),
    "threads": ("threads", int, "onnxruntime threads (DETECT_THREADS)"),
    "max-fps": ("max_fps", float, "cap on processed frames per second (DETECT_MAX_FPS)"),
    "device-id": ("device_id", str, "device id (DEVICE_ID)"),
    "kv-mode": ("kv_mode", str, "full or off (DETECT_KV_MODE)"),
    "threat-table": ("threat_table", str, "JSON label → level file (DETECT_THREAT_TABLE)"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``overwatch detect``."""
    add_flags(p, FLAGS)
    p.add_argument("--loop", dest="loop", action="store_const", const=True, help="loop a video file (DETECT_LOOP)")
    p.add_argument("--no-video", dest="video", action="store_const", const=False, help="publish no frames")
    p.add_argument(
        "--every-frame",
        dest="every_frame",
        action="store_const",
        const=True,
        help="video files: every frame, as fast as processed (DETECT_EVERY_FRAME)",
    )


def settings_from(args: argparse.Namespace) -> DetectSettings:
    """The worker's settings: flags > environment > ``.env`` > defaults."""
    overrides = flag_overrides(args, FLAGS)
    overrides["loop"] = getattr(args, "loop", None)
    overrides["video"] = getattr(args, "video", None)
    overrides["every_frame"] = getattr(args, "every_frame", None)
    return load_detect_settings(overrides, dotenv=env_file(args))


async def _run(settings: DetectSettings) -> int:
    from workers.detect.model import ModelError
    from workers.detect.sources import SourceError
    from workers.detect.threats import ThreatTableError
    from workers.detect.worker import DetectionWorker

    try:
        worker = DetectionWorker(settings)
    except (ModelError, SourceError, ThreatTableError) as exc:
        print(f"overwatch detect: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return await worker.run(stop_on_signals())


def run(args: argparse.Namespace, log_level: str = "INFO", log_format: str = "console") -> int:
    """Entry point of ``overwatch detect``."""
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"overwatch detect: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(log_level, log_format)
    return asyncio.run(_run(settings))
