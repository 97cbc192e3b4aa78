"""mla-server as a child process for the Python integration tests (imported from the
test scripts' directory): started on port 0, waited for through its port files, its log
kept for failure messages, stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List


class LiveServer:
    """Runs `binary` with `args`; `port_flags` (e.g. ["--port_file"]) each get a file in a
    temporary directory, and the server counts as listening once all hold a port."""

    def __init__(self, binary: str, args: List[str], port_flags: List[str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="mla-py-it-")
        files = {flag: os.path.join(self.dir, f"port{i}") for i, flag in enumerate(port_flags)}
        self.log_path = os.path.join(self.dir, "server.log")
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [binary, *args, *(f"{flag}={path}" for flag, path in files.items())],
                stdout=log, stderr=subprocess.STDOUT)
        self.ports: Dict[str, int] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for flag, path in files.items():
                with contextlib.suppress(OSError, ValueError):
                    port = int(Path(path).read_text().strip())
                    if port > 0:
                        self.ports[flag] = port
            if len(self.ports) == len(files):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"mla-server exited early:\n{self.log()}")
            time.sleep(0.02)
        self.process.kill()
        raise RuntimeError(f"mla-server did not listen within 60 s:\n{self.log()}")

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = -1
        shutil.rmtree(self.dir, ignore_errors=True)
        return code
