"""Rule sets, the benign upstream zone and dnsperf query files.

A rule set is one or more RPZ zone files that both resolvers load: Unbound's
built-in RPZ reads each as an `rpz:` zonefile, dnsfw loads the very same
files with `dnsfw zone load`. Query files are plain dnsperf input ("NAME A"
per line).

Synthetic rule set of N QNAME rules (zone bench.rpz.): rule i is the exact
name d<i>.example<i%997>.com, or for every 10th rule the wildcard
*.w<i>.example<i%997>.com; all NXDOMAIN (`CNAME .`). Plus 10,000
Response-IP rules (9,000 /32 in 10.0.0.0/8, 1,000 /24 in 172.16.0.0/12),
also NXDOMAIN.

Benign names are the Cloudflare top-100k list of /work/shared/data (names
blocked by any rule set are removed), served by NSD as a root zone: each
name has an A record (cache-hit class) and a wildcard below it (cache-miss
class: unique labels never asked before, e.g. zq1f3a.example.org).
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

SYN_ORIGIN = "bench.rpz."
IP_RULES = 10_000
VALID = re.compile(r"^(?=.{1,250}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
                   r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass
class RuleSet:
    """What one rule set loads and how to query it."""
    name: str                       # "100k", "1m", "10m", "feeds"
    label: str                      # human description
    zones: list[tuple[str, Path]]   # (zone name with trailing dot, RPZ file), precedence order
    qname_rules: int
    ip_rules: int
    blocked: list[str]              # names the rules block (sample)
    blocked_ip_names: list[str] = field(default_factory=list)  # upstream names -> blocked IP
    last_rule_name: str = ""        # a blocked name near the end of the last zone (start-up probe)

    @property
    def rules(self) -> int:
        return self.qname_rules + self.ip_rules


# ---------------------------------------------------------------------------
# Synthetic

def syn_exact(i: int) -> str:
    return f"d{i}.example{i % 997}.com"


def syn_wild_parent(i: int) -> str:
    return f"w{i}.example{i % 997}.com"


def ip_rule(k: int) -> tuple[str, str]:
    """(rpz-ip owner relative to the zone, an address it matches) of IP rule k."""
    if k < 9000:
        b, c, d = (k * 7919) >> 16 & 0xFF, (k * 7919) >> 8 & 0xFF, (k * 7919) & 0xFF
        return f"32.{d}.{c}.{b}.10.rpz-ip", f"10.{b}.{c}.{d}"
    j = k - 9000
    b, c = 16 + (j >> 8) % 16, j & 0xFF
    return f"24.0.{c}.{b}.172.rpz-ip", f"172.{b}.{c}.77"


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def synthetic(n: int, name: str, outdir: Path, samples: int = 50_000) -> RuleSet:
    """Writes (or reuses, if already written with the same parameters) the
    synthetic zone of n QNAME rules + IP_RULES Response-IP rules."""
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / f"syn-{name}.rpz"
    stamp = outdir / f"syn-{name}.stamp"
    fp = _fingerprint("syn", 3, n, IP_RULES)
    if not (path.exists() and stamp.exists() and stamp.read_text() == fp):
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(f"; synthetic policy zone of tests/bench/run: {n} QNAME rules "
                    f"(10% wildcards), {IP_RULES} Response-IP rules\n"
                    f"$ORIGIN {SYN_ORIGIN}\n$TTL 300\n"
                    f"@ SOA ns.{SYN_ORIGIN} hostmaster.{SYN_ORIGIN} 1 3600 600 86400 60\n"
                    "@ NS localhost.\n")
            for k in range(IP_RULES):
                f.write(f"{ip_rule(k)[0]} CNAME .\n")
            chunk: list[str] = []
            for i in range(n):
                chunk.append(f"*.{syn_wild_parent(i)} CNAME .\n" if i % 10 == 0
                             else f"{syn_exact(i)} CNAME .\n")
                if len(chunk) >= 100_000:
                    f.write("".join(chunk))
                    chunk.clear()
            f.write("".join(chunk))
        tmp.rename(path)
        stamp.write_text(fp)
    rng = random.Random(5)
    blocked = []
    for s in range(min(samples, n)):
        i = rng.randrange(n)
        blocked.append(f"q{s}.{syn_wild_parent(i)}" if i % 10 == 0 else syn_exact(i))
    last = n - 1 if (n - 1) % 10 else n - 2
    return RuleSet(name=name, label=f"synthetic {n:,} QNAME rules (10% wildcards) + "
                   f"{IP_RULES:,} Response-IP rules",
                   zones=[(SYN_ORIGIN, path)], qname_rules=n, ip_rules=IP_RULES,
                   blocked=blocked,
                   blocked_ip_names=[f"rip{k}.bench-ip-test" for k in (0, 4500, 9100)],
                   last_rule_name=syn_exact(last))


# ---------------------------------------------------------------------------
# Real feeds

def _host_of_url(url: str) -> str | None:
    m = re.match(r"^[a-z][a-z0-9+.-]*://([^/:?#\s]+)", url.strip(), re.I)
    if not m:
        return None
    host = m.group(1).lower().rstrip(".")
    if re.match(r"^[0-9.]+$", host) or ":" in host or not VALID.match(host):
        return None
    return host


def feeds(repo: Path, shared: Path, outdir: Path, samples: int = 50_000) -> RuleSet:
    """The real feeds as three policy zones, in this order:
      tif.rpz.   hagezi Threat Intelligence Feeds (normal), the provider's RPZ file
                 verbatim (data/feeds; 116,008 records)
      light.rpz. hagezi Light list (shared data, 122,680 entries), written as RPZ:
                 `*.name` -> name and its subdomains, `name` -> the name
      phish.rpz. OpenPhish (data/feeds), the host of each URL (exact names)
    """
    outdir.mkdir(parents=True, exist_ok=True)
    tif = repo / "data" / "feeds" / "hagezi-tif.normal.2023-09-19.rpz"
    light_src = shared / "blocklists" / "hagezi-light-wildcard-2022-07-24.txt"
    phish_src = repo / "data" / "feeds" / "openphish-feed-2024-07-05.txt"
    for p in (tif, phish_src):
        if not p.is_file():
            raise RuntimeError(f"feed file missing: {p}")
    # The hagezi light list is in the shared data set (../shared/data or
    # $DNSFW_SHARED_DATA), not in the repository: without it the set has two
    # zones, and the label says so.
    have_light = light_src.is_file()
    light = outdir / "light.rpz"
    phish = outdir / "phish.rpz"
    header = "$TTL 300\n@ SOA localhost. root.localhost. 1 43200 3600 259200 300\n@ NS localhost.\n"
    n_light = 0
    light_names: list[tuple[str, bool]] = []
    if have_light:
        with open(light_src, errors="replace") as f:
            for line in f:
                line = line.strip().lower()
                if not line or line.startswith("#"):
                    continue
                wild = line.startswith("*.")
                name = line[2:] if wild else line
                if VALID.match(name):
                    light_names.append((name, wild))
        with open(light, "w") as f:
            f.write("; hagezi light (shared data), converted to RPZ by tests/bench/run\n" + header)
            for name, wild in light_names:
                f.write(f"{name} CNAME .\n")
                n_light += 1
                if wild:
                    f.write(f"*.{name} CNAME .\n")
                    n_light += 1
    hosts = []
    seen = set()
    for line in phish_src.read_text(errors="replace").splitlines():
        h = _host_of_url(line)
        if h and h not in seen:
            seen.add(h)
            hosts.append(h)
    with open(phish, "w") as f:
        f.write("; OpenPhish 2024-07-05 hosts, converted to RPZ by tests/bench/run\n" + header)
        for h in hosts:
            f.write(f"{h} CNAME .\n")
    tif_names = []
    n_tif = 0
    for line in tif.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "CNAME":
            n_tif += 1
            if not parts[0].startswith("*."):
                tif_names.append(parts[0].lower())
    rng = random.Random(6)
    blocked = []
    pools = [(tif_names, True), ([n for n, _ in light_names], False), (hosts, False)]
    weights = [0.45, 0.45, 0.10] if have_light else [0.9, 0.0, 0.10]
    for s in range(samples):
        pool, sub = pools[rng.choices(range(3), weights)[0]]
        name = rng.choice(pool)
        if sub and s % 3 == 0:
            name = f"q{s}.{name}"
        blocked.append(name)
    if not have_light:
        return RuleSet(name="feeds", label=f"real feeds: hagezi TIF normal ({n_tif:,}) + OpenPhish "
                       f"({len(hosts):,} hosts), 2 zones (hagezi light not found: {light_src})",
                       zones=[("tif.rpz.", tif), ("phish.rpz.", phish)],
                       qname_rules=n_tif + len(hosts), ip_rules=0, blocked=blocked,
                       last_rule_name=hosts[-1])
    return RuleSet(name="feeds", label=f"real feeds: hagezi TIF normal ({n_tif:,}) + hagezi "
                   f"light ({n_light:,}) + OpenPhish ({len(hosts):,} hosts), 3 zones",
                   zones=[("tif.rpz.", tif), ("light.rpz.", light), ("phish.rpz.", phish)],
                   qname_rules=n_tif + n_light + len(hosts), ip_rules=0, blocked=blocked,
                   last_rule_name=hosts[-1])


def blocked_by_feeds(rs: RuleSet) -> set[str]:
    """Every owner name of a rule set's zones with `*.` stripped (for
    filtering benign names: an ancestor in this set may block)."""
    out = set()
    for origin, path in rs.zones:
        for line in open(path, errors="replace"):
            parts = line.split()
            if len(parts) >= 3 and parts[-2] == "CNAME":
                n = parts[0].lower()
                out.add(n[2:] if n.startswith("*.") else n)
    return out


# ---------------------------------------------------------------------------
# Benign names and the upstream zone

SYN_PATTERN = re.compile(r"(^|\.)(example\d+\.com|bench-ip-test)$")


def benign_names(shared: Path, exclude: set[str], count: int) -> list[str]:
    """count names of the Cloudflare top-100k list (shuffled, fixed seed)
    that no rule set blocks (neither the name nor an ancestor is an owner
    name of a rule) and that the synthetic rules cannot match."""
    src = shared / "benign" / "cloudflare-top100k.domains.txt"
    if not src.is_file():
        # Without the shared data set: made-up names under a TLD of their
        # own (NSD serves whatever the upstream zone holds), two or three
        # labels like most real names; no rule set blocks them.
        rng = random.Random(7)
        words = ["news", "shop", "mail", "cdn", "api", "video", "static", "app", "maps", "docs"]
        made = [f"{rng.choice(words)}{i}.site{i % 997}.benign-bench" if i % 3 == 0
                else f"site{i}-{rng.choice(words)}.benign-bench" for i in range(count)]
        return made
    names = []
    for line in open(src, errors="replace"):
        n = line.strip().lower().rstrip(".")
        if not n or not VALID.match(n) or SYN_PATTERN.search(n) or n.count(".") < 1:
            continue
        labels = n.split(".")
        if any(".".join(labels[i:]) in exclude for i in range(len(labels))):
            continue
        names.append(n)
    names = sorted(set(names))
    random.Random(7).shuffle(names)
    if len(names) < count:
        raise RuntimeError(f"only {len(names)} benign names in {src}, {count} wanted")
    return names[:count]


def upstream_zone(path: Path, benign: list[str]) -> None:
    """The root zone NSD serves: an A record and a wildcard per benign name,
    and names resolving into the synthetic Response-IP rules."""
    with open(path, "w") as f:
        f.write("$ORIGIN .\n$TTL 86400\n"
                ". SOA ns.bench-upstream. hostmaster.bench-upstream. 1 3600 600 86400 3600\n"
                ". NS ns.bench-upstream.\nns.bench-upstream. A 127.0.0.1\n")
        for i, n in enumerate(benign):
            f.write(f"{n}. A 198.18.{(i >> 8) & 0xFF}.{i & 0xFF}\n"
                    f"*.{n}. A 198.19.{(i >> 8) & 0xFF}.{i & 0xFF}\n")
        for k in range(IP_RULES):
            f.write(f"rip{k}.bench-ip-test. A {ip_rule(k)[1]}\n")


# ---------------------------------------------------------------------------
# Query files

def write_queries(path: Path, names) -> Path:
    with open(path, "w") as f:
        f.write("".join(f"{n} A\n" for n in names))
    return path


def miss_names(tag: str, benign: list[str], count: int, seed: int):
    """count unique names under the benign wildcards, never asked before
    (the label carries TAG and a counter, so two files never overlap)."""
    rng = random.Random(seed)
    for i in range(count):
        yield f"zq{tag}{i:x}.{benign[rng.randrange(len(benign))]}"


def mix_names(tag: str, hits: list[str], benign: list[str], blocked: list[str],
              count: int, seed: int, miss_pct: int = 9, blocked_pct: int = 1):
    """count names: 90% cache hits, 9% unique misses, 1% blocked (by default),
    interleaved deterministically."""
    rng = random.Random(seed)
    m = 0
    for _ in range(count):
        r = rng.randrange(100)
        if r < blocked_pct:
            yield blocked[rng.randrange(len(blocked))]
        elif r < blocked_pct + miss_pct:
            yield f"zx{tag}{m:x}.{benign[rng.randrange(len(benign))]}"
            m += 1
        else:
            yield hits[rng.randrange(len(hits))]
