"""Run Maple's stages as real processes, as users and `maple up` do (`python -m apps <command>` is `maple`)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

from apps import maple_command
from maple.settings import Settings
from tests.helpers.environment import clean_environ


def clickhouse_env(settings: Settings) -> dict[str, str]:
    """Environment that points a child process at the test session's ClickHouse engine."""
    if settings.clickhouse.url:
        return {"MAPLE_CLICKHOUSE_URL": ",".join(settings.clickhouse.url)}
    return {"MAPLE_DATA_DIR": str(settings.data_path),
            "MAPLE_CLICKHOUSE_EMBEDDED_PORT": str(settings.clickhouse.embedded_port)}


class Stage:
    """One `maple <command>` process; its output goes to a log file that a failing test prints."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.command = command
        self.env = clean_environ(**env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix=f"maple-{command[0]}-", suffix=".log")[1])

    def start(self) -> Stage:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(maple_command(*self.command), env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)

    def output(self, tail: int = 60) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])
