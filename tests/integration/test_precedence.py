"""RPZ precedence rules 5, 6 and 7 and break-dnssec, end to end: real NSDs
serving a delegation hierarchy (delegation.py), Unbound with the dnsfw
module, rules loaded by `dnsfw zone load`. Every test checks the answer AND
the hit-log line (which rule decided).

    .            NS ns.root.                          (127.B.0.1)
    tld.         NS ns1.tld.                          (127.B.1.1)
    multi.tld.   NS z.a.multi.tld., a.b.multi.tld.    (127.B.3.1, 127.B.3.2)
    mixw.tld.    NS x.ns.mixw.tld., a.ns.mixw.tld.    (127.B.3.3, 127.B.3.4)
    good.tld.    NS ns1.good.tld.                     (127.B.4.1)
    sec.tld.     NS ns1.sec.tld.  DNSSEC-signed       (127.B.7.1)
    nsip.tld.    NS ns1.nsip.tld. (127.B.8.4, 127.B.8.2),
                    ns2.nsip.tld. (127.B.8.3, 127.B.8.1)

Answer data of the Response-IP tests is in 198.18.0.0/15 and 203.0.113.0/24
(never contacted: only the resolver's view of the answer matters).

sec.tld. is signed with ldns-signzone (one ECDSA P-256 key); Unbound runs
with ``module-config: "dynlib validator iterator"`` and that key as
``trust-anchor-file`` (tld. and the root stay unsigned, so good.tld. answers
are insecure), so a sec.tld. answer is validated secure (AD=1).
"""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

import delegation
import dnsfw_harness as h

NOERROR = dns.rcode.NOERROR
NXDOMAIN = dns.rcode.NXDOMAIN
SOA = delegation.SOA

SERVERS = {
    "root": (["0.1"], ["."]),
    "tlds": (["1.1"], ["tld."]),
    "leaves": (["3.1", "3.2", "3.3", "3.4", "4.1", "7.1", "8.1", "8.2", "8.3", "8.4"],
               ["multi.tld.", "mixw.tld.", "good.tld.", "sec.tld.", "nsip.tld."]),
}


def zone_texts(b: int) -> dict[str, str]:
    ip = lambda o: f"127.{b}.{o}"  # noqa: E731
    return {
        ".": f"""$ORIGIN .
{SOA}
. 60 IN NS ns.root.
ns.root. 60 IN A {ip('0.1')}
tld. 60 IN NS ns1.tld.
ns1.tld. 60 IN A {ip('1.1')}
""",
        "tld.": f"""$ORIGIN tld.
{SOA}
@ 60 IN NS ns1.tld.
ns1 60 IN A {ip('1.1')}
multi 60 IN NS z.a.multi.tld.
multi 60 IN NS a.b.multi.tld.
z.a.multi 60 IN A {ip('3.1')}
a.b.multi 60 IN A {ip('3.2')}
mixw 60 IN NS x.ns.mixw.tld.
mixw 60 IN NS a.ns.mixw.tld.
x.ns.mixw 60 IN A {ip('3.3')}
a.ns.mixw 60 IN A {ip('3.4')}
good 60 IN NS ns1.good.tld.
ns1.good 60 IN A {ip('4.1')}
sec 60 IN NS ns1.sec.tld.
ns1.sec 60 IN A {ip('7.1')}
nsip 60 IN NS ns1.nsip.tld.
nsip 60 IN NS ns2.nsip.tld.
ns1.nsip 60 IN A {ip('8.4')}
ns1.nsip 60 IN A {ip('8.2')}
ns2.nsip 60 IN A {ip('8.3')}
ns2.nsip 60 IN A {ip('8.1')}
""",
        "multi.tld.": f"""$ORIGIN multi.tld.
{SOA}
@ 60 IN NS z.a.multi.tld.
@ 60 IN NS a.b.multi.tld.
z.a 60 IN A {ip('3.1')}
a.b 60 IN A {ip('3.2')}
www 300 IN A 100.64.0.1
""",
        "mixw.tld.": f"""$ORIGIN mixw.tld.
{SOA}
@ 60 IN NS x.ns.mixw.tld.
@ 60 IN NS a.ns.mixw.tld.
x.ns 60 IN A {ip('3.3')}
a.ns 60 IN A {ip('3.4')}
www 300 IN A 100.64.0.2
""",
        # Rules 6/7: the larger address is written first, so "first address
        # with a rule wins" would pick the wrong one.
        "good.tld.": f"""$ORIGIN good.tld.
{SOA}
@ 60 IN NS ns1.good.tld.
ns1 60 IN A {ip('4.1')}
www 300 IN A {ip('202.1')}
six 300 IN A 198.18.72.9
six-b 300 IN A 198.18.73.1
six-b 300 IN A 198.18.72.9
seven 300 IN A 198.18.75.9
seven 300 IN A 198.18.75.5
six6 300 IN AAAA 2001:db8:72::9
seven6 300 IN AAAA 2001:db8:75::9
seven6 300 IN AAAA 2001:db8:75::5
cross 300 IN A 203.0.113.1
cross-only6 300 IN A 198.51.100.1
plain 300 IN A {ip('202.2')}
plainip 300 IN A 198.19.99.2
""",
        # Rule 7 for NSIP: four name-server addresses, each with a /32 rule,
        # the larger one of each name written first.
        "nsip.tld.": f"""$ORIGIN nsip.tld.
{SOA}
@ 60 IN NS ns1.nsip.tld.
@ 60 IN NS ns2.nsip.tld.
ns1 60 IN A {ip('8.4')}
ns1 60 IN A {ip('8.2')}
ns2 60 IN A {ip('8.3')}
ns2 60 IN A {ip('8.1')}
www 300 IN A 100.64.0.3
""",
        "sec.tld.": f"""$ORIGIN sec.tld.
{SOA}
@ 60 IN NS ns1.sec.tld.
ns1 60 IN A {ip('7.1')}
www 300 IN A {ip('207.1')}
www2 300 IN A {ip('207.2')}
ip 300 IN A 198.19.99.1
late 300 IN A {ip('207.3')}
""",
    }


PREC_RPZ = """$ORIGIN prec.rpz.
$TTL 60
@ SOA ns.prec.rpz. hostmaster.prec.rpz. 1 3600 900 604800 60
@ NS ns.prec.rpz.
; rule 5: both NS names of multi.tld match an exact rule. RFC 4034
; canonical order compares from the root: z.a.multi.tld < a.b.multi.tld
; (label "a" < "b" under multi.tld), the reverse of text order.
a.b.multi.tld.rpz-nsdname A 192.0.2.51
z.a.multi.tld.rpz-nsdname A 192.0.2.52
; rule 5 with rule 3: x.ns.mixw.tld has an exact rule, a.ns.mixw.tld
; (canonically smaller) only the wildcard: the exact rule wins.
x.ns.mixw.tld.rpz-nsdname A 192.0.2.53
*.ns.mixw.tld.rpz-nsdname A 192.0.2.54
; rule 6: 198.18.72.9 is covered by /16, /24 (and six-b's 198.18.73.1 by /32)
16.0.0.18.198.rpz-ip CNAME .
24.0.72.18.198.rpz-ip A 192.0.2.61
32.1.73.18.198.rpz-ip A 192.0.2.63
; rule 7: two /32 rules for one answer's two addresses
32.9.75.18.198.rpz-ip A 192.0.2.79
32.5.75.18.198.rpz-ip A 192.0.2.75
; IPv6: rule 6 (/32 vs /48) and rule 7 (two /128)
32.zz.db8.2001.rpz-ip CNAME .
48.zz.72.db8.2001.rpz-ip AAAA 2001:db8::61
128.9.zz.75.db8.2001.rpz-ip AAAA 2001:db8::79
128.5.zz.75.db8.2001.rpz-ip AAAA 2001:db8::75
"""


def nsip_rules(b: int) -> str:
    """Rule 7 for NSIP: a /32 rule for each of nsip.tld's four server
    addresses (written largest first); 127.B.8.1 is the smallest."""
    return "".join(f"32.{d}.8.{b}.127.rpz-nsip A 192.0.2.8{d}\n" for d in (4, 3, 2, 1))


# IPv4 prefixes count as prefix+96 (IPv4 addresses are matched v4-mapped).
# An IPv6 owner covering ::ffff:0:0/96 would match every IPv4 answer: it is
# reported and skipped at load time, like '*' at the apex (its own resolver).
CROSS_RPZ = """$ORIGIN cross.rpz.
$TTL 60
@ SOA ns.cross.rpz. hostmaster.cross.rpz. 1 3600 900 604800 60
96.0.0.ffff.zz.rpz-ip A 192.0.2.96
8.0.0.0.203.rpz-ip A 192.0.2.8
"""

KEEP_RPZ = """$ORIGIN keep.rpz.
$TTL 60
@ SOA ns.keep.rpz. hostmaster.keep.rpz. 1 3600 900 604800 60
www.sec.tld CNAME .
late.sec.tld CNAME .
plain.good.tld CNAME .
32.1.99.19.198.rpz-ip CNAME .
32.2.99.19.198.rpz-ip CNAME .
"""

BREAK_RPZ = """$ORIGIN break.rpz.
$TTL 60
@ SOA ns.break.rpz. hostmaster.break.rpz. 1 3600 900 604800 60
www2.sec.tld CNAME .
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    h.require(h.NSD_BIN, h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    work = tmp_path_factory.mktemp("prec-world")
    base = delegation.pick_base(delegation.server_octets(SERVERS))
    texts = zone_texts(base)
    texts["sec.tld."], anchor = h.sign_zone_text(work / "keys", "sec.tld.", texts["sec.tld."])
    hier = delegation.Hierarchy(work, base, texts, SERVERS)
    hier.anchor = anchor
    hier.start()
    try:
        yield hier
    finally:
        hier.stop()


@pytest.fixture(scope="module")
def prec(world, tmp_path_factory):
    e = delegation.Env(world, tmp_path_factory.mktemp("prec"))
    e.load("prec.rpz", PREC_RPZ + nsip_rules(world.base))
    e.start(["prec.rpz"])
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture(scope="module")
def cross(world, tmp_path_factory):
    e = delegation.Env(world, tmp_path_factory.mktemp("cross"))
    e.load_result = e.load("cross.rpz", CROSS_RPZ)
    e.start(["cross.rpz"])  # www.good.tld is rewritten too: still an answer
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture(scope="module")
def dnssec(world, tmp_path_factory):
    e = delegation.Env(world, tmp_path_factory.mktemp("dnssec"))
    e.load("keep.rpz", KEEP_RPZ)
    e.load("break.rpz", BREAK_RPZ, "--break-dnssec", "yes")
    e.start(["keep.rpz", "break.rpz"], module_config="dynlib validator iterator",
            extra=[f'trust-anchor-file: "{world.anchor}"', "val-log-level: 2"])
    try:
        yield e
    finally:
        e.stop()


def hit_of(env: delegation.Env, qname: str, r: h.Reply) -> dict:
    return env.hits.wait_for(qname, r.client_port, r.transport)


def ask_fresh(env: delegation.Env, qname: str, qtype: str = "A") -> h.Reply:
    """Asks twice and returns the second reply: a rewritten answer must not
    come from the cache either (each rewrite is decided anew)."""
    first = env.q(qname, qtype)
    second = env.q(qname, qtype)
    assert first.answer_set() == second.answer_set() and first.rcode == second.rcode, \
        f"first:\n{first}\nsecond:\n{second}"
    return second


# ---------------------------------------------------------------------------
# Rule 5: NSDNAME, several matching NS names

def test_rule5_canonically_smallest_ns_name_decides(prec):
    for attempt in range(2):
        r = prec.q("www.multi.tld.")
        assert r.rcode == NOERROR, f"attempt {attempt}:\n{r}"
        assert r.answer_set() == {"www.multi.tld. A 192.0.2.52"}, f"attempt {attempt}:\n{r}"
        hit = hit_of(prec, "www.multi.tld.", r)
        assert hit["trigger"] == "nsdname" and hit["action"] == "local-data", hit
        assert h.norm_name(hit["rule"]) == "z.a.multi.tld", hit


def test_rule5_exact_ns_rule_beats_wildcard_of_smaller_name(prec):
    r = prec.q("www.mixw.tld.")
    assert r.answer_set() == {"www.mixw.tld. A 192.0.2.53"}, r
    hit = hit_of(prec, "www.mixw.tld.", r)
    assert hit["trigger"] == "nsdname" and h.norm_name(hit["rule"]) == "x.ns.mixw.tld", hit


# ---------------------------------------------------------------------------
# Rule 6: longest prefix; rule 7: smaller address on equal prefixes

def test_rule6_longest_prefix(prec):
    r = ask_fresh(prec, "six.good.tld.")
    assert r.answer_set() == {"six.good.tld. A 192.0.2.61"}, r
    hit = hit_of(prec, "six.good.tld.", r)
    assert hit["trigger"] == "response-ip" and hit["rule"] == "198.18.72.0/24", hit


def test_rule6_longer_prefix_of_larger_address_beats_smaller_address(prec):
    # 198.18.72.9 (smaller, /24 rule) vs 198.18.73.1 (larger, /32 rule)
    r = ask_fresh(prec, "six-b.good.tld.")
    assert r.answer_set() == {"six-b.good.tld. A 192.0.2.63"}, r
    hit = hit_of(prec, "six-b.good.tld.", r)
    assert hit["rule"] == "198.18.73.1/32", hit


def test_rule7_smaller_address_on_equal_prefixes(prec):
    r = ask_fresh(prec, "seven.good.tld.")
    assert r.answer_set() == {"seven.good.tld. A 192.0.2.75"}, r
    hit = hit_of(prec, "seven.good.tld.", r)
    assert hit["trigger"] == "response-ip" and hit["rule"] == "198.18.75.5/32", hit


def test_rule7_nsip_smaller_server_address(prec):
    # nsip.tld. has two NS names with two addresses each; every address has
    # a /32 NSIP rule. The smallest address (127.B.8.1, ns2's second) decides.
    ip = prec.hier.ip
    for attempt in range(2):
        r = prec.q("www.nsip.tld.")
        assert r.rcode == NOERROR, f"attempt {attempt}:\n{r}"
        assert r.answer_set() == {"www.nsip.tld. A 192.0.2.81"}, f"attempt {attempt}:\n{r}"
        hit = hit_of(prec, "www.nsip.tld.", r)
        assert hit["trigger"] == "nsip" and hit["action"] == "local-data", hit
        assert hit["rule"] == f"{ip('8.1')}/32", hit


def test_rule6_ipv6(prec):
    r = ask_fresh(prec, "six6.good.tld.", "AAAA")
    assert r.answer_set() == {"six6.good.tld. AAAA 2001:db8::61"}, r
    hit = hit_of(prec, "six6.good.tld.", r)
    assert hit["rule"] == "2001:db8:72::/48", hit


def test_rule7_ipv6(prec):
    r = ask_fresh(prec, "seven6.good.tld.", "AAAA")
    assert r.answer_set() == {"seven6.good.tld. AAAA 2001:db8::75"}, r
    hit = hit_of(prec, "seven6.good.tld.", r)
    assert hit["rule"] == "2001:db8:75::5/128", hit


def test_rule6_ipv4_prefix_counts_plus_96(cross):
    # the ::ffff:0:0/96 owner (line 4) would cover every IPv4 answer: refused
    # at load time with its line, the rest of the zone loaded ...
    assert "cross.rpz.zone:4: error:" in cross.load_result.stderr, cross.load_result.stderr
    assert "covers every IPv4 address" in cross.load_result.stderr, cross.load_result.stderr
    r = cross.q("cross-only6.good.tld.")
    assert r.answer_set() == {"cross-only6.good.tld. A 198.51.100.1"}, r
    assert not r.ede(), r
    # ... and 203.0.0.0/8 (/104 in IPv6 terms) applies to IPv4 answers
    r = cross.q("cross.good.tld.")
    assert r.answer_set() == {"cross.good.tld. A 192.0.2.8"}, r
    hit = hit_of(cross, "cross.good.tld.", r)
    assert hit["rule"] == "203.0.0.0/8", hit


# ---------------------------------------------------------------------------
# break-dnssec

def query_do(env: delegation.Env, qname: str, do: bool, qtype: str = "A") -> h.Reply:
    """One UDP query with EDNS DO=``do`` from a fresh socket."""
    q = dns.message.make_query(qname, qtype, use_edns=0, want_dnssec=do, payload=1232)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((h.LOOPBACK, 0))
        port = sock.getsockname()[1]
        sock.setblocking(False)
        msg = dns.query.udp(q, h.LOOPBACK, timeout=3.0, port=env.port, sock=sock,
                            ignore_unexpected=True)
    finally:
        sock.close()
    return h.Reply(msg, port, "udp")


def a_records(r: h.Reply) -> set[str]:
    return {x for x in r.answer_set() if x.split()[1] == "A"}


def is_secure(r: h.Reply) -> bool:
    return bool(r.msg.flags & dns.flags.AD)


def assert_not_logged(env: delegation.Env, qname: str, port: int) -> None:
    marker = query_do(env, "plain.good.tld.", False)  # always logged
    hit_of(env, "plain.good.tld.", marker)
    assert env.hits.matching(qname, port, "udp") == [], env.hits.tail()


def test_dnssec_world_validates(dnssec):
    r = query_do(dnssec, "sec.tld.", True, "SOA")
    assert r.rcode == NOERROR and is_secure(r), f"sec.tld. did not validate:\n{r}\n" \
        + dnssec.proc.describe()
    assert any(rr.rdtype == dns.rdatatype.RRSIG for rr in r.msg.answer), r
    r = query_do(dnssec, "www.good.tld.", True)
    assert r.rcode == NOERROR and not is_secure(r), r


def test_signed_answer_do1_not_rewritten_without_break_dnssec(dnssec):
    ip = dnssec.hier.ip
    for attempt in range(2):
        r = query_do(dnssec, "www.sec.tld.", True)
        assert r.rcode == NOERROR and is_secure(r), f"attempt {attempt}:\n{r}"
        assert a_records(r) == {f"www.sec.tld. A {ip('207.1')}"}, f"attempt {attempt}:\n{r}"
        assert_not_logged(dnssec, "www.sec.tld.", r.client_port)


def test_signed_answer_do0_rewritten_even_after_do1_cached_it(dnssec):
    query_do(dnssec, "www.sec.tld.", True)   # resolved, validated, not rewritten
    for attempt in range(2):
        r = query_do(dnssec, "www.sec.tld.", False)
        assert r.rcode == NXDOMAIN and r.answer_set() == set(), f"attempt {attempt}:\n{r}"
        hit = hit_of(dnssec, "www.sec.tld.", r)
        assert hit["zone"] == "keep.rpz." and hit["action"] == "nxdomain", hit


def test_signed_response_ip_do1_kept_do0_rewritten(dnssec):
    r = query_do(dnssec, "ip.sec.tld.", True)
    assert r.rcode == NOERROR and is_secure(r), r
    assert a_records(r) == {"ip.sec.tld. A 198.19.99.1"}, r
    r = query_do(dnssec, "ip.sec.tld.", False)
    assert r.rcode == NXDOMAIN, r
    hit = hit_of(dnssec, "ip.sec.tld.", r)
    assert hit["trigger"] == "response-ip" and hit["rule"] == "198.19.99.1/32", hit


def test_break_dnssec_yes_rewrites_signed_answer(dnssec):
    for attempt in range(2):
        r = query_do(dnssec, "www2.sec.tld.", True)
        assert r.rcode == NXDOMAIN and r.answer_set() == set(), f"attempt {attempt}:\n{r}"
        hit = hit_of(dnssec, "www2.sec.tld.", r)
        assert hit["zone"] == "break.rpz.", hit


def test_unsigned_answer_do1_rewritten(dnssec):
    r = query_do(dnssec, "plain.good.tld.", True)
    assert r.rcode == NXDOMAIN, r
    hit_of(dnssec, "plain.good.tld.", r)
    r = query_do(dnssec, "plainip.good.tld.", True)
    assert r.rcode == NXDOMAIN, r
    hit = hit_of(dnssec, "plainip.good.tld.", r)
    assert hit["trigger"] == "response-ip", hit


def test_zone_set_break_dnssec_takes_effect(dnssec):
    r = query_do(dnssec, "late.sec.tld.", True)
    assert r.rcode == NOERROR and is_secure(r), r
    cp = h.dnsfw("zone", "set", "--store", dnssec.store, "--zone", "keep.rpz",
                 "--break-dnssec", "yes")
    assert cp.returncode == 0, h.describe_run(cp)
    try:
        h.wait_until(lambda: query_do(dnssec, "late.sec.tld.", True).rcode == NXDOMAIN, 5,
                     "late.sec.tld (DO=1, secure, cached) to be rewritten after "
                     "zone set --break-dnssec yes")
    finally:
        cp = h.dnsfw("zone", "set", "--store", dnssec.store, "--zone", "keep.rpz",
                     "--break-dnssec", "no")
        assert cp.returncode == 0, h.describe_run(cp)
