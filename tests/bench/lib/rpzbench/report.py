"""The results table of tests/bench/run (markdown)."""
from __future__ import annotations

import statistics

KIND_NAMES = {"A": "A: no policy", "B": "B: built-in RPZ", "C": "C: dnsfw"}
CLASS_NAMES = {"blocked": "blocked", "hit": "cache hit", "miss": "cache miss", "mix": "mix 90/9/1"}
MB = 1024.0  # smaps values are kB


def _ratio(c, x) -> str:
    if c is None or x is None or x == 0:
        return "-"
    return f"{c / x:.2f}"


def _num(v, fmt="{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _med(runs, attr) -> float | None:
    vals = [getattr(r, attr) for r in runs or [] if getattr(r, attr) is not None]
    return statistics.median(vals) if vals else None


def _spread(runs) -> str:
    q = [r.qps for r in runs or []]
    if len(q) < 2:
        return ""
    m = statistics.median(q)
    return f" ±{(max(q) - min(q)) / 2 / m * 100:.0f}%" if m else ""


def _ms(v) -> str:
    return "-" if v is None else (f"{v * 1000:.2f}" if v < 0.1 else f"{v * 1000:.0f}")


def qps(kr, cls):
    return _med(kr.tp.get(cls), "qps") if kr else None


def cpu(kr, cls):
    return _med(kr.cpu.get(cls), "cpu_us_per_query") if kr else None


def render(results, meta) -> str:
    a = meta["args"]
    m = meta["machine"]
    L: list[str] = []
    L.append(f"# dnsfw against Unbound's built-in RPZ ({meta['started']})")
    L.append("")
    L.append(f"Command: `{meta['command']}` ({meta['elapsed'] / 60:.1f} min). "
             f"Load average (1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in meta['load_before'])}, "
             f"after: {'/'.join(f'{x:.2f}' for x in meta['load_after'])}.")
    L.append("")
    L.append(f"Source: {meta['git']}. Binaries: {meta['binaries']}.")
    L.append("")
    L.append(f"Machine: {m['cpu']}, {m['memory']}; {m['os']}; {m['unbound']}; {m['nsd']}; "
             f"{m['dnsperf']}; {m['compiler']}.")
    L.append("")
    if meta.get("benign"):
        L.append(f"Benign names (cache hits and misses, NSD's zone): {meta['benign']}.")
        L.append("")
    L.append("Configurations (one Unbound binary, the same `server:` settings: "
             + ", ".join(f"`{s}`" for s in meta["settings"] if s.split(':')[0] in
                         ("num-threads", "msg-cache-size", "rrset-cache-size", "minimal-responses"))
             + "; forwarding to NSD on 127.0.0.1): **A** `module-config: \"iterator\"`, no policy; "
             "**B** `\"respip iterator\"` with one `rpz:` clause per zone (`zonefile:` of the same "
             "files, `rpz-log: yes`, Unbound's log to a file); **C** `\"dynlib iterator\"` with the dnsfw "
             "module, the store written by `dnsfw zone load` from the same files, hit log on.")
    L.append("")
    L.append(f"Throughput: dnsperf unthrottled (`-c 8 -q {a.outstanding}`), {a.seconds:g} s per run, "
             f"median of {a.rounds} rounds with A, B and C interleaved (± = half the range). "
             f"Latency and CPU: dnsperf at a fixed {a.rate:,} queries/s, {a.cpu_seconds:g} s per run; "
             "CPU = the resolver's run time (all threads, schedstat) per answered query (cache miss: "
             f"median of {a.rounds} interleaved rounds, other classes one run); latency percentiles "
             "from the first run. Blocked names for A are NXDOMAIN from the upstream (a miss the "
             "first time, then A's negative cache).")
    L.append("")

    targets: list[tuple[str, str, str]] = []
    for sr in results:
        rs = sr.rs
        K = sr.kinds
        A, B, C = K.get("A"), K.get("B"), K.get("C")
        L.append(f"## {rs.label} (`{rs.name}`, {rs.rules:,} rules; {sr.seconds:.0f} s)")
        L.append("")
        L.append(f"Other processes of the machine used {sr.foreign_cpus:.2f} of its "
                 f"{meta['cpus']} CPUs on average during the measured dnsperf runs "
                 "(machine busy time minus the resolver, dnsperf and NSD; 0 = undisturbed).")
        L.append("")
        L.append("| | A: no policy | B: built-in RPZ | C: dnsfw | C/B | C/A |")
        L.append("|---|---|---|---|---|---|")

        def row(name, f, fmt="{:,.0f}", ratios=True):
            va, vb, vc = (f(k) if k else None for k in (A, B, C))
            L.append(f"| {name} | {_num(va, fmt)} | {_num(vb, fmt)} | {_num(vc, fmt)} | "
                     f"{_ratio(vc, vb) if ratios else '-'} | {_ratio(vc, va) if ratios else '-'} |")

        row("start-up to full policy (s)", lambda k: k.startup_s, "{:.3f}")
        L.append(f"| policy preparation before start (s) | - | in start-up (zone files parsed) | "
                 f"{_num(C.load_s if C else None, '{:.1f}')} (`dnsfw zone load`, once; "
                 f"data.mdb {_num(C.store_mb if C else None, '{:.0f}')} MB) | - | - |")
        row("RSS after start (MB)", lambda k: k.mem_start.get("Rss", 0) / MB, "{:.0f}")
        row("RSS after the load (MB)", lambda k: k.mem_end.get("Rss", 0) / MB, "{:.0f}")
        row("- anonymous (heap, private) (MB)", lambda k: k.mem_end.get("Anonymous", 0) / MB, "{:.0f}")
        if C and C.store_map:
            L.append(f"| - store pages mapped, resident (MB) | - | - | "
                     f"{C.store_map.get('Rss', 0) / MB:.0f} (PSS {C.store_map.get('Pss', 0) / MB:.0f}) | - | - |")
        if A:
            row("RSS added over A (MB)", lambda k: (k.mem_end.get("Rss", 0) - A.mem_end.get("Rss", 0)) / MB,
                "{:.0f}", ratios=False)
            row("anonymous added over A (MB)",
                lambda k: (k.mem_end.get("Anonymous", 0) - A.mem_end.get("Anonymous", 0)) / MB,
                "{:.0f}", ratios=False)
        row("PSS, one process (MB)", lambda k: k.mem_end.get("Pss", 0) / MB, "{:.0f}")
        row("PSS, two processes at once, sum (MB)",
            lambda k: (k.pair.get("pss1", 0) + k.pair.get("pss2", 0)) / MB if k.pair else None, "{:.0f}")
        row("RSS, two processes at once, sum (MB)",
            lambda k: (k.pair.get("rss1", 0) + k.pair.get("rss2", 0)) / MB if k.pair else None, "{:.0f}")
        for cls in ("blocked", "hit", "miss", "mix"):
            va, vb, vc = (qps(k, cls) for k in (A, B, C))
            L.append(f"| {CLASS_NAMES[cls]}: queries/s | {_num(va)}{_spread(A.tp.get(cls)) if A else ''} | "
                     f"{_num(vb)}{_spread(B.tp.get(cls)) if B else ''} | "
                     f"{_num(vc)}{_spread(C.tp.get(cls)) if C else ''} | {_ratio(vc, vb)} | {_ratio(vc, va)} |")
        for cls in ("blocked", "hit", "miss", "mix"):
            row(f"{CLASS_NAMES[cls]}: CPU µs/query at {a.rate:,}/s", lambda k, c=cls: cpu(k, c), "{:.1f}")
        for cls in ("blocked", "hit", "miss", "mix"):
            row(f"{CLASS_NAMES[cls]}: CPU µs/query unthrottled", lambda k, c=cls: _med(k.tp.get(c), "cpu_us_per_query"),
                "{:.1f}")
        for cls in ("blocked", "hit", "miss", "mix"):
            cells = []
            for k in (A, B, C):
                r = k.lat.get(cls) if k else None
                cells.append("-" if not r or not r.pct else
                             f"{_ms(r.pct.get('p50'))} / {_ms(r.pct.get('p99'))} / {_ms(r.pct.get('p99.9'))}")
            L.append(f"| {CLASS_NAMES[cls]}: latency p50 / p99 / p99.9 (ms) at {a.rate:,}/s | "
                     + " | ".join(cells) + " | - | - |")
        cells = []
        for k in (A, B, C):
            if not k:
                cells.append("-")
                continue
            lost = sum(r.lost for runs in list(k.tp.values()) + list(k.cpu.values()) for r in runs)
            sent = sum(r.sent for runs in list(k.tp.values()) + list(k.cpu.values()) for r in runs)
            sf = sum(r.rcodes.get("SERVFAIL", 0) for runs in list(k.tp.values()) + list(k.cpu.values())
                     for r in runs)
            cells.append(f"{lost:,} lost, {sf:,} SERVFAIL of {sent:,}")
        L.append("| queries lost / SERVFAIL (all measured runs) | " + " | ".join(cells) + " | - | - |")
        cells = []
        for k in (A, B, C):
            if not k or k.logged is None:
                cells.append("-")
            else:
                cells.append(f"{k.logged:,} lines / {k.policy_answers:,} NXDOMAIN answers"
                             + (f"; {k.dropped:,} records dropped (queue full)" if k.dropped else ""))
        L.append("| hit log (C: hits.jsonl lines; B: `rpz: applied` log lines) | " + " | ".join(cells)
                 + " | - | - |")
        resp = []
        for k in (A, B, C):
            r = (k.tp.get("blocked") or [None])[0] if k else None
            resp.append(_num(r.resp_size if r else None))
        L.append("| blocked answer size (bytes) | " + " | ".join(resp) + " | - | - |")
        if C and C.load_lines:
            L.append("| `dnsfw zone load` said | - | - | " + "<br>".join(x.replace("|", "/") for x in C.load_lines)
                     + " | - | - |")
        problems = [f"{k.kind}: {p}" for k in (A, B, C) if k for p in k.sanity]
        L.append("")
        if problems:
            L.append("**Sanity problems:** " + "; ".join(problems))
            L.append("")
        if any(k and k.profile for k in (A, B, C)):
            L.append(profile_text(rs, (A, B, C)))
        # targets
        if C and B:
            targets.append(_target(f"blocked throughput ≥ 2x built-in RPZ ({rs.name})", "C/B",
                                   C.tp.get("blocked"), B.tp.get("blocked"), "qps", 2.0, True))
        if C and A:
            targets.append(_target(f"cache-hit throughput ≥ 99% of no policy ({rs.name})", "C/A",
                                   C.tp.get("hit"), A.tp.get("hit"), "qps", 0.99, True))
            targets.append(_target(f"cache-miss CPU/query ≤ 1.03x no policy ({rs.name})", "C/A",
                                   C.cpu.get("miss"), A.cpu.get("miss"), "cpu_us_per_query", 1.03, False,
                                   unit="µs"))
        if C and rs.name == "10m":
            targets.insert(0, ("start-up with the full policy < 0.5 s at 10M rules",
                               f"{C.startup_s:.3f} s", "met" if C.startup_s < 0.5 else "**missed**"))
            if A:
                added = (C.mem_end.get("Rss", 0) - A.mem_end.get("Rss", 0)) / MB
                anon = (C.mem_end.get("Anonymous", 0) - A.mem_end.get("Anonymous", 0)) / MB
                two = (C.pair.get("pss1", 0) + C.pair.get("pss2", 0)) / MB if C.pair else 0
                one = C.mem_end.get("Pss", 0) / MB
                targets.insert(1, ("memory added by the module < 50 MB at 10M rules, shared",
                                   f"RSS +{added:.0f} MB (private anonymous +{anon:.0f} MB, the rest "
                                   f"store pages shared by mapping); PSS of two processes {two:.0f} MB vs "
                                   f"one {one:.0f} MB",
                                   "met" if added < 50 else ("shared pages only" if anon < 50 else "**missed**")))
    if not any(sr.rs.name == "10m" for sr in results):
        big = [sr for sr in results if sr.rs.name in ("1m", "100k") and "C" in sr.kinds]
        if big:
            C = big[-1].kinds["C"]
            targets.insert(0, ("start-up < 0.5 s / memory < 50 MB at 10M rules",
                               f"10M set not run (add --big); at {big[-1].rs.name}: start-up "
                               f"{C.startup_s:.3f} s", "not measured"))
    upd = meta.get("update_results")
    if upd:
        L.append(f"## Update figures (from `tests/bench/update`, {upd['name']}, not re-run here)")
        L.append("")
        L.append(upd["header"])
        L.append("")
        L += upd["table"]
        L.append("")
    L.insert(4, "")
    tl = ["## Targets (issue 5)", "", "| target | measured | |", "|---|---|---|"]
    tl += [f"| {t} | {v} | {s} |" for t, v, s in targets]
    tl.append("")
    tl += summary_table(results)
    idx = next(i for i, l in enumerate(L) if l.startswith("## "))
    L[idx:idx] = tl
    return "\n".join(L) + "\n"


def summary_table(results) -> list[str]:
    """One line per rule set: the headline figures of A, B and C."""
    L = ["## Summary", "",
         "| rule set | start-up to full policy B / C (s) | RSS after the load A / B / C (MB) | "
         "PSS of 2 processes B / C (MB) | blocked q/s B / C (C/B) | cache-hit q/s A / C (C/A) | "
         "cache-miss CPU µs/query A / C (C/A) | mix q/s A / B / C |",
         "|---|---|---|---|---|---|---|---|"]
    for sr in results:
        K = sr.kinds
        A, B, C = K.get("A"), K.get("B"), K.get("C")
        def mem(k, key="Rss"):
            return _num(k.mem_end.get(key, 0) / MB if k else None)
        def pair(k):
            return _num((k.pair["pss1"] + k.pair["pss2"]) / MB) if k and k.pair else "-"
        L.append(
            f"| {sr.rs.name} ({sr.rs.rules:,} rules) "
            f"| {_num(B.startup_s if B else None, '{:.2f}')} / {_num(C.startup_s if C else None, '{:.3f}')} "
            f"| {mem(A)} / {mem(B)} / {mem(C)} | {pair(B)} / {pair(C)} "
            f"| {_num(qps(B, 'blocked'))} / {_num(qps(C, 'blocked'))} ({_ratio(qps(C, 'blocked'), qps(B, 'blocked'))}) "
            f"| {_num(qps(A, 'hit'))} / {_num(qps(C, 'hit'))} ({_ratio(qps(C, 'hit'), qps(A, 'hit'))}) "
            f"| {_num(cpu(A, 'miss'), '{:.1f}')} / {_num(cpu(C, 'miss'), '{:.1f}')} "
            f"({_ratio(cpu(C, 'miss'), cpu(A, 'miss'))}) "
            f"| {_num(qps(A, 'mix'))} / {_num(qps(B, 'mix'))} / {_num(qps(C, 'mix'))} |")
    L.append("")
    return L


USER_DSOS = ("unbound", "libdnsfw_module.so", "liblmdb.so.0.0.0", "libc.so.6", "libevent-2.1.so.7.0.1")


def profile_text(rs, kinds) -> str:
    """Where each resolver's CPU time goes: perf's self-time shares by DSO,
    turned into µs per answered query with the resolver's CPU time of the
    profiled run, and the hottest user-space symbols."""
    L = [f"Where the time goes (`perf record -F 2999 -p` on the resolver during an extra run; "
         f"self time by DSO as µs of resolver CPU per answered query), rule set `{rs.name}`:", ""]
    classes = [c for c in ("blocked", "miss", "hit", "mix") if any(k and c in k.profile for k in kinds)]
    L.append("| class | config | queries/s of that run | CPU µs/query | kernel | unbound | libc | "
             "libevent | dnsfw module | liblmdb | hottest user-space symbols (share of samples) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for cls in classes:
        for k in kinds:
            if not k or cls not in k.profile:
                continue
            p = k.profile[cls]
            run = p["run"]
            us = run.cpu_us_per_query or 0.0
            d = {name: share for share, name in p["dso"]}
            tot = sum(d.values()) or 100.0
            def part(names) -> str:
                share = sum(v for n, v in d.items() if any(n.startswith(x) for x in names))
                return f"{us * share / tot:.2f}"
            top = [f"{sym} {share:.1f}%" for share, dso, sym in p["sym"] if dso in USER_DSOS][:6]
            rate = "unthrottled" if cls in ("blocked", "hit") else "paced"
            L.append(f"| {CLASS_NAMES.get(cls, cls)} ({rate}) | {k.kind} | {run.qps:,.0f} | {us:.1f} | "
                     f"{part(['[kernel'])} | {part(['unbound'])} | {part(['libc.so'])} | "
                     f"{part(['libevent'])} | {part(['libdnsfw_module'])} | {part(['liblmdb'])} | "
                     f"{', '.join(top)} |")
    L.append("")
    return "\n".join(L)


def latest_update_results(results_dir) -> dict | None:
    """The summary table of the newest tests/bench/update results file."""
    files = sorted(results_dir.glob("update-*.md"), key=lambda p: p.stat().st_mtime)
    if not files:
        return None
    lines = files[-1].read_text(errors="replace").splitlines()
    try:
        i = next(n for n, l in enumerate(lines) if l.startswith("## Summary"))
    except StopIteration:
        return None
    table = []
    for l in lines[i + 1:]:
        if l.startswith("## "):
            break
        if l.startswith("|"):
            table.append(l)
    head = next((l for l in lines if l.startswith("Zone:")), "")
    return {"name": files[-1].name, "header": head, "table": table} if table else None


def _noise(runs, attr) -> float:
    """Half the range of a set of runs, relative to their median (0 if < 2 runs)."""
    v = [getattr(r, attr) for r in runs or [] if getattr(r, attr)]
    if len(v) < 2:
        return 0.0
    m = statistics.median(v)
    return (max(v) - min(v)) / 2 / m if m else 0.0


def _target(name, label, c_runs, x_runs, attr, limit, at_least, unit="") -> tuple[str, str, str]:
    """(target, measured, verdict). The verdict is 'within noise' when the
    limit lies inside the ratio ± the combined half-range of the rounds."""
    c, x = _med(c_runs, attr), _med(x_runs, attr)
    if c is None or x is None or not x:
        return name, "-", "-"
    ratio = c / x
    noise = (_noise(c_runs, attr) ** 2 + _noise(x_runs, attr) ** 2) ** 0.5
    ok = ratio >= limit if at_least else ratio <= limit
    band = f" ±{noise * ratio:.2f}" if noise else ""
    extra = f" ({c:,.1f} vs {x:,.1f} {unit})" if unit else ""
    verdict = "met" if ok else "**missed**"
    if noise and abs(ratio - limit) <= noise * ratio:
        verdict += " (within the noise of the rounds)"
    return name, f"{label} = {ratio:.2f}{band}{extra}", verdict


def _ok(c, x, pred) -> str:
    if c is None or x is None:
        return "-"
    return "met" if pred(c, x) else "**missed**"
