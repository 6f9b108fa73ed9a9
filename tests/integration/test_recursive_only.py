"""recursive-only (RPZ zone setting, default yes: RD=0 queries are not
rewritten) end to end: real NSDs serving a delegation hierarchy
(delegation.py), Unbound with the dnsfw module, rules loaded by `dnsfw zone
load`.

How an RD=0 query travels through Unbound 1.17.1 (daemon/worker.c,
worker_handle_request), which decides what these tests can and must assert:

1. ACL: an RD=0 query from a client without ``access-control: ...
   allow_snoop`` is REFUSED by the worker (no module runs).
2. Message cache: a cached answer is sent by the worker (no module runs).
   Policed names are never in the message cache (module/README.md,
   "Unbound's cache"), so this only ever serves unpoliced names.
3. ``answer_norec_from_cache``: the closest delegation in the RRset cache is
   sent as a referral by the worker (no module runs). Only when no
   delegation at all is cached (or, with the validator, it still has to be
   validated) does the query reach the modules (``mesh_new_client``).
4. Modules: the dnsfw module evaluates it with ``rd = false``: zones with
   recursive-only yes are skipped, zones with ``--recursive-only no``
   apply. A query passed on gets the iterator's RD=0 answer: the cached
   delegation (after priming, the root referral), never a full resolution.

So ``--recursive-only no`` takes effect on an RD=0 query only while the
cache holds no delegation for it (tested on a fresh resolver), and an RD=0
query never gets the unrewritten data of a policed name: it gets the
policy answer or a referral (tested with the delegation cached, after the
name was rewritten, after a Response-IP rewrite left the A RRset cached, and
after a rule was added for a cached answer).

    .            NS ns.root.         (127.B.0.1)
    tld.         NS ns1.tld.         (127.B.1.1)
    good.tld.    NS ns1.good.tld.    (127.B.4.1)

Clients: 127.0.0.9 has ``allow_snoop`` (its RD=0 queries are served);
127.0.0.1 has plain ``allow``.
"""
from __future__ import annotations

import re
import socket

import pytest

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

import delegation
import dnsfw_harness as h

NOERROR = dns.rcode.NOERROR
NXDOMAIN = dns.rcode.NXDOMAIN
REFUSED = dns.rcode.REFUSED
SOA = delegation.SOA

SNOOP = "127.0.0.9"
ACL = [f"access-control: {SNOOP}/32 allow_snoop"]

SERVERS = {
    "root": (["0.1"], ["."]),
    "tlds": (["1.1"], ["tld."]),
    "leaves": (["4.1"], ["good.tld."]),
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
good 60 IN NS ns1.good.tld.
ns1.good 60 IN A {ip('4.1')}
""",
        # Every policed name exists upstream with its own data, so a missing
        # rewrite shows up as that data.
        "good.tld.": f"""$ORIGIN good.tld.
{SOA}
@ 60 IN NS ns1.good.tld.
ns1 60 IN A {ip('4.1')}
www 300 IN A 100.64.1.1
ro 300 IN A 100.64.1.2
nro 300 IN A 100.64.1.3
ok 300 IN A 100.64.1.4
both 300 IN A 100.64.1.5
late 300 IN A 100.64.1.6
late-ro 300 IN A 100.64.1.7
ipnro 300 IN A 100.64.2.3
""",
    }


# Zone order: ro.rpz first, so for both.good.tld it wins at RD=1 and is
# skipped at RD=0 (then nro.rpz's rule applies).
RO_RPZ = """$ORIGIN ro.rpz.
$TTL 60
@ SOA ns.ro.rpz. hostmaster.ro.rpz. 1 3600 900 604800 60
ro.good.tld CNAME .
both.good.tld CNAME .
"""

NRO_RPZ = """$ORIGIN nro.rpz.
$TTL 60
@ SOA ns.nro.rpz. hostmaster.nro.rpz. 1 3600 900 604800 60
nro.good.tld CNAME *.
both.good.tld CNAME *.
32.3.2.64.100.rpz-ip CNAME *.
"""

# The same zone with a rule for a name whose answer is already cached.
NRO_RPZ_LATE = NRO_RPZ.replace(" 1 3600 ", " 2 3600 ") + "late.good.tld CNAME *.\n"
RO_RPZ_LATE = RO_RPZ.replace(" 1 3600 ", " 2 3600 ") + "late-ro.good.tld CNAME .\n"

# A store without any rule for the names asked: "Unbound without policy".
PLAIN_RPZ = """$ORIGIN plain.rpz.
$TTL 60
@ SOA ns.plain.rpz. hostmaster.plain.rpz. 1 3600 900 604800 60
unrelated.invalid CNAME .
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    h.require(h.NSD_BIN, h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    work = tmp_path_factory.mktemp("ro-world")
    base = delegation.pick_base(delegation.server_octets(SERVERS))
    hier = delegation.Hierarchy(work, base, zone_texts(base), SERVERS).start()
    try:
        yield hier
    finally:
        hier.stop()


def _listening(env: delegation.Env) -> bool:
    """Readiness without caching anything: the module answers names under
    refresh.dnsfw.internal. itself (REFUSED), they are never resolved."""
    try:
        q = dns.message.make_query("g0-0.refresh.dnsfw.internal.", "A")
        dns.query.udp(q, h.LOOPBACK, timeout=0.3, port=env.port)
        return True
    except (dns.exception.Timeout, OSError):
        return False


def start_env(world, tmp_path_factory, name: str, *, cold: bool,
              plain: bool = False) -> delegation.Env:
    """Unbound + module with ro.rpz and nro.rpz (or only plain.rpz). ``cold``:
    nothing is resolved before the tests (empty cache); otherwise
    www.good.tld is resolved first (root, tld. and good.tld. cached)."""
    e = delegation.Env(world, tmp_path_factory.mktemp(name))
    if plain:
        e.load("plain.rpz", PLAIN_RPZ)
        zones = ["plain.rpz"]
    else:
        e.load("ro.rpz", RO_RPZ)
        e.load("nro.rpz", NRO_RPZ, "--recursive-only", "no")
        zones = ["ro.rpz", "nro.rpz"]
    return e.start(zones, extra=ACL, ready=_listening if cold else None)


@pytest.fixture
def cold(world, tmp_path_factory):
    e = start_env(world, tmp_path_factory, "cold", cold=True)
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture
def cold_plain(world, tmp_path_factory):
    e = start_env(world, tmp_path_factory, "cold-plain", cold=True, plain=True)
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture(scope="module")
def warm(world, tmp_path_factory):
    e = start_env(world, tmp_path_factory, "warm", cold=False)
    try:
        yield e
    finally:
        e.stop()


# ---------------------------------------------------------------------------
# Helpers

def ask(env: delegation.Env, name: str, rd: bool, source: str = SNOOP,
        qtype: str = "A") -> h.Reply:
    """One UDP query (EDNS, DO=0) with RD=``rd`` from ``source``."""
    q = h.make_query(name, qtype)
    if not rd:
        q.flags &= ~dns.flags.RD
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((source, 0))
        port = sock.getsockname()[1]
        sock.setblocking(False)
        msg = dns.query.udp(q, h.LOOPBACK, timeout=3.0, port=env.port, sock=sock,
                            ignore_unexpected=True)
    finally:
        sock.close()
    return h.Reply(msg, port, "udp", source)


def shape(r: h.Reply) -> dict:
    """Everything of a reply but its id and TTLs."""
    flags = dns.flags.to_text(r.msg.flags).split()
    return {"rcode": dns.rcode.to_text(r.rcode), "flags": sorted(flags),
            "answer": r.answer_set(), "authority": h.rrsets_text(r.msg.authority),
            "additional": h.rrsets_text(r.msg.additional),
            "ede": sorted((o.code, o.text or "") for o in r.ede())}


def referral(owner: str, ns: str, glue: str) -> dict:
    """The shape of an RD=0 referral: NOERROR, QR RA (no AA, no RD), no
    answer, the delegation's NS in authority and its glue in additional."""
    return {"rcode": "NOERROR", "flags": ["QR", "RA"], "answer": set(),
            "authority": {f"{owner} NS {ns}"}, "additional": {glue}, "ede": []}


def no_hit(env: delegation.Env, name: str, r: h.Reply) -> None:
    """No hit-log line for this query: asks a logged marker (RD=1) first and
    waits for its line, so the asynchronous writer has caught up."""
    m = ask(env, "ro.good.tld.", True)
    env.hits.wait_for("ro.good.tld.", m.client_port, "udp")
    assert env.hits.matching(name, r.client_port, "udp") == [], env.hits.tail()


def hit(env: delegation.Env, name: str, r: h.Reply) -> dict:
    return env.hits.wait_for(name, r.client_port, "udp")


def is_policy_nodata(r: h.Reply, zone: str) -> bool:
    """The zone's NODATA: NOERROR, no answer, nothing in authority, the
    policy zone's SOA in additional, EDE 15 naming the zone."""
    s = shape(r)
    return (s["rcode"] == "NOERROR" and not s["answer"] and not s["authority"]
            and len(s["additional"]) == 1
            and next(iter(s["additional"])).startswith(f"{zone}. SOA ns.{zone}. ")
            and [c for c, _ in s["ede"]] == [15] and f"zone {zone}." in s["ede"][0][1])


def data_of(r: h.Reply, name: str) -> set[str]:
    """Every record owned by ``name`` in any section of the reply."""
    owner = name.lower()
    return {x for x in r.answer_set() | h.rrsets_text(r.msg.authority)
            | h.rrsets_text(r.msg.additional) if x.split()[0] == owner}


def sweeps(env: delegation.Env) -> int:
    return len(re.findall(r"store generation \d+: .*policed now", env.proc.stderr()))


def reload_zone(env: delegation.Env, zone: str, text: str, *flags: str) -> None:
    """Loads a new version of ``zone`` and waits until the module has swept
    the message cache for it."""
    before = sweeps(env)
    env.load(zone, text, *flags)
    h.wait_until(lambda: sweeps(env) > before, 10,
                 "the module to sweep the cache after the store change",
                 on_timeout=env.proc.describe)


# ---------------------------------------------------------------------------
# The ACL: without allow_snoop Unbound refuses RD=0 itself

def test_rd0_refused_without_allow_snoop(warm):
    r = ask(warm, "nro.good.tld.", False, source=h.LOOPBACK)
    assert r.rcode == REFUSED and r.answer_set() == set(), str(r)
    assert not any(o.code == 15 for o in r.ede()), str(r)
    no_hit(warm, "nro.good.tld.", r)


# ---------------------------------------------------------------------------
# Uncached (fresh resolver): the RD=0 query reaches the module

def test_rd0_uncached_recursive_only_yes_not_rewritten(cold, cold_plain):
    # What Unbound answers without policy: a second fresh resolver whose
    # store has no rule for the name, asked the same way. The iterator
    # primes the root (stub) and, RD=0, returns that priming answer: the
    # root NS RRset in the ANSWER section and its glue, nothing resolved.
    root_ns = {"rcode": "NOERROR", "flags": ["QR", "RA"], "answer": {". NS ns.root."},
               "authority": set(), "additional": {f"ns.root. A {cold.hier.ip('0.1')}"},
               "ede": []}
    plain = ask(cold_plain, "ro.good.tld.", False)
    assert shape(plain) == root_ns, str(plain)
    r = ask(cold, "ro.good.tld.", False)
    assert shape(r) == shape(plain), f"with policy:\n{r}\nwithout:\n{plain}"
    no_hit(cold, "ro.good.tld.", r)
    # RD=1: rewritten (ro.rpz's NXDOMAIN)
    r = ask(cold, "ro.good.tld.", True)
    assert r.rcode == NXDOMAIN and r.answer_set() == set(), str(r)
    assert hit(cold, "ro.good.tld.", r)["zone"] == "ro.rpz.", cold.hits.tail()


def test_rd0_uncached_recursive_only_no_rewritten(cold):
    r = ask(cold, "nro.good.tld.", False)
    assert is_policy_nodata(r, "nro.rpz"), str(r)
    assert "RD" not in shape(r)["flags"], str(r)
    got = hit(cold, "nro.good.tld.", r)
    assert got["zone"] == "nro.rpz." and got["action"] == "nodata", got


def test_rd0_skips_recursive_only_zone_and_applies_the_next(cold):
    # both.good.tld: ro.rpz (first, recursive-only yes) NXDOMAIN, nro.rpz NODATA
    r = ask(cold, "both.good.tld.", False)
    assert is_policy_nodata(r, "nro.rpz"), str(r)
    assert hit(cold, "both.good.tld.", r)["zone"] == "nro.rpz.", cold.hits.tail()
    r = ask(cold, "both.good.tld.", True)
    assert r.rcode == NXDOMAIN, str(r)
    assert hit(cold, "both.good.tld.", r)["zone"] == "ro.rpz.", cold.hits.tail()


# ---------------------------------------------------------------------------
# A delegation is cached: Unbound answers RD=0 itself (referral or cache)

def good_referral(env: delegation.Env) -> dict:
    return referral("good.tld.", "ns1.good.tld.", f"ns1.good.tld. A {env.hier.ip('4.1')}")


def test_rd0_with_cached_delegation_gets_referral_not_policy(warm):
    # The documented limit: the worker answers from the RRset cache, so
    # recursive-only no cannot apply; the referral has no data of the name.
    for name in ("nro.good.tld.", "ro.good.tld."):
        r = ask(warm, name, False)
        assert shape(r) == good_referral(warm), str(r)
        no_hit(warm, name, r)


def test_rd0_cached_unpoliced_answer_served(warm):
    r1 = ask(warm, "ok.good.tld.", True)
    assert r1.answer_set() == {"ok.good.tld. A 100.64.1.4"}, str(r1)
    r0 = ask(warm, "ok.good.tld.", False)
    assert r0.rcode == NOERROR and r0.answer_set() == r1.answer_set(), str(r0)


@pytest.mark.parametrize("name, data", [
    ("nro.good.tld.", "nro.good.tld. A 100.64.1.3"),    # QNAME, query stage
    ("ipnro.good.tld.", "ipnro.good.tld. A 100.64.2.3"),  # Response-IP: A RRset stays cached
])
def test_rd0_never_gets_unrewritten_data_of_policed_name(warm, name, data):
    r = ask(warm, name, True)
    assert is_policy_nodata(r, "nro.rpz"), str(r)
    r = ask(warm, name, True)  # and again: not from the cache either
    assert is_policy_nodata(r, "nro.rpz"), str(r)
    r = ask(warm, name, False)
    assert data not in r.answer_set() and not data_of(r, name), str(r)
    assert shape(r) == good_referral(warm) or is_policy_nodata(r, "nro.rpz"), str(r)


def test_rd0_rule_added_after_answer_cached(warm):
    # cached while unpoliced, then a recursive-only-no rule: the sweep
    # removes the cached answer, so RD=0 cannot get it any more.
    r = ask(warm, "late.good.tld.", True)
    assert r.answer_set() == {"late.good.tld. A 100.64.1.6"}, str(r)
    assert ask(warm, "late.good.tld.", False).answer_set() == r.answer_set()  # cached
    reload_zone(warm, "nro.rpz", NRO_RPZ_LATE)
    r = ask(warm, "late.good.tld.", False)
    assert not data_of(r, "late.good.tld."), str(r)
    assert shape(r) == good_referral(warm), str(r)
    r = ask(warm, "late.good.tld.", True)
    assert is_policy_nodata(r, "nro.rpz"), str(r)


def test_rd0_rule_in_recursive_only_zone_still_expires_cached_answer(warm):
    # RD=1 must be rewritten after the change, so the cached answer goes
    # even though the zone would not rewrite RD=0 (RD=0 then gets a referral).
    r = ask(warm, "late-ro.good.tld.", True)
    assert r.answer_set() == {"late-ro.good.tld. A 100.64.1.7"}, str(r)
    reload_zone(warm, "ro.rpz", RO_RPZ_LATE)
    r = ask(warm, "late-ro.good.tld.", True)
    assert r.rcode == NXDOMAIN, str(r)
    r = ask(warm, "late-ro.good.tld.", False)
    assert shape(r) == good_referral(warm), str(r)
