"""Start-up behaviour: default threads, missing store, bad configuration,
fail-open.

The missing-store and bad-config cases run the built Unbound directly with a
hand-written unbound.conf and DNSFW_CONFIG pointing at a module TOML, so they
test the module itself, not only the CLI's own checks.
"""
from __future__ import annotations

import re

import dns.rcode
import pytest

import dnsfw_harness as h
from dnsfw_harness import require

START_TIMEOUT = 20.0


# --- threads -----------------------------------------------------------------

def test_generated_config_defaults_to_two_threads(resolver):
    conf = resolver.workdir / "run" / "unbound.conf"
    assert conf.is_file(), f"no unbound.conf in --workdir {conf.parent}: " \
                           f"{sorted(p.name for p in conf.parent.iterdir())}"
    text = conf.read_text()
    assert re.search(r"^\s*num-threads:\s*2\s*$", text, re.M), text
    assert (resolver.workdir / "run" / "dnsfw.toml").is_file()


def test_running_unbound_has_two_worker_threads(resolver):
    procs = h.threads_of_session(resolver.process.pid, h.UNBOUND_BIN)
    assert len(procs) == 1, f"expected one Unbound process in the resolver's session: {procs}"
    pid, threads = procs[0]
    assert threads >= 2, f"Unbound pid {pid} runs {threads} thread(s)"


def test_print_config(main_store, nsd, tmp_path):
    require(h.DNSFW_BIN)
    base = ["resolver", "--store", main_store.path, "--listen", f"{h.LOOPBACK}@{h.free_port()}",
            "--forward", f"{h.LOOPBACK}@{nsd.port}", "--log", tmp_path / "hits.jsonl",
            "--workdir", tmp_path, "--print-config"]
    cp = h.dnsfw(*base, timeout=30)
    assert cp.returncode == 0, h.describe_run(cp)
    assert re.search(r"num-threads:\s*2\b", cp.stdout), h.describe_run(cp)
    assert "dynlib" in cp.stdout and str(h.MODULE_SO.name) in cp.stdout, h.describe_run(cp)
    cp = h.dnsfw(*base, "--threads", "1", timeout=30)
    assert cp.returncode == 0, h.describe_run(cp)
    assert re.search(r"num-threads:\s*1\b", cp.stdout), h.describe_run(cp)


# --- Unbound with the module, started directly ---------------------------------

def start_unbound(tmp_path, forward_port: int, toml) -> tuple[h.Process, int]:
    port = h.free_port()
    conf = h.write_unbound_conf(tmp_path, port, forward_port)
    proc = h.Process("unbound", [h.UNBOUND_BIN, "-d", "-c", conf], tmp_path,
                     env={"DNSFW_CONFIG": str(toml)})
    return proc, port


def expect_refusal(proc: h.Process, must_name: str) -> None:
    try:
        rc = proc.wait_exit(START_TIMEOUT)
        assert rc is not None, "Unbound is still running: it must refuse to start\n" \
                               + proc.describe()
        assert rc != 0, f"Unbound exited with 0\n{proc.describe()}"
        assert must_name in proc.stderr(), \
            f"stderr does not name {must_name}\n{proc.describe()}"
    finally:
        proc.stop()


def test_missing_store_refuses_to_start(nsd, tmp_path):
    require(h.MODULE_SO, h.UNBOUND_BIN)
    missing = tmp_path / "no-such-store.lmdb"
    toml = h.write_module_toml(tmp_path / "dnsfw.toml", missing, [h.PRIMARY],
                               tmp_path / "hits.jsonl")
    proc, _ = start_unbound(tmp_path, nsd.port, toml)
    expect_refusal(proc, str(missing))


def test_unreadable_config_refuses_to_start(nsd, tmp_path):
    require(h.MODULE_SO, h.UNBOUND_BIN)
    toml = tmp_path / "dnsfw.toml"
    toml.write_text('store = "/tmp/x"\nzones = [\n')  # TOML syntax error
    proc, _ = start_unbound(tmp_path, nsd.port, toml)
    expect_refusal(proc, str(toml))


def test_missing_config_file_refuses_to_start(nsd, tmp_path):
    require(h.MODULE_SO, h.UNBOUND_BIN)
    toml = tmp_path / "absent.toml"
    proc, _ = start_unbound(tmp_path, nsd.port, toml)
    expect_refusal(proc, str(toml))


def test_missing_store_via_cli_refuses_to_start(nsd, tmp_path):
    require(h.DNSFW_BIN, h.MODULE_SO, h.UNBOUND_BIN)
    missing = tmp_path / "no-such-store.lmdb"
    proc = h.Process("resolver", [
        h.DNSFW_BIN, "resolver", "--store", missing,
        "--listen", f"{h.LOOPBACK}@{h.free_port()}", "--forward", f"{h.LOOPBACK}@{nsd.port}",
        "--log", tmp_path / "hits.jsonl", "--workdir", tmp_path / "run"], tmp_path)
    expect_refusal(proc, str(missing))


def test_fail_open_starts_unprotected_with_warning(nsd, tmp_path):
    require(h.MODULE_SO, h.UNBOUND_BIN)
    missing = tmp_path / "no-such-store.lmdb"
    toml = h.write_module_toml(tmp_path / "dnsfw.toml", missing, [h.PRIMARY],
                               tmp_path / "hits.jsonl", fail_open=True)
    proc, port = start_unbound(tmp_path, nsd.port, toml)
    try:
        def ready():
            if not proc.alive():
                raise AssertionError("Unbound exited although fail-open = true\n"
                                     + proc.describe())
            return h.answers(port)
        h.wait_until(ready, START_TIMEOUT, "fail-open Unbound to answer",
                     on_timeout=proc.describe)
        # unprotected: names the real policy would block resolve upstream
        r = h.query(port, "nxdomain.udp.example.", "A")
        assert r.rcode == dns.rcode.NOERROR, str(r)
        assert r.answer_set() == {"nxdomain.udp.example. A 198.51.100.2"}, str(r)
        out = proc.output()
        warnings = [line for line in out.splitlines() if "WARNING" in line]
        assert warnings, f"no WARNING in Unbound's output\n{proc.describe()}"
        assert str(missing) in out, \
            f"the output does not name the store {missing}\n{proc.describe()}"
    finally:
        proc.stop()
