"""A real delegation hierarchy for end-to-end trigger tests (shared by
test_triggers.py and test_precedence.py).

NSD instances on 127.B.x.y port 53 (B picked at run time so that no other
suite's servers collide) serve a root zone, TLDs and leaf zones; Unbound runs
with ``stub-zone: "."`` pointing at the root server and
``do-not-query-localhost: no``, so every query walks root -> TLD -> leaf and
the RRset cache holds the NS RRsets and glue of every zone cut (what the
NSDNAME/NSIP triggers read).

* :func:`pick_base` — a B whose server addresses are free on port 53;
* :class:`Hierarchy` — the NSDs (``servers``: name -> (address octets, zone
  origins); ``texts``: origin -> zone file text);
* :func:`write_stub_unbound_conf` — unbound.conf with the module;
* :class:`Env` — a store + Unbound with the module over a hierarchy.
"""
from __future__ import annotations

import random
import socket
import subprocess
from pathlib import Path

import pytest

import dns.rcode

import dnsfw_harness as h

NOERROR = dns.rcode.NOERROR

SOA = "@ 60 IN SOA ns. hostmaster. 1 3600 900 604800 60"


def _bindable53(addr: str) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, 53))
        except OSError:
            return False
        finally:
            s.close()
    return True


def pick_base(octets: list[str]) -> int:
    """A B in 60..250 such that 127.B.<o>:53 is free for every o in ``octets``."""
    for _ in range(50):
        b = random.randint(60, 250)
        if all(_bindable53(f"127.{b}.{o}") for o in octets):
            return b
    pytest.skip("no free 127.B.x.y:53 addresses for the delegation hierarchy")


def server_octets(servers: dict[str, tuple[list[str], list[str]]]) -> list[str]:
    return [o for addrs, _ in servers.values() for o in addrs]


class Hierarchy:
    """One NSD per entry of ``servers`` (name -> (address octets "x.y" of
    127.B.x.y, zone origins)); zone texts from ``texts`` (origin -> text)."""

    def __init__(self, workdir: Path, base: int, texts: dict[str, str],
                 servers: dict[str, tuple[list[str], list[str]]]):
        self.workdir = workdir
        self.base = base
        self.texts = texts
        self.servers = servers
        self.procs: list[h.Process] = []

    def ip(self, o: str) -> str:
        return f"127.{self.base}.{o}"

    def start(self) -> "Hierarchy":
        try:
            for name, (addrs, origins) in self.servers.items():
                self._start_one(name, addrs, origins)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_one(self, name: str, addrs: list[str], origins: list[str]) -> None:
        d = self.workdir / name
        d.mkdir(parents=True, exist_ok=True)
        lines = ["server:"]
        lines += [f"  ip-address: {self.ip(a)}@53" for a in addrs]
        lines += ['  username: ""', '  chroot: ""', f'  zonesdir: "{d}"',
                  f'  pidfile: "{d}/nsd.pid"', f'  xfrdfile: "{d}/xfrd.state"',
                  f'  zonelistfile: "{d}/zone.list"', f'  xfrdir: "{d}"',
                  '  database: ""', f'  logfile: "{d}/nsd.log"', "  server-count: 1",
                  "  verbosity: 1", "remote-control:", "  control-enable: no"]
        for origin in origins:
            f = d / (("root" if origin == "." else origin.rstrip(".")) + ".zone")
            f.write_text(self.texts[origin])
            lines += ["zone:", f'  name: "{origin}"', f'  zonefile: "{f}"']
        (d / "nsd.conf").write_text("\n".join(lines) + "\n")
        p = h.Process(f"nsd-{name}", [h.NSD_BIN, "-d", "-c", d / "nsd.conf"], d)
        self.procs.append(p)
        probe_addr, probe_zone = self.ip(addrs[0]), origins[0]

        def ready():
            if not p.alive():
                log = d / "nsd.log"
                raise AssertionError("NSD exited\n" + p.describe()
                                     + (log.read_text(errors="replace") if log.exists() else ""))
            try:
                r = h.query(53, probe_zone, "SOA", "udp", timeout=0.3, server=probe_addr)
            except Exception:
                return False
            return r.rcode == NOERROR and r.msg.answer
        h.wait_until(ready, 20, f"NSD {name} on {probe_addr}:53", on_timeout=p.describe)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


def write_stub_unbound_conf(workdir: Path, port: int, root_ip: str, threads: int = 1,
                            module_config: str = "dynlib iterator",
                            extra: list[str] | None = None) -> Path:
    """unbound.conf: the module, ``stub-zone "."`` -> ``root_ip``@53;
    ``extra``: more ``server:`` lines (e.g. a trust anchor)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "unbound.conf"
    conf.write_text("\n".join([
        "server:",
        f"  interface: {h.LOOPBACK}",
        f"  port: {port}",
        "  do-ip6: no",
        "  do-daemonize: no",
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{workdir}"',
        f'  pidfile: "{workdir}/unbound.pid"',
        "  use-syslog: no",
        '  logfile: ""',
        "  verbosity: 1",
        f"  num-threads: {threads}",
        "  do-not-query-localhost: no",
        "  access-control: 127.0.0.0/8 allow",
        "  minimal-responses: no",
        f'  module-config: "{module_config}"',
        *[f"  {line}" for line in (extra or [])],
        "dynlib:",
        f'  dynlib-file: "{h.MODULE_SO}"',
        "remote-control:",
        "  control-enable: no",
        "stub-zone:",
        '  name: "."',
        f"  stub-addr: {root_ip}@53",
    ]) + "\n")
    return conf


class Env:
    """A store in ``workdir`` and Unbound with the module over ``hier``."""

    def __init__(self, hier: Hierarchy, workdir: Path):
        self.hier = hier
        self.workdir = workdir
        self.store = workdir / "store"
        self.hits = h.HitLog(workdir / "hits.jsonl")
        self.proc: h.Process | None = None
        self.port = 0

    def load(self, zone: str, text: str, *extra) -> subprocess.CompletedProcess:
        f = self.workdir / f"{zone}.zone"
        f.write_text(text)
        cp = h.zone_load(self.store, zone, f, *extra)
        assert cp.returncode == 0, h.describe_run(cp)
        return cp

    def start(self, zones: list[str], ready_name: str = "www.good.tld.",
              module_config: str = "dynlib iterator", extra: list[str] | None = None,
              ready=None) -> "Env":
        """Starts Unbound and waits until ``ready_name`` resolves (or the
        ``ready(env)`` predicate holds)."""
        self.port = h.free_port()
        toml = h.write_module_toml(self.workdir / "dnsfw.toml", self.store, zones,
                                   self.workdir / "hits.jsonl")
        conf = write_stub_unbound_conf(self.workdir / "unbound", self.port, self.hier.ip("0.1"),
                                       module_config=module_config, extra=extra)
        self.proc = h.Process("unbound", [h.UNBOUND_BIN, "-d", "-c", conf], self.workdir,
                              env={"DNSFW_CONFIG": str(toml)})

        def is_ready():
            if not self.proc.alive():
                raise AssertionError("unbound exited\n" + self.proc.describe())
            if ready is not None:
                return ready(self)
            return h.answers(self.port, ready_name)
        try:
            h.wait_until(is_ready, 30, f"unbound with the module to resolve {ready_name}",
                         on_timeout=self.proc.describe)
        except BaseException:
            self.stop()
            raise
        return self

    def q(self, name: str, qtype: str = "A", transport: str = "udp",
          source: str = h.LOOPBACK) -> h.Reply:
        return h.query(self.port, name, qtype, transport, timeout=3.0, source=source)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
