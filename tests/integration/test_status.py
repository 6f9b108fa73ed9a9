"""`dnsfw status` (per-zone state read from the store), `dnsfw zone set
--journal-size`, and `dnsfw xfrd` (the control-socket client).

`dnsfw status` needs no daemon: it reads what `zone load`, `zone push` and
dnsfw-xfrd record in the store. The `dnsfw xfrd` tests talk to a scripted
stand-in for the daemon's control socket (a unix stream server in this
process), so they check the client's side of the protocol exactly: the line
it writes, that it prints the reply, and its exit code. Tests with the real
daemon are optional here (skipped until build/bin/dnsfw-xfrd exists).
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import dnsfw_harness as h
from dnsfw_harness import require

XFRD_BIN = h.BUILD / "bin" / "dnsfw-xfrd"
DEFAULT_JOURNAL = 64 << 20


def rpz(zone: str, serial: int, *records: str) -> str:
    return "\n".join([
        "$TTL 60",
        f"@ IN SOA ns.{zone}. hostmaster.{zone}. {serial} 3600 600 86400 60",
        "@ IN NS localhost.",
        *records,
    ]) + "\n"


def status_json(store: Path) -> dict:
    cp = h.dnsfw("status", "--store", store, "--json", timeout=30)
    assert cp.returncode == 0, h.describe_run(cp)
    return json.loads(cp.stdout)


def rows(store: Path) -> dict[str, dict]:
    return {z["name"]: z for z in status_json(store)["zones"]}


def table(store: Path) -> tuple[list[str], dict[str, str], str]:
    """(header columns, {zone: its row line}, whole output) of `dnsfw status`."""
    cp = h.dnsfw("status", "--store", store, timeout=30)
    assert cp.returncode == 0, h.describe_run(cp)
    lines = cp.stdout.splitlines()
    header = lines[0].split()
    by_zone = {line.split()[0]: line for line in lines[1:] if line and not line.startswith(" ")}
    return header, by_zone, cp.stdout


@pytest.fixture
def store(tmp_path):
    """A store with a.rpz (2 rules, serial 5) and b.rpz (1 rule, serial 9)."""
    require(h.DNSFW_BIN)
    st = tmp_path / "store.lmdb"
    for zone, text in (("a.rpz", rpz("a.rpz", 5, "x.example CNAME .", "y.example CNAME .")),
                       ("b.rpz", rpz("b.rpz", 9, "z.example CNAME ."))):
        f = tmp_path / zone
        f.write_text(text)
        cp = h.zone_load(st, zone, f)
        assert cp.returncode == 0, h.describe_run(cp)
    return st


# ---------------------------------------------------------------------------
# dnsfw status

def test_status_json_of_loaded_zones(store):
    doc = status_json(store)
    assert doc["store"] == str(store)
    assert isinstance(doc["time"], int) and doc["time_utc"].endswith("Z")
    assert [z["name"] for z in doc["zones"]] == ["a.rpz.", "b.rpz."], doc
    a = doc["zones"][0]
    assert a["in_store"] is True and a["has_status"] is False
    assert (a["order"], a["serial"], a["rules"]) == (1, 5, 2), a
    assert a["journal_max_bytes"] == DEFAULT_JOURNAL, a
    assert a["last_success"] == 0 and a["last_success_utc"] is None, a
    assert a["last_failure"] == 0 and a["last_error"] == "" and a["failing"] is False, a
    assert a["transfers"] == {"full": 0, "incremental": 0, "failed": 0}, a
    assert a["updates"] == 0 and a["last_source"] == "" and a["primary_serial"] is None, a
    assert a["next_check"] == 0, a


def test_status_table_of_loaded_zones(store):
    header, by_zone, out = table(store)
    assert header[:4] == ["ZONE", "SERIAL", "RULES", "JOURNAL"], out
    for col in ("LAST-SUCCESS", "LAST-FAILURE", "UPDATES", "PRIMARY", "NEXT-CHECK", "LAST-SOURCE"):
        assert col in header, out
    a = by_zone["a.rpz."].split()
    assert a[1:3] == ["5", "2"] and a[3:5] == ["64", "MiB"], out
    assert by_zone["a.rpz."].count("never") == 2, out
    assert " 0/0/0 " in by_zone["b.rpz."], out


def test_status_after_push_shows_success_source_and_updates(store, tmp_path):
    f = tmp_path / "a.v2"
    f.write_text(rpz("a.rpz", 6, "x.example CNAME .", "w.example CNAME ."))
    t0 = int(time.time())
    cp = h.dnsfw("zone", "push", "--store", store, "--zone", "a.rpz", f)
    t1 = int(time.time())
    assert cp.returncode == 0, h.describe_run(cp)
    assert cp.stdout.strip() == "zone a.rpz.: serial 5 -> 6: 1 added, 1 removed, 0 changed"

    a = rows(store)["a.rpz."]
    assert a["has_status"] is True and a["serial"] == 6 and a["rules"] == 2, a
    assert a["updates"] == 1 and a["last_source"] == f"zone push {f}", a
    assert t0 <= a["last_success"] <= t1, a
    iso = datetime.fromtimestamp(a["last_success"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert a["last_success_utc"] == iso, a
    assert a["last_success_age"] is not None and 0 <= a["last_success_age"] < 120, a
    assert a["last_failure"] == 0 and not a["failing"], a
    # b.rpz is untouched.
    assert rows(store)["b.rpz."]["has_status"] is False

    _, by_zone, out = table(store)
    line = by_zone["a.rpz."]
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+ s ago\)", line), out
    assert line.endswith(f"zone push {f}"), out
    assert line.split()[1:3] == ["6", "2"], out

    # A second push counts a second update.
    f3 = tmp_path / "a.v3"
    f3.write_text(rpz("a.rpz", 7, "x.example CNAME ."))
    cp = h.dnsfw("zone", "push", "--store", store, "--zone", "a.rpz", f3)
    assert cp.returncode == 0, h.describe_run(cp)
    a = rows(store)["a.rpz."]
    assert (a["serial"], a["rules"], a["updates"]) == (7, 1, 2), a
    assert a["last_source"] == f"zone push {f3}", a


def test_status_default_store_path_in_help():
    require(h.DNSFW_BIN)
    cp = h.dnsfw("status", "--help")
    assert cp.returncode == 0 and "/var/lib/dnsfw/store" in cp.stdout, h.describe_run(cp)


def test_status_of_missing_store_fails_clearly(tmp_path):
    require(h.DNSFW_BIN)
    cp = h.dnsfw("status", "--store", tmp_path / "nope")
    assert cp.returncode == 1, h.describe_run(cp)
    assert "nope' does not exist" in cp.stderr, h.describe_run(cp)


def test_status_of_store_without_zones(store):
    for zone in ("a.rpz", "b.rpz"):
        cp = h.dnsfw("zone", "remove", "--store", store, "--zone", zone)
        assert cp.returncode == 0, h.describe_run(cp)
    assert status_json(store)["zones"] == []
    cp = h.dnsfw("status", "--store", store)
    assert cp.returncode == 0 and cp.stdout.startswith("no zones in store"), h.describe_run(cp)


# ---------------------------------------------------------------------------
# dnsfw zone set --journal-size

@pytest.mark.parametrize("arg,want", [("256M", 256 << 20), ("1048576", 1 << 20), ("512k", 512 << 10),
                                      ("2G", 2 << 30), ("64MiB", 64 << 20), ("0", 0)])
def test_journal_size_is_stored(store, arg, want):
    cp = h.dnsfw("zone", "set", "--store", store, "a.rpz", "--journal-size", arg)
    assert cp.returncode == 0, h.describe_run(cp)
    assert cp.stdout.startswith("zone a.rpz.: journal size "), h.describe_run(cp)
    assert rows(store)["a.rpz."]["journal_max_bytes"] == want
    assert rows(store)["b.rpz."]["journal_max_bytes"] == DEFAULT_JOURNAL


def test_journal_size_shown_in_table(store):
    cp = h.dnsfw("zone", "set", "--store", store, "--zone", "b.rpz", "--journal-size", "16M")
    assert cp.returncode == 0, h.describe_run(cp)
    assert cp.stdout.strip() == "zone b.rpz.: journal size 16 MiB", h.describe_run(cp)
    _, by_zone, out = table(store)
    assert by_zone["b.rpz."].split()[3:5] == ["16", "MiB"], out


@pytest.mark.parametrize("args,code,text", [
    (["a.rpz", "--journal-size", "12X"], 2, "expected a byte count"),
    (["a.rpz", "--journal-size", "-1"], 2, "expected a byte count"),
    (["a.rpz", "--journal-size", "99999999999T"], 2, "expected a byte count"),
    (["--journal-size", "1M"], 2, "missing zone"),
    (["a.rpz", "--zone", "a.rpz", "--journal-size", "1M"], 2, "not both"),
    (["a.rpz"], 2, "nothing to set"),
    (["nosuch.rpz", "--journal-size", "1M"], 1, "zone nosuch.rpz. is not in store"),
])
def test_journal_size_errors(store, args, code, text):
    cp = h.dnsfw("zone", "set", "--store", store, *args)
    assert cp.returncode == code, h.describe_run(cp)
    assert text in cp.stderr, h.describe_run(cp)
    assert rows(store)["a.rpz."]["journal_max_bytes"] == DEFAULT_JOURNAL


def test_zone_set_policy_and_journal_together(store):
    cp = h.dnsfw("zone", "set", "--store", store, "a.rpz", "--policy", "disabled",
                 "--journal-size", "1M")
    assert cp.returncode == 0, h.describe_run(cp)
    assert "policy disabled" in cp.stdout and "journal size 1 MiB" in cp.stdout
    cp = h.dnsfw("zone", "list", "--store", store, "--json")
    assert json.loads(cp.stdout)[0]["settings"]["policy"] == "disabled"
    assert rows(store)["a.rpz."]["journal_max_bytes"] == 1 << 20


# ---------------------------------------------------------------------------
# dnsfw xfrd: the control-socket client, against a scripted stand-in

class FakeControl:
    """A unix stream server that accepts connections one at a time, records
    the line each client sends and answers with the scripted reply, then
    closes (as dnsfw-xfrd does)."""

    def __init__(self, reply: str = "ok\n"):
        self.dir = Path(tempfile.mkdtemp(prefix="dnsfw-ctl-", dir="/tmp"))
        self.path = self.dir / "xfrd.sock"
        self.reply = reply
        self.lines: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop_flag.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while b"\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except socket.timeout:
                    pass
                self.lines.append(data)
                if self.reply:
                    conn.sendall(self.reply.encode())

    def close(self):
        self.stop_flag.set()
        self.sock.close()
        self.thread.join(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def control():
    require(h.DNSFW_BIN)
    servers: list[FakeControl] = []

    def make(reply: str = "ok\n") -> FakeControl:
        s = FakeControl(reply)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


def xfrd(path: Path, *args: object):
    return h.dnsfw("xfrd", "--control", path, *args, timeout=30)


@pytest.mark.parametrize("args,line", [
    (["reload"], b"reload\n"),
    (["status"], b"status\n"),
    (["stop"], b"stop\n"),
    (["transfer", "Threat.RPZ"], b"transfer threat.rpz.\n"),
    (["transfer", "threat.rpz.", "--full"], b"transfer threat.rpz. full\n"),
    (["--full", "transfer", "threat.rpz"], b"transfer threat.rpz. full\n"),
    (["notify", "threat.rpz"], b"notify threat.rpz.\n"),
])
def test_xfrd_sends_one_command_line(control, args, line):
    srv = control("ok\n")
    cp = xfrd(srv.path, *args)
    assert cp.returncode == 0, h.describe_run(cp)
    assert srv.lines == [line]
    assert cp.stdout == "ok\n", h.describe_run(cp)


def test_xfrd_prints_multi_line_reply(control):
    reply = ('{"zone":"a.rpz.","serial":5}\n'
             '{"zone":"b.rpz.","serial":9}\n'
             "ok\n")
    srv = control(reply)
    cp = xfrd(srv.path, "status")
    assert cp.returncode == 0, h.describe_run(cp)
    assert cp.stdout == reply
    assert [json.loads(l)["zone"] for l in cp.stdout.splitlines()[:-1]] == ["a.rpz.", "b.rpz."]


@pytest.mark.parametrize("reply", ["error: no such zone nosuch.rpz.\n",
                                   "started\nerror: transfer failed: timeout\n",
                                   "ok\nsomething after ok\n"])
def test_xfrd_exit_1_unless_last_line_ok(control, reply):
    srv = control(reply)
    cp = xfrd(srv.path, "transfer", "nosuch.rpz")
    assert cp.returncode == 1, h.describe_run(cp)
    assert cp.stdout == reply, h.describe_run(cp)


def test_xfrd_reply_without_final_newline(control):
    srv = control("ok")
    cp = xfrd(srv.path, "reload")
    assert cp.returncode == 0 and cp.stdout == "ok\n", h.describe_run(cp)


def test_xfrd_connection_closed_without_reply(control):
    srv = control("")
    cp = xfrd(srv.path, "reload")
    assert cp.returncode == 1, h.describe_run(cp)
    assert "without a reply" in cp.stderr, h.describe_run(cp)


def test_xfrd_daemon_not_running(tmp_path):
    require(h.DNSFW_BIN)
    path = tmp_path / "absent.sock"
    cp = xfrd(path, "status")
    assert cp.returncode == 1, h.describe_run(cp)
    assert f"dnsfw-xfrd not running? cannot connect to {path}: No such file or directory" \
        in cp.stderr, h.describe_run(cp)


def test_xfrd_socket_file_without_listener(control):
    srv = control("ok\n")
    srv.close()  # leaves nothing listening (the stale-socket case)
    d = Path(tempfile.mkdtemp(prefix="dnsfw-ctl-", dir="/tmp"))
    try:
        stale = d / "stale.sock"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(stale))
        s.close()  # bound, never listening: connect() is refused
        cp = xfrd(stale, "reload")
        assert cp.returncode == 1, h.describe_run(cp)
        assert f"dnsfw-xfrd not running? cannot connect to {stale}: Connection refused" \
            in cp.stderr, h.describe_run(cp)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_xfrd_default_control_path_in_help():
    require(h.DNSFW_BIN)
    cp = h.dnsfw("xfrd", "--help")
    assert cp.returncode == 0 and "/run/dnsfw/xfrd.sock" in cp.stdout, h.describe_run(cp)


@pytest.mark.parametrize("args,text", [
    ([], "missing operand"),
    (["bogus"], "unknown xfrd command 'bogus'"),
    (["transfer"], "'transfer' needs a zone"),
    (["notify"], "'notify' needs a zone"),
    (["reload", "x.rpz"], "'reload' takes no zone"),
    (["notify", "x.rpz", "--full"], "--full applies to 'transfer ZONE' only"),
    (["transfer", "bad..name"], "not a valid domain name"),
    (["transfer", "a", "b", "c"], "unexpected argument"),
])
def test_xfrd_usage_errors(control, args, text):
    srv = control("ok\n")
    cp = xfrd(srv.path, *args)
    assert cp.returncode == 2, h.describe_run(cp)
    assert text in cp.stderr, h.describe_run(cp)
    assert srv.lines == []  # nothing was sent


# ---------------------------------------------------------------------------
# With the real daemon (skipped until it is built)

def test_status_only_row_from_daemon_failure(tmp_path):
    """A secondary zone whose primary does not answer: dnsfw-xfrd records the
    failure (Store::put_status) before the zone exists in the store, and
    `dnsfw status` shows that status-only row with the reason."""
    require(h.DNSFW_BIN, XFRD_BIN)
    st = tmp_path / "store.lmdb"
    # The store must exist for `dnsfw status`; the zone must not.
    f = tmp_path / "other.rpz"
    f.write_text(rpz("other.rpz", 1, "o.example CNAME ."))
    assert h.zone_load(st, "other.rpz", f).returncode == 0
    dead = h.free_port()   # nothing listens there
    port = h.free_port()
    conf = tmp_path / "xfrd.toml"
    ctl = Path(tempfile.mkdtemp(prefix="dnsfw-ctl-", dir="/tmp")) / "x.sock"
    conf.write_text("\n".join([
        f"store = {h.toml_string(st)}",
        f'listen = ["127.0.0.1:{port}"]',
        f"control = {h.toml_string(ctl)}",
        "[[zone]]",
        'name = "pending.rpz"',
        f'primaries = ["127.0.0.1:{dead}"]',
        "transfer-timeout = 2",
        "retry-min = 1",
        "retry-max = 2",
    ]) + "\n")
    p = h.Process("xfrd", [XFRD_BIN, "--config", conf], tmp_path)
    try:
        def failed_row():
            doc = status_json(st)
            r = {z["name"]: z for z in doc["zones"]}.get("pending.rpz.")
            return r if r and r["last_failure"] > 0 else None
        row = h.wait_until(failed_row, 20, "a failure recorded for pending.rpz.",
                           on_timeout=p.describe)
        assert row["in_store"] is False and row["serial"] is None and row["rules"] is None, row
        assert row["failing"] is True and row["last_error"], row
        header, by_zone, out = table(st)
        assert by_zone["pending.rpz."].split()[1:4] == ["-", "-", "-"], out
        assert "FAILING" in by_zone["pending.rpz."], out
        assert "not in the store yet" in out and "error: " in out, out
        # The control client against the real daemon.
        cp = xfrd(ctl, "status")
        assert cp.returncode == 0 and cp.stdout.splitlines()[-1] == "ok", h.describe_run(cp)
        cp = xfrd(ctl, "notify", "nosuch.rpz")
        assert cp.returncode == 1 and cp.stdout.startswith("error"), h.describe_run(cp)
    finally:
        p.stop()
        shutil.rmtree(ctl.parent, ignore_errors=True)
