"""Response-stage triggers and CNAME chains through a real delegation
hierarchy (module side of issue 3).

Three NSD instances on 127.B.x.y port 53 (B picked at run time so that no
other suite's servers collide) serve a root zone, the TLDs `tld.` and `net.`,
and the leaf zones `evil.tld.`, `good.tld.`, `hosted.tld.` (one NSD, three
addresses: siblings, so answering all three from one server does not change
the path). Unbound runs with `stub-zone: "."` pointing at the root server and
`do-not-query-localhost: no`, so every query walks root -> tld -> leaf and
the RRset cache holds the NS RRsets and glue of every zone cut, which is what
the NSDNAME/NSIP triggers read.

    .            NS ns.root.           (127.B.0.1)
    tld.         NS ns1.tld.           (127.B.1.1)
    net.         NS ns1.net.           (127.B.2.1)
    evil.tld.    NS ns1.evil.tld.      (127.B.3.1)
    good.tld.    NS ns1.good.tld.      (127.B.4.1)
    hosted.tld.  NS ns.hoster.net.     (127.B.5.1, out of bailiwick: its address
                                         comes from net.)

Client addresses: 127.0.0.1 (default), 127.0.0.66 (the CLIENT-IP rule's).
"""
from __future__ import annotations

from pathlib import Path

import pytest

import dns.rcode

import delegation
import dnsfw_harness as h

NOERROR = dns.rcode.NOERROR
NXDOMAIN = dns.rcode.NXDOMAIN


# ---------------------------------------------------------------------------
# The hierarchy

SERVER_OCTETS = ["0.1", "1.1", "2.1", "3.1", "4.1", "5.1"]


SOA = delegation.SOA


def zones(b: int) -> dict[str, str]:
    ip = lambda o: f"127.{b}.{o}"  # noqa: E731
    return {
        ".": f"""$ORIGIN .
{SOA}
. 60 IN NS ns.root.
ns.root. 60 IN A {ip('0.1')}
tld. 60 IN NS ns1.tld.
ns1.tld. 60 IN A {ip('1.1')}
net. 60 IN NS ns1.net.
ns1.net. 60 IN A {ip('2.1')}
""",
        "tld.": f"""$ORIGIN tld.
{SOA}
@ 60 IN NS ns1.tld.
ns1 60 IN A {ip('1.1')}
evil 60 IN NS ns1.evil.tld.
ns1.evil 60 IN A {ip('3.1')}
good 60 IN NS ns1.good.tld.
ns1.good 60 IN A {ip('4.1')}
hosted 60 IN NS ns.hoster.net.
""",
        "net.": f"""$ORIGIN net.
{SOA}
@ 60 IN NS ns1.net.
ns1 60 IN A {ip('2.1')}
ns.hoster 60 IN A {ip('5.1')}
""",
        "evil.tld.": f"""$ORIGIN evil.tld.
{SOA}
@ 60 IN NS ns1.evil.tld.
ns1 60 IN A {ip('3.1')}
www 300 IN A {ip('201.1')}
""",
        "good.tld.": f"""$ORIGIN good.tld.
{SOA}
@ 60 IN NS ns1.good.tld.
ns1 60 IN A {ip('4.1')}
www 300 IN A {ip('202.1')}
to-evil 300 IN CNAME www.evil.tld.
to-hosted 300 IN CNAME www.hosted.tld.
to-blocked 300 IN CNAME blocked.good.tld.
blocked 300 IN A {ip('202.2')}
chain 300 IN CNAME c2.good.tld.
c2 300 IN CNAME c3.good.tld.
c3 300 IN A {ip('202.3')}
late 300 IN CNAME late-target.good.tld.
late-target 300 IN A {ip('202.4')}
badip 300 IN A {ip('66.6')}
to-badip 300 IN CNAME badip.good.tld.
mixed 300 IN A {ip('202.5')}
mixed 300 IN A {ip('66.7')}
twice 300 IN A {ip('202.6')}
allowed 300 IN A {ip('202.7')}
dis 300 IN A {ip('202.8')}
ov 300 IN A {ip('202.9')}
quiet 300 IN A {ip('202.10')}
ttl 300 IN A {ip('202.11')}
cov 300 IN A {ip('202.12')}
""",
        "hosted.tld.": f"""$ORIGIN hosted.tld.
{SOA}
@ 60 IN NS ns.hoster.net.
www 300 IN A {ip('203.1')}
""",
    }


# Which NSD serves which zones on which addresses.
SERVERS = {
    "root": (["0.1"], ["."]),
    "tlds": (["1.1", "2.1"], ["tld.", "net."]),
    "leaves": (["3.1", "4.1", "5.1"], ["evil.tld.", "good.tld.", "hosted.tld."]),
}


def Hierarchy(workdir: Path) -> delegation.Hierarchy:
    """The hierarchy of this module's docstring (not started)."""
    base = delegation.pick_base(SERVER_OCTETS)
    return delegation.Hierarchy(workdir, base, zones(base), SERVERS)


write_stub_unbound_conf = delegation.write_stub_unbound_conf


def rules_text(b: int) -> str:
    """The policy zone of these tests (triggers.rpz)."""
    return f"""$ORIGIN triggers.rpz.
$TTL 60
@ SOA ns.triggers.rpz. hostmaster.triggers.rpz. 1 3600 900 604800 60
@ NS ns.triggers.rpz.
; QNAME on a CNAME target
blocked.good.tld CNAME .
; stop at the first hit: c2 (local data) before c3 (NXDOMAIN)
c2.good.tld A 192.0.2.22
c3.good.tld CNAME .
; Response-IP: 127.B.66.0/24 (answers of badip, to-badip, mixed)
24.0.66.{b}.127.rpz-ip CNAME .
; NSDNAME: everything served by ns1.evil.tld
ns1.evil.tld.rpz-nsdname CNAME *.
; NSIP: everything served by 127.B.5.1 (ns.hoster.net)
32.1.5.{b}.127.rpz-nsip A 192.0.2.55
"""


# CLIENT-IP rules switch the message cache off for client answers, so they
# live in their own zone and resolver (the tests above must run with the
# cache on: they check that rewritten answers are not served from it).
CLIENTS_RPZ = """$ORIGIN clients.rpz.
$TTL 60
@ SOA ns.clients.rpz. hostmaster.clients.rpz. 1 3600 900 604800 60
@ NS ns.clients.rpz.
; CLIENT-IP: 127.0.0.66/32 is blocked, whatever it asks
32.66.0.0.127.rpz-client-ip CNAME .
; an allow-listed client
32.67.0.0.127.rpz-client-ip CNAME rpz-passthru.
twice.good.tld CNAME .
"""


Env = delegation.Env


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory):
    h.require(h.NSD_BIN)
    hier = Hierarchy(tmp_path_factory.mktemp("hier")).start()
    try:
        yield hier
    finally:
        hier.stop()


def _zone_loads_ip_triggers(env: Env) -> bool:
    """Whether `dnsfw zone load` stores IP/NS triggers yet (the rpz parser)."""
    f = env.workdir / "probe.zone"
    f.write_text("$ORIGIN probe.rpz.\n@ 60 SOA ns. h. 1 1 1 1 1\n"
                 "32.1.0.0.127.rpz-ip 60 CNAME .\n")
    cp = h.dnsfw("zone", "load", "--store", env.workdir / "probe-store", "--zone", "probe.rpz", f)
    return cp.returncode == 0 and "not yet supported" not in cp.stderr


@pytest.fixture(scope="module")
def client_env(hierarchy, tmp_path_factory):
    h.require(h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    e = Env(hierarchy, tmp_path_factory.mktemp("clients"))
    e.ip_triggers = _zone_loads_ip_triggers(e)
    e.load("clients.rpz", CLIENTS_RPZ)
    e.start(["clients.rpz"])
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture(scope="module")
def env(hierarchy, tmp_path_factory):
    h.require(h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    e = Env(hierarchy, tmp_path_factory.mktemp("triggers"))
    e.ip_triggers = _zone_loads_ip_triggers(e)
    e.load("triggers.rpz", rules_text(hierarchy.base))
    e.load("late.rpz", "$ORIGIN late.rpz.\n@ 60 SOA ns. h. 1 1 1 1 1\n"
           "placeholder.invalid 60 CNAME .\n")
    e.start(["triggers.rpz", "late.rpz"])
    try:
        yield e
    finally:
        e.stop()


def need_ip_triggers(env: Env) -> None:
    if not env.ip_triggers:
        pytest.skip("dnsfw zone load does not store IP/NS triggers yet")


def answer(r: h.Reply) -> set[str]:
    return r.answer_set()


def wait_hit(env: Env, qname: str, r: h.Reply) -> dict:
    return env.hits.wait_for(qname, r.client_port, r.transport)


# ---------------------------------------------------------------------------
# Sanity: the hierarchy really is walked

def test_hierarchy_resolves_through_every_cut(env):
    ip = env.hier.ip
    r = env.q("www.good.tld.")
    assert r.rcode == NOERROR, r
    assert answer(r) == {f"www.good.tld. A {ip('202.1')}"}, r
    r = env.q("www.hosted.tld.")  # NS name out of bailiwick, resolved via net.
    assert answer(r) == {"www.hosted.tld. A 192.0.2.55"} or r.rcode == NOERROR, r


# ---------------------------------------------------------------------------
# CNAME chains (QNAME triggers on every CNAME target)

def test_cname_target_blocked_and_upstream_cname_kept(env):
    for attempt in range(2):  # the second comes after the iterator cached the answer
        r = env.q("to-blocked.good.tld.")
        assert r.rcode == NXDOMAIN, f"attempt {attempt}:\n{r}"
        assert answer(r) == {"to-blocked.good.tld. CNAME blocked.good.tld."}, r
        hit = wait_hit(env, "to-blocked.good.tld.", r)
        assert hit["trigger"] == "qname" and hit["action"] == "nxdomain", hit
        assert h.rule_matches(hit["rule"], "blocked.good.tld", "triggers.rpz"), hit
        assert hit["match"] == "blocked.good.tld.", hit  # the chain link that matched
        assert any(o.code == 15 for o in r.ede()), r


def test_chained_target_not_served_from_cache(env):
    # Resolving to-blocked cached blocked.good.tld's own answer too (the
    # iterator stores each chased target): it must not bypass the rule.
    env.q("to-blocked.good.tld.")
    r = env.q("blocked.good.tld.")
    assert r.rcode == NXDOMAIN, r
    assert answer(r) == set(), r


def test_chain_stops_at_first_hit(env):
    for attempt in range(2):
        r = env.q("chain.good.tld.")
        assert r.rcode == NOERROR, f"attempt {attempt}:\n{r}"
        assert answer(r) == {"chain.good.tld. CNAME c2.good.tld.",
                             "c2.good.tld. A 192.0.2.22"}, r


def test_rule_added_after_chain_was_cached(env):
    ip = env.hier.ip
    r = env.q("late.good.tld.")
    assert answer(r) == {"late.good.tld. CNAME late-target.good.tld.",
                         f"late-target.good.tld. A {ip('202.4')}"}, r
    env.load("late.rpz", "$ORIGIN late.rpz.\n@ 60 SOA ns. h. 2 1 1 1 1\n"
             "late-target.good.tld 60 CNAME .\n")

    def blocked():
        return env.q("late.good.tld.").rcode == NXDOMAIN
    h.wait_until(blocked, 5, "late.good.tld (cached chain) to be blocked after the rule load")
    r = env.q("late.good.tld.")
    assert answer(r) == {"late.good.tld. CNAME late-target.good.tld."}, r


# ---------------------------------------------------------------------------
# Response-IP, NSDNAME, NSIP, CLIENT-IP

def test_response_ip(env):
    need_ip_triggers(env)
    for attempt in range(2):
        r = env.q("badip.good.tld.")
        assert r.rcode == NXDOMAIN, f"attempt {attempt}:\n{r}"
        hit = wait_hit(env, "badip.good.tld.", r)
        assert hit["trigger"] == "response-ip", hit
        assert hit["rule"] == f"127.{env.hier.base}.66.0/24", hit
        assert hit["match"] == "badip.good.tld.", hit
    # at the end of a CNAME chain: the CNAME stays
    r = env.q("to-badip.good.tld.")
    assert r.rcode == NXDOMAIN, r
    assert answer(r) == {"to-badip.good.tld. CNAME badip.good.tld."}, r
    hit = wait_hit(env, "to-badip.good.tld.", r)
    assert hit["trigger"] == "response-ip" and hit["match"] == "badip.good.tld.", hit
    # one of two addresses is enough
    assert env.q("mixed.good.tld.").rcode == NXDOMAIN
    # AAAA query: no A records in the answer, no match
    r = env.q("badip.good.tld.", "TXT")
    assert r.rcode == NOERROR, r


def test_nsdname(env):
    need_ip_triggers(env)
    for attempt in range(2):
        r = env.q("www.evil.tld.")
        assert r.rcode == NOERROR and answer(r) == set(), f"attempt {attempt}:\n{r}"
        hit = wait_hit(env, "www.evil.tld.", r)
        assert hit["trigger"] == "nsdname" and hit["action"] == "nodata", hit
    # reached through a CNAME from an innocent zone
    r = env.q("to-evil.good.tld.")
    assert r.rcode == NOERROR, r
    assert answer(r) == {"to-evil.good.tld. CNAME www.evil.tld."}, r
    # an innocent zone is not affected
    assert answer(env.q("www.good.tld.")) == {f"www.good.tld. A {env.hier.ip('202.1')}"}


def test_nsip(env):
    need_ip_triggers(env)
    for attempt in range(2):
        r = env.q("www.hosted.tld.")
        assert r.rcode == NOERROR, r
        assert answer(r) == {"www.hosted.tld. A 192.0.2.55"}, f"attempt {attempt}:\n{r}"
        hit = wait_hit(env, "www.hosted.tld.", r)
        assert hit["trigger"] == "nsip", hit
        assert hit["rule"] == f"127.{env.hier.base}.5.1/32", hit


def test_response_ip_rule_added_after_answer_was_cached(env):
    need_ip_triggers(env)
    ip = env.hier.ip
    r = env.q("twice.good.tld.")
    assert answer(r) == {f"twice.good.tld. A {ip('202.6')}"}, r
    b = env.hier.base
    env.load("late.rpz", "$ORIGIN late.rpz.\n@ 60 SOA ns. h. 3 1 1 1 1\n"
             f"32.6.202.{b}.127.rpz-ip 60 CNAME *.\n")

    def rewritten():
        r = env.q("twice.good.tld.")
        return r.rcode == NOERROR and not r.msg.answer
    h.wait_until(rewritten, 5, "twice.good.tld (cached) to get NODATA after the rpz-ip rule load")


def test_client_ip_blocked_even_when_cached_for_others(client_env):
    env = client_env
    need_ip_triggers(env)
    ip = env.hier.ip
    for attempt in range(2):
        r = env.q("allowed.good.tld.")
        assert answer(r) == {f"allowed.good.tld. A {ip('202.7')}"}, f"attempt {attempt}:\n{r}"
        r = env.q("allowed.good.tld.", source="127.0.0.66")
        assert r.rcode == NXDOMAIN, f"attempt {attempt}:\n{r}"
        hit = wait_hit(env, "allowed.good.tld.", r)
        assert hit["trigger"] == "client-ip" and hit["rule"] == "127.0.0.66/32", hit


def test_client_ip_passthru_gets_real_answer_when_blocked_for_others(client_env):
    env = client_env
    need_ip_triggers(env)
    ip = env.hier.ip
    for attempt in range(2):
        r = env.q("twice.good.tld.")
        assert r.rcode == NXDOMAIN, f"attempt {attempt}:\n{r}"
        r = env.q("twice.good.tld.", source="127.0.0.67")
        assert answer(r) == {f"twice.good.tld. A {ip('202.6')}"}, f"attempt {attempt}:\n{r}"
        hit = wait_hit(env, "twice.good.tld.", r)
        assert hit["trigger"] == "client-ip" and hit["action"] == "passthru", hit
        # and the next client again gets the block, not the cached real answer
        r = env.q("twice.good.tld.", source="127.0.0.68")
        assert r.rcode == NXDOMAIN, f"attempt {attempt}:\n{r}"


# ---------------------------------------------------------------------------
# Per-zone settings (dnsfw zone load --policy ... flags)

SETTINGS_ZONES = [
    ("disabled.rpz", ["--policy", "disabled"], "dis.good.tld CNAME .\n"),
    ("overr.rpz", ["--policy", "nodata"], "ov.good.tld A 192.0.2.9\n"),
    ("quiet.rpz", ["--log", "no", "--ede", "none", "--add-soa", "no"], "quiet.good.tld CNAME .\n"),
    ("ttl.rpz", ["--max-policy-ttl", "30", "--ede", "16", "--ede-text", "custom text"],
     "ttl.good.tld 300 A 192.0.2.30\ndis.good.tld 300 A 192.0.2.31\n"),
    ("cnameov.rpz", ["--policy", "cname", "--policy-cname", "www.good.tld"], "cov.good.tld CNAME .\n"),
    ("keepld.rpz", ["--policy", "cname", "--policy-cname", "www.good.tld",
                    "--override-local-data", "no"],
     "kl.good.tld A 192.0.2.40\nko.good.tld CNAME .\n"),
]


def _cli_has_policy_flags() -> bool:
    cp = h.dnsfw("zone", "load", "--help")
    return "--policy" in cp.stdout + cp.stderr


@pytest.fixture(scope="module")
def settings_env(hierarchy, tmp_path_factory):
    h.require(h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    if not _cli_has_policy_flags():
        pytest.skip("dnsfw zone load has no --policy flags yet")
    e = Env(hierarchy, tmp_path_factory.mktemp("settings"))
    for zone, flags, rules in SETTINGS_ZONES:
        e.load(zone, f"$ORIGIN {zone}.\n$TTL 60\n@ SOA ns. h. 1 3600 900 604800 60\n" + rules,
               *flags)
    e.start([z for z, _, _ in SETTINGS_ZONES])
    try:
        yield e
    finally:
        e.stop()


def test_disabled_zone_logs_and_falls_through(settings_env):
    env = settings_env
    r = env.q("dis.good.tld.")
    assert answer(r) == {"dis.good.tld. A 192.0.2.31"}, r  # ttl.rpz decides
    wait_hit(env, "dis.good.tld.", r)
    lines = env.hits.matching("dis.good.tld.", r.client_port, "udp")
    actions = sorted((line["zone"], line["action"]) for line in lines)
    assert actions == [("disabled.rpz.", "disabled:nxdomain"), ("ttl.rpz.", "local-data")], lines


def test_override_action(settings_env):
    r = settings_env.q("ov.good.tld.")
    assert r.rcode == NOERROR and answer(r) == set(), r
    hit = wait_hit(settings_env, "ov.good.tld.", r)
    assert hit["action"] == "nodata", hit


def test_log_no_ede_none_add_soa_no(settings_env, ):
    env = settings_env
    r = env.q("quiet.good.tld.")
    assert r.rcode == NXDOMAIN, r
    assert r.ede() == [], r
    assert not r.msg.additional and not r.msg.authority, r
    # a later logged hit proves the writer caught up; quiet's line never came
    marker = env.q("ov.good.tld.")
    wait_hit(env, "ov.good.tld.", marker)
    assert env.hits.matching("quiet.good.tld.") == [], env.hits.tail()


def test_max_policy_ttl_and_zone_ede(settings_env):
    r = settings_env.q("ttl.good.tld.")
    assert answer(r) == {"ttl.good.tld. A 192.0.2.30"}, r
    assert all(rrset.ttl <= 30 for rrset in r.msg.answer), r
    ede = r.ede()
    assert len(ede) == 1 and ede[0].code == 16 and "custom text" in (ede[0].text or ""), r


def test_override_local_data_no_keeps_local_data(settings_env):
    ip = settings_env.hier.ip
    # local data keeps its own records under the zone's CNAME override ...
    r = settings_env.q("kl.good.tld.")
    assert r.rcode == NOERROR and answer(r) == {"kl.good.tld. A 192.0.2.40"}, r
    hit = wait_hit(settings_env, "kl.good.tld.", r)
    assert hit["zone"] == "keepld.rpz." and hit["action"] == "local-data", hit
    # ... while the zone's other rules (here NXDOMAIN) take the override
    r = settings_env.q("ko.good.tld.")
    assert r.rcode == NOERROR, r
    assert answer(r) == {"ko.good.tld. CNAME www.good.tld.",
                         f"www.good.tld. A {ip('202.1')}"}, r


def test_cname_override(settings_env):
    ip = settings_env.hier.ip
    r = settings_env.q("cov.good.tld.")
    assert r.rcode == NOERROR, r
    assert answer(r) == {"cov.good.tld. CNAME www.good.tld.",
                         f"www.good.tld. A {ip('202.1')}"}, r
    hit = wait_hit(settings_env, "cov.good.tld.", r)
    assert hit["action"] == "local-data", hit
