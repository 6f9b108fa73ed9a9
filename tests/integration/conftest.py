"""Fixtures of the dnsfw end-to-end suite. See README.md in this folder.

Session-wide (started once):
  nsd            authoritative NSD serving tests/data/integration/upstream/*
  main_store     an LMDB store with primary.rpz + secondary.rpz loaded by
                 `dnsfw zone load` (its outputs are kept for the load tests)
  resolver       `dnsfw resolver` over main_store (zones primary, secondary;
                 default thread count), forwarding to nsd
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

import dnsfw_harness as h


def pytest_sessionfinish(session, exitstatus):
    h.stop_all()  # safety net; fixtures normally stop their own processes


require = h.require


@pytest.fixture(scope="session")
def nsd(tmp_path_factory):
    """NSD authoritative for example., ac., com. and zw. (mock upstream)."""
    require(h.NSD_BIN)
    zones = {
        "example.": h.UPSTREAM / "example.zone",
        "ac.": h.UPSTREAM / "ac.zone",
        "com.": h.UPSTREAM / "com.zone",
        "zw.": h.UPSTREAM / "zw.zone",
    }
    server = h.Nsd(tmp_path_factory.mktemp("nsd"), zones).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class LoadedStore:
    path: Path
    loads: dict  # zone name -> CompletedProcess of `dnsfw zone load`


PRIMARY = h.PRIMARY
SECONDARY = h.SECONDARY


@pytest.fixture(scope="session")
def main_store(tmp_path_factory):
    """primary.rpz (with one bad line) then secondary.rpz, in that order."""
    require(h.DNSFW_BIN)
    store = tmp_path_factory.mktemp("store") / "main.lmdb"
    loads = {}
    for zone, file in ((PRIMARY, h.DATA / "primary.rpz"), (SECONDARY, h.DATA / "secondary.rpz")):
        loads[zone] = h.zone_load(store, zone, file)
    # The resolver tests need the rules; the load tests assert exit codes and
    # messages themselves, so only a load that produced no store fails here.
    if not store.exists():
        pytest.fail("dnsfw zone load created no store\n"
                    + "\n".join(h.describe_run(cp) for cp in loads.values()))
    return LoadedStore(store, loads)


@pytest.fixture(scope="session")
def resolver(main_store, nsd, tmp_path_factory):
    """`dnsfw resolver` with zones primary.rpz,secondary.rpz and the default
    number of threads."""
    require(h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    r = h.Resolver(store=main_store.path, forward_port=nsd.port,
                   workdir=tmp_path_factory.mktemp("resolver"),
                   zones=[PRIMARY, SECONDARY])
    r.start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="session")
def marker(resolver):
    """Sends a query that must be logged and waits for its hit-log line, so
    that lines for earlier queries (the log is written asynchronously) have
    been flushed too. Used by tests asserting that something is NOT logged."""
    def flush(transport: str = "udp"):
        r = resolver.query(f"nxdomain.{transport}.example.", "A", transport)
        resolver.hitlog.wait_for(f"nxdomain.{transport}.example.", r.client_port, transport)
    return flush
