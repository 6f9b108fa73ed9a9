"""A store changed while the resolver runs is enforced without a restart.

A dedicated resolver (its own store, zone "update.rpz") so the shared
session resolver's rules never change under other tests.
  v1 (tests/data/integration/update-v1.rpz): gone.update.example, kept.update.example
  v2 (update-v2.rpz):                        kept, new (never queried before),
                                             cached (queried, so cached, before)
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import dns.edns
import dns.message
import dns.rcode
import pytest

import dnsfw_harness as h
from dnsfw_harness import require

ZONE = "update.rpz"
# The module's log line once the message cache was swept for a generation.
SWEEP_LINE = re.compile(r"dnsfw: store generation (\d+): .*removed (\d+) of (\d+) cached answers, "
                        r"policed now \((\d+) us, ([a-z ]+)\)")


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
    sweeps = len(SWEEP_LINE.findall(r.process.stderr()))
    cp = h.zone_load(r.store, ZONE, h.DATA / "update-v2.rpz")
    assert cp.returncode == 0, h.describe_run(cp)
    # Answers cached before the change are removed by the maintenance
    # thread's sweep, which starts within milliseconds of the commit; until
    # it has passed an entry, Unbound may still serve it from the cache
    # (module/README.md, "Noticing store changes").
    h.wait_until(lambda: len(SWEEP_LINE.findall(r.process.stderr())) > sweeps, 10,
                 "the sweep after the store change", interval=0.005, on_timeout=r.describe)
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
    by the new rule too once the module has swept the cache for the new
    generation (logged), not served from cache until its TTL (300 s) expires."""
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


# ---------------------------------------------------------------------------
# Noticing a store change on every resolver thread, and sweeping the message
# cache off the resolver threads (module/README.md, "Noticing store changes").

def _rules(zone: str, serial: int, owners: list[str]) -> str:
    """A policy zone answering NXDOMAIN for every name in ``owners``."""
    return "\n".join([f"$ORIGIN {zone}.", "$TTL 60",
                      f"@ SOA ns.{zone}. hostmaster.{zone}. {serial} 3600 900 604800 60",
                      f"@ NS ns.{zone}."] + [f"{o} CNAME ." for o in owners]) + "\n"


def _load(store, zone: str, path, serial: int, owners: list[str]) -> None:
    path.write_text(_rules(zone, serial, owners))
    cp = h.zone_load(store, zone, path)
    assert cp.returncode == 0, h.describe_run(cp)


def _ask(sock: socket.socket, port: int, qname: str) -> dns.message.Message:
    """One UDP query from ``sock`` (its own source port); the reply."""
    q = h.make_query(qname, "A")
    sock.sendto(q.to_wire(), (h.LOOPBACK, port))
    while True:
        wire, _ = sock.recvfrom(65535)
        reply = dns.message.from_wire(wire)
        if reply.id == q.id:
            return reply


def _blocked_by(reply: dns.message.Message, zone: str) -> bool:
    ede = [o for o in reply.options if o.otype == dns.edns.OptionType.EDE]
    return (reply.rcode() == dns.rcode.NXDOMAIN and any(
        o.code == dns.edns.EDECode.BLOCKED and zone in (o.text or "").lower() for o in ede))



FRESH_ZONE = "fresh.rpz"
CLIENT_SOCKETS = 32


@pytest.fixture(scope="module")
def fresh_resolver(nsd, tmp_path_factory):
    """`dnsfw resolver` (num-threads 2) over its own store, zone fresh.rpz."""
    require(h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    work = tmp_path_factory.mktemp("fresh")
    store = work / "store.lmdb"
    _load(store, FRESH_ZONE, work / "v1.rpz", 1, ["warm.update.example"])
    r = h.Resolver(store=store, forward_port=nsd.port, workdir=work, zones=[FRESH_ZONE]).start()
    try:
        conf = work / "run" / "unbound.conf"
        assert "num-threads: 2" in conf.read_text(), conf.read_text()
        yield r
    finally:
        r.stop()


def test_new_rule_blocks_at_once_on_every_thread(fresh_resolver, tmp_path):
    """A rule committed while both resolver threads sit on a snapshot of the
    previous generation applies to the very first query each thread gets
    for the name afterwards: no thread answers it unblocked, however soon
    after the commit it is asked. The name was never queried, so no cached
    answer is involved; each thread refreshes its snapshot per query.

    32 client sockets (distinct source ports) are spread over both threads
    by SO_REUSEPORT (all on one thread: probability 2^-31); each first asks
    a name the module sees (so every thread has decided under the old
    generation), then, right after the commit, all ask the new name at once."""
    r = fresh_resolver
    socks = []
    try:
        for _ in range(CLIENT_SOCKETS):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((h.LOOPBACK, 0))
            s.settimeout(3.0)
            socks.append(s)
        for s in socks:
            warm = _ask(s, r.port, "warm.update.example.")
            assert _blocked_by(warm, FRESH_ZONE), warm.to_text()
        before = _ask(socks[0], r.port, "unlisted.update.example.")
        assert not _blocked_by(before, FRESH_ZONE), before.to_text()

        _load(r.store, FRESH_ZONE, tmp_path / "v2.rpz", 2,
              ["warm.update.example", "fresh.update.example"])
        committed = time.monotonic()
        replies: list = [None] * len(socks)
        took: list = [0.0] * len(socks)
        go = threading.Barrier(len(socks))

        def first_query(i: int) -> None:
            go.wait()
            replies[i] = _ask(socks[i], r.port, "fresh.update.example.")
            took[i] = time.monotonic() - committed

        threads = [threading.Thread(target=first_query, args=(i,)) for i in range(len(socks))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        print(f"first answers after `dnsfw zone load` returned: {len(took)} clients, "
              f"slowest {max(took) * 1000:.1f} ms, median {sorted(took)[len(took) // 2] * 1000:.1f} ms")
        unblocked = [(socks[i].getsockname()[1], m.to_text()) for i, m in enumerate(replies)
                     if m is None or not _blocked_by(m, FRESH_ZONE)]
        assert not unblocked, (f"{len(unblocked)} of {len(socks)} first answers after the commit "
                               f"were not blocked (slowest answer {max(took) * 1000:.1f} ms "
                               f"after the commit): {unblocked[:3]}")
    finally:
        for s in socks:
            s.close()


SWEEP_ZONE = "sweep.rpz"
SWEEP_NAMES = 2000
POLICED_LATER = [f"t{i}.sweep.example." for i in range(10)] + ["alias.sweep.example."]


def _sweep_upstream(count: int) -> str:
    """example. with ready (the harness's start-up probe) and, under
    sweep.example., n0..n<count-1>, t0..t9 and alias (CNAME to target):
    explicit names (NSD's rate limiting would throttle a wildcard)."""
    lines = ["$ORIGIN example.", "$TTL 3600", "@ SOA ns hostmaster 1 3600 900 604800 3600",
             "@ NS ns", "ns A 127.0.0.1", "ready A 192.0.2.1",
             "alias.sweep CNAME target.sweep", "target.sweep A 192.0.2.60"]
    lines += [f"t{i}.sweep A 192.0.2.{70 + i}" for i in range(10)]
    lines += [f"n{i}.sweep A 198.18.{i // 250}.{i % 250 + 1}" for i in range(count)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def sweep_world(tmp_path_factory):
    """NSD serving example., `dnsfw resolver` (num-threads 2) over a
    store with zone sweep.rpz (no rule for those names yet)."""
    require(h.NSD_BIN, h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    work = tmp_path_factory.mktemp("sweep")
    zone = work / "example.zone"
    zone.write_text(_sweep_upstream(SWEEP_NAMES))
    nsd = h.Nsd(work / "nsd", {"example.": zone}).start()
    try:
        store = work / "store.lmdb"
        _load(store, SWEEP_ZONE, work / "v1.rpz", 1, ["placeholder.invalid"])
        r = h.Resolver(store=store, forward_port=nsd.port, workdir=work / "resolver",
                       zones=[SWEEP_ZONE])
        r.start()
        try:
            yield r
        finally:
            r.stop()
    finally:
        nsd.stop()


def test_cached_answers_removed_by_the_maintenance_thread(sweep_world, tmp_path):
    """Answers cached before a rule existed: while clients keep asking for
    them (cache hits, which never reach the module), a commit makes the
    maintenance thread sweep the message cache (logged with "maintenance
    thread", not a resolver thread, and without a fallback warning). Once
    the sweep for that generation is logged, no query sent afterwards gets
    the cached answer: every one is blocked. The CNAME case (rule on the
    target of a cached chain) is read from the cached answer's chain."""
    r = sweep_world
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((h.LOOPBACK, 0))
        s.settimeout(3.0)
        for i in range(SWEEP_NAMES):
            _ask(s, r.port, f"n{i}.sweep.example.")
        for name in POLICED_LATER:
            reply = _ask(s, r.port, name)
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer, reply.to_text()

    stop = threading.Event()
    lock = threading.Lock()
    seen: list[tuple[float, str, bool, str]] = []  # (sent, name, blocked, rcode)
    errors: list[str] = []

    def hammer(k: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((h.LOOPBACK, 0))
        sock.settimeout(3.0)
        i = k
        try:
            while not stop.is_set():
                name = POLICED_LATER[i % len(POLICED_LATER)]
                i += 1
                sent = time.monotonic()
                try:
                    reply = _ask(sock, r.port, name)
                except socket.timeout:
                    errors.append(f"{name}: no answer")
                    continue
                with lock:
                    seen.append((sent, name, _blocked_by(reply, SWEEP_ZONE),
                                 dns.rcode.to_text(reply.rcode())))
        finally:
            sock.close()

    sweeps_before = len(SWEEP_LINE.findall(r.process.stderr()))
    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        h.wait_until(lambda: len(seen) >= 40, 10, "answers from the cache before the commit")
        loading = time.monotonic()
        _load(r.store, SWEEP_ZONE, tmp_path / "v2.rpz", 2,
              ["placeholder.invalid", "target.sweep.example"]
              + [n.rstrip(".") for n in POLICED_LATER if n.startswith("t")])
        lines = h.wait_until(
            lambda: SWEEP_LINE.findall(r.process.stderr())[sweeps_before:], 10,
            "the sweep for the new store generation to be logged", interval=0.005,
            on_timeout=r.describe)
        swept = time.monotonic()
        # Keep asking for a while after the sweep was seen.

        def asked_after() -> int:
            with lock:
                return sum(1 for x in seen if x[0] > swept)
        h.wait_until(lambda: asked_after() >= 200, 10, "200 queries after the sweep")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)

    generation, removed, examined, micros, where = lines[-1]
    assert where == "maintenance thread", lines
    assert int(removed) >= len(POLICED_LATER), lines
    assert int(examined) >= SWEEP_NAMES, lines
    assert "runs on a resolver thread" not in r.process.stderr(), r.describe()
    assert not errors, errors[:5]
    before = [x for x in seen if x[0] < loading]
    after = [x for x in seen if x[0] > swept]
    assert before and not any(b for _, _, b, _ in before), "names were blocked before the rule"
    stale = [f"{name} {rcode}" for _, name, blocked, rcode in after if not blocked]
    assert not stale, (f"{len(stale)} of {len(after)} queries sent after the sweep of generation "
                       f"{generation} ({micros} us) got the cached answer: {stale[:5]}")


RELOAD_NAMES = 40000


def test_reload_while_the_maintenance_thread_sweeps(tmp_path):
    """Unbound reloads while the maintenance thread sweeps a large message
    cache, with a changed msg-cache-size, so Unbound deletes and re-creates
    the message cache before it de-initialises the module. The sweep must
    have let go of the cache first (its anchor, a parked query state, is
    cleared before: module/sweep.hpp): Unbound keeps running, answers, and
    enforces the newest rules after the reload.

    Reloads alternate between `unbound-control reload_keep_cache` (the
    cache is not cleared on the way, so the sweep is still at work when the
    worker threads are deleted; then the size change makes Unbound delete
    the cache) and SIGHUP (the cache is cleared while the sweep runs).
    Repeated until a reload did stop a running sweep (logged at debug
    level: "paused: its anchor ended"), at most 4 times."""
    require(h.NSD_BIN, h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN,
            h.UNBOUND_BIN.parent / "unbound-control")
    dnsperf = shutil.which("dnsperf")
    if dnsperf is None:
        pytest.skip("dnsperf (Debian package dnsperf) is needed to fill the cache quickly")
    zone = tmp_path / "example.zone"
    zone.write_text(_sweep_upstream(RELOAD_NAMES))
    nsd = h.Nsd(tmp_path / "nsd", {"example.": zone}).start()
    names = tmp_path / "names.txt"
    names.write_text("".join(f"n{i}.sweep.example. A\n" for i in range(RELOAD_NAMES)))
    store = tmp_path / "store.lmdb"
    _load(store, SWEEP_ZONE, tmp_path / "v1.rpz", 1, ["placeholder.invalid"])
    work = tmp_path / "unbound"
    port = h.free_port()
    control_port = h.free_port()
    conf = h.write_unbound_conf(work, port, nsd.port, threads=2)
    base_conf = conf.read_text().replace(
        "  control-enable: no\n",
        f"  control-enable: yes\n  control-interface: {h.LOOPBACK}\n"
        f"  control-port: {control_port}\n  control-use-cert: no\n")
    assert f"control-port: {control_port}" in base_conf, base_conf
    control = h.UNBOUND_BIN.parent / "unbound-control"
    toml = h.write_module_toml(tmp_path / "dnsfw.toml", store, [SWEEP_ZONE], tmp_path / "hits.jsonl")
    toml.write_text(toml.read_text() + 'log-level = "debug"\n')

    def configure(cache_mb: int) -> None:
        conf.write_text(base_conf.replace(
            "server:\n", f"server:\n  msg-cache-size: {cache_mb}m\n  rrset-cache-size: 64m\n", 1))

    configure(64)
    proc = h.Process("unbound", [h.UNBOUND_BIN, "-d", "-c", conf], work,
                     env={"DNSFW_CONFIG": str(toml)})
    try:
        h.wait_until(lambda: h.answers(port), 30, "unbound to answer", on_timeout=proc.describe)
        hit = False
        serial = 1
        for attempt in range(4):
            fill = subprocess.run([dnsperf, "-s", h.LOOPBACK, "-p", str(port), "-d", str(names),
                                   "-n", "1", "-c", "4", "-Q", "20000", "-t", "5"],
                                  capture_output=True, text=True, timeout=300)
            assert fill.returncode == 0, fill.stdout + fill.stderr
            serial += 1
            started = len(re.findall(r"sweeping the message cache for store generation",
                                     proc.stderr()))
            _load(store, SWEEP_ZONE, tmp_path / f"v{serial}.rpz", serial,
                  ["placeholder.invalid"] + [f"n{i}.sweep.example" for i in range(serial)])
            h.wait_until(lambda: len(re.findall(r"sweeping the message cache for store "
                                                r"generation", proc.stderr())) > started,
                         10, "a sweep to start", interval=0.002, on_timeout=proc.describe)
            configure(48 if attempt % 2 == 0 else 64)
            restarts = proc.stderr().count("start of service")
            if attempt % 2 == 0:
                cp = subprocess.run([control, "-c", conf, "reload_keep_cache"],
                                    capture_output=True, text=True, timeout=30)
                assert cp.returncode == 0, cp.stdout + cp.stderr
            else:
                os.kill(proc.pid, signal.SIGHUP)
            h.wait_until(lambda: proc.stderr().count("start of service") > restarts, 30,
                         "unbound to restart after SIGHUP", on_timeout=proc.describe)
            assert proc.alive(), proc.describe()
            h.wait_until(lambda: h.answers(port), 30, "unbound to answer after the reload",
                         on_timeout=proc.describe)
            if "paused: its anchor ended" in proc.stderr():
                hit = True
                break
        # No sweep of a module instance worked on after Unbound deleted its
        # caches: between "cannot reuse caches" (the deletion, before the
        # old module is de-initialised) and the next start of service, no
        # sweep may report progress.
        log = proc.stderr().splitlines()
        for i, line in enumerate(log):
            if "cannot reuse caches" not in line:
                continue
            for later in log[i + 1:]:
                if "start of service" in later:
                    break
                assert not SWEEP_LINE.search(later), (
                    "a sweep ran on after Unbound deleted the caches:\n"
                    + "\n".join(log[max(0, i - 5):i + 5]))
        assert hit, ("no reload happened while a sweep was running (each sweep finished "
                     "first)\n" + proc.describe())
        # The newest rules apply after the reload (the new module instance
        # sweeps for its first generation; the cache was emptied anyway).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((h.LOOPBACK, 0))
            s.settimeout(3.0)
            reply = _ask(s, port, f"n{serial - 1}.sweep.example.")
            assert _blocked_by(reply, SWEEP_ZONE), reply.to_text()
            reply = _ask(s, port, f"n{RELOAD_NAMES - 1}.sweep.example.")
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer, reply.to_text()
        assert proc.alive(), proc.describe()
    finally:
        proc.stop()
        nsd.stop()
