// Unit tests for the hit log (module/hitlog.hpp): queue, JSON, writer
// thread, rotation.
#include <catch2/catch.hpp>

#include "module/hitlog.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

using namespace dnsfw::module;
namespace fs = std::filesystem;

namespace {

HitRecord sample(std::string_view qname = "bad.example", std::uint16_t port = 53124) {
    HitRecord r;
    r.time_ns = 1796314248LL * 1'000'000'000 + 123'000'000;  // 2026-12-03T16:10:48.123Z
    r.qtype = 1;
    r.port = port;
    r.family = 4;
    REQUIRE(inet_pton(AF_INET, "127.0.0.1", r.address.data()) == 1);
    r.transport = HitTransport::Udp;
    r.trigger = dnsfw::rpz::Trigger::Qname;
    r.action = dnsfw::rpz::Action::Nxdomain;
    auto q = dnsfw::rpz::name_from_text(qname);
    REQUIRE(q);
    std::memcpy(r.qname.data(), q->data(), q->size());
    r.qname_len = static_cast<std::uint16_t>(q->size());
    dnsfw::rpz::NameKey k;
    REQUIRE(dnsfw::rpz::make_name_key(*dnsfw::rpz::name_from_text("bad.example"), k));
    std::memcpy(r.key.data(), k.bytes.data(), k.size);
    r.key[k.size] = 1;
    r.key[k.size + 1] = '*';
    r.key_len = static_cast<std::uint16_t>(k.size + 2);
    const std::string zone = "threat.rpz.";
    std::memcpy(r.zone.data(), zone.data(), zone.size());
    r.zone_len = static_cast<std::uint16_t>(zone.size());
    return r;
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::size_t count_lines(const fs::path& p) {
    const std::string s = read_file(p);
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

/// Polls `cond` until it holds or 5 s pass (no sleeps as synchronisation).
template <typename F>
bool eventually(F&& cond, std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (cond()) return true;
        std::this_thread::yield();
    }
    return cond();
}

struct TempDir {
    fs::path path;
    TempDir() {
        path = fs::temp_directory_path() /
               ("dnsfw-hitlog-test-" + std::to_string(::getpid()) + "-" +
                std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST_CASE("a hit record formats as the documented JSON line", "[module][hitlog]") {
    std::string out;
    append_hit_json(out, sample());
    CHECK(out ==
          "{\"time\":\"2026-12-03T16:10:48.123Z\",\"client\":\"127.0.0.1\",\"port\":53124,"
          "\"transport\":\"udp\",\"qname\":\"bad.example.\",\"match\":\"bad.example.\","
          "\"qtype\":\"A\",\"zone\":\"threat.rpz.\","
          "\"trigger\":\"qname\",\"rule\":\"*.bad.example\",\"action\":\"nxdomain\"}\n");

    HitRecord v6 = sample("x.bad.example");
    v6.family = 6;
    REQUIRE(inet_pton(AF_INET6, "::1", v6.address.data()) == 1);
    v6.transport = HitTransport::Tcp;
    v6.action = dnsfw::rpz::Action::Passthru;
    out.clear();
    append_hit_json(out, v6);
    CHECK(out.find("\"client\":\"::1\",\"port\":53124,\"transport\":\"tcp\"") != std::string::npos);
    CHECK(out.find("\"action\":\"passthru\"") != std::string::npos);

    HitRecord none = sample();
    none.family = 0;
    out.clear();
    append_hit_json(out, none);
    CHECK(out.find("\"client\":null,\"port\":null") != std::string::npos);

    // Escapes in names stay valid JSON: \ and " are escaped.
    HitRecord odd = sample();
    const std::uint8_t q[] = {3, 'a', '"', 'b', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0};
    std::memcpy(odd.qname.data(), q, sizeof q);
    odd.qname_len = sizeof q;
    out.clear();
    append_hit_json(out, odd);
    CHECK(out.find("\"qname\":\"a\\\\\\\"b.example.\"") != std::string::npos);
}

TEST_CASE("the matched name (CNAME chain link) is logged as match", "[module][hitlog]") {
    // Two links of one chain hit the same wildcard: only "match" tells the
    // lines apart.
    std::string lines[2];
    const char* links[2] = {"c1.bad.example", "c2.bad.example"};
    for (int i = 0; i < 2; ++i) {
        HitRecord r = sample("chain.bad.example");
        r.disabled = true;
        const auto link = dnsfw::rpz::name_from_text(links[i]);
        REQUIRE(link);
        std::memcpy(r.match.data(), link->data(), link->size());
        r.match_len = static_cast<std::uint16_t>(link->size());
        append_hit_json(lines[i], r);
    }
    CHECK(lines[0].find("\"qname\":\"chain.bad.example.\",\"match\":\"c1.bad.example.\",") !=
          std::string::npos);
    CHECK(lines[1].find("\"qname\":\"chain.bad.example.\",\"match\":\"c2.bad.example.\",") !=
          std::string::npos);
    CHECK(lines[0].find("\"rule\":\"*.bad.example\",\"action\":\"disabled:nxdomain\"") !=
          std::string::npos);
    CHECK(lines[0] != lines[1]);
}

TEST_CASE("IP-trigger rules print as prefixes; DISABLED matches as disabled:<action>",
          "[module][hitlog]") {
    HitRecord r = sample();
    r.trigger = dnsfw::rpz::Trigger::ResponseIp;
    const auto prefix = dnsfw::rpz::prefix_from_text("192.0.2.0/24");
    REQUIRE(prefix);
    dnsfw::rpz::IpKey key;
    dnsfw::rpz::make_ip_key(*prefix, key);
    std::memcpy(r.key.data(), key.bytes.data(), key.bytes.size());
    r.key_len = static_cast<std::uint16_t>(key.bytes.size());
    std::string out;
    append_hit_json(out, r);
    CHECK(out.find("\"trigger\":\"response-ip\",\"rule\":\"192.0.2.0/24\",\"action\":\"nxdomain\"") !=
          std::string::npos);

    r.trigger = dnsfw::rpz::Trigger::ClientIp;
    const auto v6 = dnsfw::rpz::prefix_from_text("2001:db8::/32");
    REQUIRE(v6);
    dnsfw::rpz::make_ip_key(*v6, key);
    std::memcpy(r.key.data(), key.bytes.data(), key.bytes.size());
    r.disabled = true;
    out.clear();
    append_hit_json(out, r);
    CHECK(out.find("\"trigger\":\"client-ip\",\"rule\":\"2001:db8::/32\",\"action\":\"disabled:nxdomain\"") !=
          std::string::npos);
}

TEST_CASE("the queue is FIFO, bounded, and counts drops", "[module][hitlog]") {
    HitQueue q(4);
    CHECK(q.capacity() == 4);
    for (std::uint16_t i = 0; i < 4; ++i) CHECK(q.try_push(sample("bad.example", i)));
    CHECK_FALSE(q.try_push(sample()));
    CHECK(q.dropped() == 1);
    HitRecord r;
    for (std::uint16_t i = 0; i < 4; ++i) {
        REQUIRE(q.try_pop(r));
        CHECK(r.port == i);
    }
    CHECK_FALSE(q.try_pop(r));
    CHECK(q.try_push(sample()));  // space again after popping
}

TEST_CASE("the queue loses nothing with concurrent producers", "[module][hitlog]") {
    HitQueue q(1024);
    constexpr int kThreads = 4;
    constexpr int kPerThread = 20000;
    std::atomic<int> pushed{0};
    std::vector<std::thread> producers;
    // Built here: Catch2's assertions (inside sample()) are not thread-safe.
    const HitRecord proto = sample();
    for (int t = 0; t < kThreads; ++t) {
        producers.emplace_back([&, t] {
            HitRecord r = proto;
            for (int i = 0; i < kPerThread; ++i) {
                r.port = static_cast<std::uint16_t>(t);
                r.qtype = static_cast<std::uint16_t>(i & 0xffff);
                while (!q.try_push(r)) std::this_thread::yield();
                pushed.fetch_add(1);
            }
        });
    }
    std::vector<int> next(kThreads, 0);
    int popped = 0;
    HitRecord r;
    bool in_order = true;
    while (popped < kThreads * kPerThread) {
        if (!q.try_pop(r)) {
            std::this_thread::yield();
            continue;
        }
        // Per producer, records arrive in the order they were pushed.
        in_order = in_order && r.qtype == (next[r.port] & 0xffff);
        ++next[r.port];
        ++popped;
    }
    for (auto& t : producers) t.join();
    CHECK(in_order);
    CHECK(popped == kThreads * kPerThread);
    CHECK_FALSE(q.try_pop(r));
}

TEST_CASE("the writer appends lines promptly and flushes at shutdown", "[module][hitlog]") {
    TempDir dir;
    const fs::path file = dir.path / "hits.jsonl";
    {
        HitLog log(file.string(), nullptr);
        REQUIRE(log.push(sample()));
        // Written without a shutdown: tests wait for the line with a deadline.
        CHECK(eventually([&] { return count_lines(file) == 1; }, std::chrono::milliseconds(1000)));
        for (int i = 0; i < 500; ++i) log.push(sample());
    }
    CHECK(count_lines(file) == 501);
}

TEST_CASE("an unwritable path is reported with the path", "[module][hitlog]") {
    try {
        HitLog log("/nonexistent-dir/hits.jsonl", nullptr);
        FAIL("no exception");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("hit-log /nonexistent-dir/hits.jsonl: cannot open") == 0);
    }
}

TEST_CASE("a rotated file is reopened", "[module][hitlog]") {
    TempDir dir;
    const fs::path file = dir.path / "hits.jsonl";
    const fs::path rotated = dir.path / "hits.jsonl.1";
    HitLog log(file.string(), nullptr);
    log.push(sample("one.bad.example"));
    REQUIRE(eventually([&] { return count_lines(file) == 1; }));
    fs::rename(file, rotated);
    // Keep logging until a line shows up in a new file at the old path
    // (the writer checks the path's inode about once a second).
    bool reopened = eventually(
        [&] {
            log.push(sample("two.bad.example"));
            std::this_thread::sleep_for(std::chrono::milliseconds(20));  // pacing, not sync
            return fs::exists(file) && count_lines(file) >= 1;
        },
        std::chrono::milliseconds(5000));
    CHECK(reopened);
    CHECK(read_file(rotated).find("one.bad.example.") != std::string::npos);
    CHECK(read_file(file).find("two.bad.example.") != std::string::npos);
}

TEST_CASE("drops are reported through the sink at shutdown", "[module][hitlog]") {
    TempDir dir;
    std::mutex m;
    std::vector<std::string> messages;
    {
        HitLog log((dir.path / "hits.jsonl").string(),
                   [&](LogLevel, const std::string& msg) {
                       std::lock_guard<std::mutex> lock(m);
                       messages.push_back(msg);
                   },
                   2);
        // Fill faster than the writer drains: some pushes must fail.
        int failed = 0;
        for (int i = 0; i < 100000 && failed == 0; ++i) failed += log.push(sample()) ? 0 : 1;
        CHECK(failed > 0);
        CHECK(log.dropped() >= 1);
    }
    std::lock_guard<std::mutex> lock(m);
    REQUIRE_FALSE(messages.empty());
    CHECK(messages.back().find("records dropped") != std::string::npos);
    CHECK(messages.back().find("(at shutdown)") != std::string::npos);
}
