"""Review fixes of dnsfw-xfrd: TCP slowloris (a request deadline that
trickling bytes do not extend; a per-client-address connection cap), an
explicit full transfer accepting an older serial, a zone removed from the
store by another process being transferred again at once, and the
configuration checks of `--check`.
"""
from __future__ import annotations

import socket
import time

import dns.message
import pytest

import dnsfw_harness as h
import xfr_harness as x
from xfr_fake_primary import FakePrimary, Secondary

V10 = x.block("keep", "old", "a1", "a2")
V7 = x.block("keep", "seven")


@pytest.fixture()
def secondary(tmp_path):
    x.require_xfr()
    s = Secondary(tmp_path, V10, zone_args={"allow_transfer": ["127.0.0.0/8"]}).start()
    yield s
    s.stop()


def _connect(port: int, source: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(5)
    s.connect((x.LOOPBACK, port))
    return s


def _closed_by_peer(s: socket.socket, timeout: float) -> bool:
    """Whether the server closes `s` (EOF or reset) within `timeout`."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_one_client_address_cannot_take_every_tcp_slot(secondary):
    port = secondary.xfrd.port
    held = [_connect(port, "127.0.0.1") for _ in range(8)]
    try:
        mark = secondary.xfrd.log.mark()
        ninth = _connect(port, "127.0.0.1")  # accepted by the kernel, then closed
        assert _closed_by_peer(ninth, 3), "a 9th connection from one address was kept"
        ninth.close()
        secondary.xfrd.wait_log(r"TCP connection from 127\.0\.0\.1:\d+ refused: 8 connections "
                                r"open from this address", since=mark)
        # Another address still gets answers.
        q = dns.message.make_query(x.ZONE, "SOA")
        r = x.tcp_query(port, q, source="127.0.0.2")
        assert r.id == q.id
        # The held ones are still open (idle timeout not reached).
        assert not _closed_by_peer(held[0], 0.2)
    finally:
        for s in held:
            s.close()


def test_trickling_bytes_do_not_extend_the_request_deadline(secondary):
    """One byte every 2 s: without a deadline this connection would live as
    long as bytes keep coming; it must be closed ~10 s after accept."""
    s = _connect(secondary.xfrd.port, "127.0.0.3")
    start = time.monotonic()
    wire = dns.message.make_query(x.ZONE, "SOA").to_wire()
    data = len(wire).to_bytes(2, "big") + wire
    closed_at = None
    try:
        for b in data:
            try:
                s.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic()
                break
            if _closed_by_peer(s, 2.0):
                closed_at = time.monotonic()
                break
            if time.monotonic() - start > 16:
                break
    finally:
        s.close()
    assert closed_at is not None, "the trickling connection was still open after 16 s"
    assert 8.0 <= closed_at - start <= 12.5, closed_at - start


def test_transfer_full_accepts_an_older_serial(secondary):
    """The primary went back to serial 7: the SOA check refuses it, but an
    explicit `transfer ZONE full` is the operator taking what the primary has."""
    s = secondary
    s.fake.publish(7, V7)
    reply = s.xfrd.control(f"transfer {x.ZONE}")  # IXFR from 10: refused
    assert reply[-1].startswith("error"), reply
    assert x.stored_serial(s.xfrd.store) == 10
    mark = s.xfrd.log.mark()
    reply = s.xfrd.control(f"transfer {x.ZONE} full")
    assert reply[-1] == "ok", reply
    assert x.stored_serial(s.xfrd.store) == 7
    assert x.blocked_names(s.xfrd.store, [x.garden("seven"), x.garden("old")]) == {x.garden("seven")}
    s.xfrd.wait_log(r"warning zone threat\.rpz\.: serial went backwards: the primary's serial 7 "
                    r"is older than ours \(10\)", since=mark)


def test_zone_removed_from_the_store_is_transferred_again_at_once(secondary):
    s = secondary
    mark = s.xfrd.log.mark()
    axfrs = len(s.fake.requests_of("AXFR"))
    cp = h.run([h.DNSFW_BIN, "zone", "remove", "--store", s.xfrd.store, "--zone", x.ZONE])
    assert cp.returncode == 0, h.describe_run(cp)
    s.xfrd.wait_log(r"warning zone threat\.rpz\.: removed from the store by another process; "
                    r"transferring it again", since=mark)
    # SOA refresh is 3600 s: only the immediate transfer brings it back.
    x.wait_stored_serial(s.xfrd.store, 10, timeout=5, describe=s.xfrd.describe)
    assert len(s.fake.requests_of("AXFR")) > axfrs


@pytest.mark.parametrize("zone_kw, top, expect", [
    ({"name": "a b.rpz."}, "", "bad zone name 'a b.rpz.'"),
    ({"allow_transfer": ["10.0.0.1/8"]}, "", "has host bits set: write 10.0.0.0/8"),
    ({"primaries": ["127.0.0.1:5301"], "allow_update": ["127.0.0.1"]}, "", "has primaries"),
    ({}, 'listen = ["::1:53"]', "ambiguous"),
])
def test_check_rejects(tmp_path, zone_kw, top, expect):
    xfrd = x.Xfrd(tmp_path / "xfrd", tmp_path / "store", [x.XfrZone(**zone_kw)])
    if top:
        # A second `listen` key would be a TOML error: replace the first.
        xfrd.write_config()
        text = xfrd.config_path.read_text().splitlines()
        text = [top if line.startswith("listen =") else line for line in text]
        xfrd.config_path.write_text("\n".join(text) + "\n")
        cp = h.run([x.XFRD_BIN, "--config", xfrd.config_path, "--check"], timeout=30)
    else:
        cp = xfrd.check()
    assert cp.returncode == 1, h.describe_run(cp)
    assert expect in cp.stdout + cp.stderr, h.describe_run(cp)


def test_soa_query_to_a_closed_port_fails_at_once(tmp_path):
    """ICMP port unreachable ends the UDP SOA query at once (not 3 x 2 s)."""
    x.require_xfr()
    port = h.free_port()
    xfrd = x.Xfrd(tmp_path / "xfrd", tmp_path / "store",
                  [x.XfrZone(primaries=[f"127.0.0.1:{port}"])])
    start = time.monotonic()
    xfrd.start()
    try:
        xfrd.wait_log(rf"error zone threat\.rpz\.: SOA query to 127\.0\.0\.1:{port} failed: "
                      r"port unreachable", timeout=4)
        assert time.monotonic() - start < 4
    finally:
        xfrd.stop()


def test_refusal_log_lines_are_rate_limited(secondary):
    """40 refused requests in a burst: at most 10 lines, then one summary."""
    s = secondary
    mark = s.xfrd.log.mark()
    for _ in range(40):
        q = dns.message.make_query("other.rpz.", "SOA")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(3)
            u.sendto(q.to_wire(), (x.LOOPBACK, s.xfrd.port))
            u.recv(4096)
    s.xfrd.wait_log(r"suppressed 30 similar lines in 1 s", since=mark, timeout=5)
    refused = s.xfrd.log.find(r"from 127\.0\.0\.1:\d+ refused: zone not configured", since=mark)
    assert len(refused) == 10, s.xfrd.log.tail(60, since=mark)


# ---------------------------------------------------------------------------
# Second review: start-up failures leave no store behind; `dnsfw xfrd stop`
# returns once the daemon is gone; records skipped in a transfer.

@pytest.mark.parametrize("what", ["listen", "control"])
def test_start_up_failure_creates_no_store(tmp_path, what):
    """A listen address that cannot be bound (here: a port another socket
    holds) or a control socket that cannot be made: exit 1 with the reason,
    and neither the store nor its directory is created."""
    x.require_xfr()
    store = tmp_path / "var" / "lib" / "store"
    xfrd = x.Xfrd(tmp_path / "xfrd", store, [x.XfrZone(primaries=["127.0.0.1:53"])])
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if what == "listen":
            busy.bind((x.LOOPBACK, 0))
            busy.listen(1)
            xfrd.port = busy.getsockname()[1]
            expect = f"cannot listen on 127.0.0.1:{xfrd.port} (tcp)"
        xfrd.write_config()
        if what == "control":
            text = xfrd.config_path.read_text().replace(
                str(xfrd.control_path), str(tmp_path / "no-such-dir" / "x.sock"))
            xfrd.config_path.write_text(text)
            expect = "control socket"
        cp = h.run([x.XFRD_BIN, "--config", xfrd.config_path], timeout=30)
    finally:
        busy.close()
    assert cp.returncode == 1, h.describe_run(cp)
    assert expect in cp.stderr, h.describe_run(cp)
    assert "dnsfw-xfrd ready" not in cp.stderr, h.describe_run(cp)
    assert not (tmp_path / "var").exists(), list((tmp_path / "var").rglob("*"))
    assert not xfrd.control_path.exists()


def test_stop_returns_once_the_daemon_is_gone(secondary):
    """`dnsfw xfrd stop`: the reply comes after the daemon closed its
    listeners, control socket and store and logged `stopped`; the CLI then
    waits for the process to exit. A new daemon on the same port and control
    socket starts at once."""
    s = secondary
    cp = h.run([h.DNSFW_BIN, "xfrd", "--control", s.xfrd.control_path, "stop", "--timeout", "20"],
               timeout=30)
    assert cp.returncode == 0, h.describe_run(cp)
    assert cp.stdout == "dnsfw-xfrd stopped\nok\n", h.describe_run(cp)
    lines = s.xfrd.log.lines()
    assert lines and lines[-1] == "info dnsfw-xfrd: stopped", s.xfrd.log.tail()
    assert any("stopping (control stop)" in line for line in lines), s.xfrd.log.tail()
    assert s.xfrd.process.wait_exit(2) == 0, s.xfrd.describe()
    assert not s.xfrd.control_path.exists()
    # the port is free: listen on it ourselves, then let the next daemon have it
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((x.LOOPBACK, s.xfrd.port))
        t.listen(1)
    row = x.zone_status(s.xfrd.store)
    assert row["daemon"] and row["daemon"]["running"] is False, row
    assert not row["transfer_interrupted"], row
    cp = h.dnsfw("status", "--store", s.xfrd.store)
    assert cp.returncode == 0 and "daemon not running" in cp.stdout, h.describe_run(cp)
    s.xfrd.start()  # same port, same control socket
    assert s.xfrd.control("status")[-1] == "ok"
    h.wait_until(lambda: (x.zone_status(s.xfrd.store).get("daemon") or {}).get("running"), 10,
                 "status naming the new daemon as running", on_timeout=s.xfrd.describe)
    cp = h.dnsfw("status", "--store", s.xfrd.store)
    assert "daemon not running" not in cp.stdout, h.describe_run(cp)


def test_records_skipped_in_a_transfer_are_warnings_with_their_place(tmp_path):
    """Records a transfer carries that cannot be loaded are logged at warning
    level (parser errors and warnings alike) as `transfer from ADDR, record
    N`, and `dnsfw status` shows how many the last transfer skipped."""
    x.require_xfr()
    fake = FakePrimary(x.ZONE).start()
    # an unknown rpz-* target (a parser warning) and a bad rpz-ip owner (an error)
    fake.publish(10, V10 + ["odd.garden.example CNAME rpz-bogus.",
                            "32.1.2.3.999.rpz-ip CNAME ."])
    xfrd = x.Xfrd(tmp_path / "xfrd", tmp_path / "store", [x.XfrZone(primaries=[fake.endpoint()])])
    try:
        xfrd.start()
        x.wait_stored_serial(xfrd.store, 10, describe=xfrd.describe)
        hits = xfrd.log.find(r"^(\w+) zone threat\.rpz\.: record skipped: transfer from "
                             rf"127\.0\.0\.1:{fake.port}, record (\d+): (.*)$")
        assert len(hits) == 2, xfrd.log.tail()
        assert {m.group(1) for m in hits} == {"warning"}, xfrd.log.tail()
        assert any("rpz-bogus" in m.group(3) for m in hits), xfrd.log.tail()
        xfrd.wait_log(r"info zone threat\.rpz\.: AXFR from .*; 2 records skipped")
        row = x.zone_status(xfrd.store)
        assert row["last_transfer_skipped"] == 2, row
        cp = h.dnsfw("status", "--store", xfrd.store)
        assert "last transfer skipped 2 records" in cp.stdout, h.describe_run(cp)
    finally:
        xfrd.stop()
        fake.stop()
