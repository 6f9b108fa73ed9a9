// Unit tests for dnsfw::rpz::evaluate and MemoryRuleSource.
#include <catch2/catch.hpp>

#include "rpz/rpz.hpp"

#include <algorithm>
#include <string>
#include <vector>

using namespace dnsfw::rpz;

namespace {

Name name(std::string_view text) {
    auto n = name_from_text(text);
    REQUIRE(n.has_value());
    return *n;
}

Zone zone(std::string_view apex, std::string_view text) {
    Zone z = parse_zone_text(text, std::string(apex), name(apex), InputFormat::Rpz);
    for (const auto& d : z.diagnostics) UNSCOPED_INFO(d.to_string());
    REQUIRE(z.diagnostics.empty());
    return z;
}

Decision eval(const RuleSource& src, std::string_view qname) {
    Name q = name(qname);
    Query query;
    query.qname = q;
    query.qtype = 1;
    return evaluate(src, query);  // the Decision does not point into q
}

std::string matched_key(const Decision& d) { return name_key_to_text(d.key.view()); }

/// Wraps a source to count probes and cap the wildcard depth.
class CountingSource final : public RuleSource {
public:
    CountingSource(const RuleSource& inner, std::size_t depth) : inner_(inner), depth_(depth) {}
    std::size_t zone_count() const noexcept override { return inner_.zone_count(); }
    std::size_t max_wildcard_depth(std::size_t, Trigger) const noexcept override { return depth_; }
    std::optional<RuleView> find(std::size_t z, Trigger t,
                                 std::span<const std::uint8_t> key) const noexcept override {
        ++probes;
        return inner_.find(z, t, key);
    }
    mutable std::size_t probes = 0;

private:
    const RuleSource& inner_;
    std::size_t depth_;
};

}  // namespace

TEST_CASE("evaluate: exact, wildcard and no match", "[rpz][evaluate]") {
    MemoryRuleSource src({zone("rpz", "bad.example CNAME .\n"
                                      "*.bad.example CNAME *.\n"
                                      "*.wild.example CNAME rpz-drop.\n")});
    Decision d = eval(src, "bad.example");
    CHECK(d.matched);
    CHECK_FALSE(d.wildcard);
    CHECK(d.action() == Action::Nxdomain);
    CHECK(matched_key(d) == "bad.example");

    d = eval(src, "a.b.bad.example");
    CHECK(d.matched);
    CHECK(d.wildcard);
    CHECK(d.action() == Action::Nodata);
    CHECK(matched_key(d) == "*.bad.example");

    // A wildcard does not match the name it hangs off.
    d = eval(src, "wild.example");
    CHECK_FALSE(d.matched);
    CHECK_FALSE(d.rule.has_value());
    CHECK(d.action() == Action::Passthru);
    CHECK(eval(src, "x.wild.example").action() == Action::Drop);

    CHECK_FALSE(eval(src, "example").matched);
    CHECK_FALSE(eval(src, "notbad.example").matched);
    CHECK_FALSE(eval(src, "bad.example.org").matched);
    CHECK_FALSE(eval(src, ".").matched);
}

TEST_CASE("evaluate: qname case does not matter", "[rpz][evaluate]") {
    MemoryRuleSource src({zone("rpz", "bad.example CNAME .\n*.wild.example CNAME .\n")});
    CHECK(eval(src, "BAD.Example").matched);
    const std::uint8_t upper[] = {3, 'B', 'A', 'D', 7, 'E', 'X', 'A', 'M', 'P', 'L', 'E', 0};
    Query q;
    q.qname = upper;  // name_from_text folds case; this wire name is raw upper case
    CHECK(evaluate(src, q).matched);
    const std::uint8_t wild[] = {1, 'X', 4, 'W', 'I', 'L', 'D', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0};
    q.qname = wild;
    CHECK(evaluate(src, q).wildcard);
}

TEST_CASE("evaluate: precedence", "[rpz][evaluate]") {
    SECTION("exact before wildcard in the same zone") {
        MemoryRuleSource src({zone("rpz", "*.example CNAME .\nwww.example CNAME rpz-drop.\n")});
        CHECK(eval(src, "www.example").action() == Action::Drop);
        CHECK(eval(src, "ftp.example").action() == Action::Nxdomain);
    }
    SECTION("longer wildcard before shorter") {
        MemoryRuleSource src({zone("rpz", "*.example CNAME .\n*.sub.example CNAME *.\n")});
        Decision d = eval(src, "a.b.sub.example");
        CHECK(d.action() == Action::Nodata);
        CHECK(matched_key(d) == "*.sub.example");
        CHECK(eval(src, "sub.example").action() == Action::Nxdomain);  // via *.example
        CHECK(eval(src, "a.other.example").action() == Action::Nxdomain);
    }
    SECTION("earlier zone wins, even with a wildcard over a later exact match") {
        Zone first = zone("one", "*.example CNAME rpz-tcp-only.\n");
        Zone second = zone("two", "www.example CNAME .\nonly.two CNAME .\n");
        MemoryRuleSource src({first, second});
        CHECK(src.zone_count() == 2);
        Decision d = eval(src, "www.example");
        CHECK(d.zone == 0);
        CHECK(d.action() == Action::TcpOnly);
        d = eval(src, "only.two");
        CHECK(d.zone == 1);
        CHECK(d.action() == Action::Nxdomain);
    }
    SECTION("PASSTHRU stops evaluation") {
        Zone allow = zone("allow", "good.example CNAME rpz-passthru.\n");
        Zone block = zone("block", "good.example CNAME .\n*.example CNAME .\n");
        MemoryRuleSource src({allow, block});
        Decision d = eval(src, "good.example");
        CHECK(d.matched);
        CHECK(d.zone == 0);
        CHECK(d.action() == Action::Passthru);
        CHECK(eval(src, "other.example").action() == Action::Nxdomain);
        CHECK(eval(src, "other.example").zone == 1);
    }
}

TEST_CASE("evaluate: local data rule is returned intact", "[rpz][evaluate]") {
    MemoryRuleSource src({zone("rpz", "host.example 60 A 192.0.2.7\n")});
    Decision d = eval(src, "host.example");
    REQUIRE(d.rule.has_value());
    CHECK(d.action() == Action::LocalData);
    Rule r = d.rule->to_rule();
    REQUIRE(r.records.size() == 1);
    CHECK(r.records[0] == LocalRecord{1, 60, {192, 0, 2, 7}});
}

TEST_CASE("evaluate: malformed qnames never match", "[rpz][evaluate]") {
    MemoryRuleSource src({zone("rpz", "*.example CNAME .\n")});
    Query q;
    const std::uint8_t truncated[] = {1, 'a', 7, 'e', 'x', 'a', 'm'};
    q.qname = truncated;
    CHECK_FALSE(evaluate(src, q).matched);
    const std::uint8_t pointer[] = {1, 'a', 0xc0, 0x0c};
    q.qname = pointer;
    CHECK_FALSE(evaluate(src, q).matched);
    q.qname = {};
    CHECK_FALSE(evaluate(src, q).matched);
}

TEST_CASE("evaluate: wildcard probes are bounded by max_wildcard_depth", "[rpz][evaluate]") {
    MemoryRuleSource mem({zone("rpz", "*.a.b.c CNAME .\n*.c CNAME *.\n")});
    SECTION("unbounded: one exact + every ancestor but the root") {
        CountingSource src(mem, kMaxNameWire);
        CHECK(eval(src, "q.x.y.z").matched == false);
        CHECK(src.probes == 1 + 3);
    }
    SECTION("depth 1 skips the deeper wildcard") {
        CountingSource src(mem, 1);
        Decision d = eval(src, "w.a.b.c");
        CHECK(d.action() == Action::Nodata);  // *.a.b.c has a 3-label parent: not probed
        CHECK(matched_key(d) == "*.c");
        CHECK(src.probes == 2);
    }
    SECTION("depth 3 finds the longest") {
        CountingSource src(mem, 3);
        CHECK(eval(src, "w.a.b.c").action() == Action::Nxdomain);
        CHECK(src.probes == 2);
    }
    SECTION("depth 0: exact probes only") {
        CountingSource src(mem, 0);
        CHECK_FALSE(eval(src, "w.a.b.c").matched);
        CHECK(src.probes == 1);
    }
}

TEST_CASE("MemoryRuleSource: lookups by zone, trigger and key", "[rpz][evaluate]") {
    Zone z = zone("rpz", "b.example CNAME .\na.example CNAME rpz-drop.\n");
    MemoryRuleSource src({z});
    NameKey k;
    REQUIRE(make_name_key(name("a.example"), k));
    auto r = src.find(0, Trigger::Qname, k.view());
    REQUIRE(r.has_value());
    CHECK(r->action() == Action::Drop);
    CHECK_FALSE(src.find(1, Trigger::Qname, k.view()).has_value());
    CHECK_FALSE(src.find(0, Trigger::NsDname, k.view()).has_value());
    REQUIRE(make_name_key(name("example"), k));  // a key prefix is not a match
    CHECK_FALSE(src.find(0, Trigger::Qname, k.view()).has_value());
    MemoryRuleSource empty({});
    CHECK(empty.zone_count() == 0);
    CHECK_FALSE(eval(empty, "a.example").matched);
}

namespace {

/// Wraps a source to record every IP-trigger probe (address and prefix length).
class IpProbeSource final : public RuleSource {
public:
    explicit IpProbeSource(const RuleSource& inner) : inner_(inner) {}
    std::size_t zone_count() const noexcept override { return inner_.zone_count(); }
    std::optional<RuleView> find(std::size_t z, Trigger t,
                                 std::span<const std::uint8_t> key) const noexcept override {
        if (is_ip_trigger(t)) {
            if (auto p = prefix_from_ip_key(key)) probes.push_back(to_string(*p));
        }
        return inner_.find(z, t, key);
    }
    const ZonePolicy& policy(std::size_t z) const noexcept override { return inner_.policy(z); }
    std::uint64_t trigger_rule_count(std::size_t z, Trigger t) const noexcept override {
        return inner_.trigger_rule_count(z, t);
    }
    const std::bitset<129>& prefix_lengths(std::size_t z, Trigger t) const noexcept override {
        return inner_.prefix_lengths(z, t);
    }
    mutable std::vector<std::string> probes;

private:
    const RuleSource& inner_;
};

struct SkipRecorder final : TraceSink {
    void step(const TraceStep& s) noexcept override {
        if (s.outcome == TraceStep::Outcome::Skipped) skips.emplace_back(s.why);
    }
    std::vector<std::string> skips;
};

}  // namespace

TEST_CASE("evaluate: IPv4 addresses are not probed at IPv6-only prefix lengths",
          "[rpz][evaluate]") {
    // Lengths present: 128 (the IPv4 /32) and 48 (an IPv6 /48). An IPv4
    // address at /48 would be the key ::/48 — meaningless (such a prefix
    // covering IPv4 is refused at load).
    MemoryRuleSource mem({zone("rpz", "32.1.2.0.192.rpz-ip CNAME rpz-drop.\n"
                                      "48.zz.bad.db8.2001.rpz-ip CNAME .\n")});
    IpProbeSource src(mem);
    Name q = name("q.example");
    Query query;
    query.qname = q;
    query.qtype = 1;

    SECTION("IPv4 only: probed at /32 only, the short lengths skipped in the trace") {
        const IpAddress v4[] = {*ip_from_text("192.0.2.9")};
        ResponseFacts facts;
        facts.answer_ips = v4;
        SkipRecorder trace;
        CHECK_FALSE(evaluate(src, query, &facts, &trace).matched);
        CHECK(src.probes == std::vector<std::string>{"192.0.2.9/32"});
        CHECK(std::count_if(trace.skips.begin(), trace.skips.end(), [](const std::string& w) {
                  return w.find("IPv4 address") != std::string::npos;
              }) == 1);
    }
    SECTION("IPv4 and IPv6: the IPv6 address still matches at /48") {
        const IpAddress ips[] = {*ip_from_text("192.0.2.9"), *ip_from_text("2001:db8:bad::5")};
        ResponseFacts facts;
        facts.answer_ips = ips;
        const Decision d = evaluate(src, query, &facts, nullptr);
        REQUIRE(d.matched);
        CHECK(d.trigger == Trigger::ResponseIp);
        REQUIRE(d.prefix.has_value());
        CHECK(to_string(*d.prefix) == "2001:db8:bad::/48");
        CHECK(src.probes == std::vector<std::string>{"192.0.2.9/32", "2001:db8:bad::5/128",
                                                     "2001:db8:bad::/48"});
    }
    SECTION("the IPv4 rule itself still matches") {
        const IpAddress v4[] = {*ip_from_text("192.0.2.1")};
        ResponseFacts facts;
        facts.answer_ips = v4;
        const Decision d = evaluate(src, query, &facts, nullptr);
        REQUIRE(d.matched);
        CHECK(d.action() == Action::Drop);
    }
}
