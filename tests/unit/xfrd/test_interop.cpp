// Interoperability of the Responder and TsigSession with real DNS software
// on loopback: kdig, dig and nsupdate against a Responder behind a small
// UDP/TCP server, and Knot DNS (knotd) both as a TSIG-signing primary we
// verify message by message and as a secondary that transfers (AXFR, then
// IXFR from the journal) from the Responder. Each test is skipped with a
// warning when its program is not installed.
#include "xfrd_test_util.hpp"

#include <fcntl.h>
#include <csignal>
#include <sstream>

using namespace xfrd_test;
using dnsfw::xfrd::TsigResult;
using dnsfw::xfrd::TsigSession;

namespace {

/// Polls `pred` every 50 ms until it holds or `seconds` pass.
template <typename Pred>
bool wait_until(Pred&& pred, double seconds) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<long>(seconds * 1000));
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return pred();
}

/// A free TCP+UDP port on 127.0.0.1 (bound and released; knotd binds it next).
std::uint16_t free_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_storage a = addr("127.0.0.1", 0);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(sockaddr_in)) == 0);
    socklen_t len = sizeof a;
    REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    close(fd);
    return ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
}

/// knotd running with `conf` in the foreground; stopped (by its pid) on destruction.
class KnotD {
  public:
    KnotD(const std::string& conf, const std::string& log_path, std::uint16_t port) : port_(port) {
        pid_ = fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
            execlp("knotd", "knotd", "-c", conf.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        // Ready once it answers a query.
        const std::string probe =
            "kdig @127.0.0.1 -p " + std::to_string(port) + " . SOA +time=1 +retry=0 >/dev/null";
        ready_ = wait_until([&] { return run(probe).first == 0 || exited(); }, 15) && !exited();
    }
    ~KnotD() {
        if (pid_ > 0 && !exited_) {
            kill(pid_, SIGTERM);
            int st = 0;
            waitpid(pid_, &st, 0);
        }
    }
    bool ready() const { return ready_; }

  private:
    bool exited() {
        if (exited_) return true;
        int st = 0;
        if (waitpid(pid_, &st, WNOHANG) == pid_) exited_ = true;
        return exited_;
    }
    pid_t pid_ = -1;
    std::uint16_t port_;
    bool ready_ = false;
    bool exited_ = false;
};

/// "kdig ... SOA +short" serial of zone `zone` at 127.0.0.1:port, or 0.
std::uint32_t soa_serial_at(std::uint16_t port, const std::string& zone) {
    auto [rc, out] = run("kdig @127.0.0.1 -p " + std::to_string(port) + " " + zone +
                         " SOA +short +time=1 +retry=0");
    if (rc != 0) return 0;
    std::istringstream in(out);
    std::string mname, rname;
    std::uint32_t serial = 0;
    in >> mname >> rname >> serial;
    return serial;
}

/// `s` with every run of blanks (tabs, spaces) turned into one space.
std::string squeeze(const std::string& s) {
    std::string out;
    for (char c : s) {
        const bool blank = c == ' ' || c == '\t';
        if (blank && !out.empty() && out.back() == ' ') continue;
        out += blank ? ' ' : c;
    }
    return out;
}

std::string knot_key_section(const std::string& id, const std::string& alg,
                             const std::string& b64) {
    return "key:\n  - id: " + id + "\n    algorithm: " + alg + "\n    secret: " + b64 + "\n";
}

}  // namespace

TEST_CASE("Interop: kdig and dig verify signed AXFR/IXFR from the Responder",
          "[xfrd][interop][tools]") {
    if (!have_program("kdig") || !have_program("dig")) {
        WARN("kdig/dig not installed: skipped");
        return;
    }
    const std::string text = big_zone_text(5000);
    World w(text);
    LoopbackServer server(*w.responder);
    const std::string port = std::to_string(server.port());
    const auto key = xfr_key();
    const std::string y = "hmac-sha256:xfr-key:" + key.secret_base64;

    // What the Responder sends, for the record count.
    auto o = w.ask(query("rpz.example", wire::kTypeAxfr), "192.0.2.7");
    const auto msgs = drain(o);
    std::size_t records = 0;
    for (const auto& m : msgs) records += parse(m).answer.size();
    REQUIRE(msgs.size() > 5);

    auto [rc, out] = run("kdig @127.0.0.1 -p " + port + " -y " + y + " rpz.example AXFR");
    INFO(out.substr(out.size() > 2000 ? out.size() - 2000 : 0));
    CHECK(rc == 0);
    CHECK(out.find("(" + std::to_string(msgs.size()) + " messages, " + std::to_string(records) +
                   " records)") != std::string::npos);
    CHECK(out.find(";; ERROR") == std::string::npos);
    CHECK(out.find("WARNING") == std::string::npos);

    auto [rc2, out2] = run("dig @127.0.0.1 -p " + port + " -y " + y + " rpz.example AXFR");
    INFO(out2.substr(out2.size() > 2000 ? out2.size() - 2000 : 0));
    CHECK(rc2 == 0);
    CHECK(out2.find("XFR size: " + std::to_string(records) + " records") != std::string::npos);
    CHECK(out2.find("failed") == std::string::npos);
    CHECK(out2.find("Couldn't verify") == std::string::npos);

    // IXFR from the journal.
    push_text(w, with_serial(text, 42, 43) + "ixfr-added.example CNAME rpz-drop.\n");
    auto [rc3, out3] = run("dig @127.0.0.1 -p " + port + " -y " + y + " rpz.example IXFR=42 +tcp");
    INFO(out3);
    CHECK(rc3 == 0);
    CHECK(squeeze(out3).find("ixfr-added.example.rpz.example. 300 IN CNAME rpz-drop.") !=
          std::string::npos);
    CHECK(out3.find("Couldn't verify") == std::string::npos);

    // A wrong secret: the Responder answers NOTAUTH/BADSIG and kdig says so.
    auto [rc4, out4] = run("kdig @127.0.0.1 -p " + port +
                           " -y hmac-sha256:xfr-key:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= "
                           "rpz.example AXFR");
    INFO(out4);
    CHECK(rc4 != 0);
    CHECK(out4.find("BADSIG") != std::string::npos);
    CHECK(w.log.contains("TSIG BADSIG from 127.0.0.1:"));
}

TEST_CASE("Interop: nsupdate adds and removes a rule through the Responder",
          "[xfrd][interop][tools]") {
    if (!have_program("nsupdate")) {
        WARN("nsupdate not installed: skipped");
        return;
    }
    World w(records_text());
    LoopbackServer server(*w.responder);
    const std::string y = "hmac-sha512:upd-key:" + upd_key().secret_base64;
    const std::string head =
        "server 127.0.0.1 " + std::to_string(server.port()) + "\nzone rpz.example\n";
    auto nsupdate = [&](const std::string& y_arg, const std::string& body) {
        return run("printf '" + head + body + "send\\n' | nsupdate -y " + y_arg);
    };
    auto has_rule = [&](const std::string& owner) {
        auto key = rpz::classify_owner(name("rpz.example"), name(owner));
        REQUIRE(key);
        for (const auto& r : w.stored_rules())
            if (r.trigger == key->trigger && r.key == key->key) return true;
        return false;
    };

    auto [rc, out] = nsupdate(y, "update add nsupd.example.rpz.example. 300 CNAME .\\n");
    INFO(out);
    CHECK(rc == 0);
    CHECK(has_rule("nsupd.example.rpz.example"));
    CHECK(w.serial() == 43);

    auto [rc2, out2] = nsupdate(y,
                                "prereq yxdomain nsupd.example.rpz.example.\\n"
                                "update delete nsupd.example.rpz.example. CNAME\\n");
    INFO(out2);
    CHECK(rc2 == 0);
    CHECK_FALSE(has_rule("nsupd.example.rpz.example"));
    CHECK(w.serial() == 44);

    // A failing prerequisite: nsupdate reports NXDOMAIN, nothing changes.
    auto [rc3, out3] = nsupdate(y,
                                "prereq yxdomain nsupd.example.rpz.example.\\n"
                                "update add x.example.rpz.example. 300 CNAME .\\n");
    CHECK(rc3 != 0);
    CHECK(out3.find("NXDOMAIN") != std::string::npos);
    CHECK(w.serial() == 44);

    // A wrong secret is refused with a TSIG error and logged.
    auto [rc4, out4] = nsupdate("hmac-sha512:upd-key:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                                "update add y.example.rpz.example. 300 CNAME .\\n");
    INFO(out4);
    CHECK(rc4 != 0);
    CHECK(w.serial() == 44);
    CHECK(w.log.contains("TSIG BADSIG from 127.0.0.1:"));
}

TEST_CASE("Interop: a TSIG-signed AXFR from knotd verifies message by message",
          "[xfrd][interop][knot]") {
    if (!have_program("knotd") || !have_program("kdig")) {
        WARN("knotd not installed: skipped");
        return;
    }
    TempDir dir;
    const std::uint16_t port = free_port();
    const auto key = xfr_key();
    {
        std::ofstream z(dir.sub("threat.rpz.zone"));
        z << "$ORIGIN threat.rpz.\n$TTL 300\n@ SOA ns.threat.rpz. h.threat.rpz. 7 3600 600 86400 "
             "60\n"
             "@ NS ns.threat.rpz.\nns A 127.0.0.1\n";
        for (int i = 0; i < 8000; ++i)
            z << "blocked-host-" << i << ".some-long-domain-name.example CNAME .\n";
    }
    {
        std::ofstream c(dir.sub("knot.conf"));
        c << "server:\n    rundir: " << dir.path.string() << "\n    listen: 127.0.0.1@" << port
          << "\nlog:\n  - target: stderr\n    any: info\ndatabase:\n    storage: "
          << dir.path.string() << "\n"
          << knot_key_section("xfr-key", "hmac-sha256", key.secret_base64)
          << "acl:\n  - id: xfr\n    address: 127.0.0.0/8\n    key: xfr-key\n"
             "    action: transfer\n"
             "template:\n  - id: default\n    storage: "
          << dir.path.string()
          << "\nzone:\n  - domain: threat.rpz\n    file: " << dir.sub("threat.rpz.zone")
          << "\n    acl: xfr\n";
    }
    KnotD knot(dir.sub("knot.conf"), dir.sub("knot.log"), port);
    INFO(read_file(dir.sub("knot.log")));
    REQUIRE(knot.ready());

    SECTION("good key: every message verifies, the last is signed") {
        TsigSession client(key);
        const auto req = client.sign_request(query("threat.rpz", wire::kTypeAxfr, 0x3131));
        std::size_t soas = 0;
        auto msgs = tcp_exchange("127.0.0.1", port, req, [&](const auto& m) {
            soas += soa_count(m);
            return soas >= 2;
        });
        REQUIRE(soas == 2);
        REQUIRE(msgs.size() >= 2);
        std::size_t ok = 0, records = 0;
        for (const auto& m : msgs) {
            const auto r = client.verify_response(m);
            CHECK((r == TsigResult::Ok || r == TsigResult::Unsigned));
            if (r == TsigResult::Ok) ++ok;
            records += parse(m).answer.size();
        }
        CHECK(ok >= 2);
        CHECK(client.last_signed());
        CHECK(records == 8000 + 4);
        // A message replayed after the chain moved on does not verify.
        CHECK(client.verify_response(msgs.front()) == TsigResult::BadSig);
    }
    SECTION("bad secret: knotd answers NOTAUTH/BADSIG, we see BadSig") {
        TsigSession client(make_key("xfr-key.", "hmac-sha256", "some other secret value here!!"));
        auto msgs = tcp_exchange("127.0.0.1", port,
                                 client.sign_request(query("threat.rpz", wire::kTypeAxfr)),
                                 [](const auto&) { return true; });
        REQUIRE(msgs.size() == 1);
        CHECK(parse(msgs[0]).rcode == wire::kRcodeNotAuth);
        CHECK(client.verify_response(msgs[0]) == TsigResult::BadSig);
    }
    SECTION("unknown key: BadKey") {
        TsigSession client(make_key("who-is-this.", "hmac-sha256", "x"));
        auto msgs = tcp_exchange("127.0.0.1", port,
                                 client.sign_request(query("threat.rpz", wire::kTypeAxfr)),
                                 [](const auto&) { return true; });
        REQUIRE(msgs.size() == 1);
        CHECK(client.verify_response(msgs[0]) == TsigResult::BadKey);
    }
}

TEST_CASE("Interop: knotd as a secondary of the Responder (AXFR, NOTIFY, IXFR, TSIG)",
          "[xfrd][interop][knot]") {
    if (!have_program("knotd") || !have_program("kdig")) {
        WARN("knotd not installed: skipped");
        return;
    }
    const std::string text = records_text();
    World w(text);
    LoopbackServer server(*w.responder);
    TempDir dir;
    const std::uint16_t port = free_port();
    const auto key = xfr_key();
    {
        std::ofstream c(dir.sub("knot.conf"));
        c << "server:\n    rundir: " << dir.path.string() << "\n    listen: 127.0.0.1@" << port
          << "\nlog:\n  - target: stderr\n    any: debug\ndatabase:\n    storage: "
          << dir.path.string() << "\n"
          << knot_key_section("xfr-key", "hmac-sha256", key.secret_base64)
          << "remote:\n  - id: dnsfw\n    address: 127.0.0.1@" << server.port()
          << "\n    key: xfr-key\n"
             "acl:\n  - id: notify\n    address: 127.0.0.0/8\n    key: xfr-key\n"
             "    action: notify\n"
             "template:\n  - id: default\n    storage: "
          << dir.path.string()
          << "\nzone:\n  - domain: rpz.example\n    master: dnsfw\n    acl: notify\n"
             "    zonefile-sync: -1\n";
    }
    KnotD knot(dir.sub("knot.conf"), dir.sub("knot.log"), port);
    auto knot_log = [&] { return read_file(dir.sub("knot.log")); };
    INFO(knot_log());
    REQUIRE(knot.ready());

    // Initial AXFR (signed SOA query over UDP, then AXFR over TCP).
    REQUIRE(wait_until([&] { return soa_serial_at(port, "rpz.example") == 42; }, 20));
    CHECK(w.log.contains("info zone rpz.example.: AXFR to 127.0.0.1:"));
    auto [rc, out] = run("kdig @127.0.0.1 -p " + std::to_string(port) +
                         " 32.1.2.0.192.rpz-client-ip.rpz.example CNAME +short");
    CHECK(out.find("rpz-drop.") != std::string::npos);

    // A change in the store, then a NOTIFY we sign: knotd acknowledges it
    // (signed) and comes back for an IXFR from the journal.
    push_text(w, with_serial(text, 42, 43) + "knot-added.example CNAME rpz-passthru.\n");
    TsigSession client(key);
    const auto soa43 = rpz::ZoneRecord{name("rpz.example"), wire::kTypeSoa, 3600,
                                       w.st.zone("rpz.example")->soa_rdata};
    const auto notify = client.sign_request(
        query("rpz.example", wire::kTypeSoa, 0x6060, &soa43, wire::kOpcodeNotify));
    const int fd = socket(AF_INET, SOCK_DGRAM, 0);
    REQUIRE(fd >= 0);
    const sockaddr_storage knot_addr = addr("127.0.0.1", port);
    REQUIRE(sendto(fd, notify.data(), notify.size(), 0,
                   reinterpret_cast<const sockaddr*>(&knot_addr),
                   sizeof(sockaddr_in)) == static_cast<ssize_t>(notify.size()));
    pollfd pf{fd, POLLIN, 0};
    REQUIRE(poll(&pf, 1, 5000) == 1);
    std::vector<std::uint8_t> ack(4096);
    const ssize_t n = recv(fd, ack.data(), ack.size(), 0);
    close(fd);
    REQUIRE(n > 0);
    ack.resize(static_cast<std::size_t>(n));
    CHECK(parse(ack).rcode == wire::kRcodeNoError);
    CHECK(parse(ack).opcode == wire::kOpcodeNotify);
    CHECK(client.verify_response(ack) == TsigResult::Ok);

    REQUIRE(wait_until([&] { return soa_serial_at(port, "rpz.example") == 43; }, 20));
    CHECK(w.log.contains("IXFR to 127.0.0.1:"));
    CHECK(w.log.contains("(key xfr-key.): serial 42 -> 43 from the journal (1 change)"));
    auto [rc2, out2] = run("kdig @127.0.0.1 -p " + std::to_string(port) +
                           " knot-added.example.rpz.example CNAME +short");
    CHECK(out2.find("rpz-passthru.") != std::string::npos);
    CHECK(knot_log().find("IXFR") != std::string::npos);
}
