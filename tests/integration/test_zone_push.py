"""`dnsfw zone push`: an edited zone file is applied as ONE incremental change
(the difference only) to a zone a running resolver enforces.

World (module scope, independent of the session fixtures): its own NSD
serving `example.` (`ready.example.` for the harness, `*.push.example.` ->
198.51.100.1 so every test name has a benign upstream answer), one store with
one policy zone per scenario, loaded by `dnsfw zone load` before a real
Unbound with the dnsfw module (`dnsfw resolver`) starts on it. Every push
happens while that resolver runs; it is never restarted.

Zones (each scenario has its own, so the tests do not depend on each other):
  diff.rpz    v1 {gone, kept, changed=NXDOMAIN} serial 10
              v2 {kept, changed=A 192.0.2.77, new} serial 11
  bad.rpz     v1 {one}; v2 {one, two, <bad line>, three}
  same.rpz    v1 pushed again unchanged
  older.rpz   serial 100; pushed a file of serial 50 -> 101 (RFC 1982 rule)
  list.rpz    --format list --action nodata, loaded then pushed with one more name
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import dns.name
import dns.rcode
import pytest

import dnsfw_harness as h
from dnsfw_harness import require

UPSTREAM_A = "198.51.100.1"   # *.push.example. at the world's NSD

UPSTREAM_ZONE = """$ORIGIN example.
$TTL 300
@       SOA   ns.example. hostmaster.example. 1 3600 600 86400 300
@       NS    ns.example.
ns      A     127.0.0.1
ready   A     198.51.100.250
*.push  A     198.51.100.1
"""


def rpz(zone: str, serial: int, *records: str) -> str:
    """Text of a policy zone with an SOA of ``serial`` and ``records`` (owners
    relative to the zone, as the parser takes them without $ORIGIN)."""
    return "\n".join([
        f"; policy zone {zone} (test_zone_push.py)",
        "$TTL 60",
        f"@   IN SOA  ns.{zone}. hostmaster.{zone}. {serial} 3600 600 86400 60",
        "@   IN NS   localhost.",
        *records,
    ]) + "\n"


DIFF_V1 = rpz("diff.rpz", 10,
              "gone.diff.push.example     CNAME .",
              "kept.diff.push.example     CNAME .",
              "changed.diff.push.example  CNAME .")
DIFF_V2 = rpz("diff.rpz", 11,
              "kept.diff.push.example     CNAME .",
              "changed.diff.push.example  A 192.0.2.77",
              "new.diff.push.example      CNAME .")

BAD_V1 = rpz("bad.rpz", 1, "one.bad.push.example CNAME .")
BAD_MARKER = "broken.bad.push.example"
BAD_V2 = rpz("bad.rpz", 2,
             "one.bad.push.example     CNAME .",
             "two.bad.push.example     CNAME .",
             f"{BAD_MARKER}  A 999.0.0.1",
             "three.bad.push.example   CNAME .")

SAME = rpz("same.rpz", 7, "x.same.push.example CNAME .", "y.same.push.example CNAME .")

OLDER_V1 = rpz("older.rpz", 100, "a.older.push.example CNAME .")
OLDER_V2 = rpz("older.rpz", 50, "a.older.push.example CNAME .", "b.older.push.example CNAME .")

LIST_V1 = "# list.rpz v1\na.list.push.example\n"
LIST_V2 = "# list.rpz v2\na.list.push.example\nb.list.push.example\n"
LIST_OPTS = ("--format", "list", "--action", "nodata")

ZONES = ["diff.rpz", "bad.rpz", "same.rpz", "older.rpz", "list.rpz"]


class World:
    def __init__(self, work: Path, nsd: h.Nsd, resolver: h.Resolver):
        self.work = work
        self.nsd = nsd
        self.resolver = resolver
        self.store = resolver.store
        self.pid = resolver.process.pid

    def write(self, name: str, text: str) -> Path:
        path = self.work / name
        path.write_text(text)
        return path

    def push(self, zone: str, file: Path, *extra: object):
        return h.dnsfw("zone", "push", "--store", self.store, "--zone", zone, *extra, file,
                       timeout=60)

    def zones(self) -> dict[str, dict]:
        cp = h.dnsfw("zone", "list", "--store", self.store, "--json", timeout=30)
        assert cp.returncode == 0, h.describe_run(cp)
        return {h.norm_name(z["name"]): z for z in json.loads(cp.stdout)}

    def status(self) -> dict[str, dict]:
        cp = h.dnsfw("status", "--store", self.store, "--json", timeout=30)
        assert cp.returncode == 0, h.describe_run(cp)
        return {h.norm_name(z["name"]): z for z in json.loads(cp.stdout)["zones"]}

    def ask(self, name: str, qtype: str = "A", transport: str = "udp") -> h.Reply:
        return self.resolver.query(name, qtype, transport)

    def assert_running(self):
        p = self.resolver.process
        assert p.alive() and p.pid == self.pid, "resolver restarted or died\n" + p.describe()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require(h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN, h.NSD_BIN)
    work = tmp_path_factory.mktemp("push")
    (work / "upstream").mkdir()
    zonefile = work / "upstream" / "example.zone"
    zonefile.write_text(UPSTREAM_ZONE)
    nsd = h.Nsd(work / "nsd", {"example.": zonefile}).start()
    resolver = None
    try:
        store = work / "store.lmdb"
        initial = {"diff.rpz": (DIFF_V1, ()), "bad.rpz": (BAD_V1, ()), "same.rpz": (SAME, ()),
                   "older.rpz": (OLDER_V1, ()), "list.rpz": (LIST_V1, LIST_OPTS)}
        for zone, (text, opts) in initial.items():
            path = work / f"{zone}.v1"
            path.write_text(text)
            cp = h.zone_load(store, zone, path, *opts)
            assert cp.returncode == 0, h.describe_run(cp)
        resolver = h.Resolver(store=store, forward_port=nsd.port, workdir=work / "resolver",
                              zones=ZONES).start()
        yield World(work, nsd, resolver)
    finally:
        if resolver:
            resolver.stop()
        nsd.stop()


def assert_blocked(w: World, name: str, rcode=dns.rcode.NXDOMAIN, transport: str = "udp"):
    r = w.ask(name, "A", transport)
    assert r.rcode == rcode, f"{name}: expected {dns.rcode.to_text(rcode)}\n{r}"
    assert not r.answer_set(), f"{name}: rewritten answer has records\n{r}"
    return r


def assert_upstream(w: World, name: str, transport: str = "udp"):
    r = w.ask(name, "A", transport)
    assert r.rcode == dns.rcode.NOERROR, f"{name}: expected the upstream answer\n{r}"
    assert r.answer_set() == {f"{name} A {UPSTREAM_A}"}, f"{name}: not the upstream answer\n{r}"
    assert not r.ede(), f"{name}: EDE on an answer no policy rewrote\n{r}"
    return r


# ---------------------------------------------------------------------------
# diff.rpz: only the difference is applied, enforced at once

@pytest.fixture(scope="module")
def diff_pushed(world):
    """Asks every name under v1 (so the upstream answer of new.diff is cached),
    then pushes v2 with the resolver running."""
    w = world
    before = {n: w.ask(f"{n}.diff.push.example.") for n in ("gone", "kept", "changed", "new")}
    zones_before = w.zones()
    # loaded_at (unix seconds) is set by a replace (zone load) only: let the
    # clock pass it, so a push that replaced the zone would show.
    loaded_at = zones_before["diff.rpz"]["loaded_at"]
    h.wait_until(lambda: time.time() >= loaded_at + 1, 3, "the clock to pass loaded_at")
    cp = w.push("diff.rpz", w.write("diff.rpz.v2", DIFF_V2))
    return before, zones_before, cp


def test_push_reports_the_difference(diff_pushed):
    _, _, cp = diff_pushed
    assert cp.returncode == 0, h.describe_run(cp)
    assert cp.stdout.strip() == "zone diff.rpz.: serial 10 -> 11: 1 added, 1 removed, 1 changed", \
        h.describe_run(cp)
    assert "error" not in cp.stderr, h.describe_run(cp)
    assert "not newer" not in cp.stderr, h.describe_run(cp)  # the file's serial 11 was used


def test_v1_was_enforced_before_the_push(diff_pushed):
    before, zones_before, _ = diff_pushed
    for n in ("gone", "kept", "changed"):
        assert before[n].rcode == dns.rcode.NXDOMAIN, str(before[n])
    assert before["new"].answer_set() == {f"new.diff.push.example. A {UPSTREAM_A}"}, \
        str(before["new"])
    assert zones_before["diff.rpz"]["serial"] == 10
    assert zones_before["diff.rpz"]["rules"] == 3


def test_store_has_new_serial_and_rule_count(world, diff_pushed):
    _, zones_before, _ = diff_pushed
    z = world.zones()["diff.rpz"]
    assert z["serial"] == 11 and z["rules"] == 3, z
    # Applied as a delta, not a replace: the time of the last replace
    # (zone load) is unchanged, and the zone keeps its place and settings.
    assert z["loaded_at"] == zones_before["diff.rpz"]["loaded_at"], z
    assert z["order"] == zones_before["diff.rpz"]["order"], z
    assert z["settings"] == zones_before["diff.rpz"]["settings"], z
    # The other zones are untouched.
    for name in ("bad.rpz", "same.rpz", "older.rpz", "list.rpz"):
        assert world.zones()[name]["serial"] == zones_before[name]["serial"], name


def test_status_records_the_push(world, diff_pushed):
    row = world.status()["diff.rpz"]
    assert row["serial"] == 11 and row["rules"] == 3, row
    assert row["updates"] == 1, row
    assert row["last_source"] == f"zone push {world.work / 'diff.rpz.v2'}", row
    assert row["last_success"] > 0 and row["last_success_utc"].endswith("Z"), row
    assert row["last_failure"] == 0 and row["last_error"] == "", row
    assert row["transfers"] == {"full": 0, "incremental": 0, "failed": 0}, row


def test_added_name_blocked_at_once_even_if_cached(world, diff_pushed):
    """new.diff was asked (and its upstream answer cached for 300 s) before
    the push; the first query after the push is already blocked."""
    r = assert_blocked(world, "new.diff.push.example.")
    assert any(o.code == 15 and "diff.rpz" in (o.text or "").lower() for o in r.ede()), str(r)
    world.assert_running()


def test_removed_name_no_longer_blocked(world, diff_pushed):
    assert_upstream(world, "gone.diff.push.example.")
    world.assert_running()


def test_changed_rule_takes_its_new_action(world, diff_pushed):
    r = world.ask("changed.diff.push.example.")
    assert r.rcode == dns.rcode.NOERROR, str(r)
    assert r.answer_set() == {"changed.diff.push.example. A 192.0.2.77"}, str(r)


def test_kept_rule_still_enforced(world, diff_pushed):
    assert_blocked(world, "kept.diff.push.example.", transport="tcp")
    world.assert_running()


# ---------------------------------------------------------------------------
# bad.rpz: a bad line is reported with file and line, the rest is applied

def test_bad_line_reported_rest_applied(world):
    w = world
    path = w.write("bad.rpz.v2", BAD_V2)
    line = next(i for i, text in enumerate(BAD_V2.splitlines(), 1) if text.startswith(BAD_MARKER))
    cp = w.push("bad.rpz", path)
    assert cp.returncode == 0, h.describe_run(cp)
    errors = re.findall(r"^(\S+):(\d+): error: .+$", cp.stderr, re.M)
    assert errors == [(str(path), str(line))], \
        f"want exactly one error for {path}:{line}\n{h.describe_run(cp)}"
    first = cp.stdout.splitlines()[0]
    assert first == "zone bad.rpz.: serial 1 -> 2: 2 added, 0 removed, 0 changed (1 line skipped)", \
        h.describe_run(cp)
    assert w.zones()["bad.rpz"]["rules"] == 3
    # The rules before and after the bad line are enforced; the bad name is not.
    assert_blocked(w, "two.bad.push.example.")
    assert_blocked(w, "three.bad.push.example.")
    assert_blocked(w, "one.bad.push.example.")
    assert_upstream(w, f"{BAD_MARKER}.")
    w.assert_running()


# ---------------------------------------------------------------------------
# same.rpz: pushing an unchanged file changes nothing

def test_unchanged_file_is_no_change(world):
    w = world
    before = w.zones()["same.rpz"]
    status_before = w.status()["same.rpz"]
    path = w.write("same.rpz.again", SAME)
    cp = w.push("same.rpz", path)
    assert cp.returncode == 0, h.describe_run(cp)
    assert cp.stdout.strip() == "zone same.rpz.: no change (serial 7)", h.describe_run(cp)
    after = w.zones()["same.rpz"]
    assert after["serial"] == 7 and after["rules"] == before["rules"] == 2, after
    assert w.status()["same.rpz"]["updates"] == status_before["updates"] == 0
    assert_blocked(w, "x.same.push.example.")


# ---------------------------------------------------------------------------
# older.rpz: a file serial that is not newer gives stored + 1

def test_older_file_serial_gives_stored_plus_one(world):
    w = world
    cp = w.push("older.rpz", w.write("older.rpz.v2", OLDER_V2))
    assert cp.returncode == 0, h.describe_run(cp)
    assert cp.stdout.strip() == "zone older.rpz.: serial 100 -> 101: 1 added, 0 removed, 0 changed", \
        h.describe_run(cp)
    # Documented, but never silent: the zone's serial is not the file's.
    assert ("zone older.rpz.: the file's serial 50 is not newer than the stored serial 100: "
            "using 101") in cp.stderr.splitlines(), h.describe_run(cp)
    assert w.zones()["older.rpz"]["serial"] == 101
    assert_blocked(w, "b.older.push.example.")


def test_explicit_serial_must_be_newer(world):
    w = world
    path = w.write("older.rpz.v3", OLDER_V2 + "c.older.push.example CNAME .\n")
    serial = w.zones()["older.rpz"]["serial"]
    cp = w.push("older.rpz", path, "--serial", serial)
    assert cp.returncode == 1, h.describe_run(cp)
    assert "not newer than the stored serial" in cp.stderr, h.describe_run(cp)
    assert w.zones()["older.rpz"]["serial"] == serial
    assert_upstream(w, "c.older.push.example.")
    cp = w.push("older.rpz", path, "--serial", serial + 1000)
    assert cp.returncode == 0, h.describe_run(cp)
    assert f"serial {serial} -> {serial + 1000}: 1 added" in cp.stdout, h.describe_run(cp)
    assert_blocked(w, "c.older.push.example.")


# ---------------------------------------------------------------------------
# list.rpz: the list options of `zone load` apply to `zone push`

def test_list_push_uses_load_options(world):
    w = world
    stored = w.zones()["list.rpz"]["serial"]
    cp = w.push("list.rpz", w.write("list.v2", LIST_V2), *LIST_OPTS)
    assert cp.returncode == 0, h.describe_run(cp)
    assert cp.stdout.strip() == (f"zone list.rpz.: serial {stored} -> {stored + 1}: "
                                 "1 added, 0 removed, 0 changed"), h.describe_run(cp)
    assert "not newer" not in cp.stderr, h.describe_run(cp)  # a list has no serial of its own
    # --action nodata: NOERROR without records, not NXDOMAIN.
    assert_blocked(w, "b.list.push.example.", rcode=dns.rcode.NOERROR)
    assert_blocked(w, "a.list.push.example.", rcode=dns.rcode.NOERROR)


def test_list_push_rejects_rpz_only_misuse(world):
    cp = world.push("list.rpz", world.write("list.v2b", LIST_V2), "--action", "nodata")
    assert cp.returncode == 2, h.describe_run(cp)
    assert "--format list or hosts only" in cp.stderr, h.describe_run(cp)


# ---------------------------------------------------------------------------
# failures: nothing is changed, and the message says why

def test_push_to_missing_zone_fails_clearly(world):
    w = world
    before = w.zones()
    cp = w.push("missing.rpz", w.write("missing.rpz", rpz("missing.rpz", 1, "m.push.example CNAME .")))
    assert cp.returncode == 1, h.describe_run(cp)
    assert "zone missing.rpz. is not in store" in cp.stderr, h.describe_run(cp)
    assert "dnsfw zone load" in cp.stderr, h.describe_run(cp)
    assert cp.stdout == "", h.describe_run(cp)
    assert w.zones() == before


def test_push_to_missing_store_fails_clearly(tmp_path):
    require(h.DNSFW_BIN)
    f = tmp_path / "z.rpz"
    f.write_text(rpz("z.rpz", 1, "a.push.example CNAME ."))
    cp = h.dnsfw("zone", "push", "--store", tmp_path / "nostore", "--zone", "z.rpz", f)
    assert cp.returncode == 1, h.describe_run(cp)
    assert "does not exist" in cp.stderr, h.describe_run(cp)
    assert not (tmp_path / "nostore").exists()


def test_push_of_unreadable_file_changes_nothing(world):
    w = world
    before = w.zones()
    cp = w.push("diff.rpz", w.work / "no-such-file.rpz")
    assert cp.returncode == 1, h.describe_run(cp)
    assert "cannot read" in cp.stderr and "no-such-file.rpz" in cp.stderr, h.describe_run(cp)
    assert w.zones() == before


def test_push_of_empty_file_refused_without_allow_empty(world):
    w = world
    before = w.zones()
    cp = w.push("same.rpz", w.write("empty.rpz", rpz("same.rpz", 99)))
    assert cp.returncode == 1, h.describe_run(cp)
    assert "no rules could be read" in cp.stderr and "--allow-empty" in cp.stderr, \
        h.describe_run(cp)
    assert w.zones() == before
    assert_blocked(w, "y.same.push.example.")


# ---------------------------------------------------------------------------
# The push is ONE journal entry: dnsfw-xfrd serves it as a one-sequence IXFR
# (skipped until build/bin/dnsfw-xfrd exists)

XFRD_BIN = h.BUILD / "bin" / "dnsfw-xfrd"


def ixfr_sequences(port: int, zone: str, serial: int) -> tuple[int, list[tuple[int, int, set, set]]]:
    """IXFR of ``zone`` from ``serial``: (final serial, [(from, to, deleted,
    added)]) with RRs as "owner TYPE rdata" (owner relative to the zone)."""
    import dns.query
    import dns.rdatatype
    import dns.zone  # noqa: F401  (dnspython's xfr needs it loaded)

    origin = dns.name.from_text(zone)
    rrs = []
    for msg in dns.query.xfr(h.LOOPBACK, zone, rdtype=dns.rdatatype.IXFR, serial=serial,
                             port=port, lifetime=15, relativize=False):
        for rrset in msg.answer:
            for rd in rrset:
                rrs.append((rrset.name, rrset.rdtype, rd))
    assert rrs and rrs[0][1] == dns.rdatatype.SOA, rrs
    final = rrs[0][2].serial
    seqs = []
    i = 1
    while i < len(rrs) - 1:
        assert rrs[i][1] == dns.rdatatype.SOA, f"expected the 'from' SOA at {i}: {rrs}"
        frm = rrs[i][2].serial
        i += 1
        deleted, added = set(), set()
        while rrs[i][1] != dns.rdatatype.SOA:
            name, t, rd = rrs[i]
            deleted.add(f"{name.relativize(origin)} {dns.rdatatype.to_text(t)} {rd.to_text()}")
            i += 1
        to = rrs[i][2].serial
        i += 1
        while rrs[i][1] != dns.rdatatype.SOA:
            name, t, rd = rrs[i]
            added.add(f"{name.relativize(origin)} {dns.rdatatype.to_text(t)} {rd.to_text()}")
            i += 1
        seqs.append((frm, to, deleted, added))
    assert rrs[-1][1] == dns.rdatatype.SOA and rrs[-1][2].serial == final, rrs
    return final, seqs


def test_push_is_one_journal_entry_served_by_ixfr(world, diff_pushed):
    require(XFRD_BIN)
    import tempfile
    import shutil
    w = world
    port = h.free_port()
    ctl_dir = Path(tempfile.mkdtemp(prefix="dnsfw-ctl-", dir="/tmp"))
    conf = w.work / "xfrd.toml"
    conf.write_text("\n".join([
        f"store = {h.toml_string(w.store)}",
        f'listen = ["127.0.0.1:{port}"]',
        f"control = {h.toml_string(ctl_dir / 'xfrd.sock')}",
        "[[zone]]",
        'name = "diff.rpz"',
        'allow-transfer = ["127.0.0.1/32"]',
    ]) + "\n")
    p = h.Process("xfrd-push", [XFRD_BIN, "--config", conf], w.work)
    try:
        h.wait_until(lambda: "ready" in p.stderr() or not p.alive(), 15,
                     "dnsfw-xfrd ready line", on_timeout=p.describe)
        assert p.alive(), p.describe()
        final, seqs = ixfr_sequences(port, "diff.rpz.", 10)
        assert final == 11
        assert seqs == [(10, 11,
                         {"gone.diff.push.example CNAME .", "changed.diff.push.example CNAME ."},
                         {"changed.diff.push.example A 192.0.2.77",
                          "new.diff.push.example CNAME ."})], seqs
    finally:
        p.stop()
        shutil.rmtree(ctl_dir, ignore_errors=True)
