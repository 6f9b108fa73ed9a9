"""Every RPZ action end to end, over UDP and over TCP.

Zones: tests/data/integration/primary.rpz (first) and secondary.rpz (second).
Upstream (NSD): tests/data/integration/upstream/example.zone. Each name exists
once per transport (`<name>.udp.example.` / `<name>.tcp.example.`) so UDP and
TCP tests never share a cache entry.

For each case: rcode, the answer section, the policy zone's SOA in ADDITIONAL
(NXDOMAIN/NODATA), the EDE option (code 15, text naming zone and rule) and
the hit-log line (client, port, transport, qname, qtype, zone, trigger, rule,
action).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import dns.edns
import dns.exception
import dns.rcode
import dns.rdatatype
import pytest

import dnsfw_harness as h
from dnsfw_harness import PRIMARY, SECONDARY

TRANSPORTS = ("udp", "tcp")
# Table queries come from these loopback addresses, so the hit log's client
# field is checked against something other than the default 127.0.0.1.
CLIENT = {"udp": "127.0.0.2", "tcp": "127.0.0.3"}
UPSTREAM_V4 = {"udp": "198.51.100", "tcp": "203.0.113"}
UPSTREAM_V6 = {"udp": "2001:db8:100", "tcp": "2001:db8:113"}
POLICY_TTL = {PRIMARY: 60, SECONDARY: 120}

# Where NXDOMAIN/NODATA answers carry the policy zone's SOA (the contract:
# ADDITIONAL). One place to change if the contract moves it to AUTHORITY.
SOA_SECTION = "additional"

NOERROR = dns.rcode.NOERROR
NXDOMAIN = dns.rcode.NXDOMAIN


@dataclass(frozen=True)
class Case:
    id: str
    qname: str                     # template: {t} transport, {T} upper-case transport
    qtype: str
    rcode: int
    answer: tuple[str, ...]        # "owner. TYPE rdata" templates: {t} {ip} {ip6}
    zone: Optional[str] = None     # policy zone that applies (None: no policy)
    rule: Optional[str] = None     # matched rule owner, relative to the zone
    action: Optional[str] = None   # hit-log action
    soa: bool = False              # the zone's SOA must be in ADDITIONAL
    rewritten: bool = True         # answer rewritten -> EDE 15 required (else forbidden)

    def fmt(self, s: str, t: str) -> str:
        return s.format(t=t, T=t.upper(), ip=UPSTREAM_V4[t], ip6=UPSTREAM_V6[t])


CASES = [
    Case("nxdomain", "nxdomain.{t}.example.", "A", NXDOMAIN, (),
         PRIMARY, "nxdomain.{t}.example", "nxdomain", soa=True),
    Case("nxdomain-mixed-case", "NxDomain.{T}.ExAmple.", "A", NXDOMAIN, (),
         PRIMARY, "nxdomain.{t}.example", "nxdomain", soa=True),
    Case("nodata", "nodata.{t}.example.", "A", NOERROR, (),
         PRIMARY, "nodata.{t}.example", "nodata", soa=True),
    # passthru in the first zone also beats secondary.rpz's NXDOMAIN rule
    Case("passthru", "passthru.{t}.example.", "A", NOERROR,
         ("passthru.{t}.example. A {ip}.4",),
         PRIMARY, "passthru.{t}.example", "passthru", rewritten=False),
    Case("local-a", "local.{t}.example.", "A", NOERROR,
         ("local.{t}.example. A 192.0.2.1",),
         PRIMARY, "local.{t}.example", "local-data"),
    Case("local-aaaa", "local.{t}.example.", "AAAA", NOERROR,
         ("local.{t}.example. AAAA 2001:db8::1",),
         PRIMARY, "local.{t}.example", "local-data"),
    Case("local-txt", "local.{t}.example.", "TXT", NOERROR,
         ('local.{t}.example. TXT "dnsfw local data"',),
         PRIMARY, "local.{t}.example", "local-data"),
    # local data exists (A) but not for AAAA: NODATA, not the upstream AAAA
    Case("local-missing-type", "localv4.{t}.example.", "AAAA", NOERROR, (),
         PRIMARY, "localv4.{t}.example", "local-data"),
    Case("wildcard-subdomain", "x.wild.{t}.example.", "A", NXDOMAIN, (),
         PRIMARY, "*.wild.{t}.example", "nxdomain", soa=True),
    Case("wildcard-deep-subdomain", "a.b.wild.{t}.example.", "A", NXDOMAIN, (),
         PRIMARY, "*.wild.{t}.example", "nxdomain", soa=True),
    # "*.wild" does not cover "wild" itself
    Case("wildcard-not-apex", "wild.{t}.example.", "A", NOERROR,
         ("wild.{t}.example. A {ip}.9",), rewritten=False),
    # the exact passthru rule beats the zone's wildcard NXDOMAIN
    Case("passthru-beats-wildcard", "allowed.wild.{t}.example.", "A", NOERROR,
         ("allowed.wild.{t}.example. A {ip}.11",),
         PRIMARY, "allowed.wild.{t}.example", "passthru", rewritten=False),
    Case("wildcard-local-data", "host.wlocal.{t}.example.", "A", NOERROR,
         ("host.wlocal.{t}.example. A 192.0.2.3",),
         PRIMARY, "*.wlocal.{t}.example", "local-data"),
    # walled garden: CNAME local data, the target resolved by the upstream
    Case("cname-redirect", "redirect.{t}.example.", "A", NOERROR,
         ("redirect.{t}.example. CNAME garden.example.",
          "garden.example. A 198.51.100.80"),
         PRIMARY, "redirect.{t}.example", "local-data"),
    # "CNAME *.garden.example." prepends the query name
    Case("cname-wildcard-target", "wcredirect.{t}.example.", "A", NOERROR,
         ("wcredirect.{t}.example. CNAME wcredirect.{t}.example.garden.example.",
          "wcredirect.{t}.example.garden.example. A 198.51.100.81"),
         PRIMARY, "wcredirect.{t}.example", "local-data"),
    # first zone wins: primary's local data over secondary's NXDOMAIN
    Case("zone-order", "order.{t}.example.", "A", NOERROR,
         ("order.{t}.example. A 192.0.2.4",),
         PRIMARY, "order.{t}.example", "local-data"),
    # a rule only the second zone has is enforced
    Case("second-zone", "second.{t}.example.", "A", NXDOMAIN, (),
         SECONDARY, "second.{t}.example", "nxdomain", soa=True),
    # the rule after primary.rpz's malformed line was loaded
    Case("after-bad-line", "after-bad.{t}.example.", "A", NXDOMAIN, (),
         PRIMARY, "after-bad.{t}.example", "nxdomain", soa=True),
    # no rule: the upstream answer
    Case("no-match-a", "www.{t}.example.", "A", NOERROR,
         ("www.{t}.example. A {ip}.1",), rewritten=False),
    Case("no-match-aaaa", "www.{t}.example.", "AAAA", NOERROR,
         ("www.{t}.example. AAAA {ip6}::1",), rewritten=False),
    Case("no-match-txt", "www.{t}.example.", "TXT", NOERROR,
         ('www.{t}.example. TXT "upstream www"',), rewritten=False),
]


def _lower_owner(item: str) -> str:
    owner, rest = item.split(" ", 1)
    return f"{owner.lower()} {rest}"


def check_ede(reply: h.Reply, zone: str, rule: str) -> None:
    edes = reply.ede()
    blocked = [o for o in edes if o.code == dns.edns.EDECode.BLOCKED]
    assert blocked, f"no EDE option with code 15 (Blocked); EDE options: " \
                    f"{[o.to_text() for o in edes]}\n{reply}"
    text = (blocked[0].text or "").lower()
    assert h.norm_name(zone) in text, f"EDE text {blocked[0].text!r} does not name zone {zone}"
    assert h.norm_name(rule) in text, f"EDE text {blocked[0].text!r} does not name rule {rule}"


def check_no_blocked_ede(reply: h.Reply) -> None:
    blocked = [o for o in reply.ede() if o.code == dns.edns.EDECode.BLOCKED]
    assert not blocked, f"unexpected EDE 15 on an answer that was not rewritten: " \
                        f"{[o.to_text() for o in blocked]}\n{reply}"


def check_soa(reply: h.Reply, zone: str) -> None:
    section = getattr(reply.msg, SOA_SECTION)
    soas = [rr for rr in section if rr.rdtype == dns.rdatatype.SOA]
    owners = {h.norm_name(rr.name.to_text()) for rr in soas}
    assert h.norm_name(zone) in owners, \
        f"policy zone SOA ({zone}) not in {SOA_SECTION.upper()} (SOA owners there: " \
        f"{owners})\n{reply}"


def check_hit(resolver, reply: h.Reply, qname: str, qtype: str, zone: str, rule: str,
              action: str) -> dict:
    entry = resolver.hitlog.wait_for(qname, reply.client_port, reply.transport)
    problems = []
    if entry.get("client") != reply.client:
        problems.append(f"client {entry.get('client')!r} != {reply.client!r}")
    if not h.qtype_matches(entry.get("qtype"), qtype):
        problems.append(f"qtype {entry.get('qtype')!r} != {qtype}")
    if h.norm_name(str(entry.get("zone", ""))) != h.norm_name(zone):
        problems.append(f"zone {entry.get('zone')!r} != {zone!r}")
    if str(entry.get("trigger", "")).lower() != "qname":
        problems.append(f"trigger {entry.get('trigger')!r} != 'qname'")
    if not h.rule_matches(str(entry.get("rule", "")), rule, zone):
        problems.append(f"rule {entry.get('rule')!r} != {rule!r}")
    if entry.get("action") != action:
        problems.append(f"action {entry.get('action')!r} != {action!r}")
    if not entry.get("time"):
        problems.append("no time")
    assert not problems, f"hit-log line {entry} for {qname}: " + "; ".join(problems)
    return entry


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_action(resolver, marker, case: Case, transport: str):
    qname = case.fmt(case.qname, transport)
    reply = resolver.query(qname, case.qtype, transport, source=CLIENT[transport])

    assert reply.rcode == case.rcode, \
        f"{qname} {case.qtype}: rcode {reply.rcode_text()}, expected " \
        f"{dns.rcode.to_text(case.rcode)}\n{reply}"
    assert not reply.tc(), f"unexpected TC bit\n{reply}"
    expected = {_lower_owner(case.fmt(a, transport)) for a in case.answer}
    assert reply.answer_set() == expected, f"{qname} {case.qtype}: answer\n{reply}"

    if case.zone and case.soa:
        check_soa(reply, case.zone)
    if case.rewritten:
        check_ede(reply, case.zone, case.fmt(case.rule, transport))
    else:
        check_no_blocked_ede(reply)

    if case.action == "local-data":
        # synthesised records carry the policy TTL, not the upstream's 300
        ttl = POLICY_TTL[case.zone]
        for rrset in reply.msg.answer:
            if rrset.name.to_text().lower() == qname.lower():
                assert 0 < rrset.ttl <= ttl, f"local data TTL {rrset.ttl} > policy TTL {ttl}"

    if case.zone:
        check_hit(resolver, reply, qname, case.qtype, case.zone,
                  case.fmt(case.rule, transport), case.action)
    else:
        marker(transport)
        logged = resolver.hitlog.matching(qname)
        assert not logged, f"hit-log lines for {qname}, which matches no rule: {logged}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_match_is_upstream_answer_unmodified(resolver, nsd, transport):
    """A name no rule matches gets exactly NSD's answer, with no EDE at all."""
    for qtype in ("A", "AAAA", "TXT"):
        qname = f"www.{transport}.example."
        direct = h.query(nsd.port, qname, qtype, "udp")
        via = resolver.query(qname, qtype, transport)
        assert via.rcode == direct.rcode == dns.rcode.NOERROR
        assert via.answer_set() == direct.answer_set(), f"NSD:\n{direct}\nresolver:\n{via}"
        assert not via.ede(), f"EDE on an unfiltered answer: {[o.to_text() for o in via.ede()]}"
        for rrset in via.msg.answer:
            assert rrset.ttl <= 300


def test_malformed_rule_owner_is_not_blocked(resolver):
    """primary.rpz's bad line (`badrdata.example A 999.0.0.1`) was skipped:
    that name resolves upstream and is not rewritten."""
    reply = resolver.query("badrdata.example.", "A", "udp")
    assert reply.rcode == dns.rcode.NOERROR, str(reply)
    assert reply.answer_set() == {"badrdata.example. A 198.51.100.99"}, str(reply)
    check_no_blocked_ede(reply)


# --- DROP ------------------------------------------------------------------

def test_drop_udp_gets_no_reply(resolver):
    qname = "drop.udp.example."
    with pytest.raises(dns.exception.Timeout):
        r = resolver.query(qname, "A", "udp", timeout=1.0)
        pytest.fail(f"DROP answered over UDP:\n{r}")
    # The client port is only known inside query(); find the line by name.
    entry = h.wait_until(lambda: resolver.hitlog.matching(qname, transport="udp"), 5.0,
                         f"hit-log line for {qname}/udp",
                         on_timeout=resolver.hitlog.tail)[0]
    assert entry.get("action") == "drop", entry
    assert h.norm_name(str(entry.get("zone", ""))) == PRIMARY, entry
    assert h.rule_matches(str(entry.get("rule", "")), "drop.udp.example", PRIMARY), entry


def test_drop_tcp_gets_no_answer(resolver):
    qname = "drop.tcp.example."
    try:
        r = resolver.query(qname, "A", "tcp", timeout=2.0)
    except (dns.exception.Timeout, EOFError, ConnectionError):
        pass  # timed out or closed without an answer: both are "no reply"
    else:
        pytest.fail(f"DROP answered over TCP:\n{r}")
    entry = h.wait_until(lambda: resolver.hitlog.matching(qname, transport="tcp"), 5.0,
                         f"hit-log line for {qname}/tcp",
                         on_timeout=resolver.hitlog.tail)[0]
    assert entry.get("action") == "drop", entry
    assert h.rule_matches(str(entry.get("rule", "")), "drop.tcp.example", PRIMARY), entry


# --- TCP-only --------------------------------------------------------------

def test_tcp_only_over_udp_is_truncated(resolver):
    """UDP: NOERROR, TC=1, empty answer, EDE 15; logged as tcp-only/udp."""
    qname = "tcponly.udp.example."
    reply = resolver.query(qname, "A", "udp")
    assert reply.rcode == dns.rcode.NOERROR, str(reply)
    assert reply.tc(), f"TC bit not set\n{reply}"
    assert not reply.msg.answer, f"answer in a truncated reply\n{reply}"
    check_ede(reply, PRIMARY, "tcponly.udp.example")
    check_hit(resolver, reply, qname, "A", PRIMARY, "tcponly.udp.example", "tcp-only")


def test_tcp_only_retry_over_tcp_resolves(resolver):
    """The client's retry over TCP gets the real (upstream) answer."""
    reply = resolver.query("tcponly.udp.example.", "A", "tcp")
    assert reply.rcode == dns.rcode.NOERROR, str(reply)
    assert not reply.tc()
    assert reply.answer_set() == {"tcponly.udp.example. A 198.51.100.6"}, str(reply)
    check_no_blocked_ede(reply)


def test_tcp_only_over_tcp_resolves(resolver):
    reply = resolver.query("tcponly.tcp.example.", "A", "tcp")
    assert reply.rcode == dns.rcode.NOERROR, str(reply)
    assert reply.answer_set() == {"tcponly.tcp.example. A 203.0.113.6"}, str(reply)
    check_no_blocked_ede(reply)


# --- repeated queries ------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_blocked_answer_is_stable_and_logged_every_time(resolver, transport):
    """Asking a blocked name again (a cache would now hold it) still gets the
    policy answer, and every query is logged."""
    qname = f"nodata.{transport}.example."
    for _ in range(3):
        reply = resolver.query(qname, "A", transport)
        assert reply.rcode == dns.rcode.NOERROR and not reply.msg.answer, str(reply)
        check_ede(reply, PRIMARY, f"nodata.{transport}.example")
        check_hit(resolver, reply, qname, "A", PRIMARY, f"nodata.{transport}.example", "nodata")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_passthru_logged_on_repeat(resolver, transport):
    """A passthru rule applies (and is logged) on every query, also when the
    answer could come from the cache (trap 1 in docs: cache hits never reach
    the module)."""
    qname = f"allowed.wild.{transport}.example."
    for _ in range(2):
        reply = resolver.query(qname, "A", transport)
        assert reply.rcode == dns.rcode.NOERROR, str(reply)
        check_hit(resolver, reply, qname, "A", PRIMARY, f"allowed.wild.{transport}.example",
                  "passthru")


# --- load ------------------------------------------------------------------

def test_parallel_queries_all_correct(resolver):
    """Many concurrent queries over both worker threads: every one gets the
    answer its name calls for (no cross-talk between per-thread state)."""
    from concurrent.futures import ThreadPoolExecutor

    expect = {  # qname -> (transport, rcode, answer set)
        "nxdomain.udp.example.": ("udp", NXDOMAIN, set()),
        "x.wild.tcp.example.": ("tcp", NXDOMAIN, set()),
        "local.udp.example.": ("udp", NOERROR, {"local.udp.example. A 192.0.2.1"}),
        "order.tcp.example.": ("tcp", NOERROR, {"order.tcp.example. A 192.0.2.4"}),
        "www.udp.example.": ("udp", NOERROR, {"www.udp.example. A 198.51.100.1"}),
        "wild.tcp.example.": ("tcp", NOERROR, {"wild.tcp.example. A 203.0.113.9"}),
    }
    jobs = [name for name in expect for _ in range(40)]

    def ask(name):
        transport, rcode, answer = expect[name]
        r = resolver.query(name, "A", transport)
        if r.rcode != rcode or r.answer_set() != answer:
            return f"{name}/{transport}: {r.rcode_text()} {sorted(r.answer_set())}"
        return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        wrong = [w for w in pool.map(ask, jobs) if w]
    assert not wrong, wrong[:10]
