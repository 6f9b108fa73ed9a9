"""The peers of the zone-transfer tests, checked on their own (no dnsfw-xfrd):
Knot DNS as primary (IXFR from zone-file differences, journal purge ->
AXFR fallback, TSIG), Knot as secondary, and the scriptable fake primary.
If one of these fails, the test_xfr_* failures say nothing about dnsfw."""
from __future__ import annotations

import pytest

import dnsfw_harness as h
import xfr_harness as x
from xfr_fake_primary import FakePrimary, Fault


@pytest.fixture(scope="module")
def key():
    return x.Key.generate("xfr-key")


@pytest.fixture()
def knot_pair(tmp_path, key):
    h.require(x.KNOTD, x.KNOTC, x.KDIG)
    sec_port = h.free_port()
    primary = x.Knot(tmp_path / "primary", x.ZONE, key, records=x.block("a", "b"), serial=10,
                     notify=[f"{x.LOOPBACK}@{sec_port}"]).start()
    secondary = x.Knot(tmp_path / "secondary", x.ZONE, key, role="secondary",
                       primary=f"{x.LOOPBACK}@{primary.port}")
    secondary.port = sec_port
    try:
        secondary.start()
        yield primary, secondary
    finally:
        secondary.stop()
        primary.stop()


def test_knot_primary_axfr_ixfr_and_tsig(knot_pair, key):
    primary, _ = knot_pair
    axfr = x.kdig_xfr(primary.port, key=key)
    assert axfr.ok, axfr.output
    assert axfr.content() == x.rule_set(x.block("a", "b")), axfr.records
    primary.update(add=x.block("c"), remove=x.block("a"))
    ixfr = x.kdig_xfr(primary.port, key=key, ixfr_serial=10)
    assert ixfr.ok, ixfr.output
    # incremental form: new SOA, old SOA, deleted, new SOA, added, new SOA
    assert ixfr.soa_serials() == [11, 10, 11, 11], ixfr.records
    assert "a.garden.example.threat.rpz. 60 CNAME ." in ixfr.records
    assert "c.garden.example.threat.rpz. 60 CNAME ." in ixfr.records
    wrong = x.kdig_xfr(primary.port, key=key.with_wrong_secret())
    assert not wrong.ok and "BADSIG" in wrong.output, wrong.output
    unsigned = x.kdig_xfr(primary.port)
    assert not unsigned.ok, unsigned.output


def test_knot_journal_purge_gives_axfr_fallback(knot_pair, key):
    primary, _ = knot_pair
    primary.update(add=x.block("c"))
    mark = primary.log.mark()
    primary.purge_journal()
    primary.update(add=x.block("d"))
    ixfr = x.kdig_xfr(primary.port, key=key, ixfr_serial=10)
    assert ixfr.ok, ixfr.output
    assert ixfr.soa_serials() == [12, 12], ixfr.records  # AXFR-style
    primary.log.wait_for(r"incomplete history, serial 10, fallback to AXFR", since=mark)


def test_knot_secondary_follows_by_notify_and_ixfr(knot_pair):
    primary, secondary = knot_pair
    h.wait_until(lambda: secondary.zone_serial() == 10, 10, "Knot secondary at serial 10",
                 on_timeout=secondary.log.tail)
    mark = secondary.log.mark()
    primary.update(add=x.block("c"), remove=x.block("a"))
    h.wait_until(lambda: secondary.zone_serial() == 11, 10, "Knot secondary at serial 11",
                 on_timeout=secondary.log.tail)
    secondary.log.wait_for(r"IXFR, incoming, remote .*, finished", since=mark)
    assert secondary.content() == x.rule_set(x.block("b", "c"))


def test_fake_primary_serves_and_misbehaves_on_request():
    h.require(x.KDIG)
    fake = FakePrimary(x.ZONE, records_per_message=2).start()
    try:
        fake.publish(5, x.block("a", "b", "c"))
        fake.publish(6, x.block("a", "c", "d"))
        assert x.soa_serial(fake.port) == 6
        axfr = x.kdig_xfr(fake.port)
        assert axfr.ok and axfr.content() == x.rule_set(x.block("a", "c", "d")), axfr.output
        # kdig ends an IXFR at a message ending with the new SOA, so no
        # message boundary right after the middle SOA here (3 records each)
        fake.records_per_message = 3
        ixfr = x.kdig_xfr(fake.port, ixfr_serial=5)
        fake.records_per_message = 2
        assert ixfr.ok and ixfr.soa_serials() == [6, 5, 6, 6], ixfr.records
        assert x.kdig_xfr(fake.port, ixfr_serial=4).soa_serials() == [6, 6]  # unknown: AXFR-style
        for kind, says in (("cut", "can't receive"), ("garbage", "malformed"),
                           ("badname", "malformed")):
            fake.faults = [Fault(kind, at=1, times=1)]
            t = x.kdig_xfr(fake.port, timeout=2)
            assert not t.ok and says in t.output, (kind, t.output)
        fake.faults = [Fault("ixfr-refused", times=1)]
        t = x.kdig_xfr(fake.port, ixfr_serial=5, timeout=2)
        assert not t.ok and "REFUSED" in t.output, t.output
        assert [r.qtype for r in fake.requests_of("SOA", "AXFR", "IXFR")] == [
            "SOA", "AXFR", "IXFR", "IXFR", "AXFR", "AXFR", "AXFR", "IXFR"]
    finally:
        fake.stop()
