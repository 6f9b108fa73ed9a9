"""Mock DNS worlds for the RPZ peer cases (tests/data/peer-cases/, see its README.md).

One case directory (``<suite>/<case>/``) becomes one :class:`World`:

* its ``upstream.zone`` is split at every delegation (NS + glue) into real zones:
  a root zone served by an NSD on the map's ``root`` address port 53, with delegations and
  glue to one NSD per name-server address (also port 53), so the resolver walks
  the delegation path itself and NSDNAME/NSIP triggers can see it. A flat
  ``upstream.zone`` (no delegation) is just a root zone;
* its policy zones are loaded, in ``policy.tsv`` order, into a fresh store by
  ``dnsfw zone load`` (the per-zone settings of ``policy.tsv`` become CLI flags);
* Unbound (build/deps) runs with the dnsfw module and its own ``unbound.conf``:
  ``stub-zone "."`` pointing at the root NSD (never a forwarder: that would
  hide the delegation path), ``do-not-query-localhost: no``.

DNSSEC. A zone is signed when a row of the case expects a signed answer in it
(``(+RRSIG)`` in the expected answer, e.g. bind9 tld2s., which upstream.zone
calls "DNSSEC-signed copy ... signatures omitted here"): it gets a fresh
ECDSA P-256 key and is signed by ldns-keygen / ldns-signzone (Debian
ldnsutils) when the world starts, and that world's Unbound runs
``module-config: "dynlib validator iterator"`` with the key as
``trust-anchor-file`` (an island of trust: the root and every other zone
stay unsigned, so their answers are insecure, as in the peer test). Cases
with no such row run without the validator, unchanged.

Addresses. The peers' addresses are not on this machine, so every address the
resolver must contact (name-server glue) and every client address is mapped
into 127.0.0.0/8 by an :class:`AddressMap`, built per world at run time: each
/24 block ``a.b.c`` the case uses (glue, clients, ``rpz-client-ip`` /
``rpz-nsip`` prefixes) gets its own ``127.B.k`` (k = 1, 2, ... in address
order) and keeps its last octet: a.b.c.d -> 127.B.k.d. The root server is
127.B.0.1. B is picked at run time (as delegation.py does) so that port 53 is
free on every server address, so worlds never collide with other servers or
other runs. The ``rpz-client-ip`` and ``rpz-nsip`` owner names of the policy
zones are rewritten with the same map. ``rpz-ip`` owners and all answer data
(A/AAAA records that are not name-server glue, local data, expected answers)
denote response addresses and are left alone. The mapping keeps "address in
prefix" for prefixes of /24 and longer (the only lengths the cases use;
shorter ones are rejected), and :func:`check_mapping` proves it per case.
The default client 127.0.0.1 is outside every 127.B.0.0/16.

Only loopback is used. Every process is stopped by :meth:`World.stop` (also on
failures), and dies with pytest (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import csv
import ipaddress
import random
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rcode
import dns.zone

import dnsfw_harness as h

PEER_DATA = h.ROOT / "tests" / "data" / "peer-cases"
SUITES = ("unbound", "bind9", "powerdns")

ROOT_NS = "ns.root-servers.invalid."     # the root server's name (matches no rule of any case)
DEFAULT_CLIENT = "127.0.0.1"             # client "-" in expect*.tsv
DEFAULT_TTL = 300
BASES = range(60, 251)                   # B of 127.B.k.d (as delegation.py)

# Upstream facts that a case states only in a comment of its upstream.zone.
# They are added to the world (never to the data files), so the case can run.
EXTRA_UPSTREAM: dict[str, list[str]] = {
    # "delegated.example. is forwarded to a server at 127.0.0.1": a real
    # delegation, so the server's address is on the path (NSIP rules 127.0.0.1/32).
    "powerdns/nsip-local-data-vs-later-ip": [
        "delegated.example. NS ns.delegated.example.",
        "ns.delegated.example. A 127.0.0.1",
    ],
    "powerdns/zone-ordering-precedence": [
        "delegated.example. NS ns.delegated.example.",
        "ns.delegated.example. A 127.0.0.1",
    ],
    # "test1.example.net., test2.example.net., example.com. and www.example.com.
    # exist upstream (NOERROR)"; the data is unspecified, any address will do.
    **{f"bind9/{c}": [
        "test1.example.net. A 192.0.2.201",
        "test2.example.net. A 192.0.2.202",
        "example.com. A 192.0.2.203",
        "www.example.com. A 192.0.2.204",
        # witnesses (below)
        "www.test1.example.net. A 192.0.2.205",
        "www.test2.example.net. A 192.0.2.206",
    ] for c in ("wildcard-and-apex", "wildcard-only", "wildcard-two-zones")},
    # Witnesses: names whose row expects a policy NXDOMAIN but that do not exist
    # upstream, so the row would pass even if no rule fired. Giving them data
    # makes a missing rewrite visible (as tests/data/integration does).
    "unbound/root-wildcard": ['x. TXT "witness"', 'y.tld. TXT "witness"'],
    "unbound/qname-override": ['c. TXT "witness"'],
    "unbound/nsdname-override": ["www.gotham.a. A 1.2.3.4"],
}


# ---------------------------------------------------------------------------
# Address mapping

_IP_OWNER = re.compile(
    r"^(?P<len>\d{1,3})\.(?P<d>\d{1,3})\.(?P<c>\d{1,3})\.(?P<b>\d{1,3})\.(?P<a>\d{1,3})"
    r"\.(?P<kind>rpz-client-ip|rpz-nsip)(?P<rest>(\.\S*)?)$", re.IGNORECASE)


def parse_ip_owner(owner: str) -> Optional[tuple[str, ipaddress.IPv4Network]]:
    """("rpz-client-ip"|"rpz-nsip", prefix) for an IPv4 client-ip/NSIP owner, else None."""
    m = _IP_OWNER.match(owner)
    if not m:
        return None
    addr = ".".join(m.group(x) for x in "abcd")
    return m.group("kind").lower(), ipaddress.IPv4Network(f"{addr}/{m.group('len')}", strict=False)


def _block(addr: str) -> tuple[int, int, int]:
    a, b, c, _ = ipaddress.IPv4Address(addr).packed
    return a, b, c


class AddressMap:
    """a.b.c.d -> 127.B.k.d, where k (1..255) numbers the case's /24 blocks
    ``a.b.c`` in address order; the root server is 127.B.0.1 (see the
    module doc). Addresses outside the blocks cannot be mapped (ValueError)."""

    SHORTEST = 24  # shortest prefix whose membership the map keeps

    def __init__(self, base: int, blocks):
        self.base = base
        self.blocks = {blk: k for k, blk in enumerate(sorted(set(blocks)), start=1)}
        if len(self.blocks) > 255:
            raise ValueError(f"{len(self.blocks)} /24 blocks: more than 127.B.1-255 can hold")

    @staticmethod
    def blocks_of(addrs, prefixes) -> set[tuple[int, int, int]]:
        """The /24 blocks of ``addrs`` (text) and ``prefixes`` (IPv4Network)."""
        return ({_block(a) for a in addrs}
                | {_block(str(p.network_address)) for p in prefixes})

    @property
    def root(self) -> str:
        return f"127.{self.base}.0.1"

    def octets(self, addr: str) -> str:
        """``k.d`` of the mapped address (127.B.k.d)."""
        blk = _block(addr)
        if blk not in self.blocks:
            raise ValueError(f"{addr}: not in the mapped /24 blocks {sorted(self.blocks)}")
        return f"{self.blocks[blk]}.{ipaddress.IPv4Address(addr).packed[3]}"

    def v4(self, addr: str) -> str:
        """The loopback stand-in of a peer IPv4 address."""
        return f"127.{self.base}.{self.octets(addr)}"

    def prefix(self, net: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        """The map applied to a prefix (at least /24, see SHORTEST)."""
        if net.prefixlen < self.SHORTEST:
            raise ValueError(f"{net}: prefix too short for the loopback mapping "
                             f"(needs /{self.SHORTEST} or longer)")
        return ipaddress.IPv4Network(f"{self.v4(str(net.network_address))}/{net.prefixlen}")

    def covering(self, net: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
        """A prefix of any length mapped as the /24 stand-ins of the case's
        blocks inside it: every mapped address of the case lies in ``net``
        exactly when it lies in one of them (the map's addresses are all in
        its blocks). Empty if no block of the case is inside ``net``."""
        out = []
        for (a, b, c), k in sorted(self.blocks.items(), key=lambda x: x[1]):
            if ipaddress.IPv4Address(f"{a}.{b}.{c}.0") in net:
                out.append(ipaddress.IPv4Network(f"127.{self.base}.{k}.0/24"))
        return out

    def ip_owner(self, owner: str) -> str:
        """A policy-zone owner with its rpz-client-ip / rpz-nsip prefix
        mapped; any other owner unchanged."""
        m = _IP_OWNER.match(owner)
        if not m:
            return owner
        got = parse_ip_owner(owner)
        assert got is not None
        addr = ".".join(m.group(x) for x in "abcd")
        self.prefix(got[1])  # length check
        a, b, c, d = self.v4(addr).split(".")
        return f"{m.group('len')}.{d}.{c}.{b}.{a}.{m.group('kind')}{m.group('rest')}"

    def policy_text(self, text: str) -> str:
        """A policy zone file with every rpz-client-ip / rpz-nsip owner (the
        first token of a line) mapped. Line numbers are kept, so diagnostics
        still point at the original file's lines."""
        out = []
        for line in text.splitlines(keepends=True):
            if line[:1].isspace() or not line.strip() or line.startswith(("$", ";")):
                out.append(line)
                continue
            owner, sep, rest = _split_owner(line)
            out.append(self.ip_owner(owner) + sep + rest)
        return "".join(out)


def ip_owner_prefixes(texts: list[str]) -> list[tuple[str, ipaddress.IPv4Network]]:
    """Every (kind, prefix) of an rpz-client-ip / rpz-nsip owner in ``texts``."""
    out = []
    for text in texts:
        for line in text.splitlines():
            tok = line.split(maxsplit=1)[0] if line.strip() and not line[:1].isspace() else ""
            got = parse_ip_owner(tok)
            if got:
                out.append(got)
    return out


def case_address_map(base: int, records: list["Rec"], policy_texts: list[str],
                     clients: list[str]) -> AddressMap:
    """The AddressMap of one case: blocks of its glue, clients and IP owners."""
    addrs = set(glue_addresses(records)) | {c for c in clients if c not in ("-", "")}
    return AddressMap(base, AddressMap.blocks_of(addrs, [p for _, p in ip_owner_prefixes(policy_texts)]))


def _split_owner(line: str) -> tuple[str, str, str]:
    m = re.match(r"(\S+)(\s*)(.*)", line, re.DOTALL)
    assert m
    return m.group(1), m.group(2), m.group(3)


# ---------------------------------------------------------------------------
# Case data

def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@dataclass(frozen=True)
class Row:
    """One expectation row of an expect*.tsv."""
    suite: str
    case: str
    file: str          # "expect.tsv", "expect.v2.tsv", ...
    version: Optional[int]
    index: int         # 1-based row number within the file
    qname: str
    qtype: str
    rcode: str
    answer: str
    note: str
    client: str
    flags: tuple[str, ...]
    id: str = ""

    @property
    def case_key(self) -> str:
        return f"{self.suite}/{self.case}"

    @property
    def transport(self) -> str:
        return "tcp" if "tcp" in self.flags else "udp"


def load_rows() -> list[Row]:
    """Every row of every expect*.tsv, cases in name order, versions in
    numeric order, rows in file order. Ids are unique:
    ``suite/case[/vN]/qname/qtype/flags[/client][#n]``."""
    rows: list[Row] = []
    seen: dict[str, int] = {}
    for suite in SUITES:
        for case_dir in sorted((PEER_DATA / suite).iterdir()):
            if not case_dir.is_dir():
                continue
            files = sorted(case_dir.glob("expect*.tsv"), key=_expect_order)
            for f in files:
                version = _version_of(f.name)
                for i, r in enumerate(read_tsv(f), start=1):
                    flags = tuple(x.strip() for x in r["flags"].split(",")
                                  if x.strip() and x.strip() != "-")
                    base = f"{suite}/{case_dir.name}"
                    if version is not None:
                        base += f"/v{version}"
                    base += f"/{r['qname']}/{r['qtype']}/{','.join(flags) or '-'}"
                    if r["client"] not in ("-", ""):
                        base += f"/{r['client']}"
                    n = seen.get(base, 0) + 1
                    seen[base] = n
                    rid = base if n == 1 else f"{base}#{n}"
                    rows.append(Row(suite, case_dir.name, f.name, version, i, r["qname"],
                                    r["qtype"], r["expected_rcode"],
                                    r["expected_answer_or_-"], r["note"], r["client"],
                                    flags, rid))
    return rows


def _version_of(name: str) -> Optional[int]:
    m = re.match(r"expect\.v(\d+)\.tsv$", name)
    return int(m.group(1)) if m else None


def _expect_order(p: Path):
    v = _version_of(p.name)
    return (0, 0, p.name) if v is None else (1, v, p.name)


@dataclass
class PolicyZone:
    order: int
    zone: str
    file: str
    override: str
    override_cname: str
    options: str
    note: str


def read_policy(case_dir: Path) -> list[PolicyZone]:
    """policy.tsv; for an update case without one (powerdns/xfr-update-sequence),
    a single zone named by the SOA owner of zone.v1.rpz."""
    p = case_dir / "policy.tsv"
    if p.exists():
        return [PolicyZone(int(r["order"]), r["zone"], r["file"], r["override_action"],
                           r["override_cname"], r["options"], r["note"])
                for r in read_tsv(p)]
    v1 = case_dir / "zone.v1.rpz"
    for line in v1.read_text().splitlines():
        if line.strip() and not line.startswith((";", "$")) and " SOA " in f" {line} ":
            return [PolicyZone(1, line.split()[0], "zone.v1.rpz", "-", "-", "-", "")]
    raise AssertionError(f"{case_dir}: no policy.tsv and no SOA in zone.v1.rpz")


def versions_of(case_dir: Path) -> list[int]:
    """Update cases: every zone version to load, in order (sequence.tsv's
    serials if present, else the zone.vN.rpz files)."""
    seq = case_dir / "sequence.tsv"
    if seq.exists():
        return [int(r["serial"]) for r in read_tsv(seq)]
    return sorted(int(m.group(1)) for p in case_dir.glob("zone.v*.rpz")
                  if (m := re.match(r"zone\.v(\d+)\.rpz$", p.name)))


# ---------------------------------------------------------------------------
# policy.tsv settings -> `dnsfw zone load` flags

_OVERRIDES = {"given": "given", "disabled": "disabled", "nxdomain": "nxdomain",
              "nodata": "nodata", "passthru": "passthru", "no-op": "passthru",
              "drop": "drop", "tcp-only": "tcp-only", "cname": "cname"}


_TAG_BLOCK = re.compile(r"(\d+\.\d+\.\d+\.\d+/\d+) has ((?:\"[^\"]+\"(?:,? and |, )?)+)")


def tag_netblocks(note: str) -> dict[str, list[ipaddress.IPv4Network]]:
    """Unbound tags: the client netblocks of each tag, from a policy.tsv note
    such as ``192.0.0.0/8 has "internal", 127.0.0.0/8 has "server"`` (the
    case's access-control-tag lines)."""
    out: dict[str, list[ipaddress.IPv4Network]] = {}
    for m in _TAG_BLOCK.finditer(note):
        for tag in re.findall(r'"([^"]+)"', m.group(2)):
            out.setdefault(tag, []).append(ipaddress.IPv4Network(m.group(1)))
    return out


def zone_flags(pz: PolicyZone, amap: Optional[AddressMap] = None) -> tuple[list[str], list[str]]:
    """(flags for `dnsfw zone load`, settings with no dnsfw equivalent).
    ``amap`` maps client prefixes (Unbound tags -> ``--clients``)."""
    flags: list[str] = []
    ignored: list[str] = []
    ov = pz.override.strip().lower()
    if ov and ov != "-":
        # "passthru (except local data)": the override with PowerDNS
        # defpolOverrideLocalData=false (mapped from the options below).
        ov = re.sub(r"\s*\(except local data\)$", "", ov)
        if ov in _OVERRIDES:
            flags += ["--policy", _OVERRIDES[ov]]
            if ov == "cname":
                flags += ["--policy-cname", pz.override_cname]
        else:
            ignored.append(f"override '{pz.override}'")
    for opt in re.split(r";\s*", pz.options.strip()):
        opt = opt.strip()
        if not opt or opt == "-":
            continue
        parts = re.split(r"\s*=\s*|\s+", opt, maxsplit=1)
        key = parts[0].lower()
        val = parts[1].strip() if len(parts) > 1 else ""
        if key == "max-policy-ttl":
            flags += ["--max-policy-ttl", val]
        elif key == "recursive-only":
            flags += ["--recursive-only", val]
        elif key == "break-dnssec":
            flags += ["--break-dnssec", val]
        elif key == "log":
            flags += ["--log", val]
        elif key == "includesoa":
            flags += ["--add-soa", "yes" if val.lower() == "true" else "no"]
        elif key == "defpoloverridelocaldata":
            # PowerDNS: does the default policy (the override) also replace
            # local-data rules? "true (default)" / "false".
            flags += ["--override-local-data",
                      "no" if val.split()[0].lower() == "false" else "yes"]
        elif key == "tags" and amap is not None:
            # Unbound: the zone applies only to clients carrying one of its
            # tags; the note names each tag's netblocks (access-control-tag).
            # dnsfw: --clients with those netblocks, mapped like client
            # addresses (each as the stand-ins of the case's /24 blocks in it).
            blocks = tag_netblocks(pz.note)
            nets = [n for tag in re.split(r"[\s,]+", val.strip('"')) if tag
                    for n in blocks.get(tag, [])]
            if not nets:
                ignored.append(opt + " (no netblock of the tag in the note)")
                continue
            mapped = [str(m) for n in nets for m in amap.covering(n)]
            # No client of the case is in the tag's netblocks: a prefix none
            # of the mapped addresses lies in (127.B.0.0/24 holds only the root).
            flags += ["--clients", ",".join(mapped) or f"127.{amap.base}.0.255/32"]
        elif key == "defpol":
            # PowerDNS's default policy = the override, already given by
            # the override_action column.
            continue
        else:
            # nsdname-enable / nsip-enable (always on in dnsfw), min-ns-dots,
            # qname-wait-recurse, servfail-ttl, signal-nxdomain-ra,
            # primary=: resolver-specific, no dnsfw setting.
            ignored.append(opt)
    return flags, ignored


_help_cache: Optional[str] = None


def zone_load_help() -> str:
    global _help_cache
    if _help_cache is None:
        _help_cache = h.dnsfw("zone", "load", "--help").stdout
    return _help_cache


def supported(flag: str) -> bool:
    return re.search(rf"(^|\s){re.escape(flag)}(\s|$)", zone_load_help(), re.M) is not None


# ---------------------------------------------------------------------------
# Upstream world

@dataclass
class Rec:
    name: dns.name.Name
    ttl: int
    rdata: dns.rdata.Rdata

    @property
    def rdtype(self) -> int:
        return self.rdata.rdtype

    def text(self) -> str:
        return f"{self.name.to_text()} {self.ttl} IN {dns.rdatatype.to_text(self.rdtype)} {self.rdata.to_text()}"


def parse_upstream(text: str) -> list[Rec]:
    """Absolute-name master-file text (no SOA needed) -> records."""
    z = dns.zone.from_text("$ORIGIN .\n$TTL %d\n%s\n" % (DEFAULT_TTL, text), origin=dns.name.root,
                           relativize=False, check_origin=False)
    out = []
    for name, node in z.nodes.items():
        for rds in node.rdatasets:
            for rd in rds:
                out.append(Rec(name, rds.ttl, rd))
    return out


@dataclass
class UpstreamZone:
    origin: dns.name.Name
    servers: list[str]          # mapped addresses serving it
    ns_names: list[dns.name.Name]
    records: list[Rec] = field(default_factory=list)
    signed_text: Optional[str] = None  # the zone as served, once signed (sign_zone)
    anchor: Optional[Path] = None      # its DNSKEY file (a trust anchor), once signed

    def text(self) -> str:
        mname = ROOT_NS if self.origin == dns.name.root else self.ns_names[0].to_text()
        lines = [f"$ORIGIN .", f"$TTL {DEFAULT_TTL}",
                 f"{self.origin.to_text()} 86400 IN SOA {mname} hostmaster.invalid. 1 3600 900 604800 300"]
        lines += [r.text() for r in self.records]
        return "\n".join(lines) + "\n"


def _ns_targets(records: list[Rec]) -> dict[dns.name.Name, list[dns.name.Name]]:
    out: dict[dns.name.Name, list[dns.name.Name]] = {}
    for r in records:
        if r.rdtype == dns.rdatatype.NS and r.name != dns.name.root:
            out.setdefault(r.name, []).append(r.rdata.target)
    return out


def glue_addresses(records: list[Rec]) -> list[str]:
    """The (unmapped) addresses of every name server named by an NS record."""
    glue_names = {t for ts in _ns_targets(records).values() for t in ts}
    return [r.rdata.address for r in records
            if r.rdtype == dns.rdatatype.A and r.name in glue_names]


class UpstreamWorld:
    """upstream.zone split into zones at its delegations, server addresses
    mapped by ``amap``."""

    def __init__(self, records: list[Rec], amap: AddressMap):
        self.amap = amap
        ns_targets = _ns_targets(records)
        glue_names = {t for ts in ns_targets.values() for t in ts}
        # Map the glue addresses (server addresses); every other A/AAAA is answer data.
        self.records: list[Rec] = []
        self.server_addrs: dict[str, str] = {}  # original -> mapped
        for r in records:
            if r.rdtype == dns.rdatatype.A and r.name in glue_names:
                orig = r.rdata.address
                mapped = amap.v4(orig)
                self.server_addrs[orig] = mapped
                r = Rec(r.name, r.ttl, dns.rdata.from_text("IN", "A", mapped))
            self.records.append(r)
        addr_of: dict[dns.name.Name, list[str]] = {}
        for r in self.records:
            if r.rdtype == dns.rdatatype.A and r.name in glue_names:
                addr_of.setdefault(r.name, []).append(r.rdata.address)
        self.cuts = sorted(ns_targets, key=lambda n: len(n.labels))
        self.zones: dict[dns.name.Name, UpstreamZone] = {
            dns.name.root: UpstreamZone(dns.name.root, [amap.root], [dns.name.from_text(ROOT_NS)])}
        for cut in self.cuts:
            servers = sorted({a for t in ns_targets[cut] for a in addr_of.get(t, [])})
            self.zones[cut] = UpstreamZone(cut, servers, ns_targets[cut])
        root = self.zones[dns.name.root]
        root.records.append(Rec(dns.name.root, 86400, dns.rdata.from_text("IN", "NS", ROOT_NS)))
        root.records.append(Rec(dns.name.from_text(ROOT_NS), 86400, dns.rdata.from_text("IN", "A", amap.root)))
        self.unserved: list[Rec] = []
        for r in self.records:
            z = self.zone_of(r.name, r.rdtype)
            z.records.append(r)
            if r.rdtype == dns.rdatatype.NS and r.name in self.zones and r.name != dns.name.root:
                # the delegation in the parent, with glue for in-bailiwick targets
                parent = self.zone_of(r.name.parent(), 0)
                parent.records.append(r)
                if r.rdata.target.is_subdomain(r.name):
                    for a in addr_of.get(r.rdata.target, []):
                        parent.records.append(Rec(r.rdata.target, r.ttl, dns.rdata.from_text("IN", "A", a)))
        # Zones without any server address (e.g. bind9 "broken" l1.l0.) are
        # not served: resolution below them fails (SERVFAIL), as in the peer test.
        for origin, z in list(self.zones.items()):
            if not z.servers:
                self.unserved.extend(z.records)

    def zone_of(self, name: dns.name.Name, rdtype: int) -> UpstreamZone:
        best = self.zones[dns.name.root]
        for cut, z in self.zones.items():
            if name.is_subdomain(cut) and len(cut.labels) > len(best.origin.labels):
                best = z
        return best

    def servers(self) -> dict[str, list[UpstreamZone]]:
        """mapped address -> zones it serves."""
        out: dict[str, list[UpstreamZone]] = {}
        for z in self.zones.values():
            for a in z.servers:
                out.setdefault(a, []).append(z)
        return out

    def answer_for(self, qname: str, qtype: str) -> list[Rec]:
        """What the authoritative data holds for exactly (qname, qtype),
        apex SOA/NS of the generated zones included (for "(upstream answer)")."""
        n = dns.name.from_text(qname)
        t = dns.rdatatype.from_text(qtype)
        if n in self.zones and t == dns.rdatatype.SOA:
            z = self.zones[n]
            return [Rec(n, 86400, dns.rdata.from_text(
                "IN", "SOA", z.text().splitlines()[2].split(" SOA ", 1)[1]))]
        return [r for r in self.zone_of(n, t).records if r.name == n and r.rdtype == t]


def check_mapping(case_key: str, world: UpstreamWorld, policy_texts: list[str],
                  clients: list[str]) -> None:
    """Asserts that the world's AddressMap keeps this case's address
    relations: distinct addresses stay distinct, every (address, client-ip /
    NSIP prefix) membership is unchanged, and no mapped prefix covers the
    default client or the root server (which would make a rule fire for every
    query)."""
    amap = world.amap
    addrs = set(world.server_addrs) | {c for c in clients if c not in ("-", "")}
    mapped = {a: amap.v4(a) for a in addrs}
    assert len(set(mapped.values())) == len(mapped), f"{case_key}: mapping collides: {mapped}"
    for kind, p in ip_owner_prefixes(policy_texts):
        mp = amap.prefix(p)
        for a, m in mapped.items():
            assert (ipaddress.IPv4Address(a) in p) == (ipaddress.IPv4Address(m) in mp), \
                f"{case_key}: mapping changes whether {a} is in {p}"
        fixed = DEFAULT_CLIENT if kind == "rpz-client-ip" else amap.root
        assert ipaddress.IPv4Address(fixed) not in mp, f"{case_key}: mapped {kind} rule {mp} covers {fixed}"
    for a, m in mapped.items():
        assert m != DEFAULT_CLIENT, f"{case_key}: {a} maps to the default client {m}"
        assert m != amap.root, f"{case_key}: {a} maps to the root server {m}"


# ---------------------------------------------------------------------------
# Processes

def nsd_conf(workdir: Path, addr: str, zones: list[UpstreamZone]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    lines = ["server:", f"  ip-address: {addr}@53", '  username: ""', '  chroot: ""',
             f'  zonesdir: "{workdir}"', f'  pidfile: "{workdir}/nsd.pid"',
             f'  xfrdfile: "{workdir}/xfrd.state"', f'  zonelistfile: "{workdir}/zone.list"',
             f'  xfrdir: "{workdir}"', '  database: ""', f'  logfile: "{workdir}/nsd.log"',
             "  server-count: 1", "  verbosity: 1", "  hide-version: yes", "  do-ip6: no",
             "remote-control:", "  control-enable: no"]
    for z in zones:
        fname = "root.zone" if z.origin == dns.name.root else z.origin.to_text().rstrip(".") + ".zone"
        (workdir / fname).write_text(z.signed_text if z.signed_text is not None else z.text())
        lines += ["zone:", f'  name: "{z.origin.to_text()}"', f'  zonefile: "{workdir / fname}"']
    conf = workdir / "nsd.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def port53_free(addr: str) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, 53))
        except OSError:
            return False
        finally:
            s.close()
    return True


def pick_base(octets: list[str]) -> Optional[int]:
    """A B such that port 53 is free on 127.B.<o> for every o in ``octets``
    ("k.d"), or None."""
    candidates = list(BASES)
    random.shuffle(candidates)
    for b in candidates[:60]:
        if all(port53_free(f"127.{b}.{o}") for o in octets):
            return b
    return None


def sign_zone(workdir: Path, zone: UpstreamZone) -> None:
    """Signs ``zone`` with a fresh key (dnsfw_harness.sign_zone_text) in
    ``workdir``: sets its ``signed_text`` (what NSD serves) and ``anchor``
    (the key's DNSKEY file, for Unbound's ``trust-anchor-file``)."""
    try:
        zone.signed_text, zone.anchor = h.sign_zone_text(workdir, zone.origin.to_text(),
                                                         zone.text())
    except RuntimeError as e:
        raise WorldError(str(e)) from e


def signed_zone_names(rows: list[Row], upstream: UpstreamWorld) -> list[dns.name.Name]:
    """The zones the case needs signed: those holding the qname of a row that
    expects a signed answer ("(+RRSIG)"). Such a zone must be a delegated
    zone of its own (not the root): the root stays unsigned."""
    out: list[dns.name.Name] = []
    for r in rows:
        if "(+RRSIG)" not in r.answer:
            continue
        z = upstream.zone_of(dns.name.from_text(r.qname), dns.rdatatype.from_text(r.qtype))
        if z.origin == dns.name.root:
            raise WorldError(f"{r.id}: expects a signed answer from the root zone; only "
                             "delegated zones are signed")
        if z.origin not in out:
            out.append(z.origin)
    return out


def unbound_conf(workdir: Path, port: int, root: str, threads: int = 1,
                 anchors: Optional[list[Path]] = None) -> Path:
    """``anchors``: DNSKEY files of the signed zones; with any, the validator
    runs (before dnsfw sees the answer, so it knows whether it is secure)."""
    anchors = anchors or []
    modules = "dynlib validator iterator" if anchors else "dynlib iterator"
    conf = workdir / "unbound.conf"
    conf.write_text("\n".join([
        "server:",
        f"  interface: {DEFAULT_CLIENT}",
        f"  port: {port}",
        "  do-ip6: no",
        "  do-daemonize: no",
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{workdir}"',
        '  pidfile: ""',
        "  use-syslog: no",
        '  logfile: ""',
        "  verbosity: 1",
        "  log-time-ascii: yes",
        f"  num-threads: {threads}",
        # allow_snoop: RD=0 rows are served (plain allow REFUSEs them), as
        # a peer resolver serves RD=0 queries from its cache.
        "  access-control: 127.0.0.0/8 allow_snoop",
        "  do-not-query-localhost: no",
        f'  module-config: "{modules}"',
        "  ede: yes",
        "  minimal-responses: no",
        *[f'  trust-anchor-file: "{a}"' for a in anchors],
        *(["  val-log-level: 2"] if anchors else []),
        "dynlib:",
        f'  dynlib-file: "{h.MODULE_SO}"',
        "remote-control:",
        "  control-enable: no",
        "stub-zone:",
        '  name: "."',
        f"  stub-addr: {root}@53",
    ]) + "\n")
    return conf


def write_module_toml(path: Path, store: Path, zones: list[str], hit_log: Path) -> Path:
    path.write_text(
        f"store = {h.toml_string(store)}\n"
        f"zones = [{', '.join(h.toml_string(z) for z in zones)}]\n"
        f"hit-log = {h.toml_string(hit_log)}\n"
        "fail-open = false\n"
        "ede = 15\n"
        'log-level = "info"\n')
    return path


# ---------------------------------------------------------------------------
# The world of one case directory

class WorldError(RuntimeError):
    """A world could not be built or started (an infrastructure failure, never
    an expected failure of a row)."""


class World:
    """NSDs + store + Unbound for one ``suite/case`` directory."""

    def __init__(self, case_key: str, workdir: Path, rows: list[Row]):
        self.case_key = case_key
        self.dir = PEER_DATA / case_key
        self.workdir = workdir
        self.rows = rows
        self.policy = read_policy(self.dir)
        self.versions = versions_of(self.dir) if (self.dir / "zone.v1.rpz").exists() else []
        self.loaded_version: Optional[int] = None
        self.loads: list[str] = []        # describe_run() of every zone load
        self.ignored: list[str] = []      # policy settings with no dnsfw flag
        self.nsds: list[h.Process] = []
        self.unbound: Optional[h.Process] = None
        self.port = 0
        self.store = workdir / "store"
        text = (self.dir / "upstream.zone").read_text()
        extra = EXTRA_UPSTREAM.get(case_key, [])
        self.records = parse_upstream(text + "\n" + "\n".join(extra))
        # Set by start(), once a free address block is picked:
        self.amap: Optional[AddressMap] = None
        self.upstream: Optional[UpstreamWorld] = None
        self.anchors: list[Path] = []     # trust anchors of the signed zones

    # -- policy zones --------------------------------------------------------
    def _policy_files(self, version: Optional[int]) -> list[tuple[PolicyZone, Path]]:
        out = []
        for pz in sorted(self.policy, key=lambda p: p.order):
            src = self.dir / (f"zone.v{version}.rpz" if version is not None else pz.file)
            out.append((pz, src))
        return out

    def _load(self, version: Optional[int]) -> None:
        for pz, src in self._policy_files(version):
            mapped = self.workdir / "policy" / (f"v{version}-" if version else "") / src.name
            mapped.parent.mkdir(parents=True, exist_ok=True)
            mapped.write_text(self.amap.policy_text(src.read_text()))
            flags, ignored = zone_flags(pz, self.amap)
            usable = []
            i = 0
            while i < len(flags):
                f = flags[i]
                if supported(f):
                    usable += flags[i:i + 2]
                else:
                    ignored.append(f"{f} {flags[i + 1]} (not in `dnsfw zone load` yet)")
                i += 2
            if version is None or version == self.versions[0]:
                self.ignored += [f"{pz.zone}: {x}" for x in ignored]
            cp = h.zone_load(self.store, pz.zone, mapped, "--format", "rpz", "--order", pz.order,
                             "--allow-empty", *usable)
            self.loads.append(h.describe_run(cp))
            if cp.returncode != 0:
                raise WorldError(f"{self.case_key}: zone load failed\n{h.describe_run(cp)}")

    def ensure_version(self, version: Optional[int]) -> None:
        """Loads every zone version after the current one up to ``version``
        (in sequence order) into the running resolver's store, and waits until
        the module reports the new store generation (cache swept)."""
        if version is None or version == self.loaded_version:
            return
        pending = [v for v in self.versions
                   if (self.loaded_version is None or self.versions.index(v) > self.versions.index(self.loaded_version))
                   and self.versions.index(v) <= self.versions.index(version)]
        for v in pending:
            before = self._sweeps()
            self._load(v)
            self.loaded_version = v
            if self.unbound is not None:
                try:
                    h.wait_until(lambda: self._sweeps() > before, 10.0,
                                 f"the module to report the store change to v{v} "
                                 "(\"store generation N: ... policed now\")", on_timeout=self.describe)
                except AssertionError as e:
                    raise WorldError(str(e)) from e

    def _sweeps(self) -> int:
        if self.unbound is None:
            return 0
        return len(re.findall(r"store generation \d+: .*policed now", self.unbound.stderr()))

    # -- processes -----------------------------------------------------------
    def start(self) -> "World":
        h.require(h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN, h.NSD_BIN)
        self.workdir.mkdir(parents=True, exist_ok=True)
        clients = [r.client for r in self.rows]
        texts = [src.read_text() for v in (self.versions or [None])
                 for _, src in self._policy_files(v)]
        blocks = case_address_map(0, self.records, texts, clients)
        octets = ["0.1"] + [blocks.octets(a) for a in sorted(set(glue_addresses(self.records)))]
        base = pick_base(octets)
        if base is None:
            raise WorldError(f"{self.case_key}: no 127.B.0.0/16 with port 53 free on "
                             f"127.B.{{{', '.join(octets)}}}")
        self.amap = case_address_map(base, self.records, texts, clients)
        self.upstream = UpstreamWorld(self.records, self.amap)
        check_mapping(self.case_key, self.upstream, texts, clients)
        try:
            for origin in signed_zone_names(self.rows, self.upstream):
                zone = self.upstream.zones[origin]
                sign_zone(self.workdir / "keys" / origin.to_text().rstrip("."), zone)
                self.anchors.append(zone.anchor)
            self._start_nsds()
            self._load(self.versions[0] if self.versions else None)
            if self.versions:
                self.loaded_version = self.versions[0]
            self._start_unbound()
        except BaseException as e:
            self.stop()
            if isinstance(e, Exception) and not isinstance(e, WorldError):
                raise WorldError(str(e)) from e
            raise
        return self

    def _start_nsds(self) -> None:
        servers = self.upstream.servers()
        busy = [a for a in servers if not port53_free(a)]
        assert not busy, f"{self.case_key}: port 53 busy on {busy} (taken since pick_base)"
        for addr, zones in sorted(servers.items()):
            wd = self.workdir / f"nsd-{addr}"
            conf = nsd_conf(wd, addr, zones)
            self.nsds.append(h.Process(f"nsd-{addr}", [h.NSD_BIN, "-d", "-c", conf], wd))
        for p, (addr, zones) in zip(self.nsds, sorted(servers.items())):
            probe = zones[0].origin.to_text()

            def ready(p=p, addr=addr, probe=probe):
                if not p.alive():
                    raise AssertionError(f"NSD on {addr} exited\n{p.describe()}\n"
                                         + _read(p.workdir / "nsd.log"))
                try:
                    q = dns.message.make_query(probe, "SOA")
                    r = dns.query.udp(q, addr, timeout=0.3, port=53)
                except (dns.exception.DNSException, OSError):
                    return False
                return r.rcode() == dns.rcode.NOERROR and bool(r.answer)
            h.wait_until(ready, 20.0, f"NSD on {addr}:53",
                         on_timeout=lambda p=p: p.describe() + _read(p.workdir / "nsd.log"))

    def _start_unbound(self) -> None:
        wd = self.workdir / "unbound"
        wd.mkdir(parents=True, exist_ok=True)
        self.port = h.free_port()
        conf = unbound_conf(wd, self.port, self.amap.root, anchors=self.anchors)
        zones = [pz.zone for pz in sorted(self.policy, key=lambda p: p.order)]
        toml = write_module_toml(wd / "dnsfw.toml", self.store, zones, wd / "hits.jsonl")
        self.unbound = h.Process("unbound", [h.UNBOUND_BIN, "-d", "-c", conf], wd,
                                 env={"DNSFW_CONFIG": str(toml)})

        def ready():
            if not self.unbound.alive():
                raise AssertionError("unbound exited during start-up\n" + self.unbound.describe())
            try:
                q = dns.message.make_query(".", "SOA")
                dns.query.udp(q, DEFAULT_CLIENT, timeout=0.5, port=self.port)
                return True
            except (dns.exception.DNSException, OSError):
                return False
        h.wait_until(ready, 30.0, f"unbound on {DEFAULT_CLIENT}@{self.port}",
                     on_timeout=self.unbound.describe)

    def stop(self) -> None:
        if self.unbound:
            self.unbound.stop()
        for p in self.nsds:
            p.stop()

    def describe(self) -> str:
        parts = [f"=== world {self.case_key} in {self.workdir}"]
        if self.ignored:
            parts.append("policy settings without a dnsfw flag (ignored): " + "; ".join(self.ignored))
        parts.append("zone loads:\n" + "\n".join(self.loads[-4:]))
        if self.unbound:
            parts.append(self.unbound.describe(tail=40))
        return "\n".join(parts)

    # -- queries -------------------------------------------------------------
    def client_addr(self, client: str) -> str:
        return DEFAULT_CLIENT if client in ("-", "") else self.amap.v4(client)

    def ask(self, row: Row, timeout: float = 4.0) -> dns.message.Message:
        """Sends the row's query (flags rd0/do/tcp, from the mapped client
        address). Raises dns.exception.Timeout / EOFError / ConnectionError
        when no answer comes."""
        q = dns.message.make_query(row.qname, row.qtype, use_edns=0, payload=1232,
                                   want_dnssec="do" in row.flags)
        if "rd0" in row.flags:
            q.flags &= ~dns.flags.RD
        src = self.client_addr(row.client)
        if row.transport == "tcp":
            return dns.query.tcp(q, DEFAULT_CLIENT, timeout=timeout, port=self.port, source=src)
        return dns.query.udp(q, DEFAULT_CLIENT, timeout=timeout, port=self.port, source=src,
                             ignore_unexpected=True)


def _read(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return ""
