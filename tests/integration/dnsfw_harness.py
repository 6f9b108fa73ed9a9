"""Helpers for the dnsfw end-to-end tests: processes, ports, DNS queries, hit log.

Helpers report problems by raising ``AssertionError`` with a message meant
for a failing test; only require() uses pytest directly. Fixtures that use
these helpers are in conftest.py.

Rules this module follows (see tests/integration/README.md):
  * only loopback (127.0.0.1) is ever bound or queried;
  * ports are picked at run time and checked to be free, never fixed;
  * waiting is always "poll a condition until a deadline", never a bare sleep;
  * every process is started in its own process group and the whole group is
    killed on teardown, and it dies with the test runner (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import pytest

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

# ---------------------------------------------------------------------------
# Paths

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("DNSFW_BUILD_DIR", ROOT / "build"))
DNSFW_BIN = BUILD / "bin" / "dnsfw"
MODULE_SO = BUILD / "lib" / "libdnsfw_module.so"
UNBOUND_BIN = Path(os.environ.get("DNSFW_UNBOUND", BUILD / "deps" / "unbound" / "sbin" / "unbound"))
NSD_BIN = Path(os.environ.get("DNSFW_NSD", "/usr/sbin/nsd"))
DATA = ROOT / "tests" / "data" / "integration"
UPSTREAM = DATA / "upstream"
FEED = Path(os.environ.get("DNSFW_FEED", ROOT / "data" / "feeds" / "hagezi-tif.normal.2023-09-19.rpz"))

LOOPBACK = "127.0.0.1"

# Policy zones of the main resolver (tests/data/integration/*.rpz), in order.
PRIMARY = "primary.rpz"
SECONDARY = "secondary.rpz"


# ---------------------------------------------------------------------------
# Prerequisites

def require(*paths: Path) -> None:
    """Skips the calling test (or fails it, with DNSFW_REQUIRE_BINARIES=1, as
    CI should) when a binary it needs has not been built."""
    missing = [str(p) for p in paths if not (Path(p).is_file() and os.access(p, os.X_OK))]
    if missing:
        msg = "not built yet: " + ", ".join(missing)
        if os.environ.get("DNSFW_REQUIRE_BINARIES") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


# ---------------------------------------------------------------------------
# Waiting

def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               interval: float = 0.05, on_timeout: Callable[[], str] | None = None):
    """Polls ``predicate`` until it returns a truthy value or ``timeout``
    seconds pass. Returns that value; raises AssertionError naming ``what``
    (plus ``on_timeout()``, e.g. a process's output) on timeout. Exceptions
    from the predicate propagate."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}"
                                 + (f"\n{extra}" if extra else ""))
        time.sleep(interval)  # polling interval, not synchronisation


# ---------------------------------------------------------------------------
# Ports

_handed_out: set[int] = set()


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((LOOPBACK, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now.

    Picked at random below Linux's ephemeral range (32768-60999), so that
    client sockets of the tests and of other programs (which bind port 0) do
    not grab it between this check and the server's bind. Never returns the
    same port twice in one run."""
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(20000, 32000)
        if port in _handed_out:
            continue
        if _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free loopback port found in 20000-32000")


# ---------------------------------------------------------------------------
# Processes

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_running: list["Process"] = []


def _die_with_parent():  # runs in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Process:
    """A background process in its own session/process group, with stdout
    and stderr captured to files (so a long-running process never blocks on
    a full pipe)."""

    def __init__(self, name: str, argv: list[str], workdir: Path,
                 env: dict[str, str] | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.workdir / f"{name}.stdout"
        self.stderr_path = self.workdir / f"{name}.stderr"
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=self.workdir, env=full_env, start_new_session=True,
                preexec_fn=_die_with_parent)
        _running.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def returncode(self) -> Optional[int]:
        return self.popen.poll()

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout() + self.stderr()

    def describe(self, tail: int = 60) -> str:
        """Command, state and the tail of the output, for failure messages."""
        state = "running" if self.alive() else f"exited with {self.returncode()}"
        def cut(text: str) -> str:
            lines = text.splitlines()
            return "\n".join(lines[-tail:])
        return (f"--- {self.name}: {' '.join(self.argv)} ({state})\n"
                f"--- stdout:\n{cut(self.stdout())}\n--- stderr:\n{cut(self.stderr())}")

    def wait_exit(self, timeout: float) -> Optional[int]:
        """Waits up to ``timeout`` s for the process to exit; its return code or None."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``grace`` s."""
        if self in _running:
            _running.remove(self)
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; make sure no child of the group lingers.
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break


def stop_all() -> None:
    """Stops every Process still registered (session teardown safety net)."""
    for p in list(_running):
        p.stop(grace=2.0)


def run(argv: Iterable[object], timeout: float = 120.0, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs a command to completion, capturing text stdout/stderr."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=cwd, preexec_fn=_die_with_parent)


def dnsfw(*args: object, timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Runs build/bin/dnsfw with ``args``."""
    return run([DNSFW_BIN, *args], timeout=timeout)


def zone_load(store: Path, zone: str, file: Path, *extra: object,
              timeout: float = 300.0) -> subprocess.CompletedProcess:
    """`dnsfw zone load --store STORE --zone ZONE [extra...] FILE`."""
    return dnsfw("zone", "load", "--store", store, "--zone", zone, *extra, file,
                 timeout=timeout)


def describe_run(cp: subprocess.CompletedProcess) -> str:
    return (f"$ {' '.join(map(str, cp.args))}\nexit {cp.returncode}\n"
            f"--- stdout:\n{cp.stdout}\n--- stderr:\n{cp.stderr}")


def threads_of_session(leader_pid: int, exe: Path) -> list[tuple[int, int]]:
    """(pid, thread count) of every process in session ``leader_pid`` whose
    executable is ``exe``."""
    target = os.path.realpath(exe)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.path.realpath(f"/proc/{entry}/exe") != target:
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
            # fields after the parenthesised command: state ppid pgrp session ...
            rest = stat[stat.rindex(")") + 2:].split()
            if int(rest[3]) != leader_pid:
                continue
            found.append((int(entry), len(os.listdir(f"/proc/{entry}/task"))))
        except (OSError, ValueError):
            continue
    return found


# ---------------------------------------------------------------------------
# DNS

@dataclass
class Reply:
    """A response and the client port it was asked from."""
    msg: dns.message.Message
    client_port: int
    transport: str
    client: str = LOOPBACK

    @property
    def rcode(self) -> int:
        return self.msg.rcode()

    def rcode_text(self) -> str:
        return dns.rcode.to_text(self.msg.rcode())

    def answer_set(self) -> set[str]:
        return rrsets_text(self.msg.answer)

    def ede(self) -> list[dns.edns.EDEOption]:
        return [o for o in self.msg.options if o.otype == dns.edns.OptionType.EDE]

    def tc(self) -> bool:
        return bool(self.msg.flags & dns.flags.TC)

    def __str__(self) -> str:
        return (f"[{self.transport} from {self.client}#{self.client_port}]\n"
                f"{self.msg.to_text()}")


def rrsets_text(rrsets) -> set[str]:
    """{"owner. TYPE rdata"} (lower-case owner, no TTL, no class)."""
    out = set()
    for rrset in rrsets:
        owner = rrset.name.to_text().lower()
        rtype = dns.rdatatype.to_text(rrset.rdtype)
        for rdata in rrset:
            out.add(f"{owner} {rtype} {rdata.to_text()}")
    return out


def make_query(qname: str, qtype: str = "A") -> dns.message.Message:
    """A recursive query with EDNS (version 0, 1232-byte payload), DO=0."""
    return dns.message.make_query(qname, qtype, use_edns=0, want_dnssec=False, payload=1232)


def query(port: int, qname: str, qtype: str = "A", transport: str = "udp",
          timeout: float = 3.0, server: str = LOOPBACK, source: str = LOOPBACK) -> Reply:
    """Sends one query over ``transport`` ("udp" or "tcp") from a fresh
    socket bound to ``source`` (any 127.0.0.0/8 address), so the client
    address and port are known (hit-log checks). Raises
    dns.exception.Timeout when nothing comes back, EOFError/ConnectionError
    when a TCP connection is closed without an answer."""
    q = make_query(qname, qtype)
    if transport == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((source, 0))
            client_port = sock.getsockname()[1]
            sock.setblocking(False)
            msg = dns.query.udp(q, server, timeout=timeout, port=port, sock=sock,
                                ignore_unexpected=True)
        finally:
            sock.close()
    elif transport == "tcp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((source, 0))
            client_port = sock.getsockname()[1]
            sock.settimeout(timeout)
            sock.connect((server, port))
            sock.setblocking(False)
            msg = dns.query.tcp(q, server, timeout=timeout, port=port, sock=sock)
        finally:
            sock.close()
    else:
        raise ValueError(transport)
    return Reply(msg, client_port, transport, source)


def answers(port: int, qname: str = "ready.example.", qtype: str = "A",
            timeout: float = 0.5) -> bool:
    """True if the server on ``port`` gives a NOERROR answer with records."""
    try:
        r = query(port, qname, qtype, "udp", timeout=timeout)
    except (dns.exception.DNSException, OSError, EOFError):
        return False
    return r.rcode == dns.rcode.NOERROR and len(r.msg.answer) > 0


def norm_name(name: str) -> str:
    """Lower-case, no trailing dot ("." stays ".")."""
    name = name.strip().lower()
    return name if name == "." else name.rstrip(".")


# ---------------------------------------------------------------------------
# Hit log

@dataclass
class HitLog:
    """The module's JSON-lines hit log (one line per applied policy, written
    asynchronously)."""
    path: Path

    def entries(self) -> list[dict]:
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                # a partially written last line; it will be complete next poll
                out.append({"_unparsed": line})
        return out

    def matching(self, qname: str, port: int | None = None,
                 transport: str | None = None) -> list[dict]:
        want = norm_name(qname)
        hits = []
        for e in self.entries():
            if norm_name(str(e.get("qname", ""))) != want:
                continue
            if port is not None and _as_int(e.get("port")) != port:
                continue
            if transport is not None and str(e.get("transport", "")).lower() != transport:
                continue
            hits.append(e)
        return hits

    def wait_for(self, qname: str, port: int, transport: str, timeout: float = 5.0) -> dict:
        """The entry for the query asked from ``port``; fails after ``timeout``."""
        def found():
            hits = self.matching(qname, port, transport)
            return hits[0] if hits else None
        return wait_until(found, timeout,
                          f"hit-log line for {qname} from port {port}/{transport} in {self.path}",
                          on_timeout=lambda: "hit log tail:\n" + self.tail())

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return f"({self.path} does not exist)"


def _as_int(v) -> Optional[int]:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def qtype_matches(logged, qtype: str) -> bool:
    """The hit log's qtype may be the mnemonic ("AAAA") or the number (28)."""
    if isinstance(logged, int):
        return logged == dns.rdatatype.from_text(qtype)
    s = str(logged).strip().upper()
    return s == qtype.upper() or s == str(int(dns.rdatatype.from_text(qtype)))


def rule_matches(logged: str, rule: str, zone: str) -> bool:
    """A rule may be named relative to its zone ("bad.example") or by the
    full owner name in the policy zone ("bad.example.primary.rpz.")."""
    got = norm_name(logged)
    return got in (norm_name(rule), f"{norm_name(rule)}.{norm_name(zone)}")


# ---------------------------------------------------------------------------
# NSD (the authoritative "benign upstream")

@dataclass
class Nsd:
    """An NSD serving ``zones`` ({origin: zone file}) on 127.0.0.1:port."""
    workdir: Path
    zones: dict[str, Path]
    port: int = 0
    process: Optional[Process] = None

    def start(self, timeout: float = 20.0) -> "Nsd":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = self.workdir / "nsd.conf"
        lines = [
            "server:",
            f"  ip-address: {LOOPBACK}@{self.port}",
            '  username: ""',
            '  chroot: ""',
            f'  zonesdir: "{self.workdir}"',
            f'  pidfile: "{self.workdir}/nsd.pid"',
            f'  xfrdfile: "{self.workdir}/xfrd.state"',
            f'  zonelistfile: "{self.workdir}/zone.list"',
            f'  xfrdir: "{self.workdir}"',
            '  database: ""',
            f'  logfile: "{self.workdir}/nsd.log"',
            "  server-count: 1",
            "  verbosity: 1",
            "  hide-version: yes",
            "remote-control:",
            "  control-enable: no",
        ]
        for origin, path in self.zones.items():
            lines += ["zone:", f'  name: "{origin}"', f'  zonefile: "{Path(path).resolve()}"']
        conf.write_text("\n".join(lines) + "\n")
        self.process = Process("nsd", [NSD_BIN, "-d", "-c", conf], self.workdir)
        probe = next(iter(self.zones))

        def ready():
            if not self.process.alive():
                raise AssertionError("NSD exited during start-up\n" + self.describe())
            try:
                r = query(self.port, probe, "SOA", "udp", timeout=0.3)
            except (dns.exception.DNSException, OSError, EOFError):
                return False
            return r.rcode == dns.rcode.NOERROR and r.msg.answer
        try:
            wait_until(ready, timeout, f"NSD on port {self.port}", on_timeout=self.describe)
        except BaseException:
            self.stop()
            raise
        return self

    def describe(self) -> str:
        log = self.workdir / "nsd.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return (self.process.describe() if self.process else "") + f"\n--- nsd.log:\n{text}"

    def stop(self) -> None:
        if self.process:
            self.process.stop()


# ---------------------------------------------------------------------------
# dnsfw resolver (Unbound with the module, started by `dnsfw resolver`)

@dataclass
class Resolver:
    """``dnsfw resolver`` running in the background on 127.0.0.1:port."""
    store: Path
    forward_port: int
    workdir: Path
    zones: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    port: int = 0
    process: Optional[Process] = None

    @property
    def hitlog(self) -> HitLog:
        return HitLog(self.workdir / "hits.jsonl")

    def argv(self) -> list[object]:
        argv: list[object] = [DNSFW_BIN, "resolver", "--store", self.store,
                              "--listen", f"{LOOPBACK}@{self.port}",
                              "--forward", f"{LOOPBACK}@{self.forward_port}",
                              "--log", self.workdir / "hits.jsonl",
                              "--workdir", self.workdir / "run"]
        if self.zones:
            argv += ["--zones", ",".join(self.zones)]
        return argv + list(self.extra_args)

    def start(self, timeout: float = 60.0) -> "Resolver":
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "run").mkdir(exist_ok=True)
        self.port = free_port()
        self.process = Process("resolver", self.argv(), self.workdir)

        def ready():
            if not self.process.alive():
                raise AssertionError("dnsfw resolver exited during start-up\n"
                                     + self.process.describe())
            return answers(self.port)
        try:
            wait_until(ready, timeout, f"dnsfw resolver on port {self.port} to answer",
                       on_timeout=self.process.describe)
        except BaseException:
            self.stop()
            raise
        return self

    def query(self, qname: str, qtype: str = "A", transport: str = "udp",
              timeout: float = 3.0, source: str = LOOPBACK) -> Reply:
        return query(self.port, qname, qtype, transport, timeout, source=source)

    def describe(self) -> str:
        return self.process.describe() if self.process else "(not started)"

    def stop(self) -> None:
        if self.process:
            self.process.stop()


# ---------------------------------------------------------------------------
# Unbound run directly with the module (start-up error tests)

def write_unbound_conf(workdir: Path, port: int, forward_port: int, threads: int = 1) -> Path:
    """A minimal unbound.conf loading the dnsfw module, forwarding to
    127.0.0.1@forward_port, logging to stderr. The module finds its own
    configuration through the DNSFW_CONFIG environment variable."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "unbound.conf"
    conf.write_text("\n".join([
        "server:",
        f"  interface: {LOOPBACK}",
        f"  port: {port}",
        "  do-ip6: no",
        "  do-daemonize: no",
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{workdir}"',
        f'  pidfile: "{workdir}/unbound.pid"',
        "  use-syslog: no",
        '  logfile: ""',
        "  verbosity: 1",
        "  ede: yes",
        f"  num-threads: {threads}",
        "  do-not-query-localhost: no",
        '  module-config: "dynlib iterator"',
        "dynlib:",
        f'  dynlib-file: "{MODULE_SO}"',
        "remote-control:",
        "  control-enable: no",
        "forward-zone:",
        '  name: "."',
        f"  forward-addr: {LOOPBACK}@{forward_port}",
    ]) + "\n")
    return conf


def toml_string(s: object) -> str:
    return json.dumps(str(s))  # a JSON string is a valid TOML basic string here


def write_module_toml(path: Path, store: Path, zones: list[str], hit_log: Path,
                      fail_open: bool = False, ede: int = 15) -> Path:
    """The module's TOML (module/config.hpp): `ede` is an RFC 8914 info-code."""
    path.write_text(
        f"store = {toml_string(store)}\n"
        f"zones = [{', '.join(toml_string(z) for z in zones)}]\n"
        f"hit-log = {toml_string(hit_log)}\n"
        f"fail-open = {'true' if fail_open else 'false'}\n"
        f"ede = {int(ede)}\n")
    return path


LDNS_TOOLS = Path("/usr/bin")  # ldns-keygen, ldns-signzone (Debian package ldnsutils)


def sign_zone_text(workdir: Path, origin: str, text: str) -> tuple[str, Path]:
    """Signs zone ``text`` of ``origin`` with a fresh ECDSA P-256 key
    (ldns-keygen, ldns-signzone) in ``workdir``. Returns the signed zone text
    and the key's DNSKEY file (a trust-anchor-file for Unbound). Raises
    RuntimeError naming the tool's output on failure."""
    for tool in ("ldns-keygen", "ldns-signzone"):
        if not (LDNS_TOOLS / tool).is_file():
            raise RuntimeError(f"{tool} not found in {LDNS_TOOLS} (Debian package ldnsutils)")
    workdir.mkdir(parents=True, exist_ok=True)
    cp = run([LDNS_TOOLS / "ldns-keygen", "-a", "ECDSAP256SHA256", "-k", origin], cwd=workdir)
    if cp.returncode != 0:
        raise RuntimeError(f"key for {origin}: {describe_run(cp)}")
    key = cp.stdout.strip()
    unsigned = workdir / "zone.unsigned"
    unsigned.write_text(text)
    signed = workdir / "zone.signed"
    cp = run([LDNS_TOOLS / "ldns-signzone", "-o", origin, "-f", signed, unsigned, workdir / key],
             cwd=workdir)
    if cp.returncode != 0:
        raise RuntimeError(f"signing {origin}: {describe_run(cp)}")
    return signed.read_text(), workdir / f"{key}.key"
