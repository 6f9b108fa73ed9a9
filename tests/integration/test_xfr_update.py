"""Admin pushes into a zone dnsfw-xfrd is the source of (issue 4): RFC 2136
UPDATE with TSIG (bind9's nsupdate) and `dnsfw zone push`, enforced at once
by a real Unbound + dnsfw module and passed on by IXFR to a Knot secondary.

World (module scope): store S with threat.rpz. loaded by `dnsfw zone load`
(serial 1); dnsfw-xfrd U over S (allow-update 127.0.0.1/32 with key upd-key,
NOTIFY + transfers with key xfr-key to the Knot secondary K); a second zone
sec.rpz. whose primary is a fake primary (UPDATE must be refused there);
`dnsfw resolver` over S forwarding to the session NSD.
"""
from __future__ import annotations

import re
import time

import dns.rcode
import pytest

import dnsfw_harness as h
import xfr_harness as x
from xfr_fake_primary import FakePrimary

BASE = x.block("stay", "p1", "p2", "p3", *[f"u{i:03d}" for i in range(100)])


class UpdateWorld:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    def serial(self) -> int:
        return x.stored_serial(self.store)

    def describe(self) -> str:
        return self.xfrd.describe(60) + "\n" + self.knot.log.tail(20)

    def nsupdate(self, *commands: str, key=None, zone=x.ZONE, tcp=False):
        return x.nsupdate(self.xfrd.port, commands, self.upd_key if key is None else key,
                          self.work / "nsupdate", zone=zone, tcp=tcp)


@pytest.fixture(scope="module")
def world(nsd, tmp_path_factory):
    x.require_xfr(x.KNOTD, x.KNOTC, x.KDIG, x.NSUPDATE, h.MODULE_SO, h.UNBOUND_BIN)
    work = tmp_path_factory.mktemp("xfr_update")
    store = work / "store"
    zone_file = work / "threat.rpz"
    zone_file.write_text(x.rpz_text(x.ZONE, 1, BASE))
    cp = h.zone_load(store, x.ZONE.rstrip("."), zone_file)
    assert cp.returncode == 0, h.describe_run(cp)
    xfr_key, upd_key = x.Key.generate("xfr-key"), x.Key.generate("upd-key")
    xfrd_port, k_port = h.free_port(), h.free_port()
    fake = FakePrimary("sec.rpz.").start()
    fake.publish(1, x.block("s1"))
    xfrd = x.Xfrd(work / "xfrd", store, [
        x.XfrZone(notify=[f"127.0.0.1:{k_port} key {xfr_key.name}"],
                  allow_transfer=[f"127.0.0.0/8 key {xfr_key.name}"],
                  allow_update=[f"127.0.0.1/32 key {upd_key.name}"]),
        # No allow-update: a zone with primaries refuses UPDATE, and the
        # configuration check rejects allow-update on it.
        x.XfrZone(name="sec.rpz.", primaries=[fake.endpoint()]),
    ], [xfr_key, upd_key])
    xfrd.port = xfrd_port
    knot = x.Knot(work / "knot", x.ZONE, xfr_key, role="secondary",
                  primary=f"{x.LOOPBACK}@{xfrd_port}")
    knot.port = k_port
    resolver = None
    try:
        xfrd.start()
        knot.start()
        h.wait_until(lambda: knot.zone_serial() == 1, 10, "Knot secondary at serial 1",
                     on_timeout=lambda: knot.log.tail() + xfrd.describe())
        resolver = h.Resolver(store=store, forward_port=nsd.port, workdir=work / "resolver",
                              zones=[x.ZONE.rstrip(".")]).start()
        yield UpdateWorld(work=work, store=store, xfrd=xfrd, knot=knot, resolver=resolver,
                          xfr_key=xfr_key, upd_key=upd_key, fake=fake)
    finally:
        if resolver:
            resolver.stop()
        knot.stop()
        xfrd.stop()
        fake.stop()


def _enforced_within(world, name: str, blocked: bool, limit: float = 1.0) -> float:
    """Polls the resolver from now until ``name`` is blocked (or answered by
    upstream); returns the seconds it took, failing past 5 s."""
    t0 = time.monotonic()
    check = x.is_blocked if blocked else x.is_upstream
    h.wait_until(lambda: check(world.resolver.query(name, timeout=1)), 5,
                 f"{name} {'blocked' if blocked else 'answered by upstream'}",
                 interval=0.01, on_timeout=world.describe)
    took = time.monotonic() - t0
    assert took <= limit, f"{name}: enforced after {took:.2f} s (limit {limit} s)"
    return took


def _rule(name: str, rdata: str = ".", ttl: int = 60) -> str:
    return f"{name}.garden.example.{x.ZONE} {ttl} CNAME {rdata}"


def test_nsupdate_adds_a_rule_enforced_at_once(world):
    before = world.serial()
    status_before = x.zone_status(world.store)
    assert x.is_upstream(world.resolver.query(x.garden("nsu1")))  # cached upstream answer
    k_mark = world.knot.log.mark()
    cp = world.nsupdate(f"update add {_rule('nsu1')}")
    assert cp.returncode == 0, h.describe_run(cp) + world.describe()
    assert "status: NOERROR" in cp.stdout, h.describe_run(cp)
    _enforced_within(world, x.garden("nsu1"), blocked=True)
    assert world.serial() == before + 1
    row = x.zone_status(world.store)
    assert row["updates"] == status_before["updates"] + 1, row
    assert "UPDATE" in row["last_source"].upper(), row
    # passed on to the Knot secondary by NOTIFY + IXFR
    h.wait_until(lambda: world.knot.zone_serial() == before + 1, 10, "Knot secondary to follow",
                 on_timeout=world.describe)
    world.knot.log.wait_for(r"IXFR, incoming, remote .*, finished", since=k_mark)
    assert f"nsu1.garden.example.{x.ZONE} CNAME ." in world.knot.content()


def test_nsupdate_removes_a_rule(world):
    before = world.serial()
    assert x.is_blocked(world.resolver.query(x.garden("p3")))
    cp = world.nsupdate(f"update delete p3.garden.example.{x.ZONE} CNAME")
    assert cp.returncode == 0 and "status: NOERROR" in cp.stdout, h.describe_run(cp)
    _enforced_within(world, x.garden("p3"), blocked=False)
    assert world.serial() == before + 1


def test_one_update_message_is_one_serial_and_one_journal_entry(world):
    before = world.serial()
    cp = world.nsupdate(f"update add {_rule('multi1')}", f"update add {_rule('multi2')}",
                        f"update delete u000.garden.example.{x.ZONE}", tcp=True)
    assert cp.returncode == 0 and "status: NOERROR" in cp.stdout, h.describe_run(cp)
    assert world.serial() == before + 1
    ixfr = x.kdig_xfr(world.xfrd.port, key=world.xfr_key, ixfr_serial=before)
    assert ixfr.soa_serials() == [before + 1, before, before + 1, before + 1], ixfr.output
    body = sorted(r for r in ixfr.records if " SOA " not in r)
    assert body == sorted([f"u000.garden.example.{x.ZONE} 60 CNAME .",
                           f"multi1.garden.example.{x.ZONE} 60 CNAME .",
                           f"multi2.garden.example.{x.ZONE} 60 CNAME ."]), ixfr.records


@pytest.mark.parametrize("how", ["wrong-secret", "unsigned", "unknown-key"])
def test_nsupdate_without_the_right_key_is_refused(world, how):
    before = world.serial()
    mark = world.xfrd.log.mark()
    key = {"wrong-secret": world.upd_key.with_wrong_secret(), "unsigned": False,
           "unknown-key": x.Key.generate("someone")}[how]
    cp = x.nsupdate(world.xfrd.port, [f"update add {_rule('intruder')}"], key or None,
                    world.work / "nsupdate")
    assert cp.returncode != 0 or "status: NOERROR" not in cp.stdout, h.describe_run(cp)
    out = (cp.stdout + cp.stderr).upper()
    assert any(w in out for w in ("REFUSED", "NOTAUTH", "TSIG")), h.describe_run(cp)
    assert world.serial() == before
    world.xfrd.wait_log(r"zone threat\.rpz\.: .*127\.0\.0\.1:\d+", since=mark)
    if how == "wrong-secret":
        world.xfrd.wait_log(r"TSIG BADSIG from 127\.0\.0\.1:\d+ \(key upd-key\.\): refused", since=mark)
    assert not x.is_blocked(world.resolver.query(x.garden("intruder")))


def test_update_prerequisites(world):
    """RFC 2136 prerequisites: a failed one changes nothing (YXDOMAIN /
    NXRRSET), a satisfied one lets the update through."""
    before = world.serial()
    cp = world.nsupdate(f"prereq nxdomain stay.garden.example.{x.ZONE}",
                        f"update add {_rule('pre1')}")
    assert "YXDOMAIN" in cp.stdout + cp.stderr, h.describe_run(cp)
    cp = world.nsupdate(f"prereq yxrrset stay.garden.example.{x.ZONE} CNAME *.",
                        f"update add {_rule('pre1')}")
    assert "NXRRSET" in cp.stdout + cp.stderr, h.describe_run(cp)
    assert world.serial() == before
    cp = world.nsupdate(f"prereq yxrrset stay.garden.example.{x.ZONE} CNAME .",
                        f"prereq nxdomain pre2.garden.example.{x.ZONE}",
                        f"update add {_rule('pre2')}")
    assert cp.returncode == 0 and "status: NOERROR" in cp.stdout, h.describe_run(cp)
    assert world.serial() == before + 1
    assert x.blocked_names(world.store, [x.garden("pre1"), x.garden("pre2")]) == {x.garden("pre2")}


def _axfr_records(world, owner: str) -> list[str]:
    """``owner``'s records as AXFR gives them: "owner. TTL TYPE rdata"."""
    t = x.kdig_xfr(world.xfrd.port, key=world.xfr_key)
    assert t.ok, t.output
    return sorted(r for r in t.records if r.split(None, 1)[0].lower() == owner.lower())


def test_nsupdate_deletes_the_obsolete_passthru_form_it_added(world):
    """`CNAME <own name>` is stored as `CNAME rpz-passthru.`: deleting the RR
    as the client wrote it (or its CNAME RRset) removes the rule."""
    owner = f"pt2.garden.example.{x.ZONE}"
    before = world.serial()
    cp = world.nsupdate(f"update add {owner} 300 CNAME pt2.garden.example.")
    assert cp.returncode == 0 and "status: NOERROR" in cp.stdout, h.describe_run(cp)
    assert _axfr_records(world, owner) == [f"{owner} 300 CNAME rpz-passthru."]
    mark = world.xfrd.log.mark()
    cp = world.nsupdate(f"update delete {owner} CNAME pt2.garden.example.")
    assert cp.returncode == 0 and "status: NOERROR" in cp.stdout, h.describe_run(cp)
    assert _axfr_records(world, owner) == [], world.describe()
    assert world.serial() == before + 2
    assert not world.xfrd.log.find(r"no change", since=mark), world.describe()
    cp = world.nsupdate(f"update add {owner} 300 CNAME pt2.garden.example.")
    assert cp.returncode == 0 and "status: NOERROR" in cp.stdout, h.describe_run(cp)
    cp = world.nsupdate(f"update delete {owner} CNAME")
    assert cp.returncode == 0 and "status: NOERROR" in cp.stdout, h.describe_run(cp)
    assert _axfr_records(world, owner) == []
    assert world.serial() == before + 4


def test_nsupdate_of_a_rule_that_would_be_skipped_is_refused(world):
    """An unknown rpz-* CNAME target loads as nothing (a warning in a zone
    file): UPDATE answers REFUSED, applies nothing and logs why."""
    before = world.serial()
    mark = world.xfrd.log.mark()
    cp = world.nsupdate(f"update add {_rule('fine1')}",
                        f"update add typo.garden.example.{x.ZONE} 300 CNAME rpz-passthr.")
    out = cp.stdout + cp.stderr
    assert "REFUSED" in out and "status: NOERROR" not in out, h.describe_run(cp)
    assert world.serial() == before
    world.xfrd.wait_log(r"typo\.garden\.example\.threat\.rpz\. CNAME would not be enforced: "
                        r"unknown special CNAME target rpz-passthr\..*REFUSED", since=mark)
    assert x.blocked_names(world.store, [x.garden("fine1"), x.garden("typo")]) == set()


def test_nsupdate_rrset_takes_the_ttl_of_the_added_rr(world):
    """RFC 2181 5.2: one TTL per RRset. Adding an RR to an RRset gives the
    whole RRset its TTL (as BIND does), here and on the Knot secondary."""
    owner = f"ttlmix.garden.example.{x.ZONE}"
    before = world.serial()
    for cmd in (f"update add {owner} 300 A 192.0.2.1", f"update add {owner} 60 A 192.0.2.2"):
        cp = world.nsupdate(cmd)
        assert cp.returncode == 0 and "status: NOERROR" in cp.stdout, h.describe_run(cp)
    want = [f"{owner} 60 A 192.0.2.1", f"{owner} 60 A 192.0.2.2"]
    assert _axfr_records(world, owner) == want
    h.wait_until(lambda: world.knot.zone_serial() == before + 2, 10, "Knot secondary to follow",
                 on_timeout=world.describe)
    cp = world.knot.knotc("zone-read", x.ZONE, owner, "A")
    assert cp.returncode == 0, h.describe_run(cp)
    knot = sorted(re.sub(r"^\[[^\]]*\]\s*", "", line.strip())
                  for line in cp.stdout.splitlines() if line.strip())
    assert knot == want, cp.stdout


def test_update_of_a_secondary_zone_is_refused(world):
    """sec.rpz. gets its content from its primary: UPDATE is refused."""
    x.wait_stored_serial(world.store, 1, zone="sec.rpz.", describe=world.describe)
    cp = world.nsupdate("update add x.garden.example.sec.rpz. 60 CNAME .", zone="sec.rpz.")
    out = cp.stdout + cp.stderr
    assert cp.returncode != 0 or "status: NOERROR" not in out, h.describe_run(cp)
    assert "REFUSED" in out or "NOTAUTH" in out, h.describe_run(cp)
    assert x.stored_serial(world.store, "sec.rpz.") == 1


def test_zone_push_sends_only_the_difference(world):
    """`dnsfw zone push` of an edited file: one delta with only the
    difference (2 added, 1 removed, 1 changed); the resolver enforces it, the
    daemon notices the new serial and the Knot secondary gets it by IXFR,
    whose content is exactly that difference."""
    before = world.serial()
    current = x.kdig_xfr(world.xfrd.port, key=world.xfr_key)
    assert current.ok, current.output
    lines = []
    for rec in sorted(current.content()):
        owner, rtype, rdata = rec.split(None, 2)
        rel = owner[:-len(x.ZONE) - 1]
        if rel == "p1.garden.example":
            continue                                   # removed
        if rel == "p2.garden.example":
            rdata = "*."                               # changed: NXDOMAIN -> NODATA
        lines.append(f"{rel} {rtype} {rdata}")
    lines += x.block("push1", "push2")                 # added
    edited = world.work / "edited.rpz"
    edited.write_text(x.rpz_text(x.ZONE, before, lines))  # same serial: push makes it +1
    k_mark = world.knot.log.mark()
    cp = h.dnsfw("zone", "push", "--store", world.store, "--zone", x.ZONE.rstrip("."), edited)
    assert cp.returncode == 0, h.describe_run(cp)
    assert re.search(rf"zone threat\.rpz\.?: serial {before} -> {before + 1}: 2 added, 1 removed, "
                     r"1 changed", cp.stdout), h.describe_run(cp)
    _enforced_within(world, x.garden("push1"), blocked=True)
    assert x.is_upstream(world.resolver.query(x.garden("p1")))
    p2 = world.resolver.query(x.garden("p2"))
    assert p2.rcode == dns.rcode.NOERROR and not p2.msg.answer and p2.ede(), str(p2)
    # downstream: NOTIFY (the daemon polls the store's serials) + IXFR
    h.wait_until(lambda: world.knot.zone_serial() == before + 1, 10, "Knot secondary to follow",
                 on_timeout=world.describe)
    world.knot.log.wait_for(r"IXFR, incoming, remote .*, finished", since=k_mark)
    assert not world.knot.log.find(r"AXFR, incoming", since=k_mark)
    ixfr = x.kdig_xfr(world.xfrd.port, key=world.xfr_key, ixfr_serial=before)
    assert ixfr.soa_serials() == [before + 1, before, before + 1, before + 1], ixfr.output
    z = x.ZONE
    removed = ixfr.records[2:ixfr.records.index(ixfr.records[0], 1)]
    added = ixfr.records[ixfr.records.index(ixfr.records[0], 1) + 1:-1]
    assert sorted(removed) == sorted([f"p1.garden.example.{z} 60 CNAME .",
                                      f"p2.garden.example.{z} 60 CNAME ."]), ixfr.records
    assert sorted(added) == sorted([f"p2.garden.example.{z} 60 CNAME *.",
                                    f"push1.garden.example.{z} 60 CNAME .",
                                    f"push2.garden.example.{z} 60 CNAME ."]), ixfr.records
    assert world.knot.content() == x.kdig_xfr(world.xfrd.port, key=world.xfr_key).content()


def test_zone_push_of_the_same_content_changes_nothing(world):
    before = world.serial()
    current = x.kdig_xfr(world.xfrd.port, key=world.xfr_key)
    lines = [f"{r.split()[0][:-len(x.ZONE) - 1]} {r.split(None, 1)[1]}"
             for r in sorted(current.content())]
    same = world.work / "same.rpz"
    same.write_text(x.rpz_text(x.ZONE, before, lines))
    cp = h.dnsfw("zone", "push", "--store", world.store, "--zone", x.ZONE.rstrip("."), same)
    assert cp.returncode == 0 and "no change" in cp.stdout, h.describe_run(cp)
    assert world.serial() == before


def test_reload_adds_a_zone_without_restart(world):
    """A zone added to the config is served after `reload` (control), with
    the same process: UPDATE works on it at once."""
    cp = h.zone_load(world.store, "added.rpz", _write(world.work / "added.rpz",
                                                       x.rpz_text("added.rpz.", 5, x.block("a1"))))
    assert cp.returncode == 0, h.describe_run(cp)
    pid = world.xfrd.process.pid
    world.xfrd.zones.append(x.XfrZone(name="added.rpz.",
                                      allow_update=[f"127.0.0.1/32 key {world.upd_key.name}"]))
    world.xfrd.write_config()
    reply = world.xfrd.control("reload")
    assert reply and reply[-1] == "ok", reply
    cp = world.nsupdate("update add a2.garden.example.added.rpz. 60 CNAME .", zone="added.rpz.")
    assert cp.returncode == 0 and "status: NOERROR" in cp.stdout, h.describe_run(cp) + world.describe()
    assert x.stored_serial(world.store, "added.rpz.") == 6
    assert world.xfrd.process.pid == pid and world.xfrd.alive()


def _write(path, text):
    path.write_text(text)
    return path
