"""`dnsfw explain` end to end: a real store written by `dnsfw zone load`,
the CLI's output and exit codes (tools/README.md, "explain").

Checked for each case: the trace lists the triggers checked in precedence
order with HIT/miss, the decision names the winning zone/trigger/rule, and
the "why" names the precedence rule that made it win (and what lost).
"""
from __future__ import annotations

import re

import pytest

import dnsfw_harness as h

FIRST = """$ORIGIN first.rpz.
@ 60 SOA ns. h. 1 1 1 1 1
*.example 60 CNAME .
exact.example 60 A 192.0.2.1
*.sub.example 60 CNAME *.
allowed.example 60 CNAME rpz-passthru.
24.0.0.0.10.rpz-client-ip 60 CNAME rpz-drop.
32.5.0.0.10.rpz-client-ip 60 CNAME rpz-passthru.
24.0.2.0.192.rpz-ip 60 CNAME .
32.9.2.0.192.rpz-ip 60 A 192.0.2.99
32.5.2.0.192.rpz-ip 60 A 192.0.2.55
z.a.ns.tld.rpz-nsdname 60 CNAME .
a.b.ns.tld.rpz-nsdname 60 CNAME *.
"""

SECOND = """$ORIGIN second.rpz.
@ 60 SOA ns. h. 1 1 1 1 1
www.example 60 A 192.0.2.2
allowed.example 60 CNAME .
only2.test 60 CNAME .
"""

OFF = """$ORIGIN off.rpz.
@ 60 SOA ns. h. 1 1 1 1 1
dis.test 60 CNAME .
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    h.require(h.DNSFW_BIN)
    d = tmp_path_factory.mktemp("explain")
    st = d / "store"
    for zone, text, extra in (("first.rpz", FIRST, []), ("second.rpz", SECOND, []),
                              ("off.rpz", OFF, ["--policy", "disabled"])):
        f = d / f"{zone}.zone"
        f.write_text(text)
        cp = h.zone_load(st, zone, f, *extra)
        assert cp.returncode == 0 and "0 lines skipped" in cp.stderr + cp.stdout, \
            h.describe_run(cp)
    return st


def explain(store, *args) -> tuple[str, list[tuple[str, str, str, str]]]:
    cp = h.dnsfw("explain", "--store", store, *args)
    assert cp.returncode == 0, h.describe_run(cp)
    return cp.stdout, checks(cp.stdout)


def checks(out: str) -> list[tuple[str, str, str, str]]:
    """(zone, trigger, probe, outcome) of each row under "checks:"."""
    rows = []
    section = out.split("checks:\n", 1)[1]
    for line in section.splitlines():
        if not line.startswith("  "):
            break
        m = re.match(r"\s+\d+\s+(\S+)\s+(\S+)\s+(.+?)\s{2,}(HIT \(not applied\)|HIT \(disabled zone\)"
                     r"|HIT|miss|skipped)(?=\s|$)", line)
        assert m, f"unparsable check row: {line!r}\n{out}"
        rows.append(m.groups())
    return rows


def decision(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("decision:"))


def lost(out: str) -> list[str]:
    if "also matching, not applied" not in out:
        return []
    part = out.split("also matching, not applied (lower precedence):\n", 1)[1]
    return [line[4:] for line in part.splitlines() if line.startswith("  - ")]


def hits(rows):
    return [(z, t, p) for z, t, p, o in rows if o == "HIT"]


# ---------------------------------------------------------------------------

def test_qname_zone_order(store):
    out, rows = explain(store, "www.example")
    # checked in order: exact name, then the wildcard, in zone 1; zone 1 decides
    assert [(z, t, p.split()[0], o) for z, t, p, o in rows if t == "qname"] == [
        ("first.rpz.", "qname", "www.example", "miss"),
        ("first.rpz.", "qname", "*.example", "HIT")], out
    assert decision(out) == ("decision: nxdomain — zone 1 first.rpz. qname rule *.example "
                             "(owner *.example.first.rpz.)"), out
    assert "zone order (rule 2): zone 1 is the first zone" in out, out
    # the exact rule of zone 2 lost by zone order, and the output says so
    assert lost(out) == ["zone 2 second.rpz. qname rule www.example (owner "
                         "www.example.second.rpz.): local-data — lost by zone order (rule 2): "
                         "zone 1 first.rpz. comes first"], out


def test_qname_exact_before_wildcard_and_more_labels(store):
    out, _ = explain(store, "exact.example")
    assert "qname rule exact.example " in decision(out), out
    assert "specificity (rule 3): an exact rule" in out, out
    assert any(l.startswith("zone 1 first.rpz. qname rule *.example ") and
               l.endswith("lost by exact before wildcard (rule 3)") for l in lost(out)), out

    out, rows = explain(store, "x.sub.example")
    assert hits(rows) == [("first.rpz.", "qname", "*.sub.example")], out
    assert "qname rule *.sub.example " in decision(out), out
    assert any("qname rule *.example " in l and "more labels before fewer (rule 3)" in l
               for l in lost(out)), out


def test_client_ip_trigger_order_and_longest_prefix(store):
    out, rows = explain(store, "allowed.example", "--client", "10.0.0.7")
    assert rows[:2] == [("first.rpz.", "client-ip", "10.0.0.7/32 (for 10.0.0.7)", "miss"),
                        ("first.rpz.", "client-ip", "10.0.0.0/24 (for 10.0.0.7)", "HIT")], out
    assert decision(out).startswith("decision: drop — zone 1 first.rpz. client-ip rule "
                                    "10.0.0.0/24"), out
    assert "client 10.0.0.7" in out.splitlines()[0], out
    assert any("qname rule allowed.example" in l and
               "trigger order (rule 4): client-ip comes before qname" in l for l in lost(out)), out

    out, _ = explain(store, "q.other", "--client", "10.0.0.5")
    assert "client-ip rule 10.0.0.5/32" in decision(out) and "passthru" in decision(out), out
    assert any("10.0.0.0/24" in l and "longest prefix (rule 6)" in l for l in lost(out)), out


def test_response_ip_longest_prefix_then_smaller_address(store):
    out, rows = explain(store, "q.other", "--answer-ip", "192.0.2.9", "--answer-ip", "192.0.2.5",
                        "--answer-ip", "192.0.2.200")
    assert "response stage" in out.splitlines()[0], out
    # client-ip and qname were checked before response-ip (trigger order)
    triggers = [t for _, t, _, _ in rows]
    assert triggers.index("qname") < triggers.index("response-ip"), out
    assert decision(out).startswith("decision: local-data — zone 1 first.rpz. response-ip rule "
                                    "192.0.2.5/32"), out
    assert "smaller address (rule 7)" in out and "longest prefix (rule 6)" in out, out
    assert any("192.0.2.9/32" in l and "smaller address (rule 7)" in l for l in lost(out)), out
    assert any("192.0.2.0/24" in l and "longest prefix (rule 6)" in l for l in lost(out)), out


def test_nsdname_canonical_order(store):
    out, rows = explain(store, "q.other", "--ns", "a.b.ns.tld", "--ns", "z.a.ns.tld")
    assert [p for _, t, p in hits(rows) if t == "nsdname"] == [
        "a.b.ns.tld (NS a.b.ns.tld.)", "z.a.ns.tld (NS z.a.ns.tld.)"], out
    assert "nsdname rule z.a.ns.tld " in decision(out), out
    assert "NS names (rule 5)" in out, out
    assert any("a.b.ns.tld" in l and "canonically smaller" in l for l in lost(out)), out


def test_why_not_blocked_passthru(store):
    out, _ = explain(store, "allowed.example")
    assert decision(out).startswith("decision: passthru — zone 1 first.rpz. qname rule "
                                    "allowed.example"), out
    assert "passthru: the query is answered normally" in out, out
    assert any("zone 2 second.rpz. qname rule allowed.example" in l and ": nxdomain" in l and
               "zone order (rule 2)" in l for l in lost(out)), out


def test_why_not_blocked_no_rule(store):
    out, rows = explain(store, "innocent.test")
    assert decision(out).startswith("decision: no match"), out
    assert not hits(rows), out
    # every zone was checked
    assert {z for z, _, _, _ in rows} == {"first.rpz.", "second.rpz.", "off.rpz."}, out


def test_why_not_blocked_disabled_zone(store):
    out, rows = explain(store, "dis.test")
    assert ("off.rpz.", "qname", "dis.test", "HIT (disabled zone)") in \
        [(z, t, p, o) for z, t, p, o in rows], out
    assert decision(out).startswith("decision: no match applied — only DISABLED zones"), out
    assert "disabled zone match (logged, not applied): zone 3 off.rpz. qname rule dis.test" \
        in out, out


def test_why_not_blocked_dnssec(store):
    out, rows = explain(store, "only2.test", "--do", "--signed")
    assert ("second.rpz.", "qname", "only2.test", "HIT (not applied)") in rows, out
    assert "break-dnssec no" in decision(out), out
    out, _ = explain(store, "only2.test", "--do")  # query stage: waits for the answer
    assert "resolves first" in decision(out), out
    out, _ = explain(store, "only2.test", "--signed")  # DO=0: rewritten
    assert decision(out).startswith("decision: nxdomain — zone 2 second.rpz."), out
    assert "zone order (rule 2): zone 2 is the first zone with an applicable match" in out, out


def test_exit_codes(store, tmp_path):
    cp = h.dnsfw("explain", "--store", store, "innocent.test")
    assert cp.returncode == 0, h.describe_run(cp)
    cp = h.dnsfw("explain", "--store", store, "www.example", "--bogus")
    assert cp.returncode == 2 and "--bogus" in cp.stderr, h.describe_run(cp)
    cp = h.dnsfw("explain", "--store", store, "www.example", "--client", "not-an-ip")
    assert cp.returncode == 2 and "--client" in cp.stderr, h.describe_run(cp)
    cp = h.dnsfw("explain", "--store", store, "bad..name")
    assert cp.returncode == 2, h.describe_run(cp)
    cp = h.dnsfw("explain", "--store", tmp_path / "missing", "www.example")
    assert cp.returncode == 1 and "does not exist" in cp.stderr, h.describe_run(cp)


# ---------------------------------------------------------------------------
# Layout of the checks table, IPv4 probes, lookup's note, zone list columns.

SIX = """$ORIGIN six.rpz.
@ 60 SOA ns. h. 1 1 1 1 1
128.1.zz.1.0.bad.db8.2001.rpz-ip 60 CNAME .
48.zz.bad.db8.2001.rpz-ip 60 CNAME rpz-drop.
32.1.2.0.192.rpz-ip 60 CNAME rpz-passthru.
"""


@pytest.fixture(scope="module")
def six_store(tmp_path_factory):
    h.require(h.DNSFW_BIN)
    d = tmp_path_factory.mktemp("explain-six")
    f = d / "six.rpz.zone"
    f.write_text(SIX)
    cp = h.zone_load(d / "store", "six.rpz", f)
    assert cp.returncode == 0 and "0 lines skipped" in cp.stderr + cp.stdout, h.describe_run(cp)
    return d / "store"


def check_lines(out: str) -> list[str]:
    section = out.split("checks:\n", 1)[1]
    lines = []
    for line in section.splitlines():
        if not line.startswith("  "):
            break
        lines.append(line)
    return lines


def test_long_ipv6_probe_keeps_its_column(six_store):
    long_probe = "2001:db8:bad:0:1::1/128 (for 2001:db8:bad:0:1::1)"
    out, rows = explain(six_store, "q.other", "--answer-ip", "2001:db8:bad:0:1::1")
    # checks() needs two spaces between the probe and the outcome
    assert ("six.rpz.", "response-ip", long_probe, "HIT") in rows, out
    # every column starts at the same offset in every row
    lines = check_lines(out)
    starts = {re.search(r"\s{2}(HIT|miss|skipped)\b", l).start() for l in lines}
    assert len(starts) == 1, out
    assert long_probe + "  HIT" in out, out


def test_ipv4_not_probed_at_ipv6_only_lengths(six_store):
    out, rows = explain(six_store, "q.other", "--answer-ip", "192.0.2.9")
    probes = [p for _, t, p, o in rows if t == "response-ip" and o != "skipped"]
    # /128 (the IPv4 /32) only: never "::/48 (for 192.0.2.9)"
    assert probes == ["192.0.2.9/32 (for 192.0.2.9)"], out
    assert "IPv4 address: IPv6-only prefix lengths (96 bits or fewer) not probed" in out, out
    assert decision(out) == "decision: no match", out
    # an IPv6 address still goes down to /48
    out, rows = explain(six_store, "q.other", "--answer-ip", "2001:db8:bad::7")
    assert [p for _, t, p, o in rows if t == "response-ip"] == [
        "2001:db8:bad::7/128 (for 2001:db8:bad::7)", "2001:db8:bad::/48 (for 2001:db8:bad::7)"], out
    assert decision(out).startswith("decision: drop — zone 1 six.rpz. response-ip rule "
                                    "2001:db8:bad::/48"), out


def test_lookup_notes_earlier_zone_with_response_stage_rules(store):
    # second.rpz. decides at the query stage, but first.rpz. (earlier) has
    # Response-IP and NSDNAME rules: the resolver resolves first.
    cp = h.dnsfw("lookup", "--store", store, "only2.test", "www.example")
    assert cp.returncode == 0, h.describe_run(cp)
    lines = cp.stdout.splitlines()
    assert lines[0].startswith("only2.test.: nxdomain (zone second.rpz., qname rule only2.test); "
                               "note: earlier zone(s) first.rpz. have Response-IP/NSDNAME/NSIP "
                               "rules: the resolver resolves first"), cp.stdout
    # the first zone's own match: nothing earlier can win
    assert lines[1] == "www.example.: nxdomain (zone first.rpz., qname rule *.example)", cp.stdout
    # explain says the same
    out, _ = explain(store, "only2.test")
    assert "note: an earlier zone has Response-IP/NSDNAME/NSIP rules" in out, out


def test_zone_list_columns_line_up_with_disabled_policy(store):
    cp = h.dnsfw("zone", "list", "--store", store)
    assert cp.returncode == 0, h.describe_run(cp)
    header, *rows = cp.stdout.splitlines()
    assert [r.split()[1] for r in rows] == ["first.rpz.", "second.rpz.", "off.rpz."], cp.stdout
    assert any(" disabled " in r for r in rows), cp.stdout
    for column, cell in (("POLICY", r"(given|disabled)"), ("SETTINGS", r"max-ttl=")):
        at = header.index(column)
        for r in rows:
            m = re.search(r"\s" + cell, r)
            assert m and m.start() + 1 == at, f"{column} misaligned:\n{cp.stdout}"
