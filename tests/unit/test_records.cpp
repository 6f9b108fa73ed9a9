// Unit tests for dnsfw::rpz zone records: rule_owner, classify_owner,
// rule_records, zone_from_records, diff_rules, apply_records.
#include <catch2/catch.hpp>

#include "rpz/rpz.hpp"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

using namespace dnsfw::rpz;

namespace Catch {
template <>
struct StringMaker<ZoneRecord> {
    static std::string convert(const ZoneRecord& r) {
        std::string out = name_to_text(r.owner) + " " + std::to_string(r.ttl) + " TYPE" +
                          std::to_string(r.type) + " [";
        for (std::uint8_t b : r.rdata) out += std::to_string(b) + " ";
        return out + "]";
    }
};
}  // namespace Catch

namespace {

const std::string kData = DNSFW_TEST_DATA_DIR "/";
const std::string kHagezi = "/work/shared/data/rpz/hagezi-tif.normal.2023-09-19.rpz";
const std::string kHageziLight = "/work/shared/data/rpz/hagezi-tif.light.2023-09-19.rpz";

Name name(std::string_view text) {
    auto n = name_from_text(text);
    REQUIRE(n.has_value());
    return *n;
}

std::vector<std::uint8_t> qkey(std::string_view text) {
    const bool wildcard = text.starts_with("*.");
    NameKey k;
    REQUIRE(make_name_key(name(wildcard ? text.substr(2) : text), k));
    std::vector<std::uint8_t> out(k.view().begin(), k.view().end());
    if (wildcard) out.insert(out.end(), {1, '*'});
    return out;
}

std::vector<std::uint8_t> ipkey(std::string_view prefix) {
    auto p = prefix_from_text(prefix);
    REQUIRE(p.has_value());
    return ip_key(*p);
}

ZoneRecord rr(std::string_view owner, std::uint16_t type, std::uint32_t ttl,
              std::vector<std::uint8_t> rdata) {
    return ZoneRecord{name(owner), type, ttl, std::move(rdata)};
}

ZoneRecord cname(std::string_view owner, std::string_view target, std::uint32_t ttl = 300) {
    return rr(owner, 5, ttl, name(target));
}

ZoneRecord a(std::string_view owner, std::string_view ip, std::uint32_t ttl = 300) {
    auto addr = ip_from_text(ip);
    REQUIRE(addr.has_value());
    REQUIRE(addr->is_v4());
    return rr(owner, 1, ttl, {addr->bytes.begin() + 12, addr->bytes.end()});
}

std::size_t count_severity(const std::vector<Diagnostic>& ds, Diagnostic::Severity sev) {
    return static_cast<std::size_t>(std::count_if(
        ds.begin(), ds.end(), [sev](const Diagnostic& d) { return d.severity == sev; }));
}

std::string all_text(const std::vector<Diagnostic>& ds) {
    std::string out;
    for (const auto& d : ds) out += d.to_string() + "\n";
    return out;
}

/// Every rule of `z`, written as records and read back one by one, is equal
/// to itself; and the whole zone's records (SOA first) read back as the zone.
void check_round_trip(const Zone& z) {
    // Plain comparisons in the loop (a feed has 100,000+ rules); the first
    // failing rule is reported.
    std::size_t failures = 0;
    std::string first_failure;
    for (const Rule& r : z.rules) {
        const auto rrs = rule_records(z.name, r);
        Zone back = zone_from_records(z.name, rrs, "round-trip");
        bool ok = !rrs.empty() && back.rules.size() == 1 && back.rules[0] == r &&
                  count_severity(back.diagnostics, Diagnostic::Severity::Error) == 0;
        // Every record's owner classifies back to the rule's key.
        for (const ZoneRecord& x : rrs) {
            auto k = classify_owner(z.name, x.owner);
            ok = ok && k.has_value() && k->trigger == r.trigger && k->key == r.key;
        }
        if (!ok && failures++ == 0)
            first_failure = rule_owner_text(r.trigger, r.key) + "\n" + all_text(back.diagnostics);
    }
    INFO("first failing rule: " << first_failure);
    CHECK(failures == 0);
    std::vector<ZoneRecord> all;
    all.push_back(ZoneRecord{z.name, 6, z.soa_ttl, z.soa_rdata});
    for (const Rule& r : z.rules) {
        auto rrs = rule_records(z.name, r);
        all.insert(all.end(), rrs.begin(), rrs.end());
    }
    Zone whole = zone_from_records(z.name, all, "whole");
    CHECK(whole.serial == z.serial);
    CHECK(whole.soa_ttl == z.soa_ttl);
    CHECK(whole.soa_rdata == z.soa_rdata);
    REQUIRE(whole.rules.size() == z.rules.size());
    CHECK(whole.rules == z.rules);
}

/// A rule lookup over a rule vector, for apply_records' `current`.
struct RuleMap {
    std::map<std::pair<Trigger, std::vector<std::uint8_t>>, Rule> rules;
    explicit RuleMap(const std::vector<Rule>& v) {
        for (const Rule& r : v) rules[{r.trigger, r.key}] = r;
    }
    std::optional<Rule> operator()(const RuleKey& k) const {
        auto it = rules.find({k.trigger, k.key});
        if (it == rules.end()) return std::nullopt;
        return it->second;
    }
    void apply(const RuleDelta& d) {
        for (const RuleKey& k : d.removed) rules.erase({k.trigger, k.key});
        for (const Rule& r : d.upserted) rules[{r.trigger, r.key}] = r;
    }
    std::vector<Rule> sorted() const {
        std::vector<Rule> out;
        for (const auto& [k, r] : rules) out.push_back(r);
        return out;
    }
};

}  // namespace

TEST_CASE("rule_owner: every trigger", "[rpz][records]") {
    const Name apex = name("RPZ.Example");
    CHECK(rule_owner(apex, Trigger::Qname, qkey("www.example.com")) ==
          name("www.example.com.rpz.example"));
    CHECK(rule_owner(apex, Trigger::Qname, qkey("*.example.com")) ==
          name("*.example.com.rpz.example"));
    CHECK(rule_owner(apex, Trigger::ResponseIp, ipkey("10.0.0.0/8")) ==
          name("8.0.0.0.10.rpz-ip.rpz.example"));
    CHECK(rule_owner(apex, Trigger::ClientIp, ipkey("192.0.2.1")) ==
          name("32.1.2.0.192.rpz-client-ip.rpz.example"));
    CHECK(rule_owner(apex, Trigger::NsIp, ipkey("2001:db8::/32")) ==
          name("32.zz.db8.2001.rpz-nsip.rpz.example"));
    CHECK(rule_owner(apex, Trigger::NsDname, qkey("ns.evil.test")) ==
          name("ns.evil.test.rpz-nsdname.rpz.example"));
    CHECK(rule_owner(apex, Trigger::NsDname, qkey("*.evil.test")) ==
          name("*.evil.test.rpz-nsdname.rpz.example"));

    CHECK_THROWS_AS(rule_owner(apex, Trigger::Qname, {}), std::invalid_argument);
    CHECK_THROWS_AS(rule_owner(apex, Trigger::Qname, std::vector<std::uint8_t>{5, 'a'}),
                    std::invalid_argument);
    CHECK_THROWS_AS(rule_owner(apex, Trigger::ResponseIp, qkey("x.test")), std::invalid_argument);
    // 4 x 63-octet labels + the apex: longer than 255 octets.
    const std::string l63(63, 'a');
    CHECK_THROWS_AS(rule_owner(apex, Trigger::Qname,
                               qkey(l63 + "." + l63 + "." + l63 + "." + std::string(50, 'b'))),
                    std::invalid_argument);
}

TEST_CASE("classify_owner: keys and refusals", "[rpz][records]") {
    const Name apex = name("rpz.example");
    auto k = classify_owner(apex, name("WWW.Example.com.RPZ.example"));
    REQUIRE(k.has_value());
    CHECK(k->trigger == Trigger::Qname);
    CHECK(k->key == qkey("www.example.com"));
    k = classify_owner(apex, name("128.1.zz.rpz-ip.rpz.example"));
    REQUIRE(k.has_value());
    CHECK(k->trigger == Trigger::ResponseIp);
    CHECK(k->key == ipkey("::1"));
    k = classify_owner(apex, name("*.bad.rpz-nsdname.rpz.example"));
    REQUIRE(k.has_value());
    CHECK(k->trigger == Trigger::NsDname);
    CHECK(k->key == qkey("*.bad"));

    auto refused = [&](std::string_view owner, std::string_view reason) {
        std::string why;
        INFO(owner);
        CHECK_FALSE(classify_owner(apex, name(owner), &why).has_value());
        INFO(why);
        CHECK(why.find(reason) != std::string::npos);
    };
    refused("x.other.example", "outside zone");
    refused("rpz.example", "apex");
    refused("*.rpz.example", "every name");
    refused("a.*.b.rpz.example", "leftmost");
    refused("x.rpz-foo.rpz.example", "unknown rpz- trigger");
    refused("24.1.2.0.192.rpz-ip.rpz.example", "");          // bits beyond the prefix
    refused("128.1.0.0.0.0.0.0.0.rpz-ip.rpz.example", "canonical");
    refused("rpz-ip.rpz.example", "no address");
    refused("*.rpz-nsdname.rpz.example", "every name server");
}

TEST_CASE("rule_records: the RPZ encoding of each action", "[rpz][records]") {
    const Name apex = name("rpz.example");
    Rule r;
    r.trigger = Trigger::Qname;
    r.key = qkey("bad.test");
    r.ttl = 77;
    const std::vector<std::pair<Action, std::string_view>> cases = {
        {Action::Nxdomain, "."},
        {Action::Nodata, "*."},
        {Action::Passthru, "rpz-passthru."},
        {Action::Drop, "rpz-drop."},
        {Action::TcpOnly, "rpz-tcp-only."}};
    for (const auto& [action, target] : cases) {
        r.action = action;
        auto rrs = rule_records(apex, r);
        REQUIRE(rrs.size() == 1);
        CHECK(rrs[0] == cname("bad.test.rpz.example", target, 77));
    }
    // *.suffix CNAME target: stored as the suffix, written with the '*'.
    r.action = Action::LocalData;
    r.flags = kCnameWildcardTarget;
    r.records = {LocalRecord{5, 60, name("garden.test")}};
    auto rrs = rule_records(apex, r);
    REQUIRE(rrs.size() == 1);
    CHECK(rrs[0] == cname("bad.test.rpz.example", "*.garden.test", 60));
}

TEST_CASE("Round trip: every trigger, action and local-data kind", "[rpz][records]") {
    const Name apex = name("rpz.example");
    Zone z = parse_zone_file(kData + "rpz/records.rpz", apex, InputFormat::Rpz);
    INFO(all_text(z.diagnostics));
    CHECK(count_severity(z.diagnostics, Diagnostic::Severity::Error) == 0);
    REQUIRE(z.rules.size() == 31);
    // The data covers what it claims to.
    std::set<Trigger> triggers;
    std::set<Action> actions;
    bool wildcard_target = false;
    bool ipv6 = false;
    std::set<std::uint16_t> types;
    for (const Rule& r : z.rules) {
        triggers.insert(r.trigger);
        actions.insert(r.action);
        wildcard_target |= (r.flags & kCnameWildcardTarget) != 0;
        if (is_ip_trigger(r.trigger)) ipv6 |= !prefix_from_ip_key(r.key)->addr.is_v4();
        for (const auto& rec : r.records) types.insert(rec.type);
    }
    CHECK(triggers.size() == 5);
    CHECK(actions.size() == 6);
    CHECK(wildcard_target);
    CHECK(ipv6);
    CHECK(types == std::set<std::uint16_t>{1, 5, 12, 13, 15, 16, 28, 33, 35, 257});
    check_round_trip(z);
}

TEST_CASE("Round trip: the other test zones", "[rpz][records]") {
    for (const auto& [file, zone] :
         std::vector<std::pair<std::string, std::string>>{
             {"rpz/actions.rpz", "rpz.example"},
             {"rpz/problems.rpz", "rpz.example"},
             {"integration/primary.rpz", "primary.rpz"},
             {"integration/secondary.rpz", "secondary.rpz"},
             {"integration/update-v2.rpz", "update.rpz"}}) {
        INFO(file);
        Zone z = parse_zone_file(kData + file, name(zone), InputFormat::Rpz);
        REQUIRE(!z.rules.empty());
        check_round_trip(z);
    }
}

TEST_CASE("Round trip: the real hagezi feed", "[rpz][records][feed]") {
    if (!std::filesystem::exists(kHagezi)) {
        WARN("feed file missing: " << kHagezi);
        return;
    }
    const Name apex = name("tif.rpz");
    Zone z = parse_zone_file(kHagezi, apex, InputFormat::Rpz);
    REQUIRE(z.rules.size() == 116008);
    check_round_trip(z);
}

TEST_CASE("zone_from_records: the same validation as the parser", "[rpz][records]") {
    const Name apex = name("rpz.example");
    const std::string text =
        "$TTL 300\n"
        "@ 3600 SOA ns.rpz.example. hostmaster.rpz.example. 9 3600 600 86400 60\n"
        "@ 3600 NS ns.example.\n"
        "Mixed.Case.example CNAME Target.Example.\n"
        "mx.example MX 10 MAIL.Example.COM.\n"
        "outside.example. CNAME .\n"
        "* CNAME .\n"
        "x.rpz-foo CNAME .\n"
        "24.1.2.0.192.rpz-ip CNAME .\n"
        "dup.example CNAME .\n"
        "dup.example CNAME rpz-drop.\n"
        "weird.example CNAME rpz-unknown.\n"
        "sub.example SOA ns.rpz.example. hostmaster.rpz.example. 9 3600 600 86400 60\n";
    Zone parsed = parse_zone_text(text, "file", apex, InputFormat::Rpz);
    // The same RRs on the wire: upper case, as a primary may send them.
    std::vector<ZoneRecord> rrs = {
        rr("RPZ.example", 6, 3600,
           [&] {
               auto v = name("NS.rpz.example");
               auto h = name("hostmaster.rpz.example");
               v.insert(v.end(), h.begin(), h.end());
               for (std::uint32_t x : {9u, 3600u, 600u, 86400u, 60u})
                   for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<std::uint8_t>(x >> s));
               return v;
           }()),
        rr("rpz.example", 2, 3600, name("ns.example")),
        rr("Mixed.Case.example.rpz.example", 5, 300, name("Target.Example")),
        rr("mx.example.rpz.example", 15, 300,
           [&] {
               std::vector<std::uint8_t> v = {0, 10};
               auto n = name("MAIL.Example.COM");
               v.insert(v.end(), n.begin(), n.end());
               return v;
           }()),
        cname("outside.example", "."),
        cname("*.rpz.example", "."),
        cname("x.rpz-foo.rpz.example", "."),
        cname("24.1.2.0.192.rpz-ip.rpz.example", "."),
        cname("dup.example.rpz.example", "."),
        cname("dup.example.rpz.example", "rpz-drop."),
        cname("weird.example.rpz.example", "rpz-unknown."),
    };
    Zone z = zone_from_records(apex, rrs, "axfr");
    INFO(all_text(z.diagnostics));
    CHECK(z.serial == 9);
    CHECK(z.rules == parsed.rules);
    REQUIRE(z.rules.size() == 3);
    // Names in CNAME/MX rdata are lower-cased, as the parser stores them.
    CHECK(z.rules[0].records.empty() == false);
    // One diagnostic per bad record, same severity as the parser's, naming label:index.
    CHECK(count_severity(z.diagnostics, Diagnostic::Severity::Error) ==
          count_severity(parsed.diagnostics, Diagnostic::Severity::Error) - 1);  // -1: SOA below apex not sent
    CHECK(count_severity(z.diagnostics, Diagnostic::Severity::Warning) ==
          count_severity(parsed.diagnostics, Diagnostic::Severity::Warning));
    for (const auto& d : z.diagnostics) CHECK(d.file == "axfr");
    auto at = [&](std::size_t line) {
        for (const auto& d : z.diagnostics)
            if (d.line == line) return d.message;
        return std::string();
    };
    CHECK(at(5).find("outside zone") != std::string::npos);
    CHECK(at(6).find("every name") != std::string::npos);
    CHECK(at(7).find("unknown rpz- trigger") != std::string::npos);
    CHECK(at(8).find("invalid Response-IP owner") != std::string::npos);
    CHECK(at(10).find("conflicting policy") != std::string::npos);
    CHECK(at(11).find("unknown special CNAME target") != std::string::npos);
}

TEST_CASE("zone_from_records: malformed wire records are reported, others load",
          "[rpz][records]") {
    const Name apex = name("rpz.example");
    std::vector<ZoneRecord> rrs = {
        rr("a4.example.rpz.example", 1, 300, {192, 0, 2, 1, 9}),       // A with 5 octets
        rr("a6.example.rpz.example", 28, 300, {1, 2, 3}),              // AAAA with 3
        rr("mx.example.rpz.example", 15, 300, {0}),                    // MX cut short
        rr("cn.example.rpz.example", 5, 300, {3, 'a', 'b'}),           // CNAME name unterminated
        rr("txt.example.rpz.example", 16, 300, {5, 'a'}),              // TXT string too long
        ZoneRecord{{3, 'b', 'a'}, 5, 300, {0}},                        // owner unterminated
        rr("zero.example.rpz.example", 0, 300, {}),                    // type 0
        rr("sig.example.rpz.example", 46, 300, {1, 2, 3}),             // RRSIG: ignored
        a("good.example.rpz.example", "192.0.2.7"),
        rr("srv.example.rpz.example", 33, 300,
           [] {
               std::vector<std::uint8_t> v = {0, 1, 0, 2, 1, 187};
               v.insert(v.end(), {6, 'T', 'a', 'r', 'g', 'e', 't', 0});
               return v;
           }()),
    };
    Zone z = zone_from_records(apex, rrs, "ixfr");
    INFO(all_text(z.diagnostics));
    REQUIRE(z.rules.size() == 2);
    CHECK(z.rules[0].key == qkey("srv.example"));  // "\3srv" sorts before "\4good"
    CHECK(z.rules[1].key == qkey("good.example"));
    CHECK(z.rules[0].records.at(0).rdata.back() == 0);
    CHECK(z.rules[0].records.at(0).rdata[7] == 't');  // SRV target lower-cased by ldns
    CHECK(count_severity(z.diagnostics, Diagnostic::Severity::Error) == 7);
    CHECK(count_severity(z.diagnostics, Diagnostic::Severity::Warning) == 1);
    for (std::size_t line = 1; line <= 8; ++line) {
        INFO("record " << line);
        CHECK(std::count_if(z.diagnostics.begin(), z.diagnostics.end(),
                            [&](const Diagnostic& d) { return d.line == line; }) == 1);
    }
}

TEST_CASE("diff_rules: added, removed, changed, minimal RR change", "[rpz][records]") {
    const Name apex = name("rpz.example");
    Zone v1 = parse_zone_text("$TTL 300\na.test CNAME .\n"
                              "b.test CNAME .\n"
                              "c.test A 192.0.2.1\n"
                              "c.test A 192.0.2.2\n"
                              "d.test CNAME rpz-drop.\n",
                              "v1", apex, InputFormat::Rpz);
    Zone v2 = parse_zone_text("$TTL 300\na.test CNAME .\n"
                              "c.test A 192.0.2.1\n"
                              "c.test A 192.0.2.3\n"
                              "d.test 60 CNAME rpz-drop.\n"
                              "e.test CNAME *.\n",
                              "v2", apex, InputFormat::Rpz);
    RuleDelta d = diff_rules(apex, v1.rules, v2.rules);
    REQUIRE(d.removed.size() == 1);
    CHECK(d.removed[0].key == qkey("b.test"));
    REQUIRE(d.upserted.size() == 3);  // c (records), d (TTL), e (new)
    CHECK(d.upserted[0].key == qkey("c.test"));
    CHECK(d.upserted[1].key == qkey("d.test"));
    CHECK(d.upserted[2].key == qkey("e.test"));
    // RR form: only what changed; a TTL change is a delete plus an add.
    CHECK(d.removed_records ==
          std::vector<ZoneRecord>{cname("b.test.rpz.example", "."),
                                  a("c.test.rpz.example", "192.0.2.2"),
                                  cname("d.test.rpz.example", "rpz-drop.")});
    CHECK(d.added_records == std::vector<ZoneRecord>{a("c.test.rpz.example", "192.0.2.3"),
                                                     cname("d.test.rpz.example", "rpz-drop.", 60),
                                                     cname("e.test.rpz.example", "*.")});
    CHECK(diff_rules(apex, v2.rules, v2.rules).empty());
    // Unsorted input is sorted first.
    std::vector<Rule> rev(v2.rules.rbegin(), v2.rules.rend());
    RuleDelta d2 = diff_rules(apex, v1.rules, rev);
    CHECK(d2.upserted == d.upserted);
    CHECK(d2.removed == d.removed);
}

TEST_CASE("diff_rules then apply_records reproduce the new zone (real feeds)",
          "[rpz][records][feed]") {
    if (!std::filesystem::exists(kHagezi) || !std::filesystem::exists(kHageziLight)) {
        WARN("feed files missing");
        return;
    }
    const Name apex = name("tif.rpz");
    Zone light = parse_zone_file(kHageziLight, apex, InputFormat::Rpz);
    Zone normal = parse_zone_file(kHagezi, apex, InputFormat::Rpz);
    RuleDelta d = diff_rules(apex, light.rules, normal.rules);
    CHECK(!d.empty());
    // The rule-level delta turns light into normal ...
    RuleMap m(light.rules);
    m.apply(d);
    CHECK(m.sorted() == normal.rules);
    // ... and so does its RR form, read back through apply_records (an IXFR).
    RuleMap m2(light.rules);
    std::vector<Diagnostic> diags;
    RuleDelta back = apply_records(apex, d.removed_records, d.added_records, std::cref(m2), "ixfr",
                                   diags);
    INFO(all_text(diags));
    CHECK(diags.empty());
    CHECK(back.removed == d.removed);
    CHECK(back.upserted == d.upserted);
    CHECK(back.removed_records == d.removed_records);
    CHECK(back.added_records == d.added_records);
    m2.apply(back);
    CHECK(m2.sorted() == normal.rules);
}

TEST_CASE("diff_rules then apply_records: every rule kind changed", "[rpz][records]") {
    const Name apex = name("rpz.example");
    Zone z = parse_zone_file(kData + "rpz/records.rpz", apex, InputFormat::Rpz);
    // Mutate: drop every third rule, change every third action, add TTL noise.
    std::vector<Rule> next;
    for (std::size_t i = 0; i < z.rules.size(); ++i) {
        Rule r = z.rules[i];
        if (i % 3 == 0) continue;
        if (i % 3 == 1) {
            if (r.action == Action::LocalData) {
                r.records.push_back(LocalRecord{16, 5, {3, 'n', 'e', 'w'}});
                r.ttl = std::min(r.ttl, std::uint32_t{5});
                if (r.records.front().type == 5) {  // a CNAME rule cannot take more data
                    r.records.pop_back();
                    r.action = Action::Drop;
                    r.flags = 0;
                    r.records.clear();
                }
            } else {
                r.action = r.action == Action::Nxdomain ? Action::Nodata : Action::Nxdomain;
            }
        }
        next.push_back(r);
    }
    Rule extra;
    extra.trigger = Trigger::ResponseIp;
    extra.key = ipkey("2001:db8:ffff::/48");
    extra.action = Action::LocalData;
    extra.flags = kCnameWildcardTarget;
    extra.ttl = 30;
    extra.records = {LocalRecord{5, 30, name("sink.test")}};
    next.push_back(extra);
    std::sort(next.begin(), next.end(), [](const Rule& a, const Rule& b) {
        return std::tie(a.trigger, a.key) < std::tie(b.trigger, b.key);
    });
    RuleDelta d = diff_rules(apex, z.rules, next);
    RuleMap m(z.rules);
    std::vector<Diagnostic> diags;
    RuleDelta back =
        apply_records(apex, d.removed_records, d.added_records, std::cref(m), "ixfr", diags);
    INFO(all_text(diags));
    CHECK(diags.empty());
    CHECK(back.removed == d.removed);
    CHECK(back.upserted == d.upserted);
    m.apply(back);
    CHECK(m.sorted() == next);
}

TEST_CASE("apply_records: the cases an IXFR or UPDATE brings", "[rpz][records]") {
    const Name apex = name("rpz.example");
    Zone z = parse_zone_text("$TTL 300\ndata.test A 192.0.2.1\n"
                             "two.test A 192.0.2.1\n"
                             "two.test A 192.0.2.2\n"
                             "pol.test CNAME .\n"
                             "self.test CNAME self.test.\n"
                             "red.test CNAME walled.garden.\n",
                             "zone", apex, InputFormat::Rpz);
    REQUIRE(z.diagnostics.empty());
    RuleMap m(z.rules);
    std::vector<Diagnostic> diags;

    SECTION("add a record to a local-data owner: merged") {
        RuleDelta d = apply_records(apex, {}, std::vector{a("data.test.rpz.example", "192.0.2.9", 60)},
                                    std::cref(m), "upd", diags);
        CHECK(diags.empty());
        REQUIRE(d.upserted.size() == 1);
        CHECK(d.removed.empty());
        const Rule& r = d.upserted[0];
        CHECK(r.key == qkey("data.test"));
        REQUIRE(r.records.size() == 2);
        CHECK(r.ttl == 60);
        // The RRset takes the added RR's TTL (RFC 2181 5.2): 192.0.2.1 too.
        CHECK(r.records[0].ttl == 60);
        CHECK(r.records[1].ttl == 60);
        CHECK(d.removed_records == std::vector{a("data.test.rpz.example", "192.0.2.1", 300)});
        CHECK(d.added_records == std::vector{a("data.test.rpz.example", "192.0.2.1", 60),
                                             a("data.test.rpz.example", "192.0.2.9", 60)});
    }
    SECTION("mixed TTLs in one RRset: the whole RRset takes the added TTL") {
        // One call (an IXFR sequence) and two calls (two UPDATEs) agree.
        RuleDelta d = apply_records(apex, {},
                                    std::vector{a("ttlmix.test.rpz.example", "192.0.2.1", 300),
                                                a("ttlmix.test.rpz.example", "192.0.2.2", 60)},
                                    std::cref(m), "upd", diags);
        CHECK(diags.empty());
        REQUIRE(d.upserted.size() == 1);
        REQUIRE(d.upserted[0].records.size() == 2);
        CHECK(d.upserted[0].records[0].ttl == 60);
        CHECK(d.upserted[0].records[1].ttl == 60);
        CHECK(d.added_records == std::vector{a("ttlmix.test.rpz.example", "192.0.2.1", 60),
                                             a("ttlmix.test.rpz.example", "192.0.2.2", 60)});

        RuleMap m2(z.rules);
        m2.apply(apply_records(apex, {}, std::vector{a("ttlmix.test.rpz.example", "192.0.2.1", 300)},
                               std::cref(m2), "upd", diags));
        RuleDelta d2 = apply_records(apex, {}, std::vector{a("ttlmix.test.rpz.example", "192.0.2.2", 60)},
                                     std::cref(m2), "upd", diags);
        CHECK(diags.empty());
        REQUIRE(d2.upserted.size() == 1);
        CHECK(d2.upserted[0] == d.upserted[0]);
        CHECK(d2.removed_records == std::vector{a("ttlmix.test.rpz.example", "192.0.2.1", 300)});
        CHECK(d2.added_records == d.added_records);
        // The stored rule round-trips through its RR form.
        Zone back = zone_from_records(apex, rule_records(apex, d2.upserted[0]), "back");
        CHECK(back.diagnostics.empty());
        REQUIRE(back.rules.size() == 1);
        CHECK(back.rules[0] == d2.upserted[0]);
        // Other types at the owner keep their own TTL.
        m2.apply(d2);
        RuleDelta d3 = apply_records(
            apex, {}, std::vector{rr("ttlmix.test.rpz.example", 16, 10, {3, 'a', 'b', 'c'})},
            std::cref(m2), "upd", diags);
        CHECK(diags.empty());
        CHECK(d3.removed_records.empty());
        CHECK(d3.added_records ==
              std::vector{rr("ttlmix.test.rpz.example", 16, 10, {3, 'a', 'b', 'c'})});
    }
    SECTION("remove one of two local-data records") {
        RuleDelta d = apply_records(apex, std::vector{a("two.test.rpz.example", "192.0.2.1")}, {},
                                    std::cref(m), "upd", diags);
        CHECK(diags.empty());
        REQUIRE(d.upserted.size() == 1);
        REQUIRE(d.upserted[0].records.size() == 1);
        CHECK(d.upserted[0].records[0].rdata == std::vector<std::uint8_t>{192, 0, 2, 2});
        CHECK(d.removed_records == std::vector{a("two.test.rpz.example", "192.0.2.1")});
        CHECK(d.added_records.empty());
    }
    SECTION("remove the last record: the rule goes") {
        RuleDelta d = apply_records(apex, std::vector{a("data.test.rpz.example", "192.0.2.1")}, {},
                                    std::cref(m), "upd", diags);
        CHECK(diags.empty());
        CHECK(d.upserted.empty());
        REQUIRE(d.removed.size() == 1);
        CHECK(d.removed[0].key == qkey("data.test"));
    }
    SECTION("remove a policy CNAME, add another action for the owner: replaced") {
        RuleDelta d = apply_records(apex, std::vector{cname("pol.test.rpz.example", ".")},
                                    std::vector{cname("pol.test.rpz.example", "rpz-drop.")},
                                    std::cref(m), "upd", diags);
        CHECK(diags.empty());
        CHECK(d.removed.empty());
        REQUIRE(d.upserted.size() == 1);
        CHECK(d.upserted[0].action == Action::Drop);
        CHECK(d.removed_records == std::vector{cname("pol.test.rpz.example", ".")});
        CHECK(d.added_records == std::vector{cname("pol.test.rpz.example", "rpz-drop.")});
    }
    SECTION("local data replaced by a policy action") {
        RuleDelta d = apply_records(
            apex,
            std::vector{a("two.test.rpz.example", "192.0.2.1"), a("two.test.rpz.example", "192.0.2.2")},
            std::vector{cname("two.test.rpz.example", "*.")}, std::cref(m), "upd", diags);
        CHECK(diags.empty());
        REQUIRE(d.upserted.size() == 1);
        CHECK(d.upserted[0].action == Action::Nodata);
        CHECK(d.upserted[0].records.empty());
    }
    SECTION("the obsolete passthru form deletes the stored passthru rule") {
        RuleDelta d = apply_records(apex, std::vector{cname("self.test.rpz.example", "self.test")},
                                    {}, std::cref(m), "ixfr", diags);
        CHECK(diags.empty());
        REQUIRE(d.removed.size() == 1);
        CHECK(d.removed[0].key == qkey("self.test"));
    }
    SECTION("removing something absent: a warning, nothing changes") {
        RuleDelta d = apply_records(apex,
                                    std::vector{cname("nothere.test.rpz.example", "."),
                                                a("data.test.rpz.example", "192.0.2.99"),
                                                cname("pol.test.rpz.example", "rpz-drop.")},
                                    {}, std::cref(m), "upd", diags);
        CHECK(d.empty());
        CHECK(d.removed_records.empty());
        REQUIRE(diags.size() == 3);
        for (std::size_t i = 0; i < 3; ++i) {
            CHECK(diags[i].severity == Diagnostic::Severity::Warning);
            CHECK(diags[i].line == i + 1);
            CHECK(diags[i].file == "upd");
            CHECK(diags[i].message.find("not in the zone") != std::string::npos);
        }
    }
    SECTION("bad records: errors, skipped; the others are applied") {
        RuleDelta d = apply_records(
            apex, std::vector{cname("x.other.test", ".")},
            std::vector{cname("new.test.rpz.example", "."),
                        cname("*.rpz.example", "."),                       // every name
                        rr("bad.test.rpz.example", 1, 300, {1, 2, 3}),      // malformed A
                        cname("24.1.2.0.192.rpz-ip.rpz.example", "."),     // bits past /24
                        a("pol.test.rpz.example", "192.0.2.5"),            // conflicts with CNAME .
                        a("red.test.rpz.example", "192.0.2.5"),            // CNAME and other data
                        cname("new2.test.rpz.example", "rpz-tcp-only.")},
            std::cref(m), "upd", diags);
        INFO(all_text(diags));
        CHECK(d.removed.empty());
        REQUIRE(d.upserted.size() == 2);
        CHECK(d.upserted[0].key == qkey("new.test"));
        CHECK(d.upserted[1].key == qkey("new2.test"));
        CHECK(d.upserted[1].action == Action::TcpOnly);
        CHECK(count_severity(diags, Diagnostic::Severity::Error) == 6);
        std::vector<std::size_t> lines;
        for (const auto& dg : diags) lines.push_back(dg.line);
        CHECK(lines == std::vector<std::size_t>{1, 3, 4, 5, 6, 7});  // 1 removed + 7 added
        CHECK(d.added_records == std::vector{cname("new.test.rpz.example", "."),
                                             cname("new2.test.rpz.example", "rpz-tcp-only.")});
    }
    SECTION("apex SOA and NS are the caller's: ignored silently") {
        RuleDelta d = apply_records(
            apex, std::vector{rr("rpz.example", 2, 300, name("ns1.example"))},
            std::vector{rr("rpz.example", 2, 300, name("ns2.example")), cname("n.test.rpz.example", ".")},
            std::cref(m), "upd", diags);
        CHECK(diags.empty());
        CHECK(d.upserted.size() == 1);
    }
    SECTION("adding an RR that is there: only its TTL changes") {
        RuleDelta d = apply_records(apex, {}, std::vector{cname("pol.test.rpz.example", ".", 300)},
                                    std::cref(m), "upd", diags);
        CHECK(diags.empty());
        CHECK(d.empty());
        d = apply_records(apex, {}, std::vector{cname("pol.test.rpz.example", ".", 30)},
                          std::cref(m), "upd", diags);
        REQUIRE(d.upserted.size() == 1);
        CHECK(d.upserted[0].ttl == 30);
        CHECK(d.removed_records == std::vector{cname("pol.test.rpz.example", ".", 300)});
        CHECK(d.added_records == std::vector{cname("pol.test.rpz.example", ".", 30)});
    }
    SECTION("a rule whose current() comes back without trigger/key (RuleView::to_rule)") {
        auto bare = [&](const RuleKey& k) -> std::optional<Rule> {
            auto r = m(k);
            if (!r) return r;
            auto v = encode_rule_value(*r);
            return RuleView::parse(v)->to_rule();
        };
        RuleDelta d = apply_records(apex, std::vector{a("two.test.rpz.example", "192.0.2.2")}, {},
                                    bare, "upd", diags);
        CHECK(diags.empty());
        REQUIRE(d.upserted.size() == 1);
        CHECK(d.upserted[0].key == qkey("two.test"));
        CHECK(d.upserted[0].records.size() == 1);
    }
}
