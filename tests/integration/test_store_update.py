"""A store changed while the resolver runs is enforced without a restart.

A dedicated resolver (its own store, zone "update.rpz") so the shared
session resolver's rules never change under other tests.
  v1 (tests/data/integration/update-v1.rpz): gone.update.example, kept.update.example
  v2 (update-v2.rpz):                        kept, new (never queried before),
                                             cached (queried, so cached, before)
"""
from __future__ import annotations

import dns.edns
import dns.rcode
import pytest

import dnsfw_harness as h
from dnsfw_harness import require

ZONE = "update.rpz"


@pytest.fixture(scope="module")
def update_resolver(nsd, tmp_path_factory):
    require(h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    work = tmp_path_factory.mktemp("update")
    store = work / "store.lmdb"
    cp = h.zone_load(store, ZONE, h.DATA / "update-v1.rpz")
    assert cp.returncode == 0, h.describe_run(cp)
    r = h.Resolver(store=store, forward_port=nsd.port, workdir=work, zones=[ZONE]).start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def reloaded(update_resolver):
    """Queries under v1, then loads v2 with the resolver running. Returns the
    v1-time replies."""
    r = update_resolver
    before = {name: r.query(f"{name}.update.example.", "A", "udp")
              for name in ("gone", "kept", "cached")}
    cp = h.zone_load(r.store, ZONE, h.DATA / "update-v2.rpz")
    assert cp.returncode == 0, h.describe_run(cp)
    return before


def test_v1_enforced_before_reload(reloaded):
    assert reloaded["gone"].rcode == dns.rcode.NXDOMAIN, str(reloaded["gone"])
    assert reloaded["kept"].rcode == dns.rcode.NXDOMAIN, str(reloaded["kept"])
    cached = reloaded["cached"]
    assert cached.rcode == dns.rcode.NOERROR, str(cached)
    assert cached.answer_set() == {"cached.update.example. A 198.51.100.91"}, str(cached)


def _assert_blocked(r: h.Resolver, qname: str, rule: str, transport: str = "udp"):
    reply = r.query(qname, "A", transport)
    assert reply.rcode == dns.rcode.NXDOMAIN, f"{qname} not blocked after the reload\n{reply}"
    blocked = [o for o in reply.ede() if o.code == dns.edns.EDECode.BLOCKED]
    assert blocked and ZONE in (blocked[0].text or "").lower(), str(reply)
    entry = r.hitlog.wait_for(qname, reply.client_port, transport)
    assert entry.get("action") == "nxdomain" and h.rule_matches(entry.get("rule", ""), rule, ZONE), entry


def test_new_rule_enforced_without_restart(update_resolver, reloaded):
    """The brief's requirement: a rule added by `dnsfw zone load` applies to
    the next query for a name the resolver has not cached."""
    _assert_blocked(update_resolver, "new.update.example.", "new.update.example")
    assert update_resolver.process.alive()


def test_kept_rule_still_enforced(update_resolver, reloaded):
    _assert_blocked(update_resolver, "kept.update.example.", "kept.update.example", "tcp")


def test_removed_rule_no_longer_enforced(update_resolver, reloaded):
    reply = update_resolver.query("gone.update.example.", "A", "udp")
    assert reply.rcode == dns.rcode.NOERROR, f"rule removed in v2 still applied\n{reply}"
    assert reply.answer_set() == {"gone.update.example. A 198.51.100.92"}, str(reply)
    assert not reply.ede()


def test_new_rule_enforced_for_cached_name(update_resolver, reloaded):
    """Stricter than the brief (docs/unbound-integration.md trap 1): a name
    whose upstream answer is in the cache from before the reload is blocked
    by the new rule too, not served from cache until its TTL (300 s) expires."""
    _assert_blocked(update_resolver, "cached.update.example.", "cached.update.example")


def test_reload_under_load_is_atomic(update_resolver, reloaded):
    """While queries run, replace the zone repeatedly (v1 <-> v2, ending on
    v2). kept.update.example is blocked in both versions: every answer must
    be NXDOMAIN, never a half-replaced zone's NOERROR or a SERVFAIL."""
    import threading

    r = update_resolver
    stop = threading.Event()
    wrong: list[str] = []
    count = [0]

    def hammer():
        while not stop.is_set():
            reply = r.query("kept.update.example.", "A", "udp")
            count[0] += 1
            if reply.rcode != dns.rcode.NXDOMAIN:
                wrong.append(f"{reply.rcode_text()} {sorted(reply.answer_set())}")

    workers = [threading.Thread(target=hammer) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        for version in ("v1", "v2", "v1", "v2"):
            cp = h.zone_load(r.store, ZONE, h.DATA / f"update-{version}.rpz")
            assert cp.returncode == 0, h.describe_run(cp)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=10)
    assert count[0] > 0
    assert not wrong, wrong[:10]
    assert r.process.alive(), r.describe()
