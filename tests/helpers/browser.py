"""A real browser for the UI tests: Debian's Chromium, driven by Playwright (Python) with `executable_path`.

Playwright's own browser download cannot work on Maple's machines, so the tests use the system Chromium and
install it with apt-get when it is missing and the test runs as root (CI does). The flags keep Chromium
off the network it has no business reaching; Playwright starts each browser with a fresh temporary
user-data dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    """MAPLE_CHROMIUM, else the first Chromium on PATH."""
    explicit = os.environ.get("MAPLE_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium() -> str:
    """The Chromium binary, installing Debian's package (and the fonts it recommends, so pages render the same
    everywhere) first when missing; idempotent, and quiet unless it fails."""
    found = chromium_path()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError("the UI tests need Chromium: install Debian's `chromium` package (apt-get install chromium) "
                           "or set MAPLE_CHROMIUM to a Chromium binary")
    log = Path(tempfile.mkstemp(prefix="maple-apt-chromium-", suffix=".log")[1])
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(log, "wb") as out:
        for command in (["apt-get", "update", "-qq"],
                        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "fonts-liberation"]):
            if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900).returncode != 0:
                raise RuntimeError(f"installing Chromium failed ({' '.join(command)}):\n{log.read_text()[-4000:]}")
    found = chromium_path()
    if not found:
        raise RuntimeError("apt-get installed chromium but no chromium binary is on PATH")
    return found


def screenshot_dir() -> Path:
    """Where page screenshots go: MAPLE_SCREENSHOTS, else .maple/screenshots (git-ignored, kept by CI with its log)."""
    path = Path(os.environ.get("MAPLE_SCREENSHOTS") or Path(__file__).resolve().parents[2] / ".maple" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


REPORT: list[str] = []
"""Lines the UI tests want printed at the end of the run (screenshot paths, performance figures)."""
