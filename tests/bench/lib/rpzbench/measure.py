"""Measurements: start-up poll, dnsperf runs, CPU time, memory, machine.

CPU time of a process is the sum of /proc/PID/task/*/schedstat (nanoseconds
on a CPU, per thread), read before and after a run; /proc/PID/stat's
utime+stime (10 ms ticks) is recorded too as a cross-check.
Memory is /proc/PID/smaps_rollup (Rss, Pss, Pss_Anon, Pss_File, ...) and,
for the store, the Rss/Pss of the data.mdb mappings in /proc/PID/smaps.
"""
from __future__ import annotations

import os
import platform
import random
import re
import resource
import select
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .dnswire import RCODES, wire_query

DNSPERF = shutil.which("dnsperf") or "/usr/bin/dnsperf"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------
# Start-up

def time_to_answer(proc: procs.Proc, port: int, name: str, want_rcode: str,
                   timeout: float = 600.0, interval: float = 0.002,
                   describe=None) -> float:
    """Seconds from the process's start (fork) to the first reply for NAME
    with rcode WANT_RCODE. A query is sent every INTERVAL s (later every 0.5%
    of the elapsed time, at most 0.1 s) from one socket;
    a reply to any of them counts (a query queued while the server was still
    loading is answered as soon as it serves). Raises RuntimeError when the
    process exits, or a reply with another rcode comes after the first good
    one could have (it would mean the policy is not active)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((procs.LOOPBACK, 0))
    s.setblocking(False)
    sent: set[int] = set()
    rng = random.Random()
    deadline = time.monotonic() + timeout
    next_send = 0.0
    other: list[str] = []
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise RuntimeError(f"no {want_rcode} answer for {name} within {timeout:.0f} s "
                                   f"(other replies: {other[:5]})\n" + (describe() if describe else ""))
            if not proc.alive():
                raise RuntimeError("resolver exited during start-up\n" + (describe() if describe else ""))
            if now >= next_send:
                qid = rng.randrange(65536)
                try:
                    s.sendto(wire_query(qid, name), (procs.LOOPBACK, port))
                    sent.add(qid)
                except OSError:
                    pass
                # every `interval` s at first; for a long load every 0.5% of the time so
                # far (at most 0.1 s), so a resolver still loading is not flooded
                next_send = now + min(0.1, max(interval, (now - proc.t_start) * 0.005))
            r, _, _ = select.select([s], [], [], max(0.0, min(interval, next_send - time.monotonic())))
            if not r:
                continue
            try:
                data = s.recv(65535)
            except OSError:
                continue
            t = time.monotonic()
            if len(data) < 12 or struct.unpack_from(">H", data, 0)[0] not in sent:
                continue
            rc = RCODES.get(data[3] & 0x0F, str(data[3] & 0x0F))
            if rc == want_rcode:
                return t - proc.t_start
            other.append(rc)
    finally:
        s.close()


# ---------------------------------------------------------------------------
# CPU

def cpu_ns(pid: int) -> int:
    """Nanoseconds on a CPU of all live threads of pid (schedstat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def machine_busy_s() -> float:
    """CPU seconds of the whole machine in user, nice and system mode (/proc/stat)."""
    f = Path("/proc/stat").read_text().splitlines()[0].split()
    return (int(f[1]) + int(f[2]) + int(f[3])) / CLK_TCK


def cpu_ticks_s(pid: int) -> float:
    """utime + stime of the whole process in seconds (/proc/PID/stat)."""
    st = Path(f"/proc/{pid}/stat").read_text()
    rest = st[st.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


# ---------------------------------------------------------------------------
# Memory

def smaps_rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, _, v = line.partition(":")
        try:
            out[k.strip()] = int(v.split()[0])
        except (ValueError, IndexError):
            pass
    return out


def mapping_kb(pid: int, path_part: str) -> dict[str, int]:
    """Summed Rss/Pss (kB) of the mappings of pid whose path contains path_part."""
    out = {"Rss": 0, "Pss": 0, "Size": 0}
    current = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            current = path_part in line
            continue
        if current:
            k, _, v = line.partition(":")
            if k in out:
                out[k] += int(v.split()[0])
    return out


# ---------------------------------------------------------------------------
# dnsperf

@dataclass
class PerfRun:
    """One dnsperf run and the resolver's CPU time during it."""
    label: str
    argv: list[str]
    qps: float = 0.0
    sent: int = 0
    completed: int = 0
    lost: int = 0
    rcodes: dict[str, int] = field(default_factory=dict)
    avg_latency: float = 0.0
    max_latency: float = 0.0
    resp_size: float = 0.0
    runtime: float = 0.0
    cpu_s: float = 0.0          # resolver CPU seconds during the run (schedstat)
    cpu_ticks_s: float = 0.0    # the same from utime+stime
    loadgen_cpu_s: float = 0.0  # dnsperf's own CPU seconds
    wall_s: float = 0.0         # wall-clock seconds of the run
    machine_cpu_s: float = 0.0  # CPU seconds the whole machine spent (user+nice+system)
    pct: dict[str, float] = field(default_factory=dict)  # latency percentiles (s), -v runs
    text: str = ""

    @property
    def cpu_us_per_query(self) -> float | None:
        return self.cpu_s * 1e6 / self.completed if self.completed else None

    def rcode_share(self, rc: str) -> float:
        n = sum(self.rcodes.values())
        return self.rcodes.get(rc, 0) / n if n else 0.0


def _parse_summary(text: str, run: PerfRun) -> None:
    def num(pattern: str, cast=float, default=0):
        m = re.search(pattern, text)
        return cast(m.group(1)) if m else default
    run.sent = num(r"Queries sent:\s+(\d+)", int)
    run.completed = num(r"Queries completed:\s+(\d+)", int)
    run.lost = num(r"Queries lost:\s+(\d+)", int)
    run.qps = num(r"Queries per second:\s+([\d.]+)")
    run.runtime = num(r"Run time \(s\):\s+([\d.]+)")
    run.avg_latency = num(r"Average Latency \(s\):\s+([\d.]+)")
    run.max_latency = num(r"Average Latency \(s\):.*max ([\d.]+)")
    run.resp_size = num(r"Average packet size:.*response (\d+)")
    m = re.search(r"Response codes:\s+(.*)", text)
    if m:
        for rc, n in re.findall(r"([A-Z]+) (\d+)", m.group(1)):
            run.rcodes[rc] = int(n)


def percentiles(latencies: list[float], ps=(50, 90, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles."""
    if not latencies:
        return {}
    latencies.sort()
    n = len(latencies)
    out = {}
    for p in ps:
        k = max(1, -(-int(p * 10) * n // 1000))
        out[f"p{p:g}"] = latencies[min(k, n) - 1]
    return out


def dnsperf(label: str, port: int, qfile: Path, seconds: float, pid: int, workdir: Path,
            outstanding: int = 500, clients: int = 8, threads: int = 1,
            rate: int | None = None,
            once: bool = False, verbose: bool = False, timeout: float = 2.0) -> PerfRun:
    """Runs dnsperf against 127.0.0.1:port for `seconds` (unthrottled unless
    `rate`), `once` = each line of the file at most once (-n 1). With
    `verbose`, per-query lines go to a file and give latency percentiles."""
    argv = [DNSPERF, "-s", procs.LOOPBACK, "-p", str(port), "-d", str(qfile),
            "-c", str(clients), "-T", str(threads), "-q", str(outstanding), "-l", f"{seconds:g}",
            "-t", f"{timeout:g}"]
    if rate:
        argv += ["-Q", str(rate)]
    if once:
        argv += ["-n", "1"]
    if verbose:
        argv.append("-v")
    run = PerfRun(label, argv)
    workdir.mkdir(parents=True, exist_ok=True)
    out_path = workdir / f"dnsperf-{label}.txt"
    c0, t0 = cpu_ns(pid), cpu_ticks_s(pid)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m0, w0 = machine_busy_s(), time.monotonic()
    with open(out_path, "w") as out:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, preexec_fn=procs._child_setup)
        procs.boost(p.pid)
        try:
            p.wait(timeout=seconds + timeout + 60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise RuntimeError(f"dnsperf did not finish: {' '.join(argv)}")
    run.cpu_s = (cpu_ns(pid) - c0) / 1e9
    run.machine_cpu_s, run.wall_s = machine_busy_s() - m0, time.monotonic() - w0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.loadgen_cpu_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    run.cpu_ticks_s = cpu_ticks_s(pid) - t0
    text = out_path.read_text(errors="replace")
    if verbose:
        lat = []
        summary = []
        for line in text.splitlines():
            if line.startswith("> "):
                parts = line.split()
                if len(parts) >= 5 and parts[1] != "T":
                    try:
                        lat.append(float(parts[-1]))
                    except ValueError:
                        pass
            else:
                summary.append(line)
        run.pct = percentiles(lat)
        text = "\n".join(summary)
        out_path.write_text(text + "\n")  # keep the summary, not a million lines
    run.text = text
    _parse_summary(text, run)
    if p.returncode != 0 or not run.sent:
        raise RuntimeError(f"dnsperf failed ({p.returncode}): {' '.join(argv)}\n{text[-2000:]}")
    return run


# ---------------------------------------------------------------------------
# Machine

def _first(cmd: list[str]) -> str:
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (cp.stdout or cp.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def loadavg() -> tuple[float, float, float]:
    a = Path("/proc/loadavg").read_text().split()
    return float(a[0]), float(a[1]), float(a[2])


def machine(unbound: Path) -> dict[str, str]:
    lscpu = {}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            k, _, v = line.partition(":")
            lscpu[k.strip()] = v.strip()
    except OSError:
        pass
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    osr = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        k, _, v = line.partition("=")
        osr[k] = v.strip('"')
    return {
        "cpu": f"{lscpu.get('Model name', '?')}, {lscpu.get('CPU(s)', '?')} CPUs "
               f"({lscpu.get('Hypervisor vendor', 'bare metal')} guest)" if lscpu.get('Hypervisor vendor')
               else f"{lscpu.get('Model name', '?')}, {lscpu.get('CPU(s)', '?')} CPUs",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "os": f"{osr.get('PRETTY_NAME', '?')}, kernel {platform.release()}",
        "unbound": _first([str(unbound), "-V"]),
        "nsd": _first(["/usr/sbin/nsd", "-v"]),
        "dnsperf": "dnsperf " + _first(["sh", "-c", "dpkg-query -W -f '${Version}' dnsperf"]),
        "compiler": _first(["c++", "--version"]),
    }
