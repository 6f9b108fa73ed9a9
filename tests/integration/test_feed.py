"""The real bundled feed: data/feeds/hagezi-tif.normal.2023-09-19.rpz
(58,004 domains, each as `name CNAME .` + `*.name CNAME .`).

Listed names and their subdomains get NXDOMAIN; names next to them that are
not listed (parent, sibling, same string suffix without a label boundary)
pass to the mock upstream (tests/data/integration/upstream/{ac,com,zw}.zone,
which also holds the listed names, so a rule that does not fire is visible).
"""
from __future__ import annotations

import re
import time

import dns.edns
import dns.rcode
import pytest

import dnsfw_harness as h
from dnsfw_harness import require

ZONE = "hagezi-tif.rpz"


def feed_owners() -> list[str]:
    owners = []
    for line in h.FEED.read_text().splitlines():
        m = re.match(r"^(\S+)\s+CNAME\s+\.\s*$", line)
        if m:
            owners.append(m.group(1).lower())
    return owners


@pytest.fixture(scope="module")
def feed_store(tmp_path_factory):
    require(h.DNSFW_BIN)
    if not h.FEED.is_file():
        pytest.skip(f"{h.FEED} is not in the repository yet")
    store = tmp_path_factory.mktemp("feed") / "store.lmdb"
    t0 = time.monotonic()
    cp = h.zone_load(store, ZONE, h.FEED)
    elapsed = time.monotonic() - t0
    return store, cp, elapsed


@pytest.fixture(scope="module")
def feed_resolver(feed_store, nsd, tmp_path_factory):
    require(h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    store, cp, _ = feed_store
    assert cp.returncode == 0, h.describe_run(cp)
    r = h.Resolver(store=store, forward_port=nsd.port,
                   workdir=tmp_path_factory.mktemp("feed-resolver"), zones=[ZONE]).start()
    try:
        yield r
    finally:
        r.stop()


def test_feed_loads_every_rule(feed_store):
    _, cp, elapsed = feed_store
    assert cp.returncode == 0, h.describe_run(cp)
    assert " error:" not in cp.stderr, h.describe_run(cp)
    m = re.search(r"zone (\S+): (\d+) rules? loaded", cp.stdout + cp.stderr)
    assert m, h.describe_run(cp)
    assert int(m.group(2)) == len(set(feed_owners())) == 116008, m.group(0)
    assert elapsed < 60, f"loading 116k rules took {elapsed:.1f}s"


LISTED = [
    "cdn.ofo.ac.",                # first entry of the feed
    "x.cdn.ofo.ac.",              # subdomain (via *.cdn.ofo.ac)
    "a.b.cdn.ofo.ac.",
    "CDN.Ofo.AC.",                # case
    "ikejd.com.",
    "www.ikejd.com.",
    "wireless4sdg.org.zw.",       # last entry of the feed
    "mail.wireless4sdg.org.zw.",
]
NOT_LISTED = {
    "ofo.ac.": "198.51.100.103",           # parent of a listed name
    "www.ofo.ac.": "198.51.100.104",       # sibling of a listed name
    "xikejd.com.": "198.51.100.113",       # string suffix, not a subdomain
    "www.xikejd.com.": "198.51.100.114",
    "org.zw.": "198.51.100.123",
    "www.org.zw.": "198.51.100.124",
    "www.udp.example.": "198.51.100.1",
}


@pytest.mark.parametrize("transport", ("udp", "tcp"))
@pytest.mark.parametrize("qname", LISTED)
def test_listed_name_blocked(feed_resolver, qname, transport):
    reply = feed_resolver.query(qname, "A", transport)
    assert reply.rcode == dns.rcode.NXDOMAIN, str(reply)
    assert not reply.msg.answer, str(reply)
    blocked = [o for o in reply.ede() if o.code == dns.edns.EDECode.BLOCKED]
    assert blocked and ZONE in (blocked[0].text or "").lower(), str(reply)


@pytest.mark.parametrize("qname", sorted(NOT_LISTED))
def test_unlisted_name_passes(feed_resolver, qname):
    reply = feed_resolver.query(qname, "A", "udp")
    assert reply.rcode == dns.rcode.NOERROR, str(reply)
    assert reply.answer_set() == {f"{qname.lower()} A {NOT_LISTED[qname]}"}, str(reply)
    assert not reply.ede(), str(reply)


def test_sample_of_feed_blocked(feed_resolver):
    """Every 2000th owner of the feed (exact names and wildcards), queried as
    the name itself or a subdomain."""
    owners = feed_owners()
    failures = []
    for owner in owners[::2000]:
        qname = ("probe" + owner[1:] if owner.startswith("*.") else owner) + "."
        reply = feed_resolver.query(qname, "A", "udp")
        # NSD is authoritative for ac., com. and zw., so NXDOMAIN alone could
        # come from upstream: the EDE proves the policy answered.
        blocked = [o for o in reply.ede() if o.code == dns.edns.EDECode.BLOCKED]
        if reply.rcode != dns.rcode.NXDOMAIN or not blocked:
            failures.append(f"{qname}: {reply.rcode_text()} EDE={[o.to_text() for o in reply.ede()]}")
    assert not failures, failures
