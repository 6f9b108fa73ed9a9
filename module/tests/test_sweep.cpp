// The sweep's Unbound-free coordination: the anchor gate and the wake-up
// socket (module/sweep.hpp).
#include "module/sweep.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

using namespace dnsfw::module;

namespace {

/// Polls `cond` until it holds or 5 s pass.
template <typename F>
bool eventually(F cond) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!cond()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::yield();
    }
    return true;
}

CacheTables fake_tables(int& a, int& b) {
    return {reinterpret_cast<slabhash*>(&a), reinterpret_cast<rrset_cache*>(&b)};
}

/// "w7.refresh.dnsfw.internal. A IN" with id 0x1234 (plus an OPT record if `opt`).
std::vector<std::uint8_t> wake_query(bool opt, const char* first_label = "w7") {
    std::vector<std::uint8_t> q = {
        0x12, 0x34, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, static_cast<std::uint8_t>(opt ? 1 : 0)};
    q.push_back(static_cast<std::uint8_t>(std::strlen(first_label)));
    q.insert(q.end(), first_label, first_label + std::strlen(first_label));
    q.insert(q.end(), std::begin(kRefreshSuffix), std::end(kRefreshSuffix));
    q.insert(q.end(), {0, 1, 0, 1});
    if (opt) q.insert(q.end(), {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0});
    return q;
}

struct Client {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ~Client() { ::close(fd); }
    void send(const RefreshTarget& to, const std::vector<std::uint8_t>& wire) const {
        REQUIRE(::sendto(fd, wire.data(), wire.size(), 0,
                         reinterpret_cast<const sockaddr*>(&to.addr),
                         to.len) == static_cast<ssize_t>(wire.size()));
    }
    /// One datagram within 5 s (empty on timeout).
    std::vector<std::uint8_t> receive() const {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 5000) != 1) return {};
        std::array<std::uint8_t, 600> buf{};
        const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
        if (n <= 0) return {};
        return {buf.begin(), buf.begin() + n};
    }
};

/// Drains `s` until it keeps a query or 5 s pass.
bool wait_pending(WakeSocket& s) {
    return eventually([&] {
        s.drain();
        return s.pending();
    });
}

}  // namespace

TEST_CASE("SweepGate: one anchor at a time; enter only while anchored", "[sweep]") {
    int a = 0;
    int b = 0;
    SweepGate gate;
    int token1 = 0;
    int token2 = 0;
    CHECK_FALSE(gate.anchored());
    CHECK_FALSE(gate.enter().has_value());
    CHECK_FALSE(gate.anchor(&token1, CacheTables{}));  // no message cache: nothing to sweep
    REQUIRE(gate.anchor(&token1, fake_tables(a, b)));
    CHECK(gate.anchored());
    CHECK_FALSE(gate.anchor(&token2, fake_tables(a, b)));
    gate.release(&token2);  // not the anchor: no effect
    CHECK(gate.anchored());
    CHECK_FALSE(gate.revoked());

    const auto t = gate.enter();
    REQUIRE(t.has_value());
    CHECK(t->msg == reinterpret_cast<slabhash*>(&a));
    CHECK(t->rrset == reinterpret_cast<rrset_cache*>(&b));
    CHECK_FALSE(gate.enter().has_value());  // one user at a time
    gate.leave();

    gate.release(&token1);
    CHECK_FALSE(gate.anchored());
    CHECK(gate.revoked());
    CHECK_FALSE(gate.enter().has_value());  // the caches may be gone now

    REQUIRE(gate.anchor(&token2, fake_tables(a, b)));  // a new anchor
    CHECK_FALSE(gate.revoked());
    CHECK(gate.enter().has_value());
    gate.leave();
    gate.release(&token2);
}

TEST_CASE("SweepGate: release waits until the sweeper has left", "[sweep]") {
    int a = 0;
    int b = 0;
    SweepGate gate;
    int token = 0;
    REQUIRE(gate.anchor(&token, fake_tables(a, b)));
    REQUIRE(gate.enter().has_value());  // the sweeper uses the caches

    std::atomic<bool> returned{false};
    std::thread releaser([&] {
        gate.release(&token);  // e.g. Unbound's main thread deleting the worker
        returned = true;
    });
    // The releaser is inside release() once it revoked the anchor; it must
    // not come back while the sweeper is still in.
    REQUIRE(eventually([&] { return gate.revoked(); }));
    CHECK_FALSE(returned.load());
    CHECK_FALSE(gate.anchored());
    gate.leave();  // the sweeper notices revoked() and leaves
    releaser.join();
    CHECK(returned.load());
}

TEST_CASE("WakeSocket: keeps the latest wake-up query and answers it", "[sweep]") {
    WakeSocket s;
    REQUIRE(s.open(AF_INET));
    REQUIRE(s.fd() >= 0);
    REQUIRE(s.address().len == sizeof(sockaddr_in));
    sockaddr_in sin{};
    std::memcpy(&sin, &s.address().addr, sizeof sin);
    CHECK(ntohl(sin.sin_addr.s_addr) == INADDR_LOOPBACK);
    CHECK(ntohs(sin.sin_port) != 0);
    CHECK_FALSE(s.pending());
    s.answer();  // nothing kept: no-op

    Client c;
    SECTION("with EDNS") {
        const auto q = wake_query(true);
        c.send(s.address(), q);
        REQUIRE(wait_pending(s));
        s.answer();
        CHECK_FALSE(s.pending());
        const auto r = c.receive();
        const std::size_t question_end = q.size() - 11;
        REQUIRE(r.size() == question_end + 11);
        CHECK(r[0] == 0x12);
        CHECK(r[1] == 0x34);
        CHECK((r[2] & 0x80) != 0);  // QR
        CHECK((r[3] & 0x0f) == 0);  // NOERROR
        CHECK(r[5] == 1);           // one question ...
        CHECK(r[7] == 0);           // ... no answer
        CHECK(r[11] == 1);          // OPT echoed
        CHECK(std::equal(q.begin() + 12, q.begin() + static_cast<long>(question_end),
                         r.begin() + 12));
        CHECK(r[question_end + 2] == 41);
    }
    SECTION("without EDNS") {
        c.send(s.address(), wake_query(false));
        REQUIRE(wait_pending(s));
        s.answer();
        const auto r = c.receive();
        REQUIRE(r.size() == wake_query(false).size());
        CHECK(r[11] == 0);
    }
    SECTION("other names and responses are ignored") {
        auto other = wake_query(false);
        other[other.size() - 10] = 'X';  // a letter of "internal" changed -> another suffix
        c.send(s.address(), other);
        auto response = wake_query(false);
        response[2] = 0x80;  // QR: not a query
        c.send(s.address(), response);
        c.send(s.address(), {1, 2, 3});
        // A valid query sent last is kept once the ones before were read.
        c.send(s.address(), wake_query(false, "w8"));
        REQUIRE(wait_pending(s));
        s.answer();
        const auto r = c.receive();
        REQUIRE(r.size() > 14);
        CHECK(r[13] == 'w');
        CHECK(r[14] == '8');
    }
}
