"""The hit log's "match" key: which CNAME chain link a logged rule matched.

A DISABLED zone logs one line per chain link it matches and continues; when
one wildcard rule matches several links, the lines differ only in "match".
Runs against the delegation hierarchy of test_triggers.py (its own NSD
instances on a free 127.B.x.y block, and its own Unbound):

    chain.good.tld. CNAME c2.good.tld.
    c2.good.tld.    CNAME c3.good.tld.
    c3.good.tld.    A     127.B.202.3
"""
from __future__ import annotations

import pytest

import dns.rcode

import dnsfw_harness as h
from delegation import Env
from test_triggers import Hierarchy

DISABLED_RPZ = """$ORIGIN watch.rpz.
$TTL 60
@ SOA ns. h. 1 3600 900 604800 60
*.good.tld CNAME .
"""

APPLIED_RPZ = """$ORIGIN apply.rpz.
$TTL 60
@ SOA ns. h. 1 3600 900 604800 60
c3.good.tld A 192.0.2.33
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    h.require(h.NSD_BIN, h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    hier = Hierarchy(tmp_path_factory.mktemp("hier-links")).start()
    try:
        e = Env(hier, tmp_path_factory.mktemp("links"))
        e.load("watch.rpz", DISABLED_RPZ, "--policy", "disabled")
        e.load("apply.rpz", APPLIED_RPZ)
        e.start(["watch.rpz", "apply.rpz"])
        try:
            yield e
        finally:
            e.stop()
    finally:
        hier.stop()


def test_disabled_wildcard_lines_name_each_chain_link(env):
    r = env.q("chain.good.tld.")
    assert r.rcode == dns.rcode.NOERROR, r
    assert r.answer_set() == {"chain.good.tld. CNAME c2.good.tld.",
                              "c2.good.tld. CNAME c3.good.tld.",
                              "c3.good.tld. A 192.0.2.33"}, r

    def four_lines():
        lines = env.hits.matching("chain.good.tld.", r.client_port, r.transport)
        return lines if len(lines) >= 4 else None
    lines = h.wait_until(four_lines, 5, "4 hit-log lines for chain.good.tld.",
                         on_timeout=env.hits.tail)
    got = sorted((l["zone"], l["rule"], l["action"], l["match"]) for l in lines)
    assert got == [
        ("apply.rpz.", "c3.good.tld", "local-data", "c3.good.tld."),
        ("watch.rpz.", "*.good.tld", "disabled:nxdomain", "c2.good.tld."),
        ("watch.rpz.", "*.good.tld", "disabled:nxdomain", "c3.good.tld."),
        ("watch.rpz.", "*.good.tld", "disabled:nxdomain", "chain.good.tld."),
    ], env.hits.tail()
    assert all(l["qname"] == "chain.good.tld." for l in lines), lines


def test_match_is_the_qname_without_a_chain(env):
    # (not www.good.tld.: the start-up probe left its answer in the cache,
    # and cached answers never reach the module)
    r = env.q("allowed.good.tld.")
    assert r.rcode == dns.rcode.NOERROR, r
    hit = env.hits.wait_for("allowed.good.tld.", r.client_port, r.transport)
    assert hit["action"] == "disabled:nxdomain" and hit["match"] == "allowed.good.tld.", hit
