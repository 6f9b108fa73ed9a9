// Helpers of the dnsfw-xfrd unit tests: temporary stores, hand-built
// configurations, request builders and response parsers (ldns), and a
// loopback server that runs a Responder for real DNS tools (kdig, dig,
// nsupdate, knotd).
#pragma once

#include <catch2/catch.hpp>

#include "rpz/rpz.hpp"
#include "store/store.hpp"
#include "tools/xfrd/config.hpp"
#include "tools/xfrd/serve.hpp"
#include "tools/xfrd/serve_wire.hpp"
#include "tools/xfrd/tsig.hpp"

#include <ldns/ldns.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace xfrd_test {

using namespace dnsfw;
namespace fs = std::filesystem;
namespace wire = dnsfw::xfrd::wire;

/// A fresh directory under the system temp dir, removed with its contents.
struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "dnsfw-xfrd-test-XXXXXX").string();
        REQUIRE(mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string sub(const std::string& name) const { return (path / name).string(); }
};

inline rpz::Name name(std::string_view text) {
    auto n = rpz::name_from_text(text);
    REQUIRE(n.has_value());
    return *n;
}

inline store::Store open_store(const std::string& dir) {
    store::OpenOptions o;
    o.read_only = false;
    o.create = true;
    o.map_size = std::size_t{64} << 20;
    return store::Store::open(dir, o);
}

/// Parses `text` as policy zone `zone` and stores it (replace_zone).
inline rpz::Zone load_zone(store::Store& st, std::string_view zone, std::string_view text) {
    rpz::Zone z = rpz::parse_zone_text(text, "test", name(zone), rpz::InputFormat::Rpz);
    st.replace_zone(z);
    return z;
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path);
    REQUIRE(in.good());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline xfrd::TsigKey make_key(const std::string& key_name, const std::string& algorithm,
                              const std::string& secret_text) {
    xfrd::TsigKey k;
    k.name = key_name;
    k.algorithm = *xfrd::canonical_tsig_algorithm(algorithm);
    // Tests use printable secrets; the base64 form is for tools.
    k.secret.assign(secret_text.begin(), secret_text.end());
    static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (std::size_t i = 0; i < secret_text.size(); i += 3) {
        unsigned v = static_cast<unsigned char>(secret_text[i]) << 16;
        if (i + 1 < secret_text.size()) v |= static_cast<unsigned char>(secret_text[i + 1]) << 8;
        if (i + 2 < secret_text.size()) v |= static_cast<unsigned char>(secret_text[i + 2]);
        out += tbl[(v >> 18) & 63];
        out += tbl[(v >> 12) & 63];
        out += i + 1 < secret_text.size() ? tbl[(v >> 6) & 63] : '=';
        out += i + 2 < secret_text.size() ? tbl[v & 63] : '=';
    }
    k.secret_base64 = out;
    return k;
}

inline sockaddr_storage addr(const std::string& ip, std::uint16_t port) {
    sockaddr_storage ss{};
    if (ip.find(':') != std::string::npos) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        REQUIRE(inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr) == 1);
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        REQUIRE(inet_pton(AF_INET, ip.c_str(), &a->sin_addr) == 1);
    }
    return ss;
}

/// A record from presentation text ("www.example. 300 IN A 192.0.2.1").
inline rpz::ZoneRecord rr(const std::string& text) {
    ldns_rr* r = nullptr;
    REQUIRE(ldns_rr_new_frm_str(&r, text.c_str(), 3600, nullptr, nullptr) == LDNS_STATUS_OK);
    auto rec = wire::zone_record_from_ldns(r);
    ldns_rr_free(r);
    REQUIRE(rec.has_value());
    return *rec;
}

/// A query: `qname` `qtype`, optionally with an authority SOA (IXFR).
inline std::vector<std::uint8_t> query(std::string_view qname, std::uint16_t qtype,
                                       std::uint16_t id = 0x1234,
                                       const rpz::ZoneRecord* authority = nullptr,
                                       std::uint8_t opcode = wire::kOpcodeQuery) {
    wire::MessageBuilder mb(id, static_cast<std::uint16_t>(opcode << 11));
    mb.question(name(qname), qtype, wire::kClassIn);
    if (authority)
        mb.add(opcode == wire::kOpcodeNotify ? wire::MessageBuilder::Section::Answer
                                             : wire::MessageBuilder::Section::Authority,
               authority->owner, authority->type, wire::kClassIn, authority->ttl, authority->rdata);
    return mb.finish();
}

/// One RR of an UPDATE request: class and record (rdata may be empty).
struct UpdRr {
    std::uint16_t cls;
    rpz::ZoneRecord rec;
};
/// An UPDATE of zone `zone`: prerequisites and updates.
inline std::vector<std::uint8_t> update(std::string_view zone, const std::vector<UpdRr>& pre,
                                        const std::vector<UpdRr>& upd, std::uint16_t id = 0x4242) {
    wire::MessageBuilder mb(id, static_cast<std::uint16_t>(wire::kOpcodeUpdate << 11));
    mb.question(name(zone), wire::kTypeSoa, wire::kClassIn);
    for (const auto& p : pre)
        mb.add(wire::MessageBuilder::Section::Answer, p.rec.owner, p.rec.type, p.cls, p.rec.ttl,
               p.rec.rdata);
    for (const auto& u : upd)
        mb.add(wire::MessageBuilder::Section::Authority, u.rec.owner, u.rec.type, u.cls, u.rec.ttl,
               u.rec.rdata);
    return mb.finish();
}
/// A record with no rdata and TTL 0 (class ANY/NONE prerequisites, deletes).
inline rpz::ZoneRecord bare(std::string_view owner, std::uint16_t type) {
    return rpz::ZoneRecord{name(owner), type, 0, {}};
}
inline rpz::ZoneRecord ttl0(rpz::ZoneRecord r) {
    r.ttl = 0;
    return r;
}

/// A parsed response.
struct Parsed {
    std::uint16_t id = 0;
    std::uint8_t rcode = 0;
    std::uint8_t opcode = 0;
    bool aa = false;
    bool tc = false;
    std::size_t qdcount = 0;
    std::vector<rpz::ZoneRecord> answer;
    std::vector<rpz::ZoneRecord> authority;
};

inline Parsed parse(const std::vector<std::uint8_t>& msg) {
    ldns_pkt* p = nullptr;
    REQUIRE(ldns_wire2pkt(&p, msg.data(), msg.size()) == LDNS_STATUS_OK);
    Parsed out;
    out.id = ldns_pkt_id(p);
    out.rcode = static_cast<std::uint8_t>(ldns_pkt_get_rcode(p));
    out.opcode = static_cast<std::uint8_t>(ldns_pkt_get_opcode(p));
    out.aa = ldns_pkt_aa(p);
    out.tc = ldns_pkt_tc(p);
    out.qdcount = ldns_pkt_qdcount(p);
    auto take = [](ldns_rr_list* l, std::vector<rpz::ZoneRecord>& v) {
        for (std::size_t i = 0; l && i < ldns_rr_list_rr_count(l); ++i) {
            auto rec = wire::zone_record_from_ldns(ldns_rr_list_rr(l, i));
            REQUIRE(rec.has_value());
            v.push_back(*rec);
        }
    };
    take(ldns_pkt_answer(p), out.answer);
    take(ldns_pkt_authority(p), out.authority);
    ldns_pkt_free(p);
    return out;
}

/// Collected log lines ("LEVEL zone NAME: text").
struct LogSink {
    std::vector<std::string> lines;
    std::mutex mutex;
    xfrd::LogFn fn() {
        return [this](std::string_view level, const std::string& line) {
            std::lock_guard<std::mutex> lk(mutex);
            lines.push_back(std::string(level) + " " + line);
        };
    }
    bool contains(std::string_view needle) {
        std::lock_guard<std::mutex> lk(mutex);
        for (const auto& l : lines)
            if (l.find(needle) != std::string::npos) return true;
        return false;
    }
    std::string all() {
        std::lock_guard<std::mutex> lk(mutex);
        std::string s;
        for (const auto& l : lines) s += l + "\n";
        return s;
    }
};

/// All messages of an Outcome: `messages` then the stream's.
inline std::vector<std::vector<std::uint8_t>> drain(xfrd::Outcome& o) {
    std::vector<std::vector<std::uint8_t>> out = o.messages;
    if (o.stream) {
        std::vector<std::uint8_t> m;
        while (o.stream->next(m)) out.push_back(m);
    }
    return out;
}

/// Runs a shell command, returning its exit status and output (stdout+stderr).
inline std::pair<int, std::string> run(const std::string& cmd) {
    std::string out;
    FILE* f = popen((cmd + " 2>&1").c_str(), "r");
    REQUIRE(f != nullptr);
    char buf[4096];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    const int st = pclose(f);
    return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

/// Whether an executable exists on PATH (or as an absolute path).
inline bool have_program(const std::string& prog) {
    return run("command -v " + prog + " >/dev/null").first == 0;
}

/// A loopback DNS server (UDP and TCP on one port) answering with a
/// Responder on its own thread. Stop with the destructor.
class LoopbackServer {
  public:
    LoopbackServer(xfrd::Responder& responder, const std::string& ip = "127.0.0.1")
        : responder_(responder) {
        const sockaddr_storage any = addr(ip, 0);
        const socklen_t len = any.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
        tcp_ = socket(any.ss_family, SOCK_STREAM, 0);
        REQUIRE(tcp_ >= 0);
        int one = 1;
        setsockopt(tcp_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        REQUIRE(bind(tcp_, reinterpret_cast<const sockaddr*>(&any), len) == 0);
        REQUIRE(listen(tcp_, 16) == 0);
        sockaddr_storage bound{};
        socklen_t blen = sizeof bound;
        REQUIRE(getsockname(tcp_, reinterpret_cast<sockaddr*>(&bound), &blen) == 0);
        port_ = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
        udp_ = socket(any.ss_family, SOCK_DGRAM, 0);
        REQUIRE(udp_ >= 0);
        REQUIRE(bind(udp_, reinterpret_cast<const sockaddr*>(&bound), blen) == 0);
        REQUIRE(pipe(stop_) == 0);
        thread_ = std::thread([this] { loop(); });
    }
    ~LoopbackServer() {
        (void)!write(stop_[1], "x", 1);
        thread_.join();
        close(tcp_);
        close(udp_);
        close(stop_[0]);
        close(stop_[1]);
    }
    std::uint16_t port() const { return port_; }
    /// Requests handled so far.
    int handled() const { return handled_.load(); }

  private:
    static bool read_all(int fd, std::uint8_t* p, std::size_t n) {
        while (n > 0) {
            pollfd pf{fd, POLLIN, 0};
            if (poll(&pf, 1, 10000) <= 0) return false;
            const ssize_t r = read(fd, p, n);
            if (r <= 0) return false;
            p += r;
            n -= static_cast<std::size_t>(r);
        }
        return true;
    }
    static bool write_all(int fd, const std::uint8_t* p, std::size_t n) {
        while (n > 0) {
            const ssize_t r = write(fd, p, n);
            if (r <= 0) return false;
            p += r;
            n -= static_cast<std::size_t>(r);
        }
        return true;
    }
    static bool send_tcp(int fd, const std::vector<std::uint8_t>& m) {
        std::uint8_t len[2] = {static_cast<std::uint8_t>(m.size() >> 8),
                               static_cast<std::uint8_t>(m.size())};
        return write_all(fd, len, 2) && write_all(fd, m.data(), m.size());
    }
    void serve_tcp(int fd, const sockaddr_storage& peer) {
        // Requests on one connection until the client closes it.
        while (true) {
            std::uint8_t len[2];
            if (!read_all(fd, len, 2)) break;
            std::vector<std::uint8_t> req(static_cast<std::size_t>((len[0] << 8) | len[1]));
            if (!read_all(fd, req.data(), req.size())) break;
            auto o = responder_.handle(req, peer, true);
            ++handled_;
            bool ok = true;
            for (const auto& m : o.messages) ok = ok && send_tcp(fd, m);
            if (o.stream) {
                std::vector<std::uint8_t> m;
                while (ok && o.stream->next(m)) ok = send_tcp(fd, m);
            }
            if (!ok) break;
        }
        close(fd);
    }
    void loop() {
        pollfd fds[3] = {{tcp_, POLLIN, 0}, {udp_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
        while (true) {
            if (poll(fds, 3, -1) < 0) continue;
            if (fds[2].revents) return;
            if (fds[0].revents & POLLIN) {
                sockaddr_storage peer{};
                socklen_t plen = sizeof peer;
                const int fd = accept(tcp_, reinterpret_cast<sockaddr*>(&peer), &plen);
                if (fd >= 0) serve_tcp(fd, peer);
            }
            if (fds[1].revents & POLLIN) {
                sockaddr_storage peer{};
                socklen_t plen = sizeof peer;
                std::vector<std::uint8_t> buf(65535);
                const ssize_t n = recvfrom(udp_, buf.data(), buf.size(), 0,
                                           reinterpret_cast<sockaddr*>(&peer), &plen);
                if (n > 0) {
                    buf.resize(static_cast<std::size_t>(n));
                    auto o = responder_.handle(buf, peer, false);
                    ++handled_;
                    for (const auto& m : o.messages)
                        sendto(udp_, m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&peer),
                               plen);
                }
            }
        }
    }

    xfrd::Responder& responder_;
    int tcp_ = -1, udp_ = -1;
    int stop_[2] = {-1, -1};
    std::uint16_t port_ = 0;
    std::atomic<int> handled_{0};
    std::thread thread_;
};

/// Sends `request` over TCP to ip:port and reads response messages until
/// `done(message)` says the response is complete (or 10 s pass).
template <typename Done>
std::vector<std::vector<std::uint8_t>> tcp_exchange(const std::string& ip, std::uint16_t port,
                                                    const std::vector<std::uint8_t>& request,
                                                    Done&& done) {
    const sockaddr_storage sa = addr(ip, port);
    const int fd = socket(sa.ss_family, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    REQUIRE(connect(fd, reinterpret_cast<const sockaddr*>(&sa),
                    sa.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6)) == 0);
    std::vector<std::uint8_t> framed{static_cast<std::uint8_t>(request.size() >> 8),
                                     static_cast<std::uint8_t>(request.size())};
    framed.insert(framed.end(), request.begin(), request.end());
    REQUIRE(write(fd, framed.data(), framed.size()) == static_cast<ssize_t>(framed.size()));
    std::vector<std::vector<std::uint8_t>> out;
    auto read_n = [&](std::uint8_t* p, std::size_t n) {
        while (n > 0) {
            pollfd pf{fd, POLLIN, 0};
            if (poll(&pf, 1, 10000) <= 0) return false;
            const ssize_t r = read(fd, p, n);
            if (r <= 0) return false;
            p += r;
            n -= static_cast<std::size_t>(r);
        }
        return true;
    };
    while (true) {
        std::uint8_t len[2];
        if (!read_n(len, 2)) break;
        std::vector<std::uint8_t> m(static_cast<std::size_t>((len[0] << 8) | len[1]));
        if (!read_n(m.data(), m.size())) break;
        out.push_back(m);
        if (done(out.back())) break;
    }
    close(fd);
    return out;
}

/// Counts SOA records in a message's answer (end of a transfer: the second).
inline std::size_t soa_count(const std::vector<std::uint8_t>& msg) {
    std::size_t n = 0;
    for (const auto& r : parse(msg).answer)
        if (r.type == wire::kTypeSoa) ++n;
    return n;
}

inline const std::string kXfrSecret = "transfer-secret-0123456789abcdef";
inline const std::string kUpdSecret = "update-secret-0123456789abcdefgh";

/// records.rpz: every trigger kind and local-data type, zone rpz.example.
inline std::string records_text() {
    return read_file(std::string(DNSFW_TEST_DATA_DIR) + "/rpz/records.rpz");
}

/// A zone text with `n` extra QNAME rules (to span several messages).
inline std::string big_zone_text(std::size_t n, std::uint32_t serial = 42) {
    std::string s = "$TTL 300\n@ 3600 IN SOA ns.rpz.example. hostmaster.rpz.example. " +
                    std::to_string(serial) + " 3600 600 86400 60\n@ NS ns.example.\n";
    for (std::size_t i = 0; i < n; ++i)
        s += "host" + std::to_string(i) + ".blocked-domain-number-" + std::to_string(i) +
             ".example CNAME .\n";
    s += "data.example A 192.0.2.1\ndata.example A 192.0.2.2\n";
    return s;
}

/// The test world: a store with zone rpz.example, a configuration, a Responder.
struct World {
    TempDir dir;
    store::Store st;
    xfrd::Config config;
    LogSink log;
    std::unique_ptr<xfrd::Responder> responder;

    explicit World(std::string_view zone_text) : st(open_store(dir.sub("store"))) {
        load_zone(st, "rpz.example", zone_text);
        config.store = dir.sub("store");
        config.keys["xfr-key."] = make_key("xfr-key.", "hmac-sha256", kXfrSecret);
        config.keys["upd-key."] = make_key("upd-key.", "hmac-sha512", kUpdSecret);
        xfrd::ZoneConfig z;
        z.name = "rpz.example.";
        z.apex = name("rpz.example");
        z.allow_transfer = {dnsfw::xfrd::parse_acl("127.0.0.0/8 key xfr-key"),
                            dnsfw::xfrd::parse_acl("192.0.2.7")};
        z.allow_notify = {dnsfw::xfrd::parse_acl("192.0.2.9")};
        z.allow_update = {dnsfw::xfrd::parse_acl("127.0.0.1 key upd-key")};
        config.zones.push_back(z);
        xfrd::ZoneConfig sec;  // a secondary zone: content from its primary
        sec.name = "secondary.rpz.";
        sec.apex = name("secondary.rpz");
        sec.primaries = {dnsfw::xfrd::parse_endpoint("127.0.0.5:5301", 53),
                         dnsfw::xfrd::parse_endpoint("127.0.0.6:5301 key xfr-key", 53)};
        sec.allow_update = {dnsfw::xfrd::parse_acl("127.0.0.0/8")};
        sec.allow_transfer = {dnsfw::xfrd::parse_acl("127.0.0.0/8")};
        config.zones.push_back(sec);
        responder = std::make_unique<xfrd::Responder>(st, config, log.fn());
    }

    xfrd::Outcome ask(const std::vector<std::uint8_t>& req, const std::string& ip = "127.0.0.1",
                      bool tcp = true) {
        return responder->handle(req, addr(ip, 5353), tcp);
    }

    std::vector<rpz::Rule> stored_rules(const std::string& zone = "rpz.example.") {
        std::vector<rpz::Rule> out;
        auto snap = st.snapshot({zone});
        REQUIRE(snap->zone_count() == 1);
        snap->for_each_rule(
            0, [&](rpz::Trigger t, std::span<const std::uint8_t> k, const rpz::RuleView& v) {
                rpz::Rule r = v.to_rule();
                r.trigger = t;
                r.key.assign(k.begin(), k.end());
                out.push_back(std::move(r));
            });
        return out;
    }
    std::uint32_t serial() { return st.zone("rpz.example")->serial; }
};

inline xfrd::TsigKey xfr_key() {
    return make_key("xfr-key.", "hmac-sha256", kXfrSecret);
}
inline xfrd::TsigKey upd_key() {
    return make_key("upd-key.", "hmac-sha512", kUpdSecret);
}

/// Applies zone text `text` to the stored zone as one delta (serial from the text).
inline void push_text(World& w, const std::string& text) {
    const auto old_rules = w.stored_rules();
    rpz::Zone z = rpz::parse_zone_text(text, "push", name("rpz.example"), rpz::InputFormat::Rpz);
    store::ZoneDelta d;
    d.zone = "rpz.example.";
    d.from_serial = w.serial();
    d.to_serial = z.serial;
    d.soa_ttl = z.soa_ttl;
    d.soa_rdata = z.soa_rdata;
    d.changes = rpz::diff_rules(name("rpz.example"), old_rules, z.rules);
    w.st.apply_delta(d);
}

inline std::string with_serial(std::string text, std::uint32_t from, std::uint32_t to) {
    const std::string a = " " + std::to_string(from) + " 3600",
                      b = " " + std::to_string(to) + " 3600";
    text.replace(text.find(a), a.size(), b);
    return text;
}

}  // namespace xfrd_test
