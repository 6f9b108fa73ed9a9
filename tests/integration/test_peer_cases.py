"""The RPZ peer cases (tests/data/peer-cases/{unbound,bind9,powerdns}/) end to end.

Each row of each expect*.tsv is one test, with id
``suite/case[/vN]/qname/qtype/flags[/client][#n]``. The rows of one case
directory run in file order against one world (peer_world.World: NSDs for the
delegation hierarchy of its upstream.zone, a store with its policy zones,
Unbound with the dnsfw module), so rows that depend on cache state see the
state the earlier rows left. Update cases (zone.vN.rpz) load each version in
sequence into the running resolver before its expect.vN.tsv rows.

A row asserts: the rcode (DROP = no reply at all; TC = a UDP reply with
NOERROR, TC=1 and an empty answer), the answer section as a set (owner, type,
rdata; TTL ignored except where TTL_CHECKS names one), and no TC bit on
ordinary replies. "(upstream answer)" rows are compared with the world's
authoritative data for the name and type. A "(+RRSIG)" row (a signed answer
that must not be rewritten) also needs the RRSIG in the answer and AD=1: the
world signs that zone and validates it (peer_world, DNSSEC), so the answer
was kept because it is secure, not because no rule fired.

Rows that fail because a feature is not there yet, or that this project
decides differently from the file, are listed in XFAIL below, and ONLY there:
they are strict xfails, so a row that starts passing fails the run (XPASS)
until its entry is removed.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
import pytest

import dnsfw_harness as h
import peer_world as pw

ROWS = pw.load_rows()

# ---------------------------------------------------------------------------
# Expected failures: row id -> reason. Keep grouped by the missing feature.

R_RECURSIVE_ONLY_NO = (
    "recursive-only no cannot take effect here: the world serves RD=0 (allow_snoop), but once "
    "any delegation above the name is cached (here: after the earlier rows) Unbound answers an "
    "RD=0 query itself with that cached referral and runs no module (daemon/worker.c "
    "answer_norec_from_cache); the module rewrites RD=0 only when the query reaches it, i.e. "
    "nothing is cached (tested in test_recursive_only.py). A referral is not the row's NODATA")

XFAIL: dict[str, str] = {
    "bind9/policy-overrides/a3-5.tld2./A/rd0": R_RECURSIVE_ONLY_NO,
}

# Rows whose expectation this project decides differently from the file
# (DIVERGENT or contested cases, or behaviour fixed by issue 3's design):
# row id -> (why, [(rcode, answer), ...] any of which is accepted).
R_APEX_WILDCARD = (
    "DIVERGENT, decided: dnsfw never turns a policy-zone record into a rule for every name "
    "(issue 2: '*' at the policy-zone apex is reported and skipped at load time), because one "
    "stray line in a feed would otherwise black-hole the whole DNS. Unbound (rpz_rootwc) "
    "applies it to every name; the draft does not require it. So the name is not rewritten")

# Expected answer meaning "a referral": no answer, an NS RRset and no SOA in
# the authority section, no policy EDE (Unbound's answer to an RD=0 query).
REFERRAL = "(referral)"

DECIDED: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "unbound/root-wildcard/x./TXT/-": (R_APEX_WILDCARD, [("NOERROR", 'x. TXT "witness"')]),
    "unbound/root-wildcard/y.tld./TXT/-": (R_APEX_WILDCARD,
                                          [("NOERROR", 'y.tld. TXT "witness"')]),
    "unbound/root-wildcard/d./TXT/-": (
        R_APEX_WILDCARD + "; zone 2's local data for d. applies instead",
        [("NOERROR", 'd. TXT "local data 2nd zone"')]),
    "unbound/qname-actions/x.b.a./TXT/-": (
        "DIVERGENT: the RPZ draft (and BIND, PowerDNS) apply the nearest wildcard *.a even "
        "though b.a has a rule; Unbound's closest-encloser semantics do not",
        [("NOERROR", 'x.b.a. TXT "wildcard local data"')]),
    "bind9/nsip-rewrites/a3-1.tld2./A/-": (
        "contested: issue 3 / draft trigger order is NSDNAME before NSIP within a zone, so the "
        "NSDNAME walled garden (CNAME 10.0.0.1.) wins over the NSIP NXDOMAIN; its target is "
        "resolved without policy and does not exist",
        [("NXDOMAIN", "a3-1.tld2. CNAME 10.0.0.1.")]),
    "powerdns/zone-ordering-precedence/blocked-then-passhtru-by-higher.example./A/-": (
        "DIVERGENT: by the draft (zone order first, issue 3 rule 2) the zone 1 Response-IP "
        "passthru for 192.0.2.100 beats the zone 2 QNAME local data",
        [("NOERROR", "blocked-then-passhtru-by-higher.example. A 192.0.2.100")]),
    "unbound/tags/www.gotham2.a./A/-/192.0.0.1": (
        "one policy per CNAME chain (issue 3: the first link with a match wins; PowerDNS, "
        "draft): the RPZ CNAME target g2.target.a is resolved without policy and does not "
        "exist upstream. Unbound follows CNAMEs inside the policy zone",
        [("NXDOMAIN", "www.gotham2.a. CNAME g2.target.a.")]),
    "unbound/response-ip-actions/h./AAAA/-": (
        "issue 3: a non-canonical IPv6 owner (explicit zero groups instead of zz) is reported "
        "and skipped (as BIND does), so 2001:db8:aa:bb:cc::124 matches the /64 drop rule",
        [("DROP", "-")]),
    "bind9/qname-rewrites/a5-2.tld2./A/rd0": (
        "recursive-only (default yes): RD=0 is not rewritten. Unbound (allow_snoop) answers RD=0 "
        "from its cache itself, and the real answer of a QNAME-policed name is never in the "
        "message cache, so the unrewritten answer is Unbound's cached referral (no policy EDE)",
        [("NOERROR", "a5-2.tld2. A 192.168.5.2"), ("NOERROR", REFERRAL)]),
    "bind9/policy-overrides/a3-7.tld2./ANY/-": (
        "RFC 1034 4.3.2: for QTYPE ANY the CNAME itself is the answer and is not chased; BIND "
        "chased the override CNAME. Either is accepted",
        [("NOERROR", "a3-7.tld2. CNAME txt-only.tld2."),
         ("NOERROR", 'a3-7.tld2. CNAME txt-only.tld2. | txt-only.tld2. TXT "txt-only-tld2"')]),
    "bind9/qname-rewrites/a5-3.tld2./A/rd0": (
        "recursive-only: as a5-2",
        [("NOERROR", "a5-3.tld2. A 192.168.5.3"), ("NOERROR", REFERRAL)]),
}

# TTL assertions, only where a row's note names a TTL:
# row id -> {(owner, type): (min, max)}
TTL_CHECKS: dict[str, dict[tuple[str, str], tuple[int, int]]] = {
    # "the TTL comes from the policy RR (120)"
    "unbound/cached-cname/a.foo./A/-": {("a.foo.", "A"): (120, 120)},
    # "upstream CNAME kept (TTL 30); target rewritten (TTL 120)"
    "unbound/cached-cname/b.foo./A/-": {("b.foo.", "CNAME"): (0, 30), ("a.foo.", "A"): (31, 120)},
    # the same from cache
    "unbound/cached-cname/b.foo./A/-#2": {("b.foo.", "CNAME"): (0, 30), ("a.foo.", "A"): (31, 120)},
    # "TTL must be 100: max-policy-ttl caps the zone TTL of 300"
    "bind9/policy-overrides/a3-16.tld2./A/-": {("a3-16.tld2.", "A"): (100, 100)},
}


def _params():
    # DNSFW_PEER_IGNORE_XFAIL=1 runs every row plainly: the way to rebuild XFAIL.
    ignore = os.environ.get("DNSFW_PEER_IGNORE_XFAIL") == "1"
    out = []
    for row in ROWS:
        marks = []
        if row.id in XFAIL and not ignore:
            # Only a failed assertion counts as the expected failure; a world
            # that does not start (WorldError) is reported as an error.
            marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[row.id],
                                           raises=(AssertionError, pytest.fail.Exception)))
        out.append(pytest.param(row, id=row.id, marks=marks))
    return out


# ---------------------------------------------------------------------------
# One world per case directory, started on its first row, stopped when the
# next case starts (rows are collected case by case) or at module end.

class _Worlds:
    def __init__(self, tmp_factory):
        self.tmp_factory = tmp_factory
        self.key: str | None = None
        self.world: pw.World | None = None
        self.error: BaseException | None = None

    def get(self, row: pw.Row) -> pw.World:
        if row.case_key != self.key:
            self.close()
            self.key = row.case_key
            rows = [r for r in ROWS if r.case_key == row.case_key]
            work = self.tmp_factory.mktemp(row.case_key.replace("/", "-"))
            try:
                self.world = pw.World(row.case_key, work, rows).start()
            except Exception as e:  # every row of the case reports it
                self.error = e
        if self.error is not None:
            raise pw.WorldError(f"world {self.key} did not start: {self.error}") from self.error
        assert self.world is not None
        return self.world

    def close(self) -> None:
        if self.world is not None:
            self.world.stop()
        self.world = None
        self.error = None
        self.key = None


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    w = _Worlds(tmp_path_factory)
    try:
        yield w
    finally:
        w.close()


# ---------------------------------------------------------------------------
# Expected answers

def _rr_key(owner: str, rdtype: int, rd: dns.rdata.Rdata):
    return (owner.lower(), rdtype, rd.to_digestable(dns.name.root))


def expected_answer(row: pw.Row, world: pw.World) -> tuple[set | None, bool, str]:
    """(set of rr keys or None for "any non-empty answer", RRSIG required, text)."""
    text = row.answer.strip()
    want_sig = "(+RRSIG)" in text
    text = text.replace("(+RRSIG)", "").strip()
    if text == "-":
        return set(), False, "(empty)"
    if text.startswith("("):
        recs = world.upstream.answer_for(row.qname, row.qtype)
        if not recs:
            return None, want_sig, text
        return ({_rr_key(r.name.to_text(), r.rdtype, r.rdata) for r in recs}, want_sig,
                " | ".join(r.text() for r in recs))
    keys = set()
    for item in text.split(" | "):
        owner, rtype, rdata = item.strip().split(None, 2)
        t = dns.rdatatype.from_text(rtype)
        rd = dns.rdata.from_text("IN", t, rdata, origin=dns.name.root)
        keys.add(_rr_key(dns.name.from_text(owner).to_text(), t, rd))
    return keys, want_sig, text


def answer_keys(msg: dns.message.Message) -> set:
    out = set()
    for rrset in msg.answer:
        if rrset.rdtype == dns.rdatatype.RRSIG:
            continue
        for rd in rrset:
            out.add(_rr_key(rrset.name.to_text(), rrset.rdtype, rd))
    return out


def _show(row: pw.Row, world: pw.World, msg: dns.message.Message | None, why: str) -> str:
    src = world.client_addr(row.client)
    out = [why, f"row: {row.file}:{row.index + 1}  note: {row.note}",
           f"query: {row.qname} {row.qtype} flags={','.join(row.flags) or '-'} from {src}"]
    if world.ignored:
        out.append("settings without a dnsfw flag (ignored): " + "; ".join(world.ignored))
    if msg is not None:
        out.append("--- reply:\n" + msg.to_text())
    return "\n".join(out)


# ---------------------------------------------------------------------------

def check_reply(row: pw.Row, world: pw.World, msg: dns.message.Message) -> str | None:
    """None if ``msg`` meets the row's expectation, else what is wrong."""
    got_rcode = dns.rcode.to_text(msg.rcode())
    tc = bool(msg.flags & dns.flags.TC)
    if row.rcode == "TC":
        if row.transport != "udp":
            return "a TC row must be asked over UDP"
        if not (got_rcode == "NOERROR" and tc and not msg.answer):
            return "expected NOERROR with TC=1 and an empty answer"
        return None
    if got_rcode != row.rcode:
        return f"rcode {got_rcode}, expected {row.rcode}"
    if tc:
        return "unexpected TC=1"
    if row.rcode == "REFUSED" and any(o.otype == dns.edns.OptionType.EDE and o.code == 15
                                      for o in msg.options):
        return "REFUSED is only acceptable as Unbound's own answer, not a policy answer (EDE 15)"
    if row.answer.strip() == REFERRAL:
        if not is_referral(msg) or any(o.otype == dns.edns.OptionType.EDE and o.code == 15
                                       for o in msg.options):
            return "expected a referral (no answer, NS and no SOA in authority, no EDE 15)"
        return None
    if row.answer.strip() == "-" and is_referral(msg):
        # NOERROR with an empty answer is NODATA only with no NS-only
        # authority section: a referral (RD=0 served from the cache) says
        # nothing about the name and must not pass for a policy NODATA.
        return "got a referral (NS in authority, no SOA), not NODATA"
    want, want_sig, want_text = expected_answer(row, world)
    got = answer_keys(msg)
    if want is None:
        if not got:
            return f"expected a non-empty upstream answer {want_text}"
    elif got != want:
        return f"answer differs; expected {want_text}"
    if want_sig and not any(r.rdtype == dns.rdatatype.RRSIG for r in msg.answer):
        return "expected the RRSIG of the (unrewritten) signed answer"
    if want_sig and not msg.flags & dns.flags.AD:
        return "expected AD=1: the signed answer must have validated as secure"
    for (owner, rtype), (lo, hi) in TTL_CHECKS.get(row.id, {}).items():
        rrs = [r for r in msg.answer if r.name == dns.name.from_text(owner)
               and r.rdtype == dns.rdatatype.from_text(rtype)]
        if not rrs:
            return f"no {owner} {rtype} for the TTL check"
        if not all(lo <= r.ttl <= hi for r in rrs):
            return f"TTL of {owner} {rtype} not in [{lo}, {hi}]"
    return None


def is_referral(msg: dns.message.Message) -> bool:
    """No answer; an NS RRset and no SOA in the authority section."""
    types = {r.rdtype for r in msg.authority}
    return (not msg.answer and dns.rdatatype.NS in types
            and dns.rdatatype.SOA not in types)


def expectations(row: pw.Row) -> list[pw.Row]:
    """The row itself, or the alternatives this project decided on (DECIDED)."""
    if row.id not in DECIDED:
        return [row]
    return [dataclasses.replace(row, rcode=rc, answer=ans) for rc, ans in DECIDED[row.id][1]]


@pytest.mark.parametrize("row", _params())
def test_peer_row(row: pw.Row, worlds):
    world = worlds.get(row)
    world.ensure_version(row.version)
    wanted = expectations(row)
    decided = f" (decided: {DECIDED[row.id][0]})" if row.id in DECIDED else ""

    if all(w.rcode == "DROP" for w in wanted):
        try:
            msg = world.ask(row, timeout=1.0)
        except (dns.exception.Timeout, EOFError, ConnectionError):
            return
        pytest.fail(_show(row, world, msg, "expected no reply (DROP), got one" + decided))

    try:
        msg = world.ask(row)
    except (dns.exception.Timeout, EOFError, ConnectionError) as e:
        pytest.fail(_show(row, world, None, f"no reply ({type(e).__name__})\n" + world.describe()))
    problems = [check_reply(w, world, msg) for w in wanted]
    if all(problems):
        pytest.fail(_show(row, world, msg, " / ".join(p for p in problems if p) + decided))


def test_xfail_table_names_existing_rows():
    """A stale entry (renamed or removed row) must not linger in XFAIL or TTL_CHECKS."""
    ids = {r.id for r in ROWS}
    assert not (set(XFAIL) - ids), sorted(set(XFAIL) - ids)
    assert not (set(TTL_CHECKS) - ids), sorted(set(TTL_CHECKS) - ids)
    assert not (set(DECIDED) - ids), sorted(set(DECIDED) - ids)


def test_address_mapping_keeps_prefix_relations():
    """The per-world AddressMap is what makes the mapped worlds faithful;
    check it per case (with an arbitrary base: nothing is bound here)."""
    for key in sorted({r.case_key for r in ROWS}):
        d = pw.PEER_DATA / key
        records = pw.parse_upstream((d / "upstream.zone").read_text() + "\n"
                                    + "\n".join(pw.EXTRA_UPSTREAM.get(key, [])))
        texts = [p.read_text() for p in d.glob("*.rpz")]
        clients = [r.client for r in ROWS if r.case_key == key]
        amap = pw.case_address_map(200, records, texts, clients)
        pw.check_mapping(key, pw.UpstreamWorld(records, amap), texts, clients)
    amap = pw.AddressMap(99, pw.AddressMap.blocks_of(
        ["10.53.0.2", "192.0.0.1", "127.0.0.1"], [ipaddress.IPv4Network("192.0.5.0/24")]))
    # blocks in address order: 10.53.0 -> 1, 127.0.0 -> 2, 192.0.0 -> 3, 192.0.5 -> 4
    assert amap.root == "127.99.0.1"
    assert amap.v4("10.53.0.2") == "127.99.1.2"
    assert amap.v4("127.0.0.1") == "127.99.2.1"
    assert amap.v4("192.0.0.1") == "127.99.3.1"
    assert amap.ip_owner("24.0.5.0.192.rpz-client-ip") == "24.0.4.99.127.rpz-client-ip"
    assert amap.ip_owner("32.1.0.0.127.rpz-nsip.zone.rpz.") == "32.1.2.99.127.rpz-nsip.zone.rpz."
    assert amap.ip_owner("32.1.2.0.192.rpz-ip") == "32.1.2.0.192.rpz-ip"  # response data: kept
    with pytest.raises(ValueError):
        amap.v4("198.51.100.1")  # not a block of the case
    with pytest.raises(ValueError):
        amap.prefix(ipaddress.IPv4Network("10.53.0.0/16"))  # shorter than /24
