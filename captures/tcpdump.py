"""Start and stop tcpdump around a scenario, so that each scenario gets its own small pcap.

Shared by every scenario module: one place knows how to wait until tcpdump really listens (else the first
packets of a scenario are lost) and how to make it flush everything before it exits.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Self


class TcpdumpError(RuntimeError):
    pass


class Tcpdump:
    """`with Tcpdump(path, "tcp port 4433"):` records the traffic matching the filter into `path`: on loopback, or
    on `interface` (inside network namespace `netns` when given)."""

    def __init__(self, path: Path | str, bpf: str, *, interface: str = "lo", snaplen: int = 65535,
                 netns: str | None = None) -> None:
        self.path = Path(path)
        self.bpf = bpf
        self.interface = interface
        self.snaplen = snaplen
        self.netns = netns  # a network namespace to record in (`ip netns exec`), instead of this process's
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        exe = shutil.which("tcpdump")
        if exe is None:
            raise TcpdumpError("tcpdump is not installed (apt-get install tcpdump)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # -U: write each packet as it arrives, so that stopping loses nothing; -Z root: keep ownership simple.
        # --immediate-mode: libpcap otherwise hands packets over in blocks that can wait up to a second, and a
        # scenario's last packets would be lost when tcpdump is stopped.
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        cmd = [*prefix, exe, "-i", self.interface, "-s", str(self.snaplen), "-U", "--immediate-mode", "-n", "-Z",
               "root", "-w", str(self.path), self.bpf]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # tcpdump says "listening on" on stderr once the capture is open; wait for it (bounded).
        deadline = time.monotonic() + 10
        assert self._proc.stderr is not None
        os.set_blocking(self._proc.stderr.fileno(), False)
        seen = b""
        while time.monotonic() < deadline:
            chunk = self._proc.stderr.read() or b""
            seen += chunk
            if b"listening on" in seen:
                break
            if self._proc.poll() is not None:
                raise TcpdumpError(f"tcpdump exited: {seen.decode(errors='replace').strip()}")
            time.sleep(0.02)
        else:
            self.stop()
            raise TcpdumpError("tcpdump did not start listening within 10 s")
        time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self._proc is None:
            return
        time.sleep(0.3)  # let the last packets of the scenario reach the kernel's capture buffer
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        if self._proc.stderr is not None:
            self._proc.stderr.close()  # (the pipe read for "listening on")
        self._proc = None

    def __exit__(self, *exc: object) -> None:
        self.stop()
