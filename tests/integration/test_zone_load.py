"""`dnsfw zone load`, `zone list` and `lookup` on the suite's policy zones.

primary.rpz has one malformed line in the middle; it must be reported as
`file:line: error: message` on stderr while every other rule loads (the
resolver-side proof that the rules after it work is in test_actions.py:
after-bad-line and every *.tcp.example case).
"""
from __future__ import annotations

import re

import dnsfw_harness as h
from dnsfw_harness import PRIMARY, SECONDARY

BAD_MARKER = "badrdata.example"


def bad_line_number() -> int:
    lines = (h.DATA / "primary.rpz").read_text().splitlines()
    numbers = [i for i, line in enumerate(lines, 1) if line.startswith(BAD_MARKER)]
    assert len(numbers) == 1
    return numbers[0]


def expected_rule_count(path) -> int:
    """Distinct trigger owners of an RPZ test file (records of one owner are one rule)."""
    owners = set()
    for line in path.read_text().splitlines():
        line = line.split(";", 1)[0].strip()
        if not line or line.startswith("$") or line.startswith("@"):
            continue
        owner = line.split()[0].lower()
        if owner != BAD_MARKER:
            owners.add(owner)
    return len(owners)


def summary_count(text: str, zone: str) -> int:
    m = re.search(r"zone (\S+): (\d+) rules? loaded", text)
    assert m, f"no 'zone NAME: N rules loaded' summary in:\n{text}"
    assert h.norm_name(m.group(1)) == zone, m.group(0)
    return int(m.group(2))


def test_bad_line_reported_with_file_and_line(main_store):
    cp = main_store.loads[PRIMARY]
    want_line = bad_line_number()
    errors = [m for m in re.finditer(r"^(\S+):(\d+): error: (.+)$", cp.stderr, re.M)]
    assert errors, f"no 'file:line: error: message' on stderr\n{h.describe_run(cp)}"
    ours = [m for m in errors if m.group(1).endswith("primary.rpz")
            and int(m.group(2)) == want_line]
    assert ours, f"no error for primary.rpz:{want_line}\n{h.describe_run(cp)}"
    assert len(errors) == 1, f"errors reported for good lines too\n{h.describe_run(cp)}"


def test_zone_with_one_bad_line_still_loads(main_store):
    cp = main_store.loads[PRIMARY]
    assert cp.returncode == 0, h.describe_run(cp)
    got = summary_count(cp.stdout + cp.stderr, PRIMARY)
    assert got == expected_rule_count(h.DATA / "primary.rpz"), h.describe_run(cp)


def test_clean_zone_loads_without_errors(main_store):
    cp = main_store.loads[SECONDARY]
    assert cp.returncode == 0, h.describe_run(cp)
    assert "error" not in cp.stderr.lower(), h.describe_run(cp)
    assert summary_count(cp.stdout + cp.stderr, SECONDARY) == \
        expected_rule_count(h.DATA / "secondary.rpz")


def test_zone_list_shows_zones_in_order(main_store):
    cp = h.dnsfw("zone", "list", "--store", main_store.path)
    assert cp.returncode == 0, h.describe_run(cp)
    out = cp.stdout
    assert PRIMARY in out and SECONDARY in out, h.describe_run(cp)
    assert out.index(PRIMARY) < out.index(SECONDARY), h.describe_run(cp)


def test_lookup_names_zone_rule_and_action(main_store):
    cp = h.dnsfw("lookup", "--store", main_store.path, "x.wild.udp.example")
    assert cp.returncode == 0, h.describe_run(cp)
    text = cp.stdout.lower()
    assert PRIMARY in text and "*.wild.udp.example" in text and "nxdomain" in text, \
        h.describe_run(cp)


def test_lookup_first_zone_wins(main_store):
    cp = h.dnsfw("lookup", "--store", main_store.path, "order.udp.example")
    assert cp.returncode == 0, h.describe_run(cp)
    text = cp.stdout.lower()
    assert PRIMARY in text and "local-data" in text, h.describe_run(cp)


def test_lookup_unlisted_name_matches_nothing(main_store):
    cp = h.dnsfw("lookup", "--store", main_store.path, "www.udp.example")
    text = cp.stdout.lower()
    for action in ("nxdomain", "nodata", "passthru", "drop", "tcp-only", "local-data"):
        assert action not in text, h.describe_run(cp)
