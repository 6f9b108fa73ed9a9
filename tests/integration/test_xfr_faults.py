"""Faults of issue 4 against dnsfw-xfrd as a secondary of the scriptable fake
primary (xfr_fake_primary.py): malformed transfer messages, a serial that
goes backwards, a transfer cut in the middle, SIGKILL during a big
transfer, a full LMDB map, a full disk.

For each: the zone stays at its last committed serial (nothing partial is
committed), the reason is logged and shown by `dnsfw status`, and retries
back off (retry-min 1 s, doubling: the fake primary records when it is
asked). Retries are measured on the primary's request log.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

import dnsfw_harness as h
import xfr_harness as x
from xfr_fake_primary import FakePrimary, Fault, Secondary

V10 = x.block("keep", "old", *[f"k{i:03d}" for i in range(100)])
V11 = x.block("keep", "new", *[f"k{i:03d}" for i in range(100)], *[f"n{i:03d}" for i in range(200)])


@pytest.fixture()
def secondary(tmp_path):
    x.require_xfr()
    made: list[Secondary] = []

    def make(**kw) -> Secondary:
        s = Secondary(tmp_path, V10, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


def _attempts(fake: FakePrimary, qtypes: tuple, since: float, merge: float = 0.5) -> list[float]:
    """Times of the daemon's attempts: requests of ``qtypes`` after ``since``,
    those within ``merge`` s of the previous one counted as the same attempt
    (an IXFR failure followed at once by an AXFR is one attempt)."""
    times: list[float] = []
    for r in fake.requests_of(*qtypes, since=since):
        if not times or r.time - times[-1] > merge:
            times.append(r.time)
    return times


def _wait_attempts(s: Secondary, qtypes: tuple, since: float, n: int, timeout: float = 12.0):
    return h.wait_until(lambda: (lambda t: t if len(t) >= n else None)(
        _attempts(s.fake, qtypes, since)), timeout, f"{n} attempts ({'/'.join(qtypes)})",
        interval=0.05, on_timeout=s.describe)


def _assert_still_at_v10(s: Secondary) -> None:
    z = s.stored()
    assert z and z["serial"] == 10 and z["rules"] == len(V10), z
    if not s.wrapper:
        names = [x.garden(n) for n in ("old", "new", "n000", "n199", "keep")]
        assert x.blocked_names(s.store, names) == {x.garden("old"), x.garden("keep")}


def _assert_failure_recorded(s: Secondary, *words: str) -> dict:
    """status: failing, and a reason containing one of ``words`` (any case;
    the store's path, which the reason may quote, is not searched)."""
    h.wait_until(lambda: s.status().get("failing"), 10, "status to show the failure",
                 on_timeout=s.describe)
    row = s.status()
    assert row["serial"] == 10, row
    err = row["last_error"].replace(str(s.store), "STORE").lower()
    assert err and any(w.lower() in err for w in words), (words, row)
    return row


def _assert_backoff(s: Secondary, times: list[float], mark: int, what: str) -> None:
    delays = h.wait_until(lambda: (lambda d: d if len(d) >= 2 else None)(
        x.announced_retries(s.xfrd.log, mark)), 10, "two announced retries",
        on_timeout=s.describe)
    x.assert_backs_off(times, delays, what)


def _fault_scenario(s: Secondary, fault: Fault, *, reason_log: str, reason_words: tuple,
                    attempt_types=("AXFR", "IXFR")):
    s.start()
    s.fake.faults = [fault]
    s.fake.publish(11, V11)
    since = time.monotonic()
    mark = s.xfrd.log.mark()
    s.fake.notify(s.xfrd.port)
    s.xfrd.wait_log(r"error zone threat\.rpz\.: " + reason_log, since=mark)
    times = _wait_attempts(s, attempt_types, since, 3)
    _assert_still_at_v10(s)
    row = _assert_failure_recorded(s, *reason_words)
    assert x.transfers(row)[2] >= 2, row
    _assert_backoff(s, times, mark, "transfer retries")
    s.xfrd.wait_log(r"error zone threat\.rpz\.: .*zone stays at serial 10", since=mark)
    assert s.xfrd.alive()
    return row


@pytest.mark.parametrize("kind", ["garbage", "badname", "truncated"])
def test_malformed_transfer_message(secondary, kind):
    """The second message of every transfer is malformed (junk after a
    plausible header / a compression loop / cut short)."""
    s = secondary()
    _fault_scenario(s, Fault(kind, at=1), reason_log=r"transfer from 127\.0\.0\.1:\d+ failed: ",
                    reason_words=("malformed", "parse", "format", "invalid", "bad", "truncated"))
    # the primary mends its ways: the next retry (or a "transfer now") succeeds
    s.fake.faults = []
    assert s.xfrd.control(f"transfer {x.ZONE}")[-1] == "ok"
    s.wait_serial(11)
    z = s.stored()
    assert z["rules"] == len(V11), z
    row = s.status()
    # (not row["failing"]: the CLI compares second-resolution times with >=,
    # so a success in the same second as the last failure still shows failing)
    assert row["serial"] == 11 and row["last_success"] >= row["last_failure"], row


def test_transfer_cut_mid_ixfr(secondary):
    """The connection closes after 3 of the IXFR's messages (the deletions
    and some additions are in): nothing of it is committed."""
    s = secondary()
    _fault_scenario(s, Fault("cut", at=3), reason_log=r"transfer from 127\.0\.0\.1:\d+ failed: .*(closed|cut|EOF|end)",
                    reason_words=("closed", "mid-transfer", "eof", "connection", "cut"))


def test_transfer_cut_mid_axfr(secondary):
    s = secondary(zone_args={"ixfr": False})
    _fault_scenario(s, Fault("cut", at=3), reason_log=r"transfer from 127\.0\.0\.1:\d+ failed: ",
                    reason_words=("closed", "mid-transfer", "eof", "connection", "cut"))


def test_serial_backwards_at_the_primary(secondary):
    """The primary's SOA now says 7 (older than the stored 10, RFC 1982):
    no transfer is made, the zone stays at 10, the reason is logged and in
    status, and the SOA checks back off."""
    s = secondary()
    s.start()
    s.fake.publish(7, x.block("seven"))
    since = time.monotonic()
    mark = s.xfrd.log.mark()
    s.fake.notify(s.xfrd.port)
    s.xfrd.wait_log(r"(warning|error) zone threat\.rpz\.: .*\b7\b.*\b10\b|"
                    r"(warning|error) zone threat\.rpz\.: .*\b10\b.*\b7\b", since=mark)
    times = _wait_attempts(s, ("SOA",), since, 3)
    assert not s.fake.requests_of("AXFR", "IXFR", since=since), "transferred an older serial"
    _assert_still_at_v10(s)
    _assert_failure_recorded(s, "serial", "older", "backward")
    _assert_backoff(s, times, mark, "SOA checks")


def test_serial_backwards_inside_the_transfer(secondary):
    """The SOA query says 11, but the transfer carries serial 7: refused
    (the IXFR and the AXFR fallback alike), zone stays at 10."""
    s = secondary()
    s.start()
    s.fake.publish(7, V11)
    s.fake.soa_serial_override = 11
    since = time.monotonic()
    mark = s.xfrd.log.mark()
    s.fake.notify(s.xfrd.port, serial=11)
    s.xfrd.wait_log(r"error zone threat\.rpz\.: ", since=mark)
    times = _wait_attempts(s, ("AXFR", "IXFR"), since, 3)
    _assert_still_at_v10(s)
    _assert_failure_recorded(s, "serial", "older", "backward", "mismatch", "7")
    _assert_backoff(s, times, mark, "transfer retries")


def test_sigkill_during_a_big_transfer_resumes_by_ixfr(secondary):
    """SIGKILL while a 20,000-rule IXFR streams in: after the restart the
    store is still consistent at serial 10 (nothing partial), and the daemon
    resumes with an IXFR from serial 10 that completes."""
    big = V10 + x.block(*[f"big{i:05d}" for i in range(20000)])
    s = secondary(records_per_message=200)
    s.start()
    s.fake.publish(11, big)
    s.fake.pace = 0.02                 # ~100 messages over ~2 s
    s.fake.pace_event_after = 30
    s.fake.paced_sent.clear()
    s.fake.notify(s.xfrd.port)
    h.wait_until(s.fake.paced_sent.is_set, 10, "the transfer to be under way",
                 on_timeout=s.describe)
    s.xfrd.kill()
    assert s.fake.transfers_completed == 1, "the big transfer finished before the kill"
    _assert_still_at_v10(s)
    # `dnsfw status` tells: the daemon is gone, its transfer did not finish.
    row = s.status()
    assert row["daemon"] and row["daemon"]["running"] is False, row
    assert row["transfer_interrupted"] is True and not row["transfer_in_progress"], row
    assert row["transfer_kind"].startswith("IXFR from 127.0.0.1:"), row
    cp = h.dnsfw("status", "--store", s.store)
    assert cp.returncode == 0, h.describe_run(cp)
    assert "daemon not running" in cp.stdout, cp.stdout
    assert " did not finish (interrupted: dnsfw-xfrd pid " in cp.stdout, cp.stdout
    s.fake.pace = 0.0
    since = time.monotonic()
    s.xfrd.start()  # its log starts afresh (the killed run's is kept aside)
    mark = 0
    s.xfrd.wait_log(r"warning zone threat\.rpz\.: IXFR from 127\.0\.0\.1:\d+ started at \S+Z by "
                    r"dnsfw-xfrd pid \d+ did not finish \(interrupted", since=mark)
    s.wait_serial(11, timeout=30)
    asked = [(r.qtype, r.serial) for r in s.fake.requests_of("AXFR", "IXFR", since=since)]
    assert asked and asked[0] == ("IXFR", 10), asked
    z = s.stored()
    assert z["rules"] == len(big), z
    sample = [x.garden(f"big{i:05d}") for i in range(0, 20000, 997)] + [x.garden("old")]
    assert x.blocked_names(s.store, sample) == set(sample)
    s.xfrd.wait_log(r"info zone threat\.rpz\.: IXFR from 127\.0\.0\.1:\d+( key \S+)? serial 10 -> 11: "
                    r"20000 rules added", since=mark)
    row = s.status()
    assert row["daemon"]["running"] is True, row
    assert row["transfer_started"] == 0 and not row["transfer_interrupted"], row


def test_stop_during_a_big_transfer(secondary):
    """`dnsfw xfrd stop` while a big IXFR streams in: the transfer is
    cancelled (nothing committed), the reply comes once the daemon is gone,
    and `dnsfw status` shows the transfer as interrupted, the daemon as not
    running; a restart resumes by IXFR."""
    big = V10 + x.block(*[f"big{i:05d}" for i in range(20000)])
    s = secondary(records_per_message=200)
    s.start()
    s.fake.publish(11, big)
    s.fake.pace = 0.02
    s.fake.pace_event_after = 30
    s.fake.paced_sent.clear()
    s.fake.notify(s.xfrd.port)
    h.wait_until(s.fake.paced_sent.is_set, 10, "the transfer to be under way",
                 on_timeout=s.describe)
    cp = h.run([h.DNSFW_BIN, "xfrd", "--control", s.xfrd.control_path, "stop"], timeout=30)
    assert cp.returncode == 0 and cp.stdout.endswith("ok\n"), h.describe_run(cp)
    assert s.fake.transfers_completed == 1, "the big transfer finished before the stop"
    assert s.xfrd.process.wait_exit(2) == 0, s.describe()
    s.xfrd.wait_log(r"info zone threat\.rpz\.: IXFR from 127\.0\.0\.1:\d+ cancelled; the zone "
                    r"stays at serial 10")
    assert s.xfrd.log.lines()[-1] == "info dnsfw-xfrd: stopped", s.xfrd.log.tail()
    _assert_still_at_v10(s)
    row = s.status()
    assert row["daemon"]["running"] is False and row["transfer_interrupted"] is True, row
    s.fake.pace = 0.0
    s.xfrd.start()
    s.wait_serial(11, timeout=30)
    assert not s.status()["transfer_interrupted"]


def test_transfer_over_max_transfer_size(secondary):
    """max-transfer-size: an IXFR bigger than the limit is abandoned, the
    zone stays at 10 and the reason says so."""
    s = secondary(zone_args={"max_transfer_size": 16384})
    s.start()
    s.fake.publish(11, V11 + x.block(*[f"huge{i:04d}" for i in range(1000)]))
    mark = s.xfrd.log.mark()
    s.fake.notify(s.xfrd.port)
    s.xfrd.wait_log(r"error zone threat\.rpz\.: transfer from 127\.0\.0\.1:\d+ failed: .*"
                    r"zone stays at serial 10", since=mark)
    _assert_still_at_v10(s)
    _assert_failure_recorded(s, "max-transfer-size", "too large", "size", "limit", "bytes")


def test_transfer_over_transfer_timeout(secondary):
    """transfer-timeout = 1 s against a primary that trickles the IXFR out
    over ~3 s: abandoned, the zone stays at 10, the reason says so."""
    s = secondary(zone_args={"transfer_timeout": 1})
    s.start()
    s.fake.publish(11, V11)
    s.fake.pace = 0.2
    mark = s.xfrd.log.mark()
    s.fake.notify(s.xfrd.port)
    s.xfrd.wait_log(r"error zone threat\.rpz\.: transfer from 127\.0\.0\.1:\d+ failed: .*"
                    r"zone stays at serial 10", since=mark)
    _assert_still_at_v10(s)
    _assert_failure_recorded(s, "timeout", "timed out", "time")


def test_expired_zone_keeps_its_rules(secondary):
    """SOA expire (2 s here) passes without a successful refresh: the daemon
    says so in an error line, and the zone keeps being enforced from the store
    (a firewall must not drop its policy)."""
    s = secondary()
    s.fake.expire = 2
    s.start()
    s.fake.faults = [Fault("refused")]
    s.fake.publish(11, V11)
    mark = s.xfrd.log.mark()
    s.fake.notify(s.xfrd.port)
    s.xfrd.wait_log(r"error zone threat\.rpz\.: .*expire", since=mark, timeout=12)
    _assert_still_at_v10(s)
    assert s.xfrd.alive()


def _xfrd_supports(setting: str) -> bool:
    """Whether dnsfw-xfrd --check accepts a top-level ``setting``."""
    with tempfile.TemporaryDirectory() as d:
        probe = x.Xfrd(Path(d), Path(d) / "store", [x.XfrZone(primaries=["127.0.0.1:53"])],
                       extra_toml=setting)
        return probe.check().returncode == 0


MAP_SETTING = "max-map-size = 2097152"


def test_full_lmdb_map(secondary):
    """The store's map may not grow past 2 MiB: the big IXFR fails with
    MDB_MAP_FULL, nothing is committed, the reason is in status, retries
    back off."""
    if not _xfrd_supports(MAP_SETTING):
        pytest.skip("dnsfw-xfrd has no setting bounding the store's map size "
                    "(store::OpenOptions::max_map_size); expected e.g. top-level "
                    f"'{MAP_SETTING}'")
    s = secondary(extra_toml=MAP_SETTING)
    big = V10 + x.block(*[f"big{i:05d}" for i in range(40000)])
    s.start()
    s.fake.publish(11, big)
    since = time.monotonic()
    mark = s.xfrd.log.mark()
    s.fake.notify(s.xfrd.port)
    s.xfrd.wait_log(r"error zone threat\.rpz\.: .*(MDB_MAP_FULL|map)", since=mark)
    times = _wait_attempts(s, ("AXFR", "IXFR"), since, 3)
    _assert_still_at_v10(s)
    _assert_failure_recorded(s, "MDB_MAP_FULL", "map size", "map full")
    _assert_backoff(s, times, mark, "transfer retries")
    assert s.xfrd.alive()


def test_full_disk(secondary, tmp_path):
    """The store lives on a 2 MiB tmpfs (private mount namespace, `unshare
    -m`): a 40,000-rule IXFR runs out of space, nothing is committed, the
    reason is in status, retries back off, the daemon keeps running."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        ns = x.TmpfsNamespace(tmp_path, tmp_path / "small", "2m").start()
    except (RuntimeError, AssertionError) as e:
        pytest.skip(f"cannot mount a tmpfs in a private mount namespace: {e}")
    s = None
    try:
        s = secondary(wrapper=ns.wrapper(), store=tmp_path / "small" / "store")
        big = V10 + x.block(*[f"big{i:05d}" for i in range(40000)])
        s.start()
        s.fake.publish(11, big)
        since = time.monotonic()
        mark = s.xfrd.log.mark()
        s.fake.notify(s.xfrd.port)
        s.xfrd.wait_log(r"error zone threat\.rpz\.: .*(space|ENOSPC|Input/output error)", since=mark)
        times = _wait_attempts(s, ("AXFR", "IXFR"), since, 3)
        _assert_still_at_v10(s)
        # LMDB reports a short write on a full disk as EIO
        _assert_failure_recorded(s, "no space", "ENOSPC", "input/output error", "disk full")
        _assert_backoff(s, times, mark, "transfer retries")
        assert s.xfrd.alive(), s.describe()
    finally:
        if s:
            s.xfrd.stop()  # before the namespace holder goes
        ns.stop()
