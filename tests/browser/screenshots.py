"""``make screenshots``: every console page at desktop and tablet size, for a reviewer to look at.

Starts ``overwatch serve --demo`` on a temporary data directory, signs in with the real
form in Debian's Chromium, and writes ``<out>/<page>-<size>.png`` (not committed).
Usage: ``python -m tests.browser.screenshots [out-dir]``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.helpers import wait_until

OVERWATCH = str(Path(sys.executable).parent / "overwatch")
PASSWORD = "screenshots-password"
SIZES = {"desktop": (1280, 800), "tablet": (768, 1024)}
PAGES = [
    ("overview", "/"),
    ("fleet", "/fleet"),
    ("entity", "/entities/demo-uav-1"),
    ("camera", "/entities/demo-cam-1"),
    ("map", "/map"),
    ("alerts", "/alerts?status=all"),
    ("embed", "/embed/entity/demo-uav-1"),
    ("admin-users", "/admin/users"),
    ("audit", "/admin/audit"),
    ("login", "/login"),
]
EXTRA_PAGES: list[tuple[str, str]] = []  # later features append their pages here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def shoot(base: str, out: Path) -> list[Path]:
    from playwright.async_api import async_playwright

    from tests.browser.conftest import CHROMIUM, FLAGS

    written = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        for size, (width, height) in SIZES.items():
            context = await browser.new_context(viewport={"width": width, "height": height})
            page = await context.new_page()
            await page.goto(f"{base}/login")
            await page.fill("#email", "admin@localhost")
            await page.fill("#password", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/")
            for name, path in PAGES + EXTRA_PAGES:
                if name == "login":
                    await context.clear_cookies()
                await page.goto(base + path)
                await page.wait_for_timeout(2500 if name in ("map", "camera") else 1200)
                target = out / f"{name}-{size}.png"
                await page.screenshot(path=str(target), full_page=name not in ("map",))
                written.append(target)
            await context.close()
        await browser.close()
    return written


def main(out_dir: str = "screenshots") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {
            **os.environ,
            "OVERWATCH_DATA_DIR": f"{tmp}/data",
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "NATS_PORT": "-1",
            "OVERWATCH_ADMIN_PASSWORD": PASSWORD,
            "LOG_LEVEL": "WARNING",
        }
        proc = subprocess.Popen([OVERWATCH, "serve", "--demo"], env=env, cwd=tmp)
        try:
            base = f"http://127.0.0.1:{port}"

            def ready() -> bool:
                try:
                    return httpx.get(f"{base}/health/ready", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(ready, timeout=30, interval=0.2, what="the demo server")
            # Worth a picture once the detector has produced something for the camera page.
            made = subprocess.run(
                [OVERWATCH, "apikey", "create", "--name", "screenshots", "--role", "viewer"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            key = next(line.split()[-1] for line in made.splitlines() if line.startswith("api key:"))

            def camera_detects() -> bool:
                r = httpx.get(f"{base}/api/entities/demo-cam-1", headers={"Authorization": f"Bearer {key}"}, timeout=2)
                return r.status_code == 200 and bool((r.json().get("detections") or {}).get("objects"))

            wait_until(camera_detects, timeout=60, interval=0.5, what="the demo camera's first detections")
            for path in asyncio.run(shoot(base, out)):
                print(path)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(15)


if __name__ == "__main__":
    main(*sys.argv[1:2])
