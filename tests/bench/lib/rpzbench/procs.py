"""Background processes, free loopback ports and deadline polling.

Every process is started in its own session (so its whole group can be
signalled), with PR_SET_PDEATHSIG so it dies with the benchmark, and with
stdout/stderr written to files in its work directory (a long run never
blocks on a full pipe). stop_all() is registered with atexit.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

LOOPBACK = "127.0.0.1"

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_live: list["Proc"] = []
_ports: set[int] = set()
_priority = {"on": False}


def _child_setup() -> None:  # between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def set_priority(on: bool) -> None:
    """With on=True (needs root), boost() gives processes autogroup nice -10."""
    _priority["on"] = on


def boost(pid: int | str = "self") -> None:
    """Scheduler priority for the benchmark's processes on a shared machine.

    With autogroups (Debian's default) a plain nice value only orders the
    threads of one session, so the session's autogroup is reniced."""
    if not _priority["on"]:
        return
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write("-10")
    except OSError:
        pass


def wait_until(pred: Callable[[], object], timeout: float, what: str,
               interval: float = 0.02, on_timeout: Callable[[], str] | None = None):
    """Polls pred() until it is truthy (returned) or timeout s pass (RuntimeError)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            extra = ("\n" + on_timeout()) if on_timeout else ""
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(interval)  # poll interval, not a synchronisation


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port() -> int:
    """A loopback port free for UDP and TCP, below the ephemeral range, never
    handed out twice in one run."""
    rng = random.SystemRandom()
    for _ in range(1000):
        p = rng.randrange(20000, 32000)
        if p not in _ports and _port_free(p):
            _ports.add(p)
            return p
    raise RuntimeError("no free loopback port in 20000-32000")


class Proc:
    """A background process with its output in WORKDIR/NAME.out / NAME.err."""

    def __init__(self, name: str, argv: list, workdir: Path, env: dict | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.out = self.workdir / f"{name}.out"
        self.err = self.workdir / f"{name}.err"
        full = dict(os.environ)
        full.update(env or {})
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.t_start = time.monotonic()
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=o,
                                          stderr=e, cwd=self.workdir, env=full,
                                          start_new_session=True, preexec_fn=_child_setup)
        _live.append(self)
        boost(self.popen.pid)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def describe(self, tail: int = 30) -> str:
        state = "running" if self.alive() else f"exited with {self.popen.poll()}"
        def cut(p: Path) -> str:
            try:
                return "\n".join(p.read_text(errors="replace").splitlines()[-tail:])
            except OSError:
                return ""
        return (f"--- {self.name} ({state}): {' '.join(self.argv)}\n"
                f"--- stdout:\n{cut(self.out)}\n--- stderr:\n{cut(self.err)}")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL after grace seconds."""
        if self in _live:
            _live.remove(self)
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_all() -> None:
    for p in list(_live):
        p.stop(grace=3.0)


atexit.register(stop_all)


def run(argv: list, timeout: float = 3600, cwd: Path | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs a command to completion (text output captured); dies with us."""
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=full, preexec_fn=_child_setup)


def check(cp: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    """Raises RuntimeError with the command's output unless it exited 0."""
    if cp.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {cp.returncode}): {' '.join(map(str, cp.args))}\n"
                           f"{cp.stdout[-3000:]}\n{cp.stderr[-3000:]}")
    return cp
