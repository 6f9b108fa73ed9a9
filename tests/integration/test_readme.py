"""Runs the examples of the top-level README.md ("Using it" and "What a blocked
client sees") so that the README cannot drift from what dnsfw does.

The `sh` block under "## Using it" is executed line by line (with the store in
a temporary directory and `my-list.txt` written here), and the resolver line is
started against the mock upstream; the `dig` example's NXDOMAIN, EDE text and
SOA line are then checked against a real query."""
import re
import shlex

import pytest

import dnsfw_harness as h

README = h.ROOT / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def first_block(text: str, lang: str) -> str:
    m = re.search(rf"```{lang}\n(.*?)```", text, re.S)
    assert m, f"no ```{lang} block"
    return m.group(1)


def commands():
    """The README's example command lines (comments dropped)."""
    out = []
    for line in first_block(section("Using it"), "sh").splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def localise(line: str, store, mylist) -> list[str]:
    line = re.sub(r"\[(--forward [^\]]+)\]", "", line)  # optional part shown in brackets
    argv = shlex.split(line)
    fixed = []
    for a in argv:
        if a == "build/bin/dnsfw":
            a = str(h.DNSFW_BIN)
        elif a == "var/store":
            a = str(store)
        elif a == "my-list.txt":
            a = str(mylist)
        elif a.startswith("data/"):
            a = str(h.ROOT / a)
        fixed.append(a)
    return fixed


def test_readme_examples(tmp_path, nsd):
    h.require(h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    store = tmp_path / "store"
    mylist = tmp_path / "my-list.txt"
    mylist.write_text("# my own block list\nads.example\ntracker.example.\n")
    lines = commands()
    assert any(" lookup " in l for l in lines) and any(" resolver " in l for l in lines)

    resolver_line = None
    outputs = {}
    for line in lines:
        if line.startswith("dig "):
            continue
        if " resolver " in line:
            resolver_line = line
            continue
        cp = h.run(localise(line, store, mylist), timeout=300)
        assert cp.returncode == 0, h.describe_run(cp)
        outputs[line] = cp

    # What the README says about the results.
    lookup = next(cp for l, cp in outputs.items() if " lookup " in l)
    assert "www.cdn.ofo.ac.: nxdomain (zone threat-intel.rpz., qname rule *.cdn.ofo.ac)" \
        in lookup.stdout, h.describe_run(lookup)
    assert "github.io.: no match" in lookup.stdout, h.describe_run(lookup)
    listing = next(cp for l, cp in outputs.items() if " zone list" in l)
    for zone in ("threat-intel.rpz.", "phishing.rpz.", "local-block.rpz."):
        assert zone in listing.stdout, h.describe_run(listing)
    own = h.run([h.DNSFW_BIN, "lookup", "--store", store, "x.ads.example"])
    assert "x.ads.example.: nodata (zone local-block.rpz." in own.stdout, h.describe_run(own)

    # The resolver line, on a free port and with the mock upstream.
    assert resolver_line is not None
    argv = localise(resolver_line, store, mylist)
    assert "--listen" in argv
    r = h.Resolver(store=store, forward_port=nsd.port, workdir=tmp_path / "resolver")
    r.start()
    try:
        reply = h.query(r.port, "cdn.ofo.ac.", "A")
        assert reply.rcode_text() == "NXDOMAIN", str(reply)
        shown = section("What a blocked client sees")
        ede_text = re.search(r"EDE: 15 \(Blocked\): \((.*)\)", shown).group(1)
        assert [(e.code, e.text) for e in reply.ede()] == [(15, ede_text)], str(reply)
        soa = re.search(r"^threat-intel\.rpz\.\s+(\d+)\s+IN\s+SOA\s+(.*)$", shown, re.M)
        additional = {rr.to_text() for rrset in reply.msg.additional for rr in rrset}
        assert soa.group(2).strip() in additional, str(reply)
    finally:
        r.stop()
