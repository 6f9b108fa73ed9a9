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


def test_zone_clients_setting(tmp_path):
    """--clients on zone load / set: stored, shown by zone list (text and
    JSON) and explain, applied per client, reset with 'all'; bad prefixes
    are usage errors that change nothing."""
    store = tmp_path / "store"
    zf = tmp_path / "internal.rpz"
    zf.write_text("$TTL 60\n@ SOA ns. h. 1 3600 900 604800 60\nx.example CNAME .\n")
    cp = h.zone_load(store, "internal.rpz", zf, "--clients", "192.0.0.0/8,2001:DB8::/32")
    assert cp.returncode == 0, h.describe_run(cp)
    assert "clients=192.0.0.0/8,2001:db8::/32" in cp.stdout, cp.stdout

    cp = h.dnsfw("zone", "list", "--store", store, "--json")
    assert cp.returncode == 0, h.describe_run(cp)
    assert '"192.0.0.0/8"' in cp.stdout and '"2001:db8::/32"' in cp.stdout, cp.stdout

    def explain(client: str) -> str:
        cp = h.dnsfw("explain", "--store", store, "x.example", "--client", client)
        assert cp.returncode == 0, h.describe_run(cp)
        return cp.stdout
    inside, outside = explain("192.1.2.3"), explain("10.0.0.1")
    assert "clients 192.0.0.0/8,2001:db8::/32" in inside, inside
    assert "nxdomain" in inside.lower(), inside
    assert "zone not for this client" in outside, outside
    assert "(not this client)" in outside, outside

    # A reload without --clients keeps the list.
    cp = h.zone_load(store, "internal.rpz", zf)
    assert cp.returncode == 0, h.describe_run(cp)
    assert "clients=192.0.0.0/8,2001:db8::/32" in cp.stdout, cp.stdout

    # Bad prefixes: exit 2, clear message, store unchanged.
    for bad, why in (("192.0.0.1/8", "address bits set beyond the prefix length"),
                     ("300.0.0.0/8", "not an IP address or prefix"),
                     ("192.0.0.0/33", "not an IP address or prefix"),
                     ("", "not an IP address or prefix")):
        cp = h.dnsfw("zone", "set", "--store", store, "--zone", "internal.rpz", "--clients", bad)
        assert cp.returncode == 2 and why in cp.stderr, h.describe_run(cp)
    cp = h.dnsfw("zone", "list", "--store", store)
    assert "clients=192.0.0.0/8,2001:db8::/32" in cp.stdout, cp.stdout

    cp = h.dnsfw("zone", "set", "--store", store, "--zone", "internal.rpz", "--clients", "all")
    assert cp.returncode == 0 and "clients=all" in cp.stdout, h.describe_run(cp)
    assert "zone not for this client" not in explain("10.0.0.1")


def test_subdomains_on_a_tld_line_is_loaded_with_a_warning(tmp_path):
    """--subdomains on a one-label line (`com`, `http://net/`) covers a whole
    top-level domain: loaded as asked (blocking `.zip` can be meant), but
    reported as `file:line: warning: ...` so one stray feed line is not silent."""
    h.require(h.DNSFW_BIN)
    store = tmp_path / "store"
    feed = tmp_path / "feed.txt"
    feed.write_text("# feed\nbad.example\ncom\nhttp://net/\n")
    cp = h.zone_load(store, "tld.rpz", feed, "--format", "list", "--subdomains")
    assert cp.returncode == 0, h.describe_run(cp)
    warnings = [(m.group(1), m.group(2), m.group(3)) for m in
                re.finditer(r"^(\S+):(\d+): warning: (.+)$", cp.stderr, re.M)]
    assert warnings == [
        (str(feed), "3", "--subdomains makes 'com' cover every name under the top-level "
                         "domain com"),
        (str(feed), "4", "--subdomains makes 'http://net/' cover every name under the "
                         "top-level domain net"),
    ], h.describe_run(cp)
    assert "error" not in cp.stderr.lower(), h.describe_run(cp)
    assert "0 lines skipped, 2 warnings" in cp.stdout, h.describe_run(cp)
    cp = h.dnsfw("lookup", "--store", store, "www.google.com")
    assert cp.returncode == 0, h.describe_run(cp)
    assert "*.com" in cp.stdout and "nxdomain" in cp.stdout.lower(), h.describe_run(cp)

    # Without --subdomains the line is the TLD name itself: nothing to warn about.
    cp = h.zone_load(store, "tld.rpz", feed, "--format", "list")
    assert cp.returncode == 0, h.describe_run(cp)
    assert "warning" not in cp.stderr, h.describe_run(cp)
