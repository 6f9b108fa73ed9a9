"""Answers rewritten on moddone are never served from Unbound's message cache,
not even to a client whose query reaches another worker thread while the
rewriting thread is still finishing (module/README.md, "Unbound's cache").

The race: the iterator used to store the upstream answer in the message
cache before the module's moddone removed it again; in that window a second
worker thread could answer an identical query from the cache without running
any module. With `num-threads: 2` (dnsfw resolver's default) and several
concurrent clients asking the same policed names, some answers came back
unrewritten (query time 0 ms: cache hits).

Here several client threads ask, concurrently and over UDP, for:

* ``changing.race.example. A`` (192.0.2.92): a Response-IP rule rewrites it
  to NXDOMAIN on moddone;
* ``alias.race.example. A`` (CNAME to ``target.race.example.``, 192.0.2.93):
  a QNAME rule on the CNAME target rewrites it to NXDOMAIN on moddone;
* ``clean.race.example. A`` (192.0.2.94): no rule matches; must keep being
  answered (and be served from the cache, which is checked via the
  resolver's upstream-free repeat).

Every answer for the policed names must be the policy answer: zero leaked
upstream answers over the whole run.
"""
from __future__ import annotations

import socket
import threading
import time

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

import dnsfw_harness as h

UPSTREAM_ZONE = """$ORIGIN example.
$TTL 60
@ SOA ns.example. hostmaster.example. 1 3600 900 604800 60
@ NS ns.example.
ns A 127.0.0.1
ready A 192.0.2.1
changing.race A 192.0.2.92
alias.race CNAME target.race.example.
target.race A 192.0.2.93
clean.race A 192.0.2.94
"""

RULES = """$ORIGIN race.rpz.
$TTL 60
@ SOA ns.race.rpz. hostmaster.race.rpz. 1 3600 900 604800 60
@ NS ns.race.rpz.
32.92.2.0.192.rpz-ip CNAME .
target.race.example CNAME .
"""

POLICED = {"changing.race.example.": "192.0.2.92", "alias.race.example.": "192.0.2.93"}
CLEAN = "clean.race.example."

CLIENT_THREADS = 6
QUERIES_PER_THREAD = 1500  # 9000 queries in all, about 10-20 s


@pytest.fixture(scope="module")
def race_resolver(tmp_path_factory):
    h.require(h.NSD_BIN, h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    work = tmp_path_factory.mktemp("race")
    zone = work / "example.zone"
    zone.write_text(UPSTREAM_ZONE)
    nsd = h.Nsd(work / "nsd", {"example.": zone}).start()
    try:
        store = work / "store"
        rules = work / "race.rpz"
        rules.write_text(RULES)
        cp = h.zone_load(store, "race.rpz", rules)
        assert cp.returncode == 0, h.describe_run(cp)
        r = h.Resolver(store=store, forward_port=nsd.port, workdir=work / "resolver",
                       zones=["race.rpz"])
        r.start()
        try:
            conf = (work / "resolver" / "run" / "unbound.conf")
            if conf.exists():
                assert "num-threads: 2" in conf.read_text(), conf.read_text()
            yield r
        finally:
            r.stop()
    finally:
        nsd.stop()


def _client(port: int, names: list[str], count: int, leaks: list, errors: list,
            counts: dict, lock: threading.Lock, start: threading.Event) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((h.LOOPBACK, 0))
    sock.settimeout(3.0)
    local = {"answered": 0, "timeouts": 0}
    start.wait()
    try:
        for i in range(count):
            name = names[i % len(names)]
            q = h.make_query(name, "A")
            try:
                sock.sendto(q.to_wire(), (h.LOOPBACK, port))
                while True:
                    wire, _ = sock.recvfrom(65535)
                    r = dns.message.from_wire(wire)
                    if r.id == q.id:
                        break
            except socket.timeout:
                local["timeouts"] += 1
                continue
            local["answered"] += 1
            addrs = {rd.to_text() for rrset in r.answer if rrset.rdtype == dns.rdatatype.A
                     for rd in rrset}
            if name in POLICED:
                if POLICED[name] in addrs or r.rcode() == dns.rcode.NOERROR:
                    leaks.append(f"{name}: {dns.rcode.to_text(r.rcode())} {sorted(addrs)}")
                elif r.rcode() != dns.rcode.NXDOMAIN:
                    # NSD's response rate limiting (on by default) makes some
                    # upstream queries time out: SERVFAIL, not a leak.
                    local["upstream_errors"] = local.get("upstream_errors", 0) + 1
            elif name == CLEAN and (r.rcode() != dns.rcode.NOERROR or "192.0.2.94" not in addrs):
                errors.append(f"{name}: {dns.rcode.to_text(r.rcode())} {sorted(addrs)}")
    finally:
        sock.close()
        with lock:
            for k, v in local.items():
                counts[k] = counts.get(k, 0) + v


def test_rewritten_answers_never_served_from_cache_under_concurrency(race_resolver):
    port = race_resolver.port
    # Sanity: both policed names are rewritten, the clean one is not.
    for name in POLICED:
        assert race_resolver.query(name).rcode == dns.rcode.NXDOMAIN
    clean = race_resolver.query(CLEAN)
    assert clean.rcode == dns.rcode.NOERROR and f"{CLEAN} A 192.0.2.94" in clean.answer_set()

    names = list(POLICED) + [CLEAN]
    leaks: list[str] = []
    errors: list[str] = []
    counts: dict = {}
    lock = threading.Lock()
    start = threading.Event()
    threads = [threading.Thread(target=_client,
                                args=(port, names[i % 3:] + names[:i % 3], QUERIES_PER_THREAD,
                                      leaks, errors, counts, lock, start))
               for i in range(CLIENT_THREADS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    start.set()
    for t in threads:
        t.join(timeout=300)
    elapsed = time.monotonic() - t0
    assert not any(t.is_alive() for t in threads), "client threads did not finish"
    total = CLIENT_THREADS * QUERIES_PER_THREAD
    summary = (f"{counts.get('answered', 0)} of {total} answered "
               f"({counts.get('timeouts', 0)} timeouts, {counts.get('upstream_errors', 0)} "
               f"SERVFAIL) in {elapsed:.1f} s")
    assert not leaks, (f"{len(leaks)} unrewritten answers served ({summary}); first: "
                       + "; ".join(leaks[:5]))
    assert not errors, f"{len(errors)} wrong answers for {CLEAN} ({summary}): {errors[:5]}"
    assert counts.get("upstream_errors", 0) <= total * 0.01, summary
    # Nearly everything must have been answered (a few UDP losses are tolerable).
    assert counts.get("answered", 0) >= total * 0.99, summary
