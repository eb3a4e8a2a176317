"""A monolith binary started for a benchmark: on a free loopback port, logging JSON at `warn` to a
file (or, for request_path.py, at its default settings to /dev/null), waited for until `/readyz` answers,
and stopped however the benchmark ends. Shared by soak.py, postgres.py and request_path.py. Python 3.11
standard library only.
"""
from __future__ import annotations

import http.client
import os
import pathlib
import socket
import subprocess
import time


class ServerFailure(Exception):
    """The server did not start, or died."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`binary` running in `workdir` with `env` added to a minimal environment.

    With `default_logging`, the server logs as it does by default (text at `info`, an access
    line per request) to /dev/null, and the log helpers below see nothing.
    """

    def __init__(self, binary: pathlib.Path, workdir: pathlib.Path, env: dict[str, str],
                 default_logging: bool = False):
        self.port = free_port()
        self.log_path = workdir / "server.log"
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            **({} if default_logging else {"LOG_FORMAT": "json", "RUST_LOG": "warn"}),
            **env,
        }
        self.started = time.monotonic()
        if default_logging:
            self.process = subprocess.Popen([str(binary)], env=full_env, cwd=workdir,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([str(binary)], env=full_env, cwd=workdir,
                                            stdout=log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, seconds: float, poll: float = 0.1) -> float:
        """Returns the seconds from start to the first 200 from `/readyz`, polled every `poll`
        seconds; raises if the process exits or `seconds` pass."""
        deadline = time.monotonic() + seconds
        while True:
            if self.process.poll() is not None:
                raise ServerFailure(
                    f"the server exited with {self.process.returncode} at start-up")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                try:
                    conn.request("GET", "/readyz")
                    if conn.getresponse().status == 200:
                        return time.monotonic() - self.started
                finally:
                    conn.close()
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerFailure(f"the server was not ready within {seconds:.0f} s")
            time.sleep(poll)

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used."""
        fields = pathlib.Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        """Resident memory (VmRSS) in KiB."""
        for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise ServerFailure("no VmRSS in /proc/PID/status")

    def errors_logged(self) -> list[str]:
        """The log lines at ERROR level."""
        return [line for line in self.log_path.read_text(errors="replace").splitlines()
                if '"level":"ERROR"' in line]

    def print_log_tail(self, lines: int = 20) -> None:
        if self.log_path.exists():
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
            print("\n".join(["server log (last lines):", *tail]))

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
