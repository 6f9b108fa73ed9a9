"""A small scriptable primary server for the fault tests of dnsfw-xfrd.

It serves one zone over UDP and TCP on 127.0.0.1 (SOA queries, AXFR, IXFR
from the versions it has kept) and can be told to misbehave: refuse IXFR,
cut a transfer after N messages, send a malformed message, announce one
serial and transfer another, or stream slowly so a test can kill the
client mid-transfer. Every request is recorded (time, transport, type,
serial asked), so tests can see what the daemon asked and when (retry
back-off).

Only for faults: everything a well-behaved primary does is tested against
real Knot DNS (xfr_harness.Knot).
"""
from __future__ import annotations

import socket
import struct
import json
import threading
import time
from dataclasses import dataclass
from typing import Optional

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset

import dnsfw_harness as h
import xfr_harness as x
from xfr_harness import LOOPBACK, soa_rdata


@dataclass
class Request:
    time: float            # time.monotonic()
    transport: str         # "udp" | "tcp"
    qtype: str             # "SOA", "AXFR", "IXFR", ...
    opcode: str            # "QUERY", "NOTIFY", ...
    serial: Optional[int]  # IXFR: the client's serial (authority SOA)
    peer: tuple


@dataclass
class Fault:
    """How the next transfer responses go wrong.

    kind:
      "cut"       send the first ``at`` messages, then close the connection
      "garbage"   message number ``at`` (0-based) is replaced by junk bytes
      "truncated" message number ``at`` is cut short (length prefix matches)
      "badname"   message number ``at`` has a compression-pointer loop
      "refused"   the transfer gets REFUSED (no data)
      "notimp"    IXFR gets NOTIMP (AXFR still served)
      "ixfr-refused" IXFR gets REFUSED (AXFR still served)
    times: how many transfers it applies to (None: every one).
    """
    kind: str
    at: int = 1
    times: Optional[int] = None
    applies_to: tuple = ("AXFR", "IXFR")


class FakePrimary:
    """See the module docstring. ``versions[serial]`` = list of record lines
    "OWNER TYPE RDATA" (owner relative to the zone)."""

    def __init__(self, zone: str, records_per_message: int = 50):
        self.zone = zone if zone.endswith(".") else zone + "."
        self.origin = dns.name.from_text(self.zone)
        self.versions: dict[int, list[str]] = {}
        self.serial: Optional[int] = None
        self.soa_serial_override: Optional[int] = None  # SOA answers say this serial
        self.records_per_message = records_per_message
        self.faults: list[Fault] = []
        self.pace: float = 0.0                  # seconds between transfer messages
        self.pace_event_after: Optional[int] = None
        self.paced_sent = threading.Event()     # set once pace_event_after messages are sent
        self.requests: list[Request] = []
        self.transfers_completed = 0
        self.lock = threading.Lock()
        self.port = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._udp: Optional[socket.socket] = None
        self._tcp: Optional[socket.socket] = None
        self.retry = 1        # SOA retry (the daemon's retry timer starts from it)
        self.expire = 86400   # SOA expire

    # -- content -----------------------------------------------------------

    def publish(self, serial: int, records: list[str]) -> None:
        """Adds version ``serial`` and makes it current."""
        with self.lock:
            self.versions[serial] = list(records)
            self.serial = serial

    def soa_rrset(self, serial: int) -> dns.rrset.RRset:
        return dns.rrset.from_text(self.zone, 60, "IN", "SOA",
                                   soa_rdata(self.zone, serial, retry=self.retry,
                                             expire=self.expire))

    def _rr(self, line: str) -> dns.rrset.RRset:
        owner, rtype, rdata = line.split(None, 2)
        name = owner if owner.endswith(".") else f"{owner}.{self.zone}"
        return dns.rrset.from_text(name, 60, "IN", rtype, rdata)

    def _axfr_rrs(self, serial: int) -> list[dns.rrset.RRset]:
        records = self.versions[serial]
        return ([self.soa_rrset(serial), dns.rrset.from_text(self.zone, 60, "IN", "NS", "localhost.")]
                + [self._rr(r) for r in records] + [self.soa_rrset(serial)])

    def _ixfr_rrs(self, old: int, new: int) -> list[dns.rrset.RRset]:
        before, after = set(self.versions[old]), set(self.versions[new])
        removed = [r for r in self.versions[old] if r not in after]
        added = [r for r in self.versions[new] if r not in before]
        return ([self.soa_rrset(new), self.soa_rrset(old)] + [self._rr(r) for r in removed]
                + [self.soa_rrset(new)] + [self._rr(r) for r in added] + [self.soa_rrset(new)])

    # -- server ------------------------------------------------------------

    def start(self) -> "FakePrimary":
        self.port = h.free_port()
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((LOOPBACK, self.port))
        self._udp.settimeout(0.2)
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((LOOPBACK, self.port))
        self._tcp.listen(16)
        self._tcp.settimeout(0.2)
        for target in (self._udp_loop, self._tcp_loop):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        for s in (self._udp, self._tcp):
            if s:
                s.close()

    def endpoint(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _record(self, q: dns.message.Message, transport: str, peer) -> Request:
        qtype = dns.rdatatype.to_text(q.question[0].rdtype) if q.question else "-"
        serial = None
        if q.question and q.question[0].rdtype == dns.rdatatype.IXFR:
            for rrset in q.authority:
                if rrset.rdtype == dns.rdatatype.SOA:
                    serial = int(rrset[0].serial)
        req = Request(time.monotonic(), transport, qtype, dns.opcode.to_text(q.opcode()),
                      serial, peer)
        with self.lock:
            self.requests.append(req)
        return req

    def requests_of(self, *qtypes: str, since: float = 0.0) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.qtype in qtypes and r.time >= since
                    and r.opcode == "QUERY"]

    def _udp_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._udp.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                q = dns.message.from_wire(data)
            except Exception:
                continue
            if q.flags & dns.flags.QR:
                continue  # a NOTIFY acknowledgement sent to this socket
            self._record(q, "udp", peer)
            r = self._answer_simple(q)
            if r is not None:
                self._udp.sendto(r.to_wire(), peer)

    def _answer_simple(self, q: dns.message.Message) -> Optional[dns.message.Message]:
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        if q.opcode() != dns.opcode.QUERY or not q.question:
            r.set_rcode(dns.rcode.NOTIMP)
            return r
        qd = q.question[0]
        if qd.name != self.origin:
            r.set_rcode(dns.rcode.REFUSED)
            return r
        if qd.rdtype == dns.rdatatype.SOA:
            with self.lock:
                serial = self.soa_serial_override or self.serial
            r.answer.append(self.soa_rrset(serial))
            return r
        if qd.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            # over UDP: just the SOA (RFC 1995 4: "too large" -> try TCP)
            with self.lock:
                r.answer.append(self.soa_rrset(self.serial))
            return r
        r.set_rcode(dns.rcode.NOERROR)
        return r

    def _tcp_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve_tcp, args=(conn, peer), daemon=True)
            t.start()

    @staticmethod
    def _recv_exact(conn: socket.socket, n: int) -> Optional[bytes]:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def _serve_tcp(self, conn: socket.socket, peer) -> None:
        conn.settimeout(30)
        try:
            while not self._stop.is_set():
                head = self._recv_exact(conn, 2)
                if head is None:
                    return
                data = self._recv_exact(conn, struct.unpack("!H", head)[0])
                if data is None:
                    return
                q = dns.message.from_wire(data)
                req = self._record(q, "tcp", peer)
                if req.qtype in ("AXFR", "IXFR"):
                    if not self._transfer(conn, q, req):
                        return  # connection closed by a fault
                else:
                    r = self._answer_simple(q)
                    if r is not None:
                        self._send(conn, r.to_wire())
        except (OSError, EOFError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _send(conn: socket.socket, wire: bytes) -> None:
        conn.sendall(struct.pack("!H", len(wire)) + wire)

    def _take_fault(self, qtype: str) -> Optional[Fault]:
        with self.lock:
            for f in self.faults:
                if qtype in f.applies_to and (f.times is None or f.times > 0):
                    if f.kind == "notimp" and qtype != "IXFR":
                        continue
                    if f.kind == "ixfr-refused" and qtype != "IXFR":
                        continue
                    if f.times is not None:
                        f.times -= 1
                    return f
        return None

    def _messages(self, q: dns.message.Message, rrsets: list[dns.rrset.RRset]) -> list[bytes]:
        out = []
        per = max(1, self.records_per_message)
        for i in range(0, len(rrsets), per):
            m = dns.message.Message(id=q.id)
            m.flags = dns.flags.QR | dns.flags.AA
            if i == 0:
                m.question = list(q.question)
            for rrset in rrsets[i:i + per]:
                m.answer.append(rrset)
            out.append(m.to_wire(max_size=65535))
        return out

    def _transfer(self, conn: socket.socket, q: dns.message.Message, req: Request) -> bool:
        fault = self._take_fault(req.qtype)
        if fault and (fault.kind == "refused" or fault.kind in ("notimp", "ixfr-refused")):
            r = dns.message.make_response(q)
            r.set_rcode(dns.rcode.NOTIMP if fault.kind == "notimp" else dns.rcode.REFUSED)
            self._send(conn, r.to_wire())
            return True
        with self.lock:
            current = self.serial
            if req.qtype == "IXFR" and req.serial is not None and req.serial == current:
                rrsets = [self.soa_rrset(current)]
            elif (req.qtype == "IXFR" and req.serial is not None and req.serial in self.versions):
                rrsets = self._ixfr_rrs(req.serial, current)
            else:
                rrsets = self._axfr_rrs(current)
        msgs = self._messages(q, rrsets)
        for k, wire in enumerate(msgs):
            if fault and fault.kind == "cut" and k == fault.at:
                conn.shutdown(socket.SHUT_RDWR)
                return False
            if fault and k == fault.at:
                wire = corrupt(wire, fault.kind)
            if self.pace and k > 0:
                time.sleep(self.pace)  # pacing the stream (the test kills the client meanwhile)
            try:
                self._send(conn, wire)
            except OSError:
                return False
            if self.pace_event_after is not None and k + 1 >= self.pace_event_after:
                self.paced_sent.set()
        with self.lock:
            self.transfers_completed += 1
        return True

    def notify(self, target_port: int, serial: Optional[int] = None) -> None:
        """Sends one NOTIFY for the zone to 127.0.0.1:target_port (no wait for the ack)."""
        q = dns.message.make_query(self.zone, "SOA")
        q.flags = dns.flags.AA  # (resets the opcode bits, so the opcode is set after)
        q.set_opcode(dns.opcode.NOTIFY)
        q.answer.append(self.soa_rrset(serial if serial is not None else self.serial))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LOOPBACK, 0))
            s.sendto(q.to_wire(), (LOOPBACK, target_port))
            s.settimeout(2)
            try:
                s.recvfrom(65535)
            except socket.timeout:
                pass


def corrupt(wire: bytes, kind: str) -> bytes:
    """A malformed variant of response message ``wire``."""
    if kind == "garbage":
        # a plausible header (same id, QR, ANCOUNT 3) followed by junk
        return wire[:2] + b"\x84\x00\x00\x00\x00\x03\x00\x00\x00\x00" + bytes(range(7, 7 + 60))
    if kind == "truncated":
        return wire[:max(14, len(wire) // 2)]
    if kind == "badname":
        # ANCOUNT 1, one RR whose owner is a compression pointer to itself
        return wire[:2] + b"\x84\x00\x00\x00\x00\x01\x00\x00\x00\x00" + b"\xc0\x0c" + b"\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x01\x00"
    raise ValueError(kind)


class Secondary:
    """A fake primary publishing ``records`` at serial ``serial`` and a
    dnsfw-xfrd with its own store that is its secondary (``start()`` waits
    for the first transfer)."""

    def __init__(self, tmp_path, records: list[str], *, serial: int = 10,
                 zone_args: dict | None = None, extra_toml: str = "", wrapper=None,
                 store=None, records_per_message: int = 20):
        self.fake = FakePrimary(x.ZONE, records_per_message=records_per_message).start()
        self.fake.publish(serial, records)
        self.first_serial = serial
        self.wrapper = wrapper
        self.xfrd = x.Xfrd(tmp_path / "xfrd", store or tmp_path / "store",
                           [x.XfrZone(primaries=[self.fake.endpoint()], **(zone_args or {}))],
                           extra_toml=extra_toml, wrapper=wrapper)

    @property
    def store(self):
        return self.xfrd.store

    def start(self) -> "Secondary":
        self.xfrd.start()
        self.wait_serial(self.first_serial)
        return self

    def stored(self) -> dict | None:
        if self.wrapper:
            cp = h.run([*self.wrapper, h.DNSFW_BIN, "zone", "list", "--store", self.store, "--json"])
            if cp.returncode != 0:
                return None
            zones = [z for z in json.loads(cp.stdout) if z["name"].rstrip(".") == x.ZONE.rstrip(".")]
            return zones[0] if zones else None
        return x.stored_zone(self.store)

    def wait_serial(self, serial: int, timeout: float = 10.0) -> None:
        h.wait_until(lambda: (self.stored() or {}).get("serial") == serial, timeout,
                     f"stored serial {serial}", on_timeout=self.describe)

    def status(self) -> dict:
        return x.zone_status(self.store, wrapper=self.wrapper)

    def describe(self) -> str:
        return self.xfrd.describe(60)

    def stop(self) -> None:
        self.xfrd.stop()
        self.fake.stop()
