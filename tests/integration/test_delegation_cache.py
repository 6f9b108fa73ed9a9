"""Delegations stay cached although the module keeps answers out of the
message cache until it has decided them (module/README.md, "Unbound's cache",
item 0): after one resolution through root -> tld. -> good.tld., the root and
TLD servers are stopped, and another name of good.tld. must still resolve from
the cached referral (it would fail if referrals were no longer cached)."""
import dns.rcode

import delegation
import dnsfw_harness as h
import test_triggers as tt

POLICY = """$ORIGIN guard.rpz.
$TTL 60
@ SOA ns.guard.rpz. hostmaster.guard.rpz. 1 3600 900 604800 60
blocked.good.tld CNAME .
32.2.66.0.192.rpz-ip CNAME .
"""


def test_referrals_are_still_cached(tmp_path):
    h.require(h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    hier = tt.Hierarchy(tmp_path / "hier").start()
    try:
        (tmp_path / "env").mkdir()
        env = delegation.Env(hier, tmp_path / "env")
        env.load("guard.rpz", POLICY)
        env.start(["guard.rpz"])  # resolves www.good.tld. through every cut
        try:
            names = [p.name for p in hier.procs]
            assert names[:2] == ["nsd-root", "nsd-tlds"], names
            for p in hier.procs[:2]:
                p.stop()
            r = env.q("twice.good.tld.")
            assert r.rcode == dns.rcode.NOERROR, r
            assert r.answer_set() == {f"twice.good.tld. A {hier.ip('202.6')}"}, r
            # and the policy still applies on that path
            r = env.q("blocked.good.tld.")
            assert r.rcode == dns.rcode.NXDOMAIN, r
        finally:
            env.stop()
    finally:
        hier.stop()
