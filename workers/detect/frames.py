"""Live video out: annotated (or raw) JPEG frames on ``constellation.video.{entity_id}``.

Frames are capped in rate and size and sent on core NATS — only the newest matters,
so nothing is stored or acknowledged. Annotation draws on a copy: the raw frame
stays untouched (``include_detections=False`` really sends the clean image).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from nats.aio.client import Client as NATS

from workers.detect.objects import TrackedObject

log = logging.getLogger("overwatch.detect.video")

COLOURS = {  # BGR per threat level
    "HIGH_THREAT": (40, 40, 235),
    "MODERATE_THREAT": (0, 165, 255),
    "LOW_THREAT": (90, 220, 90),
}


def annotate(image: np.ndarray, objects: list[TrackedObject], banner: str) -> np.ndarray:
    """A copy of ``image`` with boxes, labels and the alert banner."""
    out = image.copy()
    h, w = out.shape[:2]
    for obj in objects:
        colour = COLOURS.get(obj.threat_level, COLOURS["LOW_THREAT"])
        x1, y1, x2, y2 = (
            round(obj.bbox[0] * w),
            round(obj.bbox[1] * h),
            round(obj.bbox[2] * w),
            round(obj.bbox[3] * h),
        )
        thick = 3 if obj.threat_level == "HIGH_THREAT" else 2
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        text = f"{obj.label} {obj.confidence:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(th + 4, y1)
        cv2.rectangle(out, (x1, ty - th - 4), (x1 + tw + 4, ty), colour, -1)
        cv2.putText(out, text, (x1 + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if banner:
        colour = {"HIGH": COLOURS["HIGH_THREAT"], "ELEVATED": COLOURS["MODERATE_THREAT"]}.get(banner, (50, 50, 50))
        cv2.rectangle(out, (0, 0), (w, 22), colour, -1)
        cv2.putText(
            out, f"ALERT LEVEL {banner}", (8, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
        )
    return out


class FrameEncoder:
    """Rate- and size-capped JPEG encoding."""

    def __init__(self, fps: float = 10.0, max_dimension: int = 960, quality: int = 70) -> None:
        self.period = 1.0 / fps if fps > 0 else float("inf")
        self.max_dimension = max_dimension
        self.quality = quality
        self._last = 0.0

    def due(self) -> bool:
        """Whether the next frame should be sent (and, if so, start its period)."""
        now = time.monotonic()
        if now - self._last < self.period:
            return False
        self._last = now
        return True

    def encode(self, image: np.ndarray) -> tuple[bytes, int, int]:
        """JPEG bytes and the (width, height) sent."""
        h, w = image.shape[:2]
        scale = min(1.0, self.max_dimension / max(h, w))
        if scale < 1.0:
            image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return jpeg.tobytes(), image.shape[1], image.shape[0]


class VideoPublisher:
    """Encodes and sends at most one frame at a time off the event loop; a busy encoder skips frames."""

    def __init__(self, subject: str, encoder: FrameEncoder, annotated: bool, headers: dict[str, str]) -> None:
        self.subject = subject
        self.encoder = encoder
        self.annotated = annotated
        self.headers = headers
        self.sent = 0
        self.failures = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="video")
        self._task: asyncio.Future[None] | None = None

    def offer(
        self, nc: NATS, image: np.ndarray, seq: int, captured_at: str, objects: list[TrackedObject], banner: str
    ) -> None:
        """Send this frame if one is due and the previous one is out."""
        if (self._task is not None and not self._task.done()) or not self.encoder.due():
            return
        loop = asyncio.get_running_loop()

        def encode() -> tuple[bytes, int, int]:
            return self.encoder.encode(annotate(image, objects, banner) if self.annotated else image)

        async def send() -> None:
            try:
                jpeg, width, height = await loop.run_in_executor(self._pool, encode)
                headers = {
                    **self.headers,
                    "Content-Type": "image/jpeg",
                    "Frame-Number": str(seq),
                    "Timestamp": captured_at,
                    "Width": str(width),
                    "Height": str(height),
                    "Detection-Count": str(len(objects)),
                    "Annotated": "true" if self.annotated else "false",
                }
                await nc.publish(self.subject, jpeg, headers=headers)
                self.sent += 1
            except Exception as exc:  # noqa: BLE001 - video is best effort; events and state are not
                self.failures += 1
                if self.failures in (1, 100) or self.failures % 1000 == 0:
                    log.warning("video frame not sent (%d so far): %s", self.failures, exc)

        self._task = asyncio.ensure_future(send())

    async def close(self) -> None:
        """Wait for the frame in flight and stop the encoder thread."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        self._pool.shutdown(wait=False)
