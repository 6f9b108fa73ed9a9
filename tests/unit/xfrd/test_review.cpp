// Unit tests of review fixes: the rate limit of refusal log lines, escaping
// of control-socket input, UDP SOA queries failing at once on ICMP port
// unreachable, and commit_axfr(allow_older) for `transfer ZONE full`.
#include <catch2/catch.hpp>

#include "tools/xfrd/log.hpp"
#include "tools/xfrd/net.hpp"
#include "tools/xfrd/serve_wire.hpp"
#include "tools/xfrd/transfer.hpp"
#include "xfrd_test_util.hpp"

#include <arpa/inet.h>

#include <chrono>
#include <cstring>

using dnsfw::xfrd::LogLevel;
using dnsfw::xfrd::Logger;

namespace {


const dnsfw::rpz::Name kApex = {1, 't', 3, 'r', 'p', 'z', 0};

dnsfw::rpz::ZoneRecord soa(std::uint32_t serial) {
    std::vector<std::uint8_t> r = xfrd_test::name("ns.t.rpz.");
    dnsfw::rpz::Name rname = xfrd_test::name("admin.t.rpz.");
    r.insert(r.end(), rname.begin(), rname.end());
    for (std::uint32_t v : {serial, 60u, 10u, 3600u, 60u}) dnsfw::xfrd::wire::put32(r, v);
    return dnsfw::rpz::ZoneRecord{kApex, dnsfw::xfrd::wire::kTypeSoa, 300, r};
}

dnsfw::rpz::ZoneRecord cname(std::string_view label) {
    return dnsfw::rpz::ZoneRecord{xfrd_test::name(std::string(label) + ".t.rpz."),
                                  dnsfw::xfrd::wire::kTypeCname, 300, xfrd_test::name(".")};
}

}  // namespace

TEST_CASE("Logger::limited: at most N lines per key and window, then one summary",
          "[xfrd][log]") {
    Logger log;
    std::vector<std::string> lines;
    log.set_sink([&](std::string_view l) { lines.emplace_back(l); });
    const std::string key = "zone a.rpz.: AXFR refused: not allowed by allow-transfer";
    for (int i = 0; i < 100; ++i)
        log.limited(LogLevel::Warning, key, "zone a.rpz.: AXFR from 10.0.0." + std::to_string(i) +
                                                ":1 refused: not allowed by allow-transfer",
                    1000 + static_cast<std::uint64_t>(i));
    CHECK(lines.size() == Logger::kLimitPerWindow);
    CHECK(lines.front() ==
          "warning zone a.rpz.: AXFR from 10.0.0.0:1 refused: not allowed by allow-transfer\n");
    // Another key has its own budget.
    log.limited(LogLevel::Warning, "zone b.rpz.: NOTIFY refused", "zone b.rpz.: NOTIFY refused",
                1200);
    CHECK(lines.size() == Logger::kLimitPerWindow + 1);
    // The window has not ended: no summary yet.
    log.flush_suppressed(1500);
    CHECK(lines.size() == Logger::kLimitPerWindow + 1);
    // It has: one summary line with the count.
    log.flush_suppressed(2100);
    REQUIRE(lines.size() == Logger::kLimitPerWindow + 2);
    CHECK(lines.back() ==
          "warning zone a.rpz.: suppressed 90 similar lines in 1 s (AXFR refused: not allowed by "
          "allow-transfer)\n");
    // A new window writes again.
    log.limited(LogLevel::Warning, key, "zone a.rpz.: again", 2200);
    CHECK(lines.back() == "warning zone a.rpz.: again\n");
    // The summary also comes from the next line of the key after the window.
    for (int i = 0; i < 20; ++i) log.limited(LogLevel::Warning, key, "x", 2300);
    const std::size_t before = lines.size();
    log.limited(LogLevel::Warning, key, "zone a.rpz.: later", 3300);
    REQUIRE(lines.size() == before + 2);
    CHECK(lines[before].find("suppressed 11 similar lines") != std::string::npos);
    CHECK(lines.back() == "warning zone a.rpz.: later\n");
}

TEST_CASE("escape_bytes: non-printable bytes of peer input", "[xfrd][log]") {
    using dnsfw::xfrd::escape_bytes;
    CHECK(escape_bytes("status") == "status");
    CHECK(escape_bytes(std::string("tr\x1b[2Jansfer\x00x\xff", 15)) ==
          "tr\\x1b[2Jansfer\\x00x\\xff");
    CHECK(escape_bytes("a\\b\tc\n") == "a\\\\b\\x09c\\x0a");
}

TEST_CASE("UdpQuery: ICMP port unreachable ends the query at once", "[xfrd][net]") {
    // A port that nobody listens on: bind, read the port, close.
    int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    socklen_t len = sizeof sa;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
    ::close(fd);
    sockaddr_storage peer{};
    std::memcpy(&peer, &sa, sizeof sa);

    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    bool finished = false, answered = true;
    std::string error;
    const auto start = std::chrono::steady_clock::now();
    {
        std::vector<std::uint8_t> q = xfrd_test::query("t.rpz.", dnsfw::xfrd::wire::kTypeSoa);
        dnsfw::xfrd::UdpQuery query(
            &loop, peer, q, 2000, 3, [](std::span<const std::uint8_t>) { return true; },
            [&](bool a, const std::string& e) {
                finished = true;
                answered = a;
                error = e;
            });
        query.fail_on_unreachable(true);
        query.start();
        while (!finished && uv_run(&loop, UV_RUN_ONCE) != 0) {
        }
    }
    uv_run(&loop, UV_RUN_DEFAULT);  // close callbacks
    REQUIRE(uv_loop_close(&loop) == 0);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    REQUIRE(finished);
    CHECK_FALSE(answered);
    CHECK(error.find("port unreachable") != std::string::npos);
    CHECK(ms < 1500);  // not 3 x 2 s
}

TEST_CASE("commit_axfr(allow_older): an explicit full transfer takes an older serial",
          "[xfrd][transfer]") {
    xfrd_test::TempDir dir;
    dnsfw::store::Store st = xfrd_test::open_store(dir.path.string());
    dnsfw::xfrd::ZoneConfig z;
    z.name = "t.rpz.";
    z.apex = kApex;
    std::vector<dnsfw::rpz::ZoneRecord> v10 = {soa(10), cname("a"), cname("b")};
    dnsfw::xfrd::commit_axfr(st, z, v10, "test");
    std::vector<dnsfw::rpz::ZoneRecord> v11 = {soa(11), cname("a"), cname("c")};
    dnsfw::xfrd::commit_axfr(st, z, v11, "test");
    REQUIRE(st.zone("t.rpz.")->serial == 11);
    std::vector<dnsfw::rpz::ZoneRecord> v7 = {soa(7), cname("a"), cname("d")};
    CHECK_THROWS_AS(dnsfw::xfrd::commit_axfr(st, z, v7, "test"), dnsfw::xfrd::CommitError);
    CHECK(st.zone("t.rpz.")->serial == 11);
    dnsfw::xfrd::CommitResult r = dnsfw::xfrd::commit_axfr(st, z, v7, "test", true);
    CHECK(r.changed);
    CHECK(r.from_serial == 11);
    CHECK(r.to_serial == 7);
    auto info = st.zone("t.rpz.");
    REQUIRE(info);
    CHECK(info->serial == 7);
    CHECK(info->rule_count == 2);
    // No journal entry leads backwards: downstream IXFR from 11 has no history.
    auto j = st.journal_since("t.rpz.", 11);
    CHECK((!j || j->empty()));
}
