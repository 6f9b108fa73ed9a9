"""Helpers of the zone-transfer tests (issue 4): Knot DNS as primary or
secondary, dnsfw-xfrd, nsupdate, `dnsfw status`, and a background query load.

The scriptable fake primary used by the fault tests is in xfr_fake_primary.py.

Same rules as dnsfw_harness (see README.md): loopback only, ports picked at
run time, every wait polls a condition until a deadline, every process in its
own process group and killed with the test runner.
"""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional


import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig

import dnsfw_harness as h

# ---------------------------------------------------------------------------
# Programs

XFRD_BIN = h.BUILD / "bin" / "dnsfw-xfrd"
KNOTD = Path(os.environ.get("DNSFW_KNOTD", "/usr/sbin/knotd"))
KNOTC = Path(os.environ.get("DNSFW_KNOTC", "/usr/sbin/knotc"))
KDIG = Path(os.environ.get("DNSFW_KDIG", "/usr/bin/kdig"))
NSUPDATE = Path(os.environ.get("DNSFW_NSUPDATE", "/usr/bin/nsupdate"))
UNSHARE = Path("/usr/bin/unshare")
NSENTER = Path("/usr/bin/nsenter")

LOOPBACK = h.LOOPBACK

#: The policy zone most tests transfer. Its rules name hosts under
#: `garden.example.`, which the session NSD answers with a wildcard
#: (`*.garden.example. A 198.51.100.81`), so a rule that is not enforced
#: shows up as that NOERROR answer and an enforced one as NXDOMAIN + EDE 15.
ZONE = "threat.rpz."
UPSTREAM_A = "198.51.100.81"


def require_xfr(*extra: Path) -> None:
    """Skips (or fails with DNSFW_REQUIRE_BINARIES=1) unless dnsfw-xfrd,
    dnsfw and the given tools exist."""
    h.require(XFRD_BIN, h.DNSFW_BIN, *extra)


# ---------------------------------------------------------------------------
# TSIG keys

@dataclass(frozen=True)
class Key:
    """A TSIG key as configured on every side (Knot `key:` section, the
    daemon's `[key.NAME]` table, nsupdate's key file, dnspython)."""
    name: str        # without trailing dot, e.g. "xfr-key"
    secret: str      # base64
    algorithm: str = "hmac-sha256"

    @classmethod
    def generate(cls, name: str, algorithm: str = "hmac-sha256") -> "Key":
        return cls(name, base64.b64encode(os.urandom(32)).decode(), algorithm)

    def with_wrong_secret(self) -> "Key":
        """Same name and algorithm, another secret (a TSIG BADSIG peer)."""
        return Key(self.name, base64.b64encode(os.urandom(32)).decode(), self.algorithm)

    @property
    def fqdn(self) -> str:
        return self.name.rstrip(".") + "."

    def kdig(self) -> str:
        return f"{self.algorithm}:{self.fqdn}:{self.secret}"

    def dns_key(self) -> dns.tsig.Key:
        return dns.tsig.Key(self.fqdn, self.secret, self.algorithm + ".")

    def toml(self) -> str:
        return (f"[key.{self.name}]\nalgorithm = {h.toml_string(self.algorithm)}\n"
                f"secret = {h.toml_string(self.secret)}\n")

    def bind_keyfile(self, path: Path) -> Path:
        path.write_text(f'key "{self.fqdn}" {{\n  algorithm {self.algorithm};\n'
                        f'  secret "{self.secret}";\n}};\n')
        return path


# ---------------------------------------------------------------------------
# Zone text

def soa_rdata(zone: str, serial: int, refresh: int = 3600, retry: int = 1,
              expire: int = 86400, minimum: int = 60) -> str:
    return f"ns.{zone} hostmaster.{zone} {serial} {refresh} {retry} {expire} {minimum}"


def rpz_text(zone: str, serial: int, records: Iterable[str], *, refresh: int = 3600,
             retry: int = 1, expire: int = 86400, minimum: int = 60, ttl: int = 60) -> str:
    """A policy zone file: SOA (retry 1 s: the daemon's retry timer starts
    from it, clamped to retry-min), NS, then ``records``, each a line
    "OWNER TYPE RDATA" with OWNER relative to the zone."""
    lines = [f"$ORIGIN {zone}", f"$TTL {ttl}",
             f"@ SOA {soa_rdata(zone, serial, refresh, retry, expire, minimum)}",
             "@ NS localhost."]
    lines += list(records)
    return "\n".join(lines) + "\n"


def block(*names: str) -> list[str]:
    """RPZ NXDOMAIN rules (`NAME CNAME .`) for host names given relative to
    garden.example ("a" -> a.garden.example)."""
    return [f"{n}.garden.example CNAME ." for n in names]


def garden(name: str) -> str:
    """The query name of a rule made by block(name)."""
    return f"{name}.garden.example."


def rule_set(lines: Iterable[str], zone: str = ZONE) -> set[str]:
    """Records as comparable strings "owner. TYPE rdata" (absolute, lower-case),
    from relative zone-file lines "OWNER TYPE RDATA"."""
    out = set()
    for line in lines:
        owner, rtype, rdata = line.split(None, 2)
        owner = owner.lower()
        if not owner.endswith("."):
            owner = f"{owner}.{zone}"
        out.add(f"{owner} {rtype.upper()} {rdata.strip()}")
    return out


# ---------------------------------------------------------------------------
# Logs

class LogFile:
    """A process's log file, read incrementally: mark() then wait_for(regex,
    since=mark) waits for a line written after the mark."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def text(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        return len(self.text())

    def lines(self, since: int = 0) -> list[str]:
        return self.text()[since:].splitlines()

    def find(self, pattern: str, since: int = 0) -> list[re.Match]:
        rx = re.compile(pattern)
        return [m for m in (rx.search(line) for line in self.lines(since)) if m]

    def wait_for(self, pattern: str, timeout: float = 10.0, since: int = 0,
                 what: str | None = None, describe=None) -> re.Match:
        def found():
            hits = self.find(pattern, since)
            return hits[0] if hits else None
        return h.wait_until(found, timeout, what or f"/{pattern}/ in {self.path.name}",
                            interval=0.02,
                            on_timeout=describe or (lambda: self.tail()))

    def tail(self, n: int = 40, since: int = 0) -> str:
        return f"--- {self.path}:\n" + "\n".join(self.lines(since)[-n:])


# ---------------------------------------------------------------------------
# DNS helpers

def soa_serial(port: int, zone: str = ZONE, key: Key | None = None,
               timeout: float = 1.0) -> Optional[int]:
    """The SOA serial a server answers over UDP, or None (no answer, error)."""
    q = dns.message.make_query(zone, "SOA")
    if key:
        q.use_tsig(key.dns_key())
    try:
        r = dns.query.udp(q, LOOPBACK, timeout=timeout, port=port)
    except (dns.exception.DNSException, OSError, EOFError):
        return None
    if r.rcode() != dns.rcode.NOERROR:
        return None
    for rrset in r.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None


@dataclass
class Transfer:
    """What kdig received for an AXFR/IXFR: the records in order and the output."""
    ok: bool
    records: list[str]  # "owner. TTL TYPE rdata" in transfer order
    output: str

    def soa_serials(self) -> list[int]:
        return [int(r.split()[5]) for r in self.records if r.split()[2] == "SOA"]

    def content(self, zone: str = ZONE) -> set[str]:
        """The zone's non-apex records "owner. TYPE rdata" (AXFR form)."""
        out = set()
        for r in self.records:
            owner, _ttl, rtype, rdata = r.split(None, 3)
            if owner.lower() == zone.lower():
                continue
            out.add(f"{owner.lower()} {rtype} {rdata}")
        return out


def kdig_xfr(port: int, zone: str = ZONE, key: Key | None = None, ixfr_serial: int | None = None,
             timeout: float = 10.0, source: str = LOOPBACK) -> Transfer:
    """AXFR (or IXFR=serial) with kdig from ``source``."""
    argv: list[object] = [KDIG, f"@{LOOPBACK}", "-p", port, "-b", source, "+noall", "+answer",
                          f"+time={max(1, int(timeout))}", "+retry=0"]
    if key:
        argv += ["-y", key.kdig()]
    argv += [zone, f"IXFR={ixfr_serial}" if ixfr_serial is not None else "AXFR"]
    cp = h.run(argv, timeout=timeout + 5)
    records = []
    for line in cp.stdout.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        parts = line.split()
        if len(parts) < 4:
            continue
        # owner TTL CLASS TYPE RDATA...
        owner, ttl, _cls, rtype = parts[:4]
        rdata = " ".join(parts[4:])
        if rtype == "TSIG":
            continue
        records.append(f"{owner} {ttl} {rtype} {rdata}")
    output = h.describe_run(cp)
    ok = cp.returncode == 0 and "ERROR" not in cp.stdout + cp.stderr and bool(records)
    return Transfer(ok, records, output)


def raw_exchange_tcp(port: int, wire: bytes, timeout: float = 5.0, source: str = LOOPBACK,
                     max_messages: int = 1) -> list[bytes]:
    """Sends one length-prefixed request over TCP; returns the response
    messages (at most ``max_messages``) received before the server closes
    or ``timeout`` passes."""
    out: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.connect((LOOPBACK, port))
        s.sendall(len(wire).to_bytes(2, "big") + wire)
        buf = b""
        try:
            while len(out) < max_messages:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                    n = int.from_bytes(buf[:2], "big")
                    out.append(buf[2:2 + n])
                    buf = buf[2 + n:]
        except (socket.timeout, ConnectionResetError):
            pass
    return out[:max_messages]


def tcp_query(port: int, q: dns.message.Message, timeout: float = 5.0,
              source: str = LOOPBACK) -> dns.message.Message:
    """One TCP query; TSIG is NOT verified (the raw response is parsed
    without the keyring, so refusals carrying a TSIG error can be read)."""
    msgs = raw_exchange_tcp(port, q.to_wire(), timeout, source)
    if not msgs:
        raise EOFError("connection closed without an answer")
    return parse_unverified(msgs[0])


def udp_query(port: int, q: dns.message.Message, timeout: float = 3.0,
              source: str = LOOPBACK) -> dns.message.Message:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(q.to_wire(), (LOOPBACK, port))
        data, _ = s.recvfrom(65535)
    return parse_unverified(data)


def _skip_name(wire: bytes, i: int) -> int:
    while True:
        n = wire[i]
        if n & 0xC0 == 0xC0:
            return i + 2
        if n == 0:
            return i + 1
        i += 1 + n


def split_tsig(wire: bytes) -> tuple[bytes, Optional[int]]:
    """The message without its TSIG record (ARCOUNT fixed) and the TSIG
    error field (None when unsigned). Raises ValueError on malformed wire."""
    try:
        qd, an, ns, ar = (int.from_bytes(wire[4 + 2 * k:6 + 2 * k], "big") for k in range(4))
        i = 12
        for _ in range(qd):
            i = _skip_name(wire, i) + 4
        last_start, last_type = None, None
        for _ in range(an + ns + ar):
            start = i
            i = _skip_name(wire, i)
            rtype = int.from_bytes(wire[i:i + 2], "big")
            rdlen = int.from_bytes(wire[i + 8:i + 10], "big")
            rdata = i + 10
            i = rdata + rdlen
            last_start, last_type, last_rdata = start, rtype, rdata
        if ar == 0 or last_type != dns.rdatatype.TSIG:
            return wire, None
        j = _skip_name(wire, last_rdata) + 6 + 2           # algorithm, time, fudge
        mac_len = int.from_bytes(wire[j:j + 2], "big")
        j += 2 + mac_len + 2                                 # MAC, original id
        error = int.from_bytes(wire[j:j + 2], "big")
        stripped = bytearray(wire[:last_start])
        stripped[10:12] = (ar - 1).to_bytes(2, "big")
        return bytes(stripped), error
    except IndexError as e:
        raise ValueError(f"malformed message: {e}") from e


def parse_unverified(wire: bytes) -> dns.message.Message:
    """Parses a response without verifying its TSIG (a refusal carries a TSIG
    with an error and no valid MAC). The TSIG error, if signed, is in the
    attribute ``tsig_error_code`` (16 BADSIG, 17 BADKEY, 18 BADTIME, 0)."""
    stripped, error = split_tsig(wire)
    msg = dns.message.from_wire(stripped, ignore_trailing=True)
    msg.tsig_error_code = error
    return msg


def tsig_error(msg: dns.message.Message) -> Optional[int]:
    """The TSIG error of a message parsed by parse_unverified (None: unsigned)."""
    return getattr(msg, "tsig_error_code", None)


def make_xfr_query(zone: str, rdtype: str, key: Key | None = None,
                   ixfr_serial: int | None = None) -> dns.message.Message:
    q = dns.message.make_query(zone, rdtype)
    q.flags &= ~dns.flags.RD
    if ixfr_serial is not None:
        rrset = dns.rrset.from_text(zone, 0, "IN", "SOA", soa_rdata(zone, ixfr_serial))
        q.authority.append(rrset)
    if key:
        q.use_tsig(key.dns_key())
    return q


def send_notify(port: int, zone: str = ZONE, serial: int | None = None, key: Key | None = None,
                source: str = LOOPBACK, timeout: float = 2.0) -> Optional[dns.message.Message]:
    """Sends a NOTIFY (SOA) over UDP; returns the parsed reply or None on timeout."""
    q = dns.message.make_query(zone, "SOA")
    q.flags = dns.flags.AA  # (resets the opcode bits, so the opcode is set after)
    q.set_opcode(dns.opcode.NOTIFY)
    if serial is not None:
        q.answer.append(dns.rrset.from_text(zone, 60, "IN", "SOA", soa_rdata(zone, serial)))
    if key:
        q.use_tsig(key.dns_key())
    try:
        return udp_query(port, q, timeout, source)
    except (socket.timeout, OSError):
        return None


# ---------------------------------------------------------------------------
# Knot DNS

class Knot:
    """knotd in the foreground with its own knot.conf, as primary (zone file,
    journal, `zonefile-load: difference` so edits become IXFR differences)
    or as secondary (of ``primary`` = "ADDR@PORT")."""

    def __init__(self, workdir: Path, zone: str, key: Key | None, *,
                 role: str = "primary", records: Iterable[str] = (), serial: int = 1,
                 primary: str | None = None, primary_key: Key | None = None,
                 notify: Iterable[str] = (), transfer_acl: str = "127.0.0.0/8",
                 provide_ixfr: bool = True, address: str = LOOPBACK, soa_retry: int = 1):
        self.workdir = Path(workdir)
        self.zone = zone if zone.endswith(".") else zone + "."
        self.key = key
        self.role = role
        self.records = list(records)
        self.serial = serial
        self.primary = primary
        self.primary_key = primary_key if primary_key is not None else key
        self.notify = list(notify)
        self.transfer_acl = transfer_acl
        self.provide_ixfr = provide_ixfr
        self.address = address
        self.soa_retry = soa_retry
        self.port = 0
        self.process: Optional[h.Process] = None

    # files
    @property
    def conf(self) -> Path:
        return self.workdir / "knot.conf"

    @property
    def zonefile(self) -> Path:
        return self.workdir / f"{self.zone.rstrip('.')}.zone"

    @property
    def log(self) -> LogFile:
        return LogFile(self.workdir / "knotd.stderr")

    def endpoint(self) -> str:
        """"ADDR:PORT" for the daemon's config."""
        return f"{self.address}:{self.port}"

    def _write_conf(self) -> None:
        w = self.workdir
        keys = [k for k in {self.key, self.primary_key} if k is not None]
        lines = [
            "server:",
            f'    rundir: "{w}"',
            f'    pidfile: "{w}/knot.pid"',
            f"    listen: {self.address}@{self.port}",
            "    udp-workers: 1",
            "    tcp-workers: 2",
            "    background-workers: 1",
            "control:",
            f'    listen: "{w}/knot.sock"',
            "log:",
            "  - target: stderr",
            "    any: debug" if os.environ.get("DNSFW_KNOT_DEBUG") else "    any: info",
            "database:",
            f'    storage: "{w}/db"',
        ]
        if keys:
            lines.append("key:")
            for k in keys:
                lines += [f"  - id: {k.fqdn}", f"    algorithm: {k.algorithm}",
                          f"    secret: {k.secret}"]
        remotes = []
        if self.primary:
            remotes.append(("primary", self.primary, self.primary_key))
        for i, n in enumerate(self.notify):
            remotes.append((f"notify{i}", n, self.key))
        if remotes:
            lines.append("remote:")
            for rid, addr, k in remotes:
                lines += [f"  - id: {rid}", f"    address: {addr}", f"    via: {self.address}"]
                if k:
                    lines.append(f"    key: {k.fqdn}")
        lines += ["acl:", "  - id: transfer", f"    address: {self.transfer_acl}",
                  "    action: transfer"]
        if self.key:
            lines.append(f"    key: {self.key.fqdn}")
        lines += ["  - id: notify-in", "    address: 127.0.0.0/8", "    action: notify"]
        if self.primary_key:
            lines.append(f"    key: {self.primary_key.fqdn}")
        lines += [
            "template:",
            "  - id: default",
            f'    storage: "{w}"',
            '    file: "%s.zone"',
            "    journal-content: changes",
            "    zonefile-sync: -1",
            "    semantic-checks: off",
            "    refresh-min-interval: 2",
            "    retry-min-interval: 1",
            f"    provide-ixfr: {'on' if self.provide_ixfr else 'off'}",
        ]
        if self.role == "primary":
            lines.append("    zonefile-load: difference")
        else:
            lines.append("    zonefile-load: none")
        lines += ["zone:", f"  - domain: {self.zone}", "    acl: [transfer, notify-in]"]
        if self.primary:
            lines.append("    master: primary")
        if self.notify:
            lines.append(f"    notify: [{', '.join(f'notify{i}' for i in range(len(self.notify)))}]")
        self.conf.write_text("\n".join(lines) + "\n")

    def write_zone(self, records: Iterable[str] | None = None, serial: int | None = None) -> None:
        if records is not None:
            self.records = list(records)
        if serial is not None:
            self.serial = serial
        self.zonefile.write_text(rpz_text(self.zone, self.serial, self.records,
                                          retry=self.soa_retry))

    def start(self, timeout: float = 20.0) -> "Knot":
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "db").mkdir(exist_ok=True)
        if not self.port:
            self.port = h.free_port()
        if self.role == "primary":
            self.write_zone()
        self._write_conf()
        cp = h.run([KNOTC, "-c", self.conf, "conf-check"], timeout=20)
        if cp.returncode != 0:
            raise AssertionError("knot.conf rejected\n" + h.describe_run(cp)
                                 + "\n" + self.conf.read_text())
        self.process = h.Process("knotd", [KNOTD, "-c", self.conf], self.workdir)

        def ready():
            if not self.process.alive():
                raise AssertionError("knotd exited during start-up\n" + self.process.describe())
            if self.role == "primary":
                return soa_serial(self.port, self.zone, timeout=0.3) == self.serial
            return self.knotc("status").returncode == 0
        try:
            h.wait_until(ready, timeout, f"knotd ({self.role}) on port {self.port}",
                         on_timeout=self.process.describe)
        except BaseException:
            self.stop()
            raise
        return self

    def knotc(self, *args: object, timeout: float = 30.0) -> subprocess.CompletedProcess:
        return h.run([KNOTC, "-c", self.conf, "-t", "20", *args], timeout=timeout)

    def update(self, add: Iterable[str] = (), remove: Iterable[str] = (),
               serial: int | None = None, timeout: float = 10.0) -> int:
        """Edits the zone file (adds/removes record lines, serial+1 unless
        given), `knotc zone-reload` (blocking), waits until Knot serves the
        new serial. Returns the new serial."""
        assert self.role == "primary"
        remove = set(remove)
        records = [r for r in self.records if r not in remove] + list(add)
        self.write_zone(records, serial if serial is not None else self.serial + 1)
        cp = self.knotc("-b", "zone-reload", self.zone)
        assert cp.returncode == 0, h.describe_run(cp) + "\n" + self.log.tail()
        h.wait_until(lambda: soa_serial(self.port, self.zone, timeout=0.3) == self.serial,
                     timeout, f"Knot to serve serial {self.serial}", on_timeout=self.log.tail)
        return self.serial

    def purge_journal(self) -> None:
        """Drops Knot's journal (history) and keeps the zone: later IXFRs from
        serials before now get "incomplete history, fallback to AXFR"."""
        cp = self.knotc("-b", "-f", "zone-purge", self.zone, "+journal")
        assert cp.returncode == 0, h.describe_run(cp)

    def zone_serial(self) -> Optional[int]:
        """The serial of the loaded zone (secondary: None until transferred)."""
        cp = self.knotc("zone-status", self.zone)
        m = re.search(r"serial: (\d+)", cp.stdout)
        return int(m.group(1)) if m else None

    def content(self) -> set[str]:
        """Non-apex records of the zone as Knot holds it: "owner. TYPE rdata"."""
        cp = self.knotc("zone-read", self.zone)
        assert cp.returncode == 0, h.describe_run(cp)
        out = set()
        for line in cp.stdout.splitlines():
            # "[threat.rpz.] a.garden.example.threat.rpz. 60 CNAME ."
            line = re.sub(r"^\[[^\]]*\]\s*", "", line.strip())
            parts = line.split(None, 3)
            if len(parts) < 4:
                continue
            owner, _ttl, rtype, rdata = parts
            if owner.lower() == self.zone.lower():
                continue
            out.add(f"{owner.lower()} {rtype} {rdata}")
        return out

    def describe(self) -> str:
        return self.process.describe() if self.process else "(knotd not started)"

    def stop(self) -> None:
        if self.process:
            self.process.stop()


# ---------------------------------------------------------------------------
# dnsfw-xfrd

@dataclass
class XfrZone:
    """One [[zone]] table of the daemon's config (tools/xfrd/config.hpp)."""
    name: str = ZONE
    primaries: list[str] = field(default_factory=list)
    notify: list[str] = field(default_factory=list)
    allow_transfer: list[str] = field(default_factory=list)
    allow_notify: list[str] = field(default_factory=list)
    allow_update: list[str] = field(default_factory=list)
    journal_size: Optional[int] = None
    max_transfer_size: Optional[int] = None
    transfer_timeout: Optional[int] = None
    refresh_min: Optional[int] = None
    refresh_max: Optional[int] = None
    retry_min: Optional[int] = 1
    retry_max: Optional[int] = 8
    ixfr: Optional[bool] = None
    extra: dict = field(default_factory=dict)

    def toml(self) -> str:
        s = h.toml_string
        out = ["[[zone]]", f"name = {s(self.name)}"]

        def arr(key, items):
            if items:
                out.append(f"{key} = [{', '.join(s(i) for i in items)}]")
        arr("primaries", self.primaries)
        arr("notify", self.notify)
        arr("allow-transfer", self.allow_transfer)
        arr("allow-notify", self.allow_notify)
        arr("allow-update", self.allow_update)
        for key, value in (("journal-size", self.journal_size),
                           ("max-transfer-size", self.max_transfer_size),
                           ("transfer-timeout", self.transfer_timeout),
                           ("refresh-min", self.refresh_min), ("refresh-max", self.refresh_max),
                           ("retry-min", self.retry_min), ("retry-max", self.retry_max)):
            if value is not None:
                out.append(f"{key} = {int(value)}")
        if self.ixfr is not None:
            out.append(f"ixfr = {'true' if self.ixfr else 'false'}")
        for key, value in self.extra.items():
            out.append(f"{key} = {value}")
        return "\n".join(out) + "\n"


class Xfrd:
    """build/bin/dnsfw-xfrd --config WORKDIR/xfrd.toml in the foreground.

    ``wrapper`` is an argv prefix (e.g. nsenter into a mount namespace)."""

    def __init__(self, workdir: Path, store: Path, zones: list[XfrZone], keys: Iterable[Key] = (),
                 *, name: str = "xfrd", log_level: str = "debug", extra_toml: str = "",
                 wrapper: list[object] | None = None, address: str = LOOPBACK):
        self.workdir = Path(workdir)
        self.store = Path(store)
        self.zones = zones
        self.keys = list(keys)
        self.name = name
        self.log_level = log_level
        self.extra_toml = extra_toml
        self.wrapper = list(wrapper or [])
        self.address = address
        self.port = 0
        self.process: Optional[h.Process] = None
        self.runs = 0

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.toml"

    @property
    def control_path(self) -> Path:
        return self.workdir / f"{self.name}.sock"

    @property
    def log(self) -> LogFile:
        return LogFile(self.workdir / f"{self.name}.stderr")

    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = h.free_port()
        s = h.toml_string
        text = [f"store = {s(self.store)}", f"listen = [{s(self.endpoint())}]",
                f"control = {s(self.control_path)}", f"log-level = {s(self.log_level)}"]
        if self.extra_toml:
            text.append(self.extra_toml.rstrip("\n"))
        text.append("")
        for k in self.keys:
            text.append(k.toml())
        for z in self.zones:
            text.append(z.toml())
        self.config_path.write_text("\n".join(text))
        return self.config_path

    def check(self) -> subprocess.CompletedProcess:
        self.write_config()
        return h.run([XFRD_BIN, "--config", self.config_path, "--check"], timeout=30)

    def start(self, timeout: float = 15.0, wait_ready: bool = True) -> "Xfrd":
        self.write_config()
        # Keep the logs of earlier runs (a restart after SIGKILL): the new
        # run's output goes to a fresh file name, appended to the old text by log.
        if self.runs:
            old = self.log.path
            keep = self.workdir / f"{self.name}.run{self.runs}.stderr"
            if old.exists():
                old.rename(keep)
        self.runs += 1
        self.process = h.Process(self.name, [*self.wrapper, XFRD_BIN, "--config", self.config_path],
                                 self.workdir)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        def ready():
            if not self.process.alive():
                raise AssertionError("dnsfw-xfrd exited during start-up\n" + self.describe())
            return self.log.find(r"dnsfw-xfrd ready: listening on")
        h.wait_until(ready, timeout, "dnsfw-xfrd's 'ready' line", interval=0.02,
                     on_timeout=self.describe)

    def describe(self, tail: int = 80) -> str:
        if not self.process:
            return "(dnsfw-xfrd not started)"
        return self.process.describe(tail) + "\n--- config:\n" + (
            self.config_path.read_text() if self.config_path.exists() else "")

    def wait_log(self, pattern: str, since: int = 0, timeout: float = 10.0) -> re.Match:
        return self.log.wait_for(pattern, timeout, since, describe=self.describe)

    def control(self, command: str, timeout: float = 30.0) -> list[str]:
        """Writes one line to the control socket, returns the reply lines
        (the last is "ok" or "error: ...")."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.control_path))
            s.sendall(command.encode() + b"\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data.decode(errors="replace").splitlines()

    def kill(self) -> None:
        """SIGKILL, no clean-up by the daemon."""
        assert self.process
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait_exit(10)

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def alive(self) -> bool:
        return bool(self.process and self.process.alive())


# ---------------------------------------------------------------------------
# Store inspection through the CLI

def status(store: Path, wrapper: list[object] | None = None) -> dict[str, dict]:
    """`dnsfw status --store STORE --json` -> {zone name (lower, trailing dot): row}."""
    cp = h.run([*(wrapper or []), h.DNSFW_BIN, "status", "--store", store, "--json"], timeout=30)
    assert cp.returncode == 0, "dnsfw status failed\n" + h.describe_run(cp)
    try:
        doc = json.loads(cp.stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(f"dnsfw status --json printed no JSON ({e})\n" + h.describe_run(cp))
    rows = doc["zones"] if isinstance(doc, dict) else doc
    return {str(r["name"]).lower().rstrip(".") + ".": r for r in rows}


def zone_status(store: Path, zone: str = ZONE, wrapper: list[object] | None = None) -> dict:
    rows = status(store, wrapper)
    key = zone.lower().rstrip(".") + "."
    assert key in rows, f"dnsfw status shows no zone {zone}: {sorted(rows)}"
    return rows[key]


def transfers(row: dict) -> tuple[int, int, int]:
    t = row.get("transfers") or {}
    return int(t.get("full", 0)), int(t.get("incremental", 0)), int(t.get("failed", 0))


def stored_zone(store: Path, zone: str = ZONE) -> Optional[dict]:
    """The `dnsfw zone list --json` entry of ``zone`` (serial, rules), or None
    (no store yet, or no such zone)."""
    if not (Path(store) / "data.mdb").exists():
        return None
    cp = h.dnsfw("zone", "list", "--store", store, "--json", timeout=30)
    if cp.returncode != 0:
        return None
    for z in json.loads(cp.stdout):
        if str(z["name"]).lower().rstrip(".") == zone.lower().rstrip("."):
            return z
    return None


def stored_serial(store: Path, zone: str = ZONE) -> Optional[int]:
    z = stored_zone(store, zone)
    return int(z["serial"]) if z else None


def wait_stored_serial(store: Path, serial: int, zone: str = ZONE, timeout: float = 10.0,
                       describe=None) -> None:
    h.wait_until(lambda: stored_serial(store, zone) == serial, timeout,
                 f"zone {zone} at serial {serial} in store {store}",
                 on_timeout=lambda: f"stored: {stored_zone(store, zone)}\n"
                 + (describe() if describe else ""))


def lookup(store: Path, names: Iterable[str], zone: str = ZONE) -> dict[str, str]:
    """`dnsfw lookup` for many names: {name (lower, trailing dot): decision text}."""
    names = list(names)
    out: dict[str, str] = {}
    for i in range(0, len(names), 2000):
        cp = h.dnsfw("lookup", "--store", store, "--zones", zone, *names[i:i + 2000], timeout=120)
        assert cp.returncode == 0, h.describe_run(cp)
        for line in cp.stdout.splitlines():
            m = re.match(r"^(\S+): (.*)$", line)
            if m:
                out[m.group(1).lower()] = m.group(2)
    return out


def blocked_names(store: Path, names: Iterable[str], zone: str = ZONE) -> set[str]:
    """The subset of ``names`` the store decides NXDOMAIN for."""
    return {n for n, d in lookup(store, names, zone).items() if d.startswith("nxdomain")}


# ---------------------------------------------------------------------------
# nsupdate

def nsupdate(port: int, commands: Iterable[str], key: Key | None, workdir: Path,
             zone: str = ZONE, tcp: bool = False, timeout: float = 20.0
             ) -> subprocess.CompletedProcess:
    """Runs bind9's nsupdate with a TSIG key file against 127.0.0.1@port.
    ``commands`` are update lines ("update add NAME TTL TYPE RDATA")."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = [f"server {LOOPBACK} {port}", f"zone {zone}", *commands, "send", "answer"]
    script_path = workdir / f"nsupdate.{time.monotonic_ns()}.txt"
    script_path.write_text("\n".join(script) + "\n")
    argv: list[object] = [NSUPDATE, "-t", "5"]
    if tcp:
        argv.append("-v")
    if key:
        argv += ["-k", key.bind_keyfile(workdir / f"{key.name}.{time.monotonic_ns()}.key")]
    argv.append(script_path)
    return h.run(argv, timeout=timeout)


# ---------------------------------------------------------------------------
# Query load against the resolver

class QueryLoad:
    """Background clients querying a resolver in a loop over UDP, counting
    every answer by outcome. A query without an answer within ``timeout``
    counts as lost."""

    def __init__(self, port: int, names: list[str], threads: int = 2, timeout: float = 2.0):
        self.port = port
        self.names = names
        self.threads = threads
        self.timeout = timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.sent = 0
        self.lost: list[str] = []
        self.servfail: list[str] = []
        self.other_errors: list[str] = []
        self.by_name: dict[str, dict[str, int]] = {}
        self._workers: list[threading.Thread] = []

    def _run(self, offset: int) -> None:
        i = offset
        while not self._stop.is_set():
            name = self.names[i % len(self.names)]
            i += 1
            try:
                r = h.query(self.port, name, "A", "udp", timeout=self.timeout)
                outcome = r.rcode_text()
            except dns.exception.Timeout:
                outcome = "LOST"
            except (OSError, EOFError, dns.exception.DNSException) as e:
                outcome = f"ERROR {type(e).__name__}: {e}"
            with self._lock:
                self.sent += 1
                self.by_name.setdefault(name, {}).setdefault(outcome, 0)
                self.by_name[name][outcome] += 1
                if outcome == "LOST":
                    self.lost.append(name)
                elif outcome == "SERVFAIL":
                    self.servfail.append(name)
                elif outcome.startswith("ERROR"):
                    self.other_errors.append(f"{name}: {outcome}")

    def __enter__(self) -> "QueryLoad":
        for t in range(self.threads):
            w = threading.Thread(target=self._run, args=(t,), daemon=True)
            w.start()
            self._workers.append(w)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(timeout=self.timeout + 5)

    def summary(self) -> str:
        return (f"sent {self.sent}, lost {len(self.lost)}, SERVFAIL {len(self.servfail)}, "
                f"errors {self.other_errors[:5]}, by name {self.by_name}")


def is_blocked(reply: h.Reply) -> bool:
    """NXDOMAIN with an EDE 15 (Blocked): the policy fired."""
    return reply.rcode == dns.rcode.NXDOMAIN and any(o.code == 15 for o in reply.ede())


def is_upstream(reply: h.Reply) -> bool:
    """The wildcard upstream answer: the policy did not fire."""
    return (reply.rcode == dns.rcode.NOERROR
            and any(UPSTREAM_A in a for a in reply.answer_set()) and not reply.ede())


# ---------------------------------------------------------------------------
# Backoff

def announced_retries(log: LogFile, since: int = 0, zone: str = ZONE) -> list[float]:
    """The delays the daemon announced in its failure lines
    ("error zone Z: ...; retry in N s"), in order."""
    rx = rf"error zone {re.escape(zone)}: .*retry in (\d+(?:\.\d+)?) s"
    return [float(m.group(1)) for m in log.find(rx, since)]


def assert_backs_off(times: list[float], delays: list[float], what: str,
                     retry_min: float = 1.0, retry_max: float = 8.0) -> None:
    """Retry back-off after consecutive failures: the announced delays
    (``delays``, from announced_retries) start at retry-min and double up to
    retry-max, and the primary saw each next attempt (``times``: monotonic
    times of consecutive attempts, the first being the one that failed
    first) no sooner than announced."""
    shown = f"{what}: attempts at {[round(t - times[0], 2) for t in times]} s, announced {delays}"
    assert len(times) >= 3 and len(delays) >= 2, shown
    assert retry_min <= delays[0] <= 2 * retry_min, shown
    for a, b in zip(delays, delays[1:]):
        assert b >= min(1.5 * a, retry_max) and b <= retry_max, "no back-off: " + shown
    gaps = [b - a for a, b in zip(times, times[1:])]
    for gap, delay in zip(gaps, delays):
        assert gap >= 0.8 * delay, "retried sooner than announced: " + shown


# ---------------------------------------------------------------------------
# A private mount namespace holding a small tmpfs (full-disk test)

class TmpfsNamespace:
    """A process that sits in its own mount namespace (``unshare -m``, mounts
    private) where a tmpfs of ``size`` is mounted on ``mountpoint``. Other
    programs join it with ``wrapper()`` (nsenter). The host never sees the
    mount; it disappears with the holder process."""

    def __init__(self, workdir: Path, mountpoint: Path, size: str):
        self.workdir = Path(workdir)
        self.mountpoint = Path(mountpoint)
        self.size = size
        self.process: Optional[h.Process] = None

    def start(self, timeout: float = 10.0) -> "TmpfsNamespace":
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        ready = self.workdir / "tmpfs.ready"
        script = (f"mount -t tmpfs -o size={self.size} dnsfw-test {self.mountpoint} "
                  f"&& touch {ready} && exec sleep 100000")
        self.process = h.Process("tmpfs-ns", [UNSHARE, "-m", "--propagation", "private",
                                              "sh", "-c", script], self.workdir)
        h.wait_until(lambda: ready.exists() or not self.process.alive(), timeout,
                     "the tmpfs mount namespace")
        if not ready.exists():
            raise RuntimeError("cannot mount a tmpfs in a private mount namespace\n"
                               + self.process.describe())
        return self

    def wrapper(self) -> list[object]:
        return [NSENTER, "-t", self.process.pid, "-m", "--"]

    def df(self) -> str:
        return h.run([*self.wrapper(), "df", "-k", self.mountpoint]).stdout

    def stop(self) -> None:
        if self.process:
            self.process.stop()
