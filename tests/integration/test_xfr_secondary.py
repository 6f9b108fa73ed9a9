"""dnsfw-xfrd as the secondary of a real Knot DNS primary, with a real
Unbound + dnsfw module reading the same store (issue 4, "Tests with real
peers").

World (module scope): Knot primary of threat.rpz. (zone file, journal,
`zonefile-load: difference`, TSIG hmac-sha256, NOTIFY to the daemon) ->
dnsfw-xfrd (store S) -> `dnsfw resolver` over S, forwarding to the session
NSD, which answers every *.garden.example. name with 198.51.100.81. A rule
that is enforced answers NXDOMAIN + EDE 15, one that is not the upstream A.
"""
from __future__ import annotations

import time

import dns.rcode
import pytest

import dnsfw_harness as h
import xfr_harness as x
from xfr_fake_primary import FakePrimary, Fault

FILLER = [f"f{i:04d}" for i in range(300)]  # rules that never change
V1 = x.block("stay", "gone", *FILLER)


class Chain:
    def __init__(self, key, knot, xfrd, resolver):
        self.key, self.knot, self.xfrd, self.resolver = key, knot, xfrd, resolver

    @property
    def store(self):
        return self.xfrd.store

    def describe(self) -> str:
        return self.xfrd.describe() + "\n" + self.knot.log.tail(30)


@pytest.fixture(scope="module")
def chain(nsd, tmp_path_factory):
    x.require_xfr(x.KNOTD, x.KNOTC, x.KDIG, h.MODULE_SO, h.UNBOUND_BIN)
    work = tmp_path_factory.mktemp("xfr_secondary")
    key = x.Key.generate("xfr-key")
    xfrd_port = h.free_port()
    knot = x.Knot(work / "knot", x.ZONE, key, records=V1, serial=100,
                  notify=[f"{x.LOOPBACK}@{xfrd_port}"]).start()
    xfrd = x.Xfrd(work / "xfrd", work / "store", [x.XfrZone(
        primaries=[f"{knot.endpoint()} key {key.name}"],
        allow_transfer=[f"127.0.0.0/8 key {key.name}"])], [key])
    xfrd.port = xfrd_port
    resolver = None
    try:
        xfrd.start()
        x.wait_stored_serial(xfrd.store, 100, describe=xfrd.describe)
        resolver = h.Resolver(store=xfrd.store, forward_port=nsd.port, workdir=work / "resolver",
                              zones=[x.ZONE.rstrip(".")]).start()
        yield Chain(key, knot, xfrd, resolver)
    finally:
        if resolver:
            resolver.stop()
        xfrd.stop()
        knot.stop()


def test_initial_axfr_from_knot(chain):
    """The first transfer is an AXFR; the store holds every rule at Knot's
    serial, the resolver enforces them, status counts one full transfer."""
    z = x.stored_zone(chain.store)
    assert z and int(z["serial"]) == 100 and int(z["rules"]) == len(V1), z
    chain.xfrd.wait_log(rf"info zone threat\.rpz\.: AXFR from 127\.0\.0\.1:{chain.knot.port}")
    assert x.blocked_names(chain.store, [x.garden(n) for n in ("stay", "gone", "f0000", "f0299")]) \
        == {x.garden(n) for n in ("stay", "gone", "f0000", "f0299")}
    row = x.zone_status(chain.store)
    full, incr, failed = x.transfers(row)
    assert (full, failed) == (1, 0) and not row["failing"] and row["serial"] == 100, row
    assert row["primary_serial"] == 100, row
    assert x.is_blocked(chain.resolver.query(x.garden("stay"))), chain.resolver.describe()
    # the daemon, as a primary itself, serves exactly Knot's content
    served = x.kdig_xfr(chain.xfrd.port, key=chain.key)
    assert served.ok, served.output
    assert served.content() == chain.knot.content()


def test_notify_ixfr_enforced_within_a_second_under_load(chain):
    """Done-when of issue 4: an edit on the Knot primary is enforced by the
    resolver within 1 s of the NOTIFY, while clients keep querying: no
    query lost, no SERVFAIL. The change travels as an IXFR of just the
    difference (Knot's log and the daemon's)."""
    r = chain.resolver
    serial = chain.knot.serial
    status_before = x.transfers(x.zone_status(chain.store))
    # 'added' is cached (upstream answer) before its rule arrives; 'gone' is blocked
    assert x.is_upstream(r.query(x.garden("added"))), "precondition"
    assert x.is_blocked(r.query(x.garden("gone"))), "precondition"
    knot_mark, xfrd_mark = chain.knot.log.mark(), chain.xfrd.log.mark()
    load_names = [x.garden(n) for n in ("stay", "f0001", "free1", "free2")]
    with x.QueryLoad(r.port, load_names, threads=2) as load:
        h.wait_until(lambda: load.sent >= 20, 10, "the query load to run")
        # measured from before the edit: includes Knot's reload, its NOTIFY,
        # the SOA query, the IXFR, the commit and the module noticing it
        t0 = time.monotonic()
        chain.knot.update(add=x.block("added", "added2"), remove=x.block("gone"))
        seen: dict[str, float] = {}

        def changed():
            if "added" not in seen and x.is_blocked(r.query(x.garden("added"), timeout=1)):
                seen["added"] = time.monotonic() - t0
            if "gone" not in seen and x.is_upstream(r.query(x.garden("gone"), timeout=1)):
                seen["gone"] = time.monotonic() - t0
            return len(seen) == 2
        h.wait_until(changed, 5, "the resolver to enforce the edit", interval=0.01,
                     on_timeout=chain.describe)
        # keep the load running a little after the change
        sent_at_change = load.sent
        h.wait_until(lambda: load.sent >= sent_at_change + 20, 10, "more queries after the change")
    print(f"\nenforced after the edit on Knot: {seen} s; load: {load.summary()}")
    assert seen["added"] <= 1.0 and seen["gone"] <= 1.0, (
        f"enforced {seen} s after the edit on Knot (limit 1 s)\n" + chain.describe())
    assert load.sent > 40, load.summary()
    assert not load.lost and not load.servfail and not load.other_errors, load.summary()
    for name in load_names:
        outcomes = load.by_name.get(name, {})
        want = "NXDOMAIN" if name.startswith(("stay", "f0001")) else "NOERROR"
        assert set(outcomes) == {want}, (name, outcomes)
    assert x.is_blocked(r.query(x.garden("added2")))
    # the transfer was incremental on both ends
    chain.knot.log.wait_for(rf"IXFR, outgoing, remote 127\.0\.0\.1@\d+, started, serial {serial} -> {serial + 1}",
                            since=knot_mark)
    chain.xfrd.wait_log(rf"info zone threat\.rpz\.: IXFR from 127\.0\.0\.1:{chain.knot.port}( key \S+)? serial "
                        rf"{serial} -> {serial + 1}: 2 rules added, 1 removed", since=xfrd_mark)
    x.wait_stored_serial(chain.store, serial + 1)
    full, incr, failed = x.transfers(x.zone_status(chain.store))
    assert (full, incr, failed) == (status_before[0], status_before[1] + 1, status_before[2])


def test_journal_gap_falls_back_to_axfr(chain):
    """Knot loses the history the daemon would need (its journal is purged
    while the daemon is down): the IXFR is answered AXFR-style, the daemon
    takes the whole zone and counts a full transfer; the resolver never
    stopped enforcing."""
    stored = x.stored_serial(chain.store)
    before = x.transfers(x.zone_status(chain.store))
    chain.xfrd.stop()
    chain.knot.update(add=x.block("gap1"))
    chain.knot.purge_journal()
    target = chain.knot.update(add=x.block("gap2"), remove=x.block("f0299"))
    knot_mark = chain.knot.log.mark()
    assert x.is_blocked(chain.resolver.query(x.garden("stay")))
    chain.xfrd.start()
    x.wait_stored_serial(chain.store, target, describe=chain.describe)
    chain.knot.log.wait_for(rf"IXFR, outgoing, remote .*incomplete history, serial {stored}, "
                            r"fallback to AXFR", since=knot_mark)
    full, incr, failed = x.transfers(x.zone_status(chain.store))
    assert (full, incr, failed) == (before[0] + 1, before[1], before[2]), (before, (full, incr, failed))
    served = x.kdig_xfr(chain.xfrd.port, key=chain.key)
    assert served.content() == chain.knot.content()
    r = chain.resolver
    assert x.is_blocked(r.query(x.garden("gap1"))) and x.is_blocked(r.query(x.garden("gap2")))
    assert x.is_upstream(r.query(x.garden("f0299")))


def test_notify_with_wrong_tsig_is_refused_and_logged(chain):
    """A NOTIFY signed with the right key name but a wrong secret is refused
    (NOTAUTH with TSIG error BADSIG, RFC 8945) and logged."""
    mark = chain.xfrd.log.mark()
    reply = x.send_notify(chain.xfrd.port, serial=chain.knot.serial + 5,
                          key=chain.key.with_wrong_secret())
    assert reply is not None, "no answer to a badly signed NOTIFY"
    assert reply.rcode() in (dns.rcode.NOTAUTH, dns.rcode.REFUSED), reply
    if reply.rcode() == dns.rcode.NOTAUTH:
        assert x.tsig_error(reply) == 16, reply  # BADSIG
    chain.xfrd.wait_log(r"warning zone threat\.rpz\.: .*TSIG BADSIG from 127\.0\.0\.1:\d+", since=mark)


def test_notify_from_elsewhere_is_refused_and_logged(chain):
    """A NOTIFY from an address that is neither a primary nor in
    allow-notify (127.0.0.9) is refused and logged; no transfer follows."""
    mark = chain.xfrd.log.mark()
    serial = x.stored_serial(chain.store)
    reply = x.send_notify(chain.xfrd.port, serial=serial + 10, source="127.0.0.9")
    assert reply is not None and reply.rcode() in (dns.rcode.REFUSED, dns.rcode.NOTAUTH), reply
    chain.xfrd.wait_log(r"zone threat\.rpz\.: .*127\.0\.0\.9:\d+", since=mark)
    assert x.stored_serial(chain.store) == serial


# ---------------------------------------------------------------------------
# Worlds of their own


def _knot_world(tmp_path, **knot_args):
    key = x.Key.generate("xfr-key")
    xfrd_port = h.free_port()
    knot = x.Knot(tmp_path / "knot", x.ZONE, key, records=x.block("a", "b"), serial=7,
                  notify=[f"{x.LOOPBACK}@{xfrd_port}"], **knot_args).start()
    return key, knot, xfrd_port


def test_ixfr_answered_axfr_style_counts_full(tmp_path):
    """Knot with `provide-ixfr: off` answers every IXFR with the whole zone:
    the daemon applies it as a full transfer (the store keeps the rules that
    did not change, gains and loses the others)."""
    x.require_xfr(x.KNOTD, x.KNOTC)
    key, knot, xfrd_port = _knot_world(tmp_path, provide_ixfr=False)
    xfrd = x.Xfrd(tmp_path / "xfrd", tmp_path / "store", [x.XfrZone(
        primaries=[f"{knot.endpoint()} key {key.name}"])], [key])
    xfrd.port = xfrd_port
    try:
        xfrd.start()
        x.wait_stored_serial(xfrd.store, 7, describe=xfrd.describe)
        knot.update(add=x.block("c"), remove=x.block("a"))
        x.wait_stored_serial(xfrd.store, 8, describe=xfrd.describe)
        assert x.blocked_names(xfrd.store, [x.garden(n) for n in "abc"]) == {
            x.garden("b"), x.garden("c")}
        full, incr, failed = x.transfers(x.zone_status(xfrd.store))
        assert (full, incr, failed) == (2, 0, 0)
    finally:
        xfrd.stop()
        knot.stop()


def test_ixfr_false_always_asks_axfr(tmp_path):
    """`ixfr = false`: every transfer is an AXFR (Knot's log)."""
    x.require_xfr(x.KNOTD, x.KNOTC)
    key, knot, xfrd_port = _knot_world(tmp_path)
    xfrd = x.Xfrd(tmp_path / "xfrd", tmp_path / "store", [x.XfrZone(
        primaries=[f"{knot.endpoint()} key {key.name}"], ixfr=False)], [key])
    xfrd.port = xfrd_port
    try:
        xfrd.start()
        x.wait_stored_serial(xfrd.store, 7, describe=xfrd.describe)
        mark = knot.log.mark()
        knot.update(add=x.block("c"))
        x.wait_stored_serial(xfrd.store, 8, describe=xfrd.describe)
        knot.log.wait_for(r"AXFR, outgoing, remote .*, started, serial 8", since=mark)
        assert not knot.log.find(r"IXFR, outgoing", since=mark), knot.log.tail()
        assert x.transfers(x.zone_status(xfrd.store)) == (2, 0, 0)
    finally:
        xfrd.stop()
        knot.stop()


@pytest.mark.parametrize("refusal", ["ixfr-refused", "notimp"])
def test_ixfr_refused_falls_back_to_axfr(tmp_path, refusal):
    """A primary that answers IXFR with REFUSED or NOTIMP (and serves AXFR):
    the daemon asks AXFR at once and applies it; status counts a full
    transfer, no failure. (Fake primary: Knot cannot be told to refuse only IXFR.)"""
    x.require_xfr()
    fake = FakePrimary(x.ZONE).start()
    fake.publish(10, x.block("a", "b"))
    xfrd = x.Xfrd(tmp_path / "xfrd", tmp_path / "store",
                  [x.XfrZone(primaries=[fake.endpoint()])])
    try:
        xfrd.start()
        x.wait_stored_serial(xfrd.store, 10, describe=xfrd.describe)
        fake.faults = [Fault(refusal)]
        fake.publish(11, x.block("b", "c"))
        since = time.monotonic()
        fake.notify(xfrd.port)
        x.wait_stored_serial(xfrd.store, 11, describe=xfrd.describe)
        asked = [(r.qtype, r.serial) for r in fake.requests_of("AXFR", "IXFR", since=since)]
        assert asked[:2] == [("IXFR", 10), ("AXFR", None)], asked
        assert x.blocked_names(xfrd.store, [x.garden(n) for n in "abc"]) == {
            x.garden("b"), x.garden("c")}
        row = x.zone_status(xfrd.store)
        full, incr, failed = x.transfers(row)
        assert (full, incr) == (2, 0) and not row["failing"], row
    finally:
        xfrd.stop()
        fake.stop()


def test_wrong_secret_towards_primary_is_refused_and_logged(tmp_path):
    """The daemon signs with a wrong secret: Knot refuses (BADSIG), the
    daemon logs the refusal, records it in status and stores nothing."""
    x.require_xfr(x.KNOTD, x.KNOTC)
    key, knot, xfrd_port = _knot_world(tmp_path)
    wrong = key.with_wrong_secret()
    xfrd = x.Xfrd(tmp_path / "xfrd", tmp_path / "store", [x.XfrZone(
        primaries=[f"{knot.endpoint()} key {key.name}"])], [wrong])
    xfrd.port = xfrd_port
    try:
        xfrd.start()
        knot.log.wait_for(r"(?i)(TSIG|BADSIG|denied)")
        xfrd.wait_log(r"(?i)(error|warning) zone threat\.rpz\.: .*(BADSIG|TSIG|NOTAUTH)")
        h.wait_until(lambda: x.status(xfrd.store).get(x.ZONE, {}).get("failing"), 10,
                     "a failing status for threat.rpz.", on_timeout=xfrd.describe)
        row = x.zone_status(xfrd.store)
        assert x.transfers(row)[2] >= 1 and row["in_store"] is False, row
        assert any(w in row["last_error"].upper() for w in ("BADSIG", "TSIG", "NOTAUTH")), row
        assert x.stored_serial(xfrd.store) is None
        assert xfrd.alive()
    finally:
        xfrd.stop()
        knot.stop()


def test_tsig_error_fails_at_once_and_recovery_is_logged(tmp_path):
    """A wrong secret after a good start: the IXFR that `transfer ZONE` asks
    is refused with NOTAUTH (TSIG BADSIG) and the attempt fails at once with
    that reason (no AXFR with the same key). With the key fixed (reload), the
    next success logs one `recovered` line naming the failure it ends."""
    x.require_xfr(x.KNOTD, x.KNOTC)
    key, knot, xfrd_port = _knot_world(tmp_path)
    xfrd = x.Xfrd(tmp_path / "xfrd", tmp_path / "store", [x.XfrZone(
        primaries=[f"{knot.endpoint()} key {key.name}"], retry_min=30, retry_max=60)], [key])
    xfrd.port = xfrd_port
    try:
        xfrd.start()
        x.wait_stored_serial(xfrd.store, 7, describe=xfrd.describe)
        xfrd.keys = [key.with_wrong_secret()]
        xfrd.write_config()
        assert xfrd.control("reload")[-1] == "ok"
        mark = xfrd.log.mark()
        kmark = knot.log.mark()
        reply = xfrd.control(f"transfer {x.ZONE}")
        assert reply[-1].startswith("error: ") and "NOTAUTH (TSIG BADSIG)" in reply[-1], reply
        assert "not asking AXFR" in reply[-1], reply
        xfrd.wait_log(r"error zone threat\.rpz\.: transfer from 127\.0\.0\.1:\d+ failed: primary "
                      r"answered NOTAUTH \(TSIG BADSIG\) to the IXFR", since=mark)
        assert not xfrd.log.find(r"(: asking AXFR|AXFR request to)", since=mark), \
            xfrd.log.tail(since=mark)
        assert not knot.log.find(r"AXFR", since=kmark), knot.log.tail()
        row = x.zone_status(xfrd.store)  # ("failing" compares seconds: the start may be this one)
        assert "TSIG BADSIG" in row["last_error"] and row["last_failure"] >= row["last_success"], row
        # the key fixed: a reload checks again at once (the zone was failing)
        xfrd.keys = [key]
        xfrd.write_config()
        assert xfrd.control("reload")[-1] == "ok"
        xfrd.wait_log(r"info zone threat\.rpz\.: recovered \(serial 7 up to date at "
                      r"127\.0\.0\.1:\d+\) after 1 failed attempt, the last: transfer from "
                      r"127\.0\.0\.1:\d+ failed: primary answered NOTAUTH \(TSIG BADSIG\)",
                      since=mark)
        assert len(xfrd.log.find(r"recovered", since=mark)) == 1
        assert xfrd.control(f"transfer {x.ZONE}")[-1] == "ok"
        assert len(xfrd.log.find(r"recovered", since=mark)) == 1  # once per recovery
    finally:
        xfrd.stop()
        knot.stop()


def test_push_and_load_refuse_a_secondary_zone(chain, tmp_path):
    """A local `zone push`/`zone load` into a zone the daemon transfers from a
    primary would be overwritten, or make the primary's next serial look
    applied: both refuse, name the reason, and leave the store unchanged;
    --force overrides."""
    before = x.stored_zone(chain.store)
    edited = tmp_path / "local.rpz"
    edited.write_text(x.rpz_text(x.ZONE, int(before["serial"]) + 50, x.block("local-only")))
    for cmd in ("push", "load"):
        r = h.dnsfw("zone", cmd, "--store", chain.store, "--zone", x.ZONE, edited)
        assert r.returncode == 1, (cmd, r.stdout, r.stderr)
        assert "is a secondary zone" in r.stderr and "--full" in r.stderr, r.stderr
        assert x.stored_zone(chain.store)["serial"] == before["serial"]
    assert not x.is_blocked(chain.resolver.query(x.garden("local-only")))
