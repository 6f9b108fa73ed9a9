#!/usr/bin/python3
"""Measures the query latency a store change costs while Unbound's message
cache is large (module/README.md, "Noticing store changes").

Setup (all on loopback, in a temporary directory):
  * NSD serving bench.example. with a wildcard (every n<i>.bench.example.
    has an A record, TTL 3600), response rate limiting off;
  * Unbound (num-threads 2, large caches) with the dnsfw module (the library
    given by --module), forwarding to NSD; a store with zone bench.rpz;
  * the message cache filled with --names distinct names (dnsperf).

Then, for --seconds, probe clients ask cached names round-robin over 16
source ports (so both worker threads are probed; SO_REUSEPORT spreads them)
and record every latency, while dnsperf adds background load at --qps.
In the "changes" phase the store is changed every --interval seconds
(`dnsfw zone load` of bench.rpz alternating between two versions that
block a few cached names), which makes the module sweep the message cache.
The "quiet" phase is the same without store changes; the "control" phase
runs the same loads into another store (the CLI's own CPU use, no sweep).

Prints, per phase: probe latency p50/p99/p99.9/max, queries without an
answer within 2 s, dnsperf's own summary line, and the module's sweep log
lines. Usage:
  /usr/bin/python3 module/tests/sweep_latency.py [--module PATH] [--names 100000]
"""
from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import dnsfw_harness as h  # noqa: E402

import dns.message  # noqa: E402

CONTROL = h.UNBOUND_BIN.parent / "unbound-control"


def write_nsd(work: Path) -> tuple[Path, int]:
    zone = work / "bench.example.zone"
    zone.write_text("$ORIGIN bench.example.\n$TTL 3600\n"
                    "@ SOA ns hostmaster 1 3600 900 604800 3600\n@ NS ns\nns A 127.0.0.1\n"
                    "* A 192.0.2.1\n")
    port = h.free_port()
    conf = work / "nsd.conf"
    conf.write_text("\n".join([
        "server:", f"  ip-address: {h.LOOPBACK}@{port}", '  username: ""', '  chroot: ""',
        f'  zonesdir: "{work}"', f'  pidfile: "{work}/nsd.pid"',
        f'  xfrdfile: "{work}/xfrd.state"', f'  zonelistfile: "{work}/zone.list"',
        f'  xfrdir: "{work}"', '  database: ""', f'  logfile: "{work}/nsd.log"',
        "  server-count: 1", "  verbosity: 1", "  rrl-ratelimit: 0",
        "remote-control:", "  control-enable: no",
        "zone:", '  name: "bench.example."', f'  zonefile: "{zone}"']) + "\n")
    return conf, port


def write_rules(path: Path, blocked: list[int], serial: int) -> None:
    lines = ["$ORIGIN bench.rpz.", "$TTL 60",
             f"@ SOA ns.bench.rpz. hostmaster.bench.rpz. {serial} 3600 900 604800 60",
             "@ NS ns.bench.rpz."]
    lines += [f"r{i}.elsewhere.example CNAME ." for i in range(2000)]
    lines += [f"*.w{i}.elsewhere.example CNAME ." for i in range(200)]
    lines += [f"n{i}.bench.example CNAME ." for i in blocked]
    path.write_text("\n".join(lines) + "\n")


def write_unbound(work: Path, port: int, control_port: int, nsd_port: int, module: Path) -> Path:
    conf = work / "unbound.conf"
    conf.write_text("\n".join([
        "server:", f"  interface: {h.LOOPBACK}", f"  port: {port}", "  do-ip6: no",
        "  do-daemonize: no", '  username: ""', '  chroot: ""', f'  directory: "{work}"',
        f'  pidfile: "{work}/unbound.pid"', "  use-syslog: no", '  logfile: ""',
        "  verbosity: 1", "  num-threads: 2", "  so-reuseport: yes",
        "  msg-cache-size: 512m", "  rrset-cache-size: 512m",
        "  num-queries-per-thread: 4096", "  outgoing-range: 8192",
        "  do-not-query-localhost: no", "  minimal-responses: yes", "  extended-statistics: yes",
        '  module-config: "dynlib iterator"',
        "dynlib:", f'  dynlib-file: "{module}"',
        "remote-control:", "  control-enable: yes", f"  control-interface: {h.LOOPBACK}",
        f"  control-port: {control_port}", "  control-use-cert: no",
        "forward-zone:", '  name: "."', f"  forward-addr: {h.LOOPBACK}@{nsd_port}"]) + "\n")
    return conf


def msg_cache_count(conf: Path) -> int:
    cp = subprocess.run([CONTROL, "-c", conf, "stats_noreset"], capture_output=True,
                        text=True, timeout=30)
    m = re.search(r"^msg\.cache\.count=(\d+)", cp.stdout, re.M)
    if not m:
        print("unbound-control:", cp.returncode, cp.stdout[-300:], cp.stderr[-300:])
    return int(m.group(1)) if m else -1


class Probe:
    """Clients on 16 source ports asking cached names one at a time each."""

    def __init__(self, port: int, names: int):
        self.port = port
        self.names = names
        self.samples: list[tuple[float, float]] = []  # (send time, latency s)
        self.lost = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def _client(self, k: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((h.LOOPBACK, 0))
        sock.settimeout(2.0)
        i = k
        local = []
        lost = 0
        while not self.stop.is_set():
            q = dns.message.make_query(f"n{(i * 7919) % self.names}.bench.example.", "A")
            i += 16
            wire = q.to_wire()
            t0 = time.monotonic()
            sock.sendto(wire, (h.LOOPBACK, self.port))
            try:
                while True:
                    data = sock.recv(4096)
                    if data[:2] == wire[:2]:
                        break
                local.append((t0, time.monotonic() - t0))
            except socket.timeout:
                lost += 1
            time.sleep(0.002)  # ~400 probe queries/s per client
        with self.lock:
            self.samples += local
            self.lost += lost

    def run(self, seconds: float, during) -> None:
        threads = [threading.Thread(target=self._client, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        try:
            during(seconds)
        finally:
            self.stop.set()
            for t in threads:
                t.join()


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100.0 * len(values)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", type=Path, default=h.MODULE_SO)
    ap.add_argument("--names", type=int, default=100000)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--qps", type=int, default=15000, help="dnsperf background load")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        work = Path(tmp)
        nsd_conf, nsd_port = write_nsd(work)
        nsd = h.Process("nsd", [h.NSD_BIN, "-d", "-c", nsd_conf], work)
        store = work / "store"
        rules = [work / "v1.rpz", work / "v2.rpz"]
        write_rules(rules[0], [], 1)
        write_rules(rules[1], [3, 5, 7, 11, 13], 2)
        cp = h.zone_load(store, "bench.rpz", rules[0])
        assert cp.returncode == 0, h.describe_run(cp)
        port, control_port = h.free_port(), h.free_port()
        conf = write_unbound(work, port, control_port, nsd_port, args.module.resolve())
        toml = work / "dnsfw.toml"
        toml.write_text(f'store = "{store}"\nzones = ["bench.rpz"]\n')
        unbound = h.Process("unbound", [h.UNBOUND_BIN, "-d", "-c", conf], work,
                            env={"DNSFW_CONFIG": str(toml)})
        try:
            h.wait_until(lambda: h.answers(port, "n1.bench.example."), 30, "unbound",
                         on_timeout=unbound.describe)
            names = work / "names.txt"
            names.write_text("".join(f"n{i}.bench.example. A\n" for i in range(args.names)))
            fill = subprocess.run(["dnsperf", "-s", h.LOOPBACK, "-p", str(port), "-d", names,
                                   "-n", "1", "-c", "8", "-Q", "25000", "-t", "5"],
                                  capture_output=True, text=True, timeout=600)
            print("fill:", re.search(r"Queries completed:.*", fill.stdout).group(0))
            print("msg.cache.count:", msg_cache_count(conf))

            shuffled = work / "load.txt"
            shuffled.write_text("".join(f"n{(i * 104729) % args.names}.bench.example. A\n"
                                        for i in range(args.names)))
            version = [0]

            other_store = work / "other-store"

            def phase(name: str, change: str) -> None:
                log_before = len(unbound.stderr())
                probe = Probe(port, args.names)
                perf = subprocess.Popen(
                    ["dnsperf", "-s", h.LOOPBACK, "-p", str(port), "-d", shuffled, "-c", "4",
                     "-Q", str(args.qps), "-l", str(args.seconds), "-t", "2"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                loads: list[float] = []

                def during(seconds: float) -> None:
                    end = time.monotonic() + seconds
                    nxt = time.monotonic() + 1.0
                    while time.monotonic() < end:
                        if change and time.monotonic() >= nxt:
                            version[0] ^= 1
                            t = time.monotonic()
                            target = store if change == "store" else other_store
                            cp = h.zone_load(target, "bench.rpz", rules[version[0]])
                            assert cp.returncode == 0, h.describe_run(cp)
                            loads.append(t)
                            nxt = t + args.interval
                        time.sleep(0.01)

                probe.run(args.seconds, during)
                out, _ = perf.communicate(timeout=args.seconds + 60)
                lat = [l for _, l in probe.samples]
                print(f"\n== {name}: {len(lat)} probe answers, {probe.lost} lost, "
                      f"{len(loads)} store changes")
                if lat:
                    print("   probe latency ms: p50 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  mean %.3f"
                          % (percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3,
                             percentile(lat, 99.9) * 1e3, max(lat) * 1e3,
                             statistics.mean(lat) * 1e3))
                for key in ("Queries completed", "Queries lost", "Average Latency",
                            "Latency StdDev"):
                    m = re.search(rf"{key}.*", out)
                    print("   dnsperf:", m.group(0) if m else f"({key}?)")
                sweeps = re.findall(r"dnsfw: store generation .*", unbound.stderr()[log_before:])
                for s in sweeps:
                    print("   log:", s)

            phase("quiet (no store change)", "")
            phase("control (same `dnsfw zone load` runs, into an unrelated store)", "other")
            phase("changes (store change every %.1f s)" % args.interval, "store")
            print("\nmsg.cache.count at end:", msg_cache_count(conf))
        finally:
            unbound.stop()
            nsd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
