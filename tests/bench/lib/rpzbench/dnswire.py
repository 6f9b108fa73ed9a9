"""Minimal DNS over UDP for probes: one A query, rcode and answer count back.

No dependency on dnspython, so a probe costs microseconds and the start-up
poll can ask every few milliseconds."""
from __future__ import annotations

import random
import select
import socket
import struct
import time

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def wire_query(qid: int, name: str, qtype: int = 1) -> bytes:
    """An RD=1 query for NAME/QTYPE/IN with an EDNS0 OPT record (1232 bytes)."""
    out = bytearray(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1))
    for label in name.rstrip(".").split("."):
        if label:
            out.append(len(label))
            out += label.encode("ascii")
    out += b"\x00" + struct.pack(">HH", qtype, 1)
    out += b"\x00" + struct.pack(">HHIH", 41, 1232, 0, 0)
    return bytes(out)


class Prober:
    """A UDP socket on loopback asking one server."""

    def __init__(self, port: int, addr: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.dest = (addr, port)
        self.rng = random.Random()

    def close(self) -> None:
        self.sock.close()

    def ask(self, name: str, timeout: float = 1.0, qtype: int = 1) -> tuple[str, int] | None:
        """(rcode name, ANCOUNT) of the reply to a fresh query, or None
        (no reply within timeout, or ICMP port unreachable)."""
        qid = self.rng.randrange(65536)
        try:
            self.sock.sendto(wire_query(qid, name, qtype), self.dest)
        except OSError:
            return None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            try:
                data, _ = self.sock.recvfrom(65535)
            except OSError:  # ECONNREFUSED: nobody listens yet
                return None
            if len(data) >= 12 and struct.unpack_from(">H", data, 0)[0] == qid:
                return RCODES.get(data[3] & 0x0F, str(data[3] & 0x0F)), \
                    struct.unpack_from(">H", data, 6)[0]
