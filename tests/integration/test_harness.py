"""Checks of the harness itself (no dnsfw binaries needed): the mock upstream
answers what the policy tests assume it answers, so that a rule that fails
to fire shows up as a visible difference rather than a coincidental pass."""
from __future__ import annotations

import socket

import dns.rcode
import pytest

import dnsfw_harness as h


def test_free_port_is_bindable_and_unique():
    ports = {h.free_port() for _ in range(20)}
    assert len(ports) == 20
    for port in ports:
        assert 20000 <= port < 32000
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((h.LOOPBACK, port))
        s.close()


@pytest.mark.parametrize("transport", ("udp", "tcp"))
@pytest.mark.parametrize("qname,qtype,answer", [
    ("ready.example.", "A", "ready.example. A 198.51.100.250"),
    ("nxdomain.udp.example.", "A", "nxdomain.udp.example. A 198.51.100.2"),
    ("x.wild.tcp.example.", "A", "x.wild.tcp.example. A 203.0.113.10"),
    ("host.wlocal.udp.example.", "A", "host.wlocal.udp.example. A 198.51.100.12"),
    ("localv4.tcp.example.", "AAAA", "localv4.tcp.example. AAAA 2001:db8:113::8"),
    ("garden.example.", "A", "garden.example. A 198.51.100.80"),
    ("wcredirect.udp.example.garden.example.", "A",
     "wcredirect.udp.example.garden.example. A 198.51.100.81"),
    ("badrdata.example.", "A", "badrdata.example. A 198.51.100.99"),
    ("x.cdn.ofo.ac.", "A", "x.cdn.ofo.ac. A 198.51.100.102"),
    ("ikejd.com.", "A", "ikejd.com. A 198.51.100.111"),
    ("www.org.zw.", "A", "www.org.zw. A 198.51.100.124"),
])
def test_nsd_serves_upstream(nsd, qname, qtype, answer, transport):
    r = h.query(nsd.port, qname, qtype, transport)
    assert r.rcode == dns.rcode.NOERROR, str(r)
    assert r.answer_set() == {answer}, str(r)


def test_nsd_every_policy_name_exists_upstream(nsd):
    """Every owner in primary.rpz/secondary.rpz (wildcards as a subdomain)
    resolves at NSD, except the deliberately absent ones."""
    missing = []
    for f in ("primary.rpz", "secondary.rpz", "update-v1.rpz", "update-v2.rpz"):
        for line in (h.DATA / f).read_text().splitlines():
            line = line.split(";", 1)[0].strip()
            if not line or line[0] in "$@":
                continue
            owner = line.split()[0]
            qname = ("probe" + owner[1:] if owner.startswith("*.") else owner) + "."
            if not h.answers(nsd.port, qname, "A", timeout=1.0) and \
                    not h.answers(nsd.port, qname, "AAAA", timeout=1.0):
                missing.append(qname)
    assert not missing, missing


def test_hitlog_parsing(tmp_path):
    log = h.HitLog(tmp_path / "hits.jsonl")
    assert log.entries() == []
    log.path.write_text('{"qname":"A.Example.","port":1234,"transport":"udp","qtype":"A"}\n'
                        '{"qname":"b.example","port":"99","transport":"tcp","qtype":28}\n'
                        '{"qname":"partial')
    assert len(log.matching("a.example", 1234, "udp")) == 1
    assert len(log.matching("a.example", 1235, "udp")) == 0
    assert len(log.matching("B.EXAMPLE.", 99, "tcp")) == 1
    assert h.qtype_matches(28, "AAAA") and h.qtype_matches("aaaa", "AAAA")
    assert not h.qtype_matches("A", "AAAA")
    assert h.rule_matches("*.wild.example", "*.wild.example", "p.rpz")
    assert h.rule_matches("*.wild.example.p.rpz.", "*.wild.example", "p.rpz")
    assert not h.rule_matches("wild.example", "*.wild.example", "p.rpz")
    with pytest.raises(AssertionError, match="timed out"):
        log.wait_for("c.example", 1, "udp", timeout=0.2)


def test_process_group_is_killed(tmp_path):
    """stop() takes down children of the started process too."""
    p = h.Process("sh", ["/bin/sh", "-c", "sleep 300 & echo $! > child.pid; wait"], tmp_path)
    child = h.wait_until(lambda: (tmp_path / "child.pid").exists()
                         and (tmp_path / "child.pid").read_text().strip(), 5, "child pid")
    p.stop()
    assert not p.alive()
    h.wait_until(lambda: not _pid_alive(int(child)), 5, "child to die")


def _pid_alive(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
