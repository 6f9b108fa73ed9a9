"""Helpers of tests/bench/run (issue 5: dnsfw against Unbound's built-in RPZ).

Modules:
  procs    background processes, ports, polling with a deadline, priority
  dnswire  minimal DNS wire queries (start-up probes, sanity checks)
  zones    rule sets (synthetic and real feeds), benign names, query files
  servers  NSD upstream and the three resolver configurations A, B, C
  measure  dnsperf runs, CPU time, memory (RSS/PSS), machine description
  report   the results table (markdown)

Everything listens on and sends to loopback only.
"""
