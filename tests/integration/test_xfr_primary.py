"""dnsfw-xfrd as a primary: fan-out central -> regional -> edge with
standard DNS (issue 4).

World (module scope):
  Knot primary P --NOTIFY/IXFR--> dnsfw-xfrd A --NOTIFY/IXFR--> dnsfw-xfrd B
                                             \\--NOTIFY/IXFR--> Knot secondary K
A allows transfers from 127.0.0.1/32 with TSIG key xfr-key only.
"""
from __future__ import annotations

import json

import dns.rcode
import pytest

import dnsfw_harness as h
import xfr_harness as x

V1 = x.block("one", "two", "three", *[f"p{i:03d}" for i in range(200)])


class FanOut:
    def __init__(self, key, primary, a, b, knot_sec):
        self.key, self.primary, self.a, self.b, self.knot_sec = key, primary, a, b, knot_sec

    def describe(self) -> str:
        return "\n".join([self.a.describe(40), self.b.describe(40), self.knot_sec.log.tail(20)])


@pytest.fixture(scope="module")
def fanout(tmp_path_factory):
    x.require_xfr(x.KNOTD, x.KNOTC, x.KDIG)
    work = tmp_path_factory.mktemp("xfr_primary")
    key = x.Key.generate("xfr-key")
    a_port, b_port, k_port = h.free_port(), h.free_port(), h.free_port()
    primary = x.Knot(work / "knot-primary", x.ZONE, key, records=V1, serial=2024,
                     notify=[f"{x.LOOPBACK}@{a_port}"]).start()
    a = x.Xfrd(work / "a", work / "store-a", [x.XfrZone(
        primaries=[f"{primary.endpoint()} key {key.name}"],
        notify=[f"127.0.0.1:{b_port} key {key.name}", f"127.0.0.1:{k_port} key {key.name}"],
        allow_transfer=[f"127.0.0.1/32 key {key.name}"])], [key], name="xfrd-a")
    a.port = a_port
    b = x.Xfrd(work / "b", work / "store-b", [x.XfrZone(
        primaries=[f"127.0.0.1:{a_port} key {key.name}"],
        allow_transfer=[f"127.0.0.1/32 key {key.name}"])], [key], name="xfrd-b")
    b.port = b_port
    knot_sec = x.Knot(work / "knot-secondary", x.ZONE, key, role="secondary",
                      primary=f"{x.LOOPBACK}@{a_port}")
    knot_sec.port = k_port
    started = []
    try:
        for p in (a, b, knot_sec):
            p.start()
            started.append(p)
        yield FanOut(key, primary, a, b, knot_sec)
    finally:
        for p in reversed(started):
            p.stop()
        primary.stop()


def _wait_all_at(f: FanOut, serial: int, timeout: float = 10.0) -> None:
    x.wait_stored_serial(f.a.store, serial, timeout=timeout, describe=f.describe)
    x.wait_stored_serial(f.b.store, serial, timeout=timeout, describe=f.describe)
    h.wait_until(lambda: f.knot_sec.zone_serial() == serial, timeout,
                 f"Knot secondary at serial {serial}", on_timeout=f.describe)


def test_second_xfrd_and_knot_secondary_pull_by_axfr(fanout):
    f = fanout
    _wait_all_at(f, 2024)
    want = f.primary.content()
    assert x.kdig_xfr(f.a.port, key=f.key).content() == want
    assert x.kdig_xfr(f.b.port, key=f.key).content() == want
    assert f.knot_sec.content() == want
    f.b.wait_log(rf"info zone threat\.rpz\.: AXFR from 127\.0\.0\.1:{f.a.port}")
    f.knot_sec.log.wait_for(rf"AXFR, incoming, remote 127\.0\.0\.1@{f.a.port}, finished")
    assert x.transfers(x.zone_status(f.b.store))[:2] == (1, 0)


def test_change_fans_out_by_ixfr(fanout):
    """A change at Knot reaches A by IXFR, and A passes it on by NOTIFY +
    IXFR (from its journal) to dnsfw-xfrd B and to the Knot secondary."""
    f = fanout
    _wait_all_at(f, 2024)
    b_mark, k_mark = f.b.log.mark(), f.knot_sec.log.mark()
    serial = f.primary.update(add=x.block("four", "five"), remove=x.block("two", "p000"))
    _wait_all_at(f, serial)
    want = f.primary.content()
    assert x.kdig_xfr(f.b.port, key=f.key).content() == want
    assert f.knot_sec.content() == want
    f.b.wait_log(rf"info zone threat\.rpz\.: IXFR from 127\.0\.0\.1:{f.a.port}( key \S+)? serial 2024 -> "
                 rf"{serial}: 2 rules added, 2 removed", since=b_mark)
    f.knot_sec.log.wait_for(rf"notify, incoming, remote 127\.0\.0\.1@\d+, serial {serial}",
                            since=k_mark)
    f.knot_sec.log.wait_for(rf"IXFR, incoming, remote 127\.0\.0\.1@{f.a.port}, finished",
                            since=k_mark)
    assert not f.knot_sec.log.find(r"AXFR, incoming", since=k_mark), f.knot_sec.log.tail()
    assert x.transfers(x.zone_status(f.b.store))[:2] == (1, 1)


def test_ixfr_served_from_the_journal(fanout):
    """A answers IXFR from an older serial with exactly the difference
    (incremental form), IXFR from the current serial with its SOA alone, and
    IXFR from a serial its journal does not reach with the whole zone."""
    f = fanout
    start = f.primary.serial
    _wait_all_at(f, start)
    serial = f.primary.update(add=x.block("six"), remove=x.block("three"))
    x.wait_stored_serial(f.a.store, serial, describe=f.describe)
    ixfr = x.kdig_xfr(f.a.port, key=f.key, ixfr_serial=start)
    assert ixfr.ok, ixfr.output
    assert ixfr.soa_serials() == [serial, start, serial, serial], ixfr.records
    body = [r for r in ixfr.records if " SOA " not in r]
    assert body == ["three.garden.example.threat.rpz. 60 CNAME .",
                    "six.garden.example.threat.rpz. 60 CNAME ."], ixfr.records
    current = x.kdig_xfr(f.a.port, key=f.key, ixfr_serial=serial)
    assert current.soa_serials() == [serial] and len(current.records) == 1, current.output
    old = x.kdig_xfr(f.a.port, key=f.key, ixfr_serial=1000)  # before any stored history
    assert old.ok and old.soa_serials() == [serial, serial], old.output
    assert old.content() == f.primary.content()


def _refusal(msg) -> tuple[str, object]:
    return dns.rcode.to_text(msg.rcode()), x.tsig_error(msg)


def test_transfer_acl_and_tsig(fanout):
    """allow-transfer = 127.0.0.1/32 with key xfr-key: unsigned, wrongly
    signed, unknown-key and other-address requests are refused and logged;
    the correctly signed one is served."""
    f = fanout
    port = f.a.port
    ok = x.tcp_query(port, x.make_xfr_query(x.ZONE, "SOA", f.key))
    assert ok.rcode() == dns.rcode.NOERROR and ok.answer, ok

    mark = f.a.log.mark()
    unsigned = x.tcp_query(port, x.make_xfr_query(x.ZONE, "AXFR"))
    assert unsigned.rcode() in (dns.rcode.REFUSED, dns.rcode.NOTAUTH) and not unsigned.answer, unsigned
    f.a.wait_log(r"zone threat\.rpz\.: .*127\.0\.0\.1:\d+.*(refused|REFUSED|denied)", since=mark)

    mark = f.a.log.mark()
    bad = x.tcp_query(port, x.make_xfr_query(x.ZONE, "AXFR", f.key.with_wrong_secret()))
    assert _refusal(bad) == ("NOTAUTH", 16) and not bad.answer, bad  # BADSIG
    f.a.wait_log(r"warning zone threat\.rpz\.: TSIG BADSIG from 127\.0\.0\.1:\d+ \(key xfr-key\.\): refused",
                 since=mark)

    mark = f.a.log.mark()
    other = x.Key.generate("other-key")
    unknown = x.tcp_query(port, x.make_xfr_query(x.ZONE, "AXFR", other))
    assert _refusal(unknown) == ("NOTAUTH", 17) and not unknown.answer, unknown  # BADKEY
    f.a.wait_log(r"TSIG BADKEY from 127\.0\.0\.1:\d+", since=mark)

    mark = f.a.log.mark()
    elsewhere = x.tcp_query(port, x.make_xfr_query(x.ZONE, "AXFR", f.key), source="127.0.0.9")
    assert elsewhere.rcode() == dns.rcode.REFUSED and not elsewhere.answer, elsewhere
    f.a.wait_log(r"zone threat\.rpz\.: .*127\.0\.0\.9:\d+", since=mark)

    t = x.kdig_xfr(port, key=f.key)
    assert t.ok and t.content() == f.primary.content(), t.output


def test_knot_secondary_with_wrong_secret_is_refused(fanout, tmp_path):
    """The other direction with a real peer: a Knot secondary whose secret
    does not match gets nothing, and A logs the BADSIG."""
    f = fanout
    mark = f.a.log.mark()
    wrong = f.key.with_wrong_secret()
    k = x.Knot(tmp_path / "knot-wrong", x.ZONE, wrong, role="secondary",
               primary=f"{x.LOOPBACK}@{f.a.port}").start()
    try:
        f.a.wait_log(r"warning zone threat\.rpz\.: TSIG BADSIG from 127\.0\.0\.1:\d+ \(key xfr-key\.\): refused",
                     since=mark)
        k.log.wait_for(r"(?i)(BADSIG|TSIG|failed|NOTAUTH)")
        assert k.zone_serial() is None, k.log.tail()
    finally:
        k.stop()


def test_control_socket(fanout):
    """`status` (one JSON object per zone, then ok), `notify ZONE`,
    `transfer ZONE full` on B, an unknown zone -> error; and the CLI
    `dnsfw xfrd --control PATH status`."""
    f = fanout
    reply = f.a.control("status")
    assert reply and reply[-1] == "ok", reply
    rows = [json.loads(line) for line in reply[:-1]]
    assert any(str(r.get("zone", r.get("name", ""))).rstrip(".") == "threat.rpz" for r in rows), rows

    k_mark = f.knot_sec.log.mark()
    reply = f.a.control(f"notify {x.ZONE}")
    assert reply[-1] == "ok", reply
    f.knot_sec.log.wait_for(r"notify, incoming, remote 127\.0\.0\.1@\d+", since=k_mark)

    full_before = x.transfers(x.zone_status(f.b.store))[0]
    b_mark = f.b.log.mark()
    reply = f.b.control(f"transfer {x.ZONE} full")
    assert reply[-1] == "ok", reply
    f.b.wait_log(rf"info zone threat\.rpz\.: AXFR from 127\.0\.0\.1:{f.a.port}", since=b_mark)
    h.wait_until(lambda: x.transfers(x.zone_status(f.b.store))[0] == full_before + 1, 10,
                 "B's full-transfer count to grow")

    reply = f.a.control("transfer no-such.rpz")
    assert reply[-1].startswith("error:"), reply

    cp = h.dnsfw("xfrd", "--control", f.a.control_path, "status")
    assert cp.returncode == 0 and "threat.rpz" in cp.stdout, h.describe_run(cp)
    cp = h.dnsfw("xfrd", "--control", f.a.control_path, "transfer", "no-such.rpz")
    assert cp.returncode == 1, h.describe_run(cp)
