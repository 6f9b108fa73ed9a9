// Unit tests for RPZ precedence and per-zone settings (issue 3): one test per
// precedence rule and per setting, each run through MemoryRuleSource AND a
// real store::Snapshot over an LMDB store in a temporary directory.
#include <catch2/catch.hpp>

#include "rpz/rpz.hpp"
#include "store/store.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

using namespace dnsfw;
using namespace dnsfw::rpz;

namespace {

namespace fs = std::filesystem;

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "dnsfw-prec-test-XXXXXX").string();
        REQUIRE(mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

Name name(std::string_view text) {
    auto n = name_from_text(text);
    REQUIRE(n.has_value());
    return *n;
}

IpAddress ip(std::string_view text) {
    auto a = ip_from_text(text);
    REQUIRE(a.has_value());
    return *a;
}

/// Zone i is named "z<i+1>.rpz"; `texts` are RPZ master-file bodies.
std::vector<Zone> zones_of(const std::vector<std::string>& texts) {
    std::vector<Zone> out;
    for (std::size_t i = 0; i < texts.size(); ++i) {
        const std::string zn = "z" + std::to_string(i + 1) + ".rpz";
        out.push_back(parse_zone_text("$TTL 300\n" + texts[i], zn, name(zn), InputFormat::Rpz));
        INFO(zn << ": " << (out.back().diagnostics.empty() ? "" : out.back().diagnostics[0].to_string()));
        REQUIRE(out.back().diagnostics.empty());
    }
    return out;
}

/// Runs `check(source)` over a MemoryRuleSource and over a store Snapshot
/// holding the same zones and policies.
template <typename F>
void both(const std::vector<std::string>& texts, const std::vector<ZonePolicy>& policies, F&& check) {
    const auto zones = zones_of(texts);
    {
        INFO("source: MemoryRuleSource");
        MemoryRuleSource mem(zones, policies);
        check(static_cast<const RuleSource&>(mem));
    }
    {
        INFO("source: store::Snapshot");
        TempDir tmp;
        store::OpenOptions o;
        o.read_only = false;
        o.create = true;
        o.map_size = std::size_t{16} << 20;
        auto st = store::Store::open((tmp.path / "db").string(), o);
        for (std::size_t i = 0; i < zones.size(); ++i)
            st.replace_zone(zones[i], {},
                            i < policies.size() ? std::optional<ZonePolicy>(policies[i])
                                                : std::nullopt);
        auto snap = st.snapshot();
        REQUIRE(snap->zone_count() == zones.size());
        check(static_cast<const RuleSource&>(*snap));
    }
}

/// One query: name, flags and (if `response`) the resolution facts.
struct Ask {
    std::string qname = "x.example";
    std::optional<std::string> client{};
    bool rd = true;
    bool do_bit = false;
    bool response = false;
    std::vector<std::string> answer{};
    std::vector<std::string> ns{};
    std::vector<std::string> ns_ip{};
    bool signed_answer = false;
};

Decision eval(const RuleSource& src, const Ask& a, TraceSink* trace = nullptr) {
    const Name qn = name(a.qname);
    Query q;
    q.qname = qn;
    q.qtype = 1;
    q.rd = a.rd;
    q.do_bit = a.do_bit;
    if (a.client) q.client = ip(*a.client);
    std::vector<IpAddress> answer, ns_ips;
    for (const auto& s : a.answer) answer.push_back(ip(s));
    for (const auto& s : a.ns_ip) ns_ips.push_back(ip(s));
    std::vector<Name> ns_names;
    for (const auto& s : a.ns) ns_names.push_back(name(s));
    std::vector<std::span<const std::uint8_t>> ns_views(ns_names.begin(), ns_names.end());
    ResponseFacts f;
    f.answer_ips = answer;
    f.ns_names = ns_views;
    f.ns_ips = ns_ips;
    f.answer_signed = a.signed_answer;
    return evaluate(src, q, a.response ? &f : nullptr, trace);
}

Ask response(Ask a) {
    a.response = true;
    return a;
}

}  // namespace

TEST_CASE("precedence 1: the earliest CNAME chain link with a match wins", "[rpz][precedence]") {
    both({"b.example CNAME .\n", "a.example CNAME *.\nc.example CNAME rpz-drop.\n"}, {},
         [](const RuleSource& src) {
             const Name n0 = name("q.example"), n1 = name("c.example"), n2 = name("b.example");
             std::vector<std::span<const std::uint8_t>> links{n0, n1, n2};
             Query q;
             q.qname = n0;
             // c.example (link 1, zone 2) beats b.example (link 2, zone 1):
             // chain position comes before zone order.
             Decision d = evaluate_chain(src, q, links, nullptr);
             REQUIRE(d.matched);
             CHECK(d.link == 1);
             CHECK(d.zone == 1);
             CHECK(d.action() == Action::Drop);
             const Name m0 = name("a.example");
             std::vector<std::span<const std::uint8_t>> links2{m0, n2};
             d = evaluate_chain(src, q, links2, nullptr);
             CHECK(d.link == 0);
             CHECK(d.action() == Action::Nodata);
             const Name none = name("none.example");
             std::vector<std::span<const std::uint8_t>> links3{n0, none};
             CHECK_FALSE(evaluate_chain(src, q, links3, nullptr).matched);
         });
}

TEST_CASE("precedence 2: zone order beats everything else", "[rpz][precedence]") {
    both({"*.example CNAME .\n8.0.0.0.10.rpz-ip CNAME rpz-drop.\n",
          "x.example A 192.0.2.1\nw.other CNAME *.\n"},
         {}, [](const RuleSource& src) {
             // A zone-1 wildcard beats a zone-2 exact rule.
             Decision d = eval(src, {.qname = "x.example"});
             CHECK(d.zone == 0);
             CHECK(d.wildcard);
             CHECK(d.action() == Action::Nxdomain);
             // A zone-1 Response-IP rule beats a zone-2 QNAME rule (issue:
             // "zone order beats trigger type"); the query stage says so.
             d = eval(src, {.qname = "w.other"});
             CHECK(d.matched);
             CHECK(d.zone == 1);
             CHECK(d.needs_response_stage);
             d = eval(src, response({.qname = "w.other", .answer = {"10.1.2.3"}}));
             CHECK(d.zone == 0);
             CHECK(d.trigger == Trigger::ResponseIp);
             CHECK(d.action() == Action::Drop);
             CHECK_FALSE(d.needs_response_stage);
         });
}

TEST_CASE("precedence 3: exact before wildcard, more labels before fewer", "[rpz][precedence]") {
    both({"a.b.example CNAME .\n*.b.example CNAME *.\n*.example CNAME rpz-drop.\n"
          "ns.b.example.rpz-nsdname CNAME .\n*.b.example.rpz-nsdname CNAME *.\n"
          "*.example.rpz-nsdname CNAME rpz-drop.\n"},
         {}, [](const RuleSource& src) {
             CHECK(eval(src, {.qname = "a.b.example"}).action() == Action::Nxdomain);
             CHECK(eval(src, {.qname = "c.b.example"}).action() == Action::Nodata);
             CHECK(eval(src, {.qname = "x.c.b.example"}).action() == Action::Nodata);
             CHECK(eval(src, {.qname = "c.example"}).action() == Action::Drop);
             CHECK_FALSE(eval(src, {.qname = "example"}).matched);  // *.x never matches x
             auto ns = [&](std::vector<std::string> names) {
                 return eval(src, response({.qname = "q.test", .ns = std::move(names)}));
             };
             CHECK(ns({"ns.b.example"}).action() == Action::Nxdomain);
             CHECK(ns({"ns2.b.example"}).action() == Action::Nodata);
             CHECK(ns({"ns.c.example"}).action() == Action::Drop);
             // Across NS names too: an exact hit beats a wildcard hit, and a
             // longer wildcard beats a shorter one, whatever the order given.
             CHECK(ns({"ns.c.example", "zz.b.example", "ns.b.example"}).action() == Action::Nxdomain);
             CHECK(ns({"ns.c.example", "zz.b.example"}).action() == Action::Nodata);
         });
}

TEST_CASE("precedence 4: trigger order within a zone", "[rpz][precedence]") {
    both({"32.1.0.0.127.rpz-client-ip CNAME rpz-drop.\n"
          "x.example CNAME .\n"
          "32.1.2.0.192.rpz-ip CNAME *.\n"
          "ns.example.rpz-nsdname CNAME rpz-tcp-only.\n"
          "32.53.0.0.10.rpz-nsip A 127.0.0.53\n"},
         {}, [](const RuleSource& src) {
             Ask a = response({.qname = "x.example",
                               .client = "127.0.0.1",
                               .answer = {"192.0.2.1"},
                               .ns = {"ns.example"},
                               .ns_ip = {"10.0.0.53"}});
             Decision d = eval(src, a);
             CHECK(d.trigger == Trigger::ClientIp);
             CHECK(d.action() == Action::Drop);
             a.client = "127.0.0.2";
             CHECK(eval(src, a).trigger == Trigger::Qname);
             a.qname = "y.example";
             CHECK(eval(src, a).trigger == Trigger::ResponseIp);
             a.answer = {"192.0.2.2"};
             CHECK(eval(src, a).trigger == Trigger::NsDname);
             a.ns = {"other.example"};
             d = eval(src, a);
             CHECK(d.trigger == Trigger::NsIp);
             CHECK(d.action() == Action::LocalData);
             CHECK(d.ip == ip("10.0.0.53"));
             a.ns_ip = {"10.0.0.54"};
             CHECK_FALSE(eval(src, a).matched);
             // At the query stage only Client-IP and QNAME are checked.
             d = eval(src, {.qname = "y.example", .answer = {"192.0.2.1"}});
             CHECK_FALSE(d.matched);
             CHECK(d.needs_response_stage);
         });
}

TEST_CASE("precedence 5: NSDNAME picks the canonically smallest NS name", "[rpz][precedence]") {
    both({"b.ns.example.rpz-nsdname CNAME .\n"
          "ab.ns.example.rpz-nsdname CNAME *.\n"
          "c.ns.example.rpz-nsdname CNAME rpz-drop.\n"},
         {}, [](const RuleSource& src) {
             auto ns = [&](std::vector<std::string> names) {
                 return eval(src, response({.qname = "q.test", .ns = std::move(names)}));
             };
             // "ab" < "b" in canonical order (RFC 4034 6.1), although its
             // name key (length octet first) sorts after.
             Decision d = ns({"c.ns.example", "b.ns.example", "ab.ns.example"});
             CHECK(d.action() == Action::Nodata);
             CHECK(d.ns_index == 2);
             CHECK(ns({"c.ns.example", "b.ns.example"}).action() == Action::Nxdomain);
             CHECK(ns({"B.NS.EXAMPLE", "c.ns.example"}).action() == Action::Nxdomain);
         });
}

TEST_CASE("precedence 6: the longest prefix wins (IPv4 /n counts as /n+96)", "[rpz][precedence]") {
    both({"24.0.2.0.192.rpz-ip CNAME .\n"
          "32.1.2.0.192.rpz-ip CNAME *.\n"
          "1.0.0.0.128.rpz-ip CNAME rpz-tcp-only.\n"
          "16.0.0.16.172.rpz-ip CNAME rpz-drop.\n"
          "8.0.0.0.10.rpz-ip CNAME rpz-drop.\n"
          "32.zz.db8.2001.rpz-ip CNAME .\n"
          "64.zz.1.0.db8.2001.rpz-ip CNAME *.\n"},
         {}, [](const RuleSource& src) {
             auto ans = [&](std::vector<std::string> ips) {
                 return eval(src, response({.qname = "q.test", .answer = std::move(ips)}));
             };
             Decision d = ans({"192.0.2.1"});
             CHECK(d.action() == Action::Nodata);
             REQUIRE(d.prefix);
             CHECK(to_string(*d.prefix) == "192.0.2.1/32");
             CHECK(ans({"192.0.2.2"}).action() == Action::Nxdomain);
             // 10/8 is /104 in IPv6 terms, 128/1 is /97: the longer one wins.
             CHECK(ans({"10.1.2.3"}).action() == Action::Drop);
             CHECK(ans({"172.200.0.1"}).action() == Action::TcpOnly);
             CHECK(ans({"172.16.0.1"}).action() == Action::Drop);  // /112 beats /97
             // Across the answer's addresses, whatever their order.
             CHECK(ans({"10.9.9.9", "192.0.2.1", "192.0.2.7"}).action() == Action::Nodata);
             CHECK(ans({"2001:db8::5", "2001:db8:0:1::5"}).action() == Action::Nodata);
             CHECK(ans({"2001:db8:5::5"}).action() == Action::Nxdomain);
             CHECK_FALSE(ans({"2001:db9::1"}).matched);
             // Client-IP uses the same lookup.
         });
    both({"16.0.0.168.192.rpz-client-ip CNAME .\n24.0.2.168.192.rpz-client-ip CNAME rpz-passthru.\n"},
         {}, [](const RuleSource& src) {
             CHECK(eval(src, {.client = "192.168.2.9"}).action() == Action::Passthru);
             CHECK(eval(src, {.client = "192.168.3.9"}).action() == Action::Nxdomain);
             CHECK_FALSE(eval(src, {.client = "192.169.0.1"}).matched);
             CHECK_FALSE(eval(src, {}).matched);  // no client address known
         });
}

TEST_CASE("precedence 7: equal prefixes, the smaller address wins", "[rpz][precedence]") {
    both({"32.2.2.0.192.rpz-ip CNAME .\n32.1.2.0.192.rpz-ip CNAME *.\n"
          "32.9.2.0.192.rpz-nsip CNAME rpz-drop.\n32.8.2.0.192.rpz-nsip CNAME rpz-tcp-only.\n"},
         {}, [](const RuleSource& src) {
             Decision d = eval(src, response({.answer = {"192.0.2.2", "192.0.2.1"}}));
             CHECK(d.action() == Action::Nodata);
             CHECK(d.ip == ip("192.0.2.1"));
             CHECK(eval(src, response({.answer = {"192.0.2.1", "192.0.2.2"}})).action() ==
                   Action::Nodata);
             CHECK(eval(src, response({.ns_ip = {"192.0.2.9", "192.0.2.8"}})).action() ==
                   Action::TcpOnly);
         });
}

TEST_CASE("passthru is a match and stops evaluation", "[rpz][precedence]") {
    both({"x.example CNAME rpz-passthru.\n", "x.example CNAME .\n"}, {}, [](const RuleSource& src) {
        Decision d = eval(src, {.qname = "x.example"});
        CHECK(d.matched);
        CHECK(d.zone == 0);
        CHECK(d.action() == Action::Passthru);
    });
}

TEST_CASE("setting: policy override disabled logs and continues", "[rpz][settings]") {
    ZonePolicy off;
    off.override = PolicyOverride::Disabled;
    both({"x.example CNAME .\n", "x.example CNAME rpz-passthru.\n", "x.example CNAME rpz-drop.\n"},
         {off, off}, [](const RuleSource& src) {
             Decision d = eval(src, {.qname = "x.example"});
             CHECK(d.zone == 2);
             CHECK(d.action() == Action::Drop);
             REQUIRE(d.n_disabled == 2);
             CHECK(d.disabled_total == 2);
             CHECK(d.disabled[0].zone == 0);
             CHECK(d.disabled[0].rule->action() == Action::Nxdomain);
             CHECK(d.disabled[1].zone == 1);
             CHECK(d.disabled[1].rule->action() == Action::Passthru);  // passthru too
             CHECK_FALSE(eval(src, {.qname = "y.example"}).matched);
         });
}

TEST_CASE("setting: action overrides replace every rule's action", "[rpz][settings]") {
    const std::string zone = "p.example CNAME rpz-passthru.\n"
                             "l.example A 192.0.2.1\n"
                             "n.example CNAME .\n";
    const std::pair<PolicyOverride, Action> cases[] = {
        {PolicyOverride::Nxdomain, Action::Nxdomain}, {PolicyOverride::Nodata, Action::Nodata},
        {PolicyOverride::Passthru, Action::Passthru}, {PolicyOverride::Drop, Action::Drop},
        {PolicyOverride::TcpOnly, Action::TcpOnly},   {PolicyOverride::Cname, Action::LocalData},
    };
    for (auto [o, want] : cases) {
        INFO("override " << to_string(o));
        ZonePolicy p;
        p.override = o;
        if (o == PolicyOverride::Cname) p.override_cname = name("walled.example");
        both({zone}, {p}, [&](const RuleSource& src) {
            for (const char* q : {"p.example", "l.example", "n.example"}) {
                INFO(q);
                Decision d = eval(src, {.qname = q});
                REQUIRE(d.matched);
                CHECK(d.action() == want);
                CHECK(d.cname_override() == (o == PolicyOverride::Cname));
            }
            CHECK(eval(src, {.qname = "p.example"}).rule_action() == Action::Passthru);
        });
    }
    ZonePolicy given;
    both({zone}, {given}, [](const RuleSource& src) {
        CHECK(eval(src, {.qname = "p.example"}).action() == Action::Passthru);
        CHECK(eval(src, {.qname = "l.example"}).action() == Action::LocalData);
        CHECK_FALSE(eval(src, {.qname = "l.example"}).cname_override());
    });
}

TEST_CASE("setting: override-local-data no keeps local-data rules", "[rpz][settings]") {
    // Every kind of rule, several triggers: local data (A, and a CNAME
    // redirect) keeps its records; every other rule takes the override.
    const std::string zone = "p.example CNAME rpz-passthru.\n"
                             "l.example A 192.0.2.1\n"
                             "r.example CNAME walled.example.\n"
                             "n.example CNAME .\n"
                             "d.example CNAME rpz-drop.\n"
                             "t.example CNAME rpz-tcp-only.\n"
                             "32.1.2.0.192.rpz-client-ip A 192.0.2.9\n"
                             "32.2.2.0.192.rpz-client-ip CNAME rpz-drop.\n";
    const std::pair<PolicyOverride, Action> cases[] = {
        {PolicyOverride::Nxdomain, Action::Nxdomain}, {PolicyOverride::Nodata, Action::Nodata},
        {PolicyOverride::Passthru, Action::Passthru}, {PolicyOverride::Drop, Action::Drop},
        {PolicyOverride::TcpOnly, Action::TcpOnly},   {PolicyOverride::Cname, Action::LocalData},
    };
    for (auto [o, want] : cases) {
        INFO("override " << to_string(o));
        ZonePolicy p;
        p.override = o;
        p.override_local_data = false;
        if (o == PolicyOverride::Cname) p.override_cname = name("garden.example");
        both({zone}, {p}, [&](const RuleSource& src) {
            for (const char* q : {"l.example", "r.example"}) {
                INFO(q);
                Decision d = eval(src, {.qname = q});
                REQUIRE(d.matched);
                CHECK(d.action() == Action::LocalData);
                CHECK(d.rule_action() == Action::LocalData);
                CHECK_FALSE(d.cname_override());  // the rule's own records answer
                CHECK_FALSE(d.overridden());
            }
            for (const char* q : {"p.example", "n.example", "d.example", "t.example"}) {
                INFO(q);
                Decision d = eval(src, {.qname = q});
                REQUIRE(d.matched);
                CHECK(d.action() == want);
                CHECK(d.overridden());
                CHECK(d.cname_override() == (o == PolicyOverride::Cname));
            }
            // Client-IP: the same rule per trigger.
            Decision c = eval(src, {.qname = "x.example", .client = "192.0.2.1"});
            REQUIRE(c.matched);
            CHECK(c.trigger == Trigger::ClientIp);
            CHECK(c.action() == Action::LocalData);
            CHECK_FALSE(c.cname_override());
            c = eval(src, {.qname = "x.example", .client = "192.0.2.2"});
            REQUIRE(c.matched);
            CHECK(c.action() == want);
        });
        // The default (yes) overrides local data too: this test can fail.
        p.override_local_data = true;
        both({zone}, {p}, [&](const RuleSource& src) {
            Decision d = eval(src, {.qname = "l.example"});
            REQUIRE(d.matched);
            CHECK(d.action() == want);
            CHECK(d.overridden());
            CHECK(d.cname_override() == (o == PolicyOverride::Cname));
        });
    }
    // Passthru with keep-local-data stops evaluation for non-local rules only:
    // a later zone is not consulted for either (both are matches).
    ZonePolicy pass;
    pass.override = PolicyOverride::Passthru;
    pass.override_local_data = false;
    both({"l.example A 192.0.2.1\nn.example CNAME .\n", "*.example CNAME rpz-drop.\n"},
         {pass, ZonePolicy{}}, [](const RuleSource& src) {
             Decision l = eval(src, {.qname = "l.example"});
             CHECK(l.zone == 0);
             CHECK(l.action() == Action::LocalData);
             Decision n = eval(src, {.qname = "n.example"});
             CHECK(n.zone == 0);
             CHECK(n.action() == Action::Passthru);
         });
    // Disabled and given are unaffected: a disabled zone changes nothing,
    // local data included.
    ZonePolicy off;
    off.override = PolicyOverride::Disabled;
    off.override_local_data = false;
    both({"l.example A 192.0.2.1\n"}, {off}, [](const RuleSource& src) {
        Decision d = eval(src, {.qname = "l.example"});
        CHECK_FALSE(d.matched);
        CHECK(d.n_disabled == 1);
    });
    ZonePolicy given;
    given.override_local_data = false;
    both({"n.example CNAME .\nl.example A 192.0.2.1\n"}, {given}, [](const RuleSource& src) {
        CHECK(eval(src, {.qname = "n.example"}).action() == Action::Nxdomain);
        CHECK(eval(src, {.qname = "l.example"}).action() == Action::LocalData);
        CHECK_FALSE(eval(src, {.qname = "l.example"}).overridden());
    });
}

TEST_CASE("setting: max-policy-ttl caps synthesised TTLs", "[rpz][settings]") {
    ZonePolicy p;
    p.max_policy_ttl = 100;
    both({"x.example 3600 A 192.0.2.1\n", "y.example 3600 A 192.0.2.1\n"}, {p},
         [](const RuleSource& src) {
             Decision d = eval(src, {.qname = "x.example"});
             CHECK(d.cap_ttl(d.rule->ttl()) == 100);
             CHECK(d.cap_ttl(50) == 50);
             d = eval(src, {.qname = "y.example"});
             CHECK(d.cap_ttl(d.rule->ttl()) == 3600);
         });
}

TEST_CASE("setting: recursive-only skips the zone for RD=0", "[rpz][settings]") {
    ZonePolicy yes;  // default recursive-only yes
    ZonePolicy no;
    no.recursive_only = false;
    both({"x.example CNAME .\n", "x.example CNAME *.\n"}, {yes, no}, [](const RuleSource& src) {
        CHECK(eval(src, {.qname = "x.example"}).zone == 0);
        Decision d = eval(src, {.qname = "x.example", .rd = false});
        CHECK(d.zone == 1);
        CHECK(d.action() == Action::Nodata);
    });
    both({"x.example CNAME .\n"}, {}, [](const RuleSource& src) {
        CHECK_FALSE(eval(src, {.qname = "x.example", .rd = false}).matched);
        CHECK_FALSE(eval(src, response({.qname = "x.example", .rd = false})).matched);
    });
}

namespace {

struct Recorder final : TraceSink {
    std::vector<std::string> lines;
    std::vector<std::string> why;
    void step(const TraceStep& s) noexcept override {
        why.emplace_back(s.why);
        std::string o;
        switch (s.outcome) {
        case TraceStep::Outcome::Hit: o = "hit"; break;
        case TraceStep::Outcome::Miss: o = "miss"; break;
        case TraceStep::Outcome::Skipped: o = "skipped"; break;
        case TraceStep::Outcome::Disabled: o = "disabled"; break;
        case TraceStep::Outcome::Ignored: o = "ignored"; break;
        }
        std::string k = s.key.empty() ? "-" : rule_key_to_text(s.trigger, s.key);
        lines.push_back(std::to_string(s.zone) + " " + std::string(to_string(s.trigger)) + " " +
                        k + " " + o);
    }
};

}  // namespace

TEST_CASE("setting: clients limits a zone to client prefixes", "[rpz][settings]") {
    ZonePolicy internal;
    internal.clients = {*prefix_from_text("192.0.0.0/8"), *prefix_from_text("2001:db8::/32")};
    ZonePolicy all;  // default: every client
    both({"x.example CNAME .\n", "x.example CNAME *.\n"}, {internal, all},
         [](const RuleSource& src) {
             // In a prefix (IPv4 and IPv6): zone 1 applies.
             for (const char* c : {"192.0.0.1", "192.255.255.255", "2001:db8::53"}) {
                 INFO(c);
                 Decision d = eval(src, {.qname = "x.example", .client = c});
                 CHECK(d.zone == 0);
                 CHECK(d.action() == Action::Nxdomain);
             }
             // Outside every prefix, or no client address: zone 1 is
             // skipped, zone 2 (every client) decides.
             for (const char* c : {"127.0.0.1", "193.0.0.1", "191.255.255.255", "2001:db9::1"}) {
                 INFO(c);
                 Decision d = eval(src, {.qname = "x.example", .client = c});
                 CHECK(d.zone == 1);
                 CHECK(d.action() == Action::Nodata);
             }
             Decision none = eval(src, {.qname = "x.example"});
             CHECK(none.zone == 1);
             // Also at the response stage.
             CHECK(eval(src, response({.qname = "x.example", .client = "193.0.0.1"})).zone == 1);
             CHECK(eval(src, response({.qname = "x.example", .client = "192.0.0.1"})).zone == 0);
             // The skip is traced.
             Recorder r;
             eval(src, {.qname = "x.example", .client = "10.0.0.1"}, &r);
             REQUIRE_FALSE(r.lines.empty());
             CHECK(r.lines[0] == "0 qname - skipped");
             CHECK(r.why[0] == "zone not for this client");
         });
    // Only zone: no match for other clients (CLIENT-IP rules included).
    both({"x.example CNAME .\n32.1.0.0.10.rpz-client-ip CNAME rpz-drop.\n"}, {internal},
         [](const RuleSource& src) {
             CHECK_FALSE(eval(src, {.qname = "x.example", .client = "10.0.0.1"}).matched);
             CHECK_FALSE(eval(src, {.qname = "y.example", .client = "10.0.0.1"}).matched);
             CHECK(eval(src, {.qname = "x.example", .client = "192.1.2.3"}).matched);
         });
    // A zone not for this client does not make the query wait for the
    // response stage.
    ZonePolicy ns_internal;
    ns_internal.clients = internal.clients;
    both({"ns.example.rpz-nsdname CNAME .\n", "x.example CNAME .\n"}, {ns_internal},
         [](const RuleSource& src) {
             CHECK_FALSE(eval(src, {.qname = "x.example", .client = "10.0.0.1"}).needs_response_stage);
             CHECK(eval(src, {.qname = "x.example", .client = "192.0.0.1"}).needs_response_stage);
         });
}

TEST_CASE("setting: break-dnssec and DO=1 with a signed answer", "[rpz][settings]") {
    ZonePolicy keep;  // break-dnssec no (default)
    ZonePolicy brk;
    brk.break_dnssec = true;
    both({"x.example CNAME .\n", "x.example CNAME *.\n"}, {keep, brk}, [](const RuleSource& src) {
        // DO=0: rewritten at once.
        CHECK(eval(src, {.qname = "x.example"}).zone == 0);
        // DO=1: the query stage cannot know whether the answer is signed.
        Decision d = eval(src, {.qname = "x.example", .do_bit = true});
        CHECK_FALSE(d.matched);
        CHECK(d.needs_response_stage);
        // Unsigned answer: zone 1 applies.
        d = eval(src, response({.qname = "x.example", .do_bit = true}));
        CHECK(d.zone == 0);
        // Signed answer: zone 1 is skipped, zone 2 (break-dnssec yes) applies.
        d = eval(src, response({.qname = "x.example", .do_bit = true, .signed_answer = true}));
        CHECK(d.zone == 1);
        CHECK(d.action() == Action::Nodata);
        // Signed answer without DO: rewritten.
        CHECK(eval(src, response({.qname = "x.example", .signed_answer = true})).zone == 0);
    });
    both({"x.example CNAME .\n"}, {brk}, [](const RuleSource& src) {
        Decision d = eval(src, {.qname = "x.example", .do_bit = true});
        CHECK(d.matched);
        CHECK_FALSE(d.needs_response_stage);
    });
}

TEST_CASE("needs_response_stage is set only when a later stage could win", "[rpz][settings]") {
    ZonePolicy off;
    off.override = PolicyOverride::Disabled;
    both({"ns.example.rpz-nsdname CNAME .\n", "x.example CNAME .\n"}, {},
         [](const RuleSource& src) {
             CHECK(eval(src, {.qname = "x.example"}).needs_response_stage);
             CHECK(eval(src, {.qname = "nomatch.example"}).needs_response_stage);
         });
    both({"x.example CNAME .\n", "ns.example.rpz-nsdname CNAME .\n"}, {},
         [](const RuleSource& src) {
             CHECK_FALSE(eval(src, {.qname = "x.example"}).needs_response_stage);
             CHECK(eval(src, {.qname = "nomatch.example"}).needs_response_stage);
         });
    // Same zone: QNAME beats the response triggers, no need to wait.
    both({"x.example CNAME .\n32.1.2.0.192.rpz-ip CNAME .\n"}, {}, [](const RuleSource& src) {
        CHECK_FALSE(eval(src, {.qname = "x.example"}).needs_response_stage);
    });
    both({"x.example CNAME .\n"}, {}, [](const RuleSource& src) {
        CHECK_FALSE(eval(src, {.qname = "nomatch.example"}).needs_response_stage);
    });
    // A DISABLED zone never forces resolution.
    both({"32.1.2.0.192.rpz-ip CNAME .\n", "x.example CNAME .\n"}, {off},
         [](const RuleSource& src) {
             CHECK_FALSE(eval(src, {.qname = "x.example"}).needs_response_stage);
         });
}


TEST_CASE("trace: every probe in precedence order", "[rpz][trace]") {
    both({"*.example CNAME .\n32.1.2.0.192.rpz-ip CNAME .\n", "a.b.example CNAME *.\n"}, {},
         [](const RuleSource& src) {
             Recorder r;
             Decision d = eval(src, response({.qname = "a.b.example", .answer = {"192.0.2.1"}}), &r);
             CHECK(d.zone == 0);
             CHECK(d.wildcard);
             std::vector<std::string> want = {
                 "0 client-ip - skipped",
                 "0 qname a.b.example miss",
                 "0 qname - skipped",  // *.b.example: deeper than the zone's wildcards
                 "0 qname *.example hit",
             };
             // Memory and store agree on depths, so the same steps come out.
             CHECK(r.lines == want);
             Recorder r2;
             eval(src, response({.qname = "q.test", .answer = {"192.0.2.1"}}), &r2);
             CHECK(std::find(r2.lines.begin(), r2.lines.end(), "0 response-ip 192.0.2.1/32 hit") !=
                   r2.lines.end());
         });
}
