"""The upstream (NSD) and the three resolver configurations.

A  Unbound without policy            module-config: "iterator"
B  Unbound's built-in RPZ             module-config: "respip iterator", one rpz:
                                      clause per zone (zonefile:, rpz-log: yes)
C  Unbound with the dnsfw module      module-config: "dynlib iterator", dnsfw.toml
                                      with the store and a hit log

All three use the same Unbound binary (build/deps/unbound) and the same
server settings (COMMON): num-threads 2, the same cache sizes, forwarding
everything to the NSD on loopback.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .dnswire import Prober

NSD_BIN = Path("/usr/sbin/nsd")

# Server settings every configuration shares.
COMMON = [
    "num-threads: 2",
    "msg-cache-size: 64m",
    "rrset-cache-size: 128m",
    "num-queries-per-thread: 4096",
    "outgoing-range: 8192",
    "so-rcvbuf: 4m",
    "so-sndbuf: 4m",
    "minimal-responses: no",     # dnsfw's recommended setting (policy SOA); same for all
    "ede: yes",
    "do-ip6: no",
    "do-not-query-localhost: no",
    "access-control: 127.0.0.0/8 allow",
    "verbosity: 1",
    "use-syslog: no",
    "log-time-ascii: yes",
]

KINDS = {
    "A": "Unbound, no policy",
    "B": "Unbound built-in RPZ (respip, rpz-log: yes)",
    "C": "Unbound + dnsfw module (hit log on)",
}


class Nsd:
    """NSD serving the benign root zone on 127.0.0.1, response rate limiting
    off (the upstream must not be what limits cache misses)."""

    def __init__(self, workdir: Path, zonefile: Path, probe_name: str):
        self.workdir = workdir
        self.port = procs.free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "nsd.conf"
        conf.write_text("\n".join([
            "server:",
            f"  ip-address: {procs.LOOPBACK}@{self.port}",
            '  username: ""', '  chroot: ""',
            f'  zonesdir: "{workdir}"', f'  pidfile: "{workdir}/nsd.pid"',
            f'  xfrdfile: "{workdir}/xfrd.state"', f'  zonelistfile: "{workdir}/zone.list"',
            f'  xfrdir: "{workdir}"', '  database: ""', f'  logfile: "{workdir}/nsd.log"',
            "  server-count: 1", "  verbosity: 1", "  rrl-ratelimit: 0",
            "  rrl-whitelist-ratelimit: 0", "  refuse-any: no",
            "remote-control:", "  control-enable: no",
            "zone:", '  name: "."', f'  zonefile: "{zonefile}"',
        ]) + "\n")
        self.proc = procs.Proc("nsd", [NSD_BIN, "-d", "-c", conf], workdir)
        pr = Prober(self.port)
        try:
            def ready():
                if not self.proc.alive():
                    raise RuntimeError("NSD exited during start-up\n" + self.proc.describe())
                r = pr.ask(probe_name, timeout=0.2)
                return r is not None and r[0] == "NOERROR" and r[1] > 0
            procs.wait_until(ready, 120, f"NSD on port {self.port}", on_timeout=self.proc.describe)
        finally:
            pr.close()

    def stop(self) -> None:
        self.proc.stop()


@dataclass
class Resolver:
    """One Unbound process of configuration kind A, B or C."""
    kind: str
    workdir: Path
    unbound: Path
    nsd_port: int
    zones: list[tuple[str, Path]] = field(default_factory=list)  # B
    module: Path | None = None                                    # C
    store: Path | None = None                                     # C
    zone_names: list[str] = field(default_factory=list)           # C: active zones in order
    port: int = 0
    proc: procs.Proc | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "unbound.log"

    @property
    def hitlog(self) -> Path:
        return self.workdir / "hits.jsonl"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = procs.free_port()
        modules = {"A": "iterator", "B": "respip iterator", "C": "dynlib iterator"}[self.kind]
        lines = ["server:",
                 f"  interface: {procs.LOOPBACK}", f"  port: {self.port}",
                 "  do-daemonize: no", '  username: ""', '  chroot: ""', '  pidfile: ""',
                 f'  directory: "{self.workdir}"', f'  logfile: "{self.log}"',
                 f'  module-config: "{modules}"']
        lines += [f"  {c}" for c in COMMON]
        if self.kind == "B":
            for origin, path in self.zones:
                lines += ["rpz:", f"  name: {origin}", f'  zonefile: "{Path(path).resolve()}"',
                          "  rpz-log: yes", f"  rpz-log-name: {origin.rstrip('.')}"]
        if self.kind == "C":
            assert self.module and self.store
            lines += ["dynlib:", f'  dynlib-file: "{self.module}"']
            toml = self.workdir / "dnsfw.toml"
            toml.write_text(f"store = {json.dumps(str(self.store))}\n"
                            f"zones = [{', '.join(json.dumps(z) for z in self.zone_names)}]\n"
                            f"hit-log = {json.dumps(str(self.hitlog))}\n"
                            "fail-open = false\n")
        lines += ["remote-control:", "  control-enable: no",
                  "forward-zone:", '  name: "."', f"  forward-addr: {procs.LOOPBACK}@{self.nsd_port}"]
        conf = self.workdir / "unbound.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> "Resolver":
        conf = self.write_config()
        env = {"DNSFW_CONFIG": str(self.workdir / "dnsfw.toml")} if self.kind == "C" else {}
        self.proc = procs.Proc("unbound", [self.unbound, "-d", "-c", conf], self.workdir, env)
        return self

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    def describe(self) -> str:
        log = ""
        try:
            log = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            pass
        return (self.proc.describe() if self.proc else "(not started)") + \
            f"\n--- {self.log}:\n{log}"

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
