// Unit tests for dnsfw::rpz rule values, enum names and diagnostics.
#include <catch2/catch.hpp>

#include "rpz/rpz.hpp"

#include <stdexcept>

using namespace dnsfw::rpz;

namespace {

Rule local_rule() {
    Rule r;
    r.action = Action::LocalData;
    r.ttl = 60;
    r.records.push_back(LocalRecord{1, 60, {192, 0, 2, 1}});
    r.records.push_back(LocalRecord{16, 120, {3, 'a', 'b', 'c'}});
    return r;
}

}  // namespace

TEST_CASE("action and trigger names round trip", "[rpz][rule]") {
    for (Action a : {Action::Nxdomain, Action::Nodata, Action::Passthru, Action::Drop,
                     Action::TcpOnly, Action::LocalData}) {
        auto back = action_from_string(to_string(a));
        REQUIRE(back.has_value());
        CHECK(*back == a);
    }
    CHECK(to_string(Action::TcpOnly) == "tcp-only");
    CHECK(action_from_string("no-op") == Action::Passthru);
    CHECK_FALSE(action_from_string("NXDOMAIN").has_value());
    CHECK_FALSE(action_from_string("").has_value());
    CHECK(to_string(Trigger::Qname) == "qname");
    CHECK(to_string(Trigger::ClientIp) == "client-ip");
    CHECK(to_string(Trigger::NsIp) == "nsip");
    CHECK(format_from_string("rpz") == InputFormat::Rpz);
    CHECK(format_from_string("list") == InputFormat::List);
    CHECK(format_from_string("hosts") == InputFormat::Hosts);
    CHECK_FALSE(format_from_string("csv").has_value());
}

TEST_CASE("Diagnostic::to_string names file and line", "[rpz][rule]") {
    Diagnostic d{Diagnostic::Severity::Error, "zone.rpz", 12, "bad name"};
    CHECK(d.to_string() == "zone.rpz:12: error: bad name");
    d.severity = Diagnostic::Severity::Warning;
    CHECK(d.to_string() == "zone.rpz:12: warning: bad name");
}

TEST_CASE("encode_rule_value uses the documented layout", "[rpz][rule]") {
    Rule r;
    r.action = Action::Nxdomain;
    r.ttl = 0x01020304;
    auto v = encode_rule_value(r);
    CHECK(v == std::vector<std::uint8_t>{1, 1, 0, 0, 1, 2, 3, 4, 0, 0});

    auto lv = encode_rule_value(local_rule());
    REQUIRE(lv.size() == 10 + 8 + 4 + 8 + 4);
    CHECK(lv[1] == 6);
    CHECK(lv[9] == 2);                                // n_records
    CHECK(lv[10] == 0);
    CHECK(lv[11] == 1);                               // type A
    CHECK(lv[17] == 4);                               // rdlen
    CHECK(lv[18] == 192);
}

TEST_CASE("rule values round trip through RuleView", "[rpz][rule]") {
    for (Action a : {Action::Nxdomain, Action::Nodata, Action::Passthru, Action::Drop,
                     Action::TcpOnly}) {
        Rule r;
        r.action = a;
        r.ttl = 300;
        auto bytes = encode_rule_value(r);
        auto view = RuleView::parse(bytes);
        REQUIRE(view.has_value());
        CHECK(view->action() == a);
        CHECK(view->ttl() == 300);
        CHECK(view->record_count() == 0);
        CHECK(view->to_rule() == r);
    }

    Rule r = local_rule();
    auto bytes = encode_rule_value(r);
    auto view = RuleView::parse(bytes);
    REQUIRE(view.has_value());
    CHECK(view->record_count() == 2);
    std::vector<LocalRecord> seen;
    view->for_each_record([&](const RuleView::RecordView& rec) {
        seen.push_back(LocalRecord{rec.type, rec.ttl, {rec.rdata.begin(), rec.rdata.end()}});
    });
    CHECK(seen == r.records);
    CHECK(view->to_rule() == r);

    Rule wc;
    wc.action = Action::LocalData;
    wc.flags = kCnameWildcardTarget;
    wc.ttl = 10;
    wc.records.push_back(LocalRecord{5, 10, {6, 'g', 'a', 'r', 'd', 'e', 'n', 0}});
    auto wbytes = encode_rule_value(wc);  // the view points into these bytes
    auto wv = RuleView::parse(wbytes);
    REQUIRE(wv.has_value());
    CHECK(wv->flags() == kCnameWildcardTarget);
    CHECK(wv->to_rule() == wc);
}

TEST_CASE("RuleView skips extension TLVs", "[rpz][rule]") {
    Rule r;
    r.action = Action::Drop;
    auto bytes = encode_rule_value(r);
    bytes.insert(bytes.end(), {0x00, 0x07, 0x00, 0x03, 'a', 'b', 'c', 0x12, 0x34, 0x00, 0x00});
    auto view = RuleView::parse(bytes);
    REQUIRE(view.has_value());
    CHECK(view->action() == Action::Drop);
}

TEST_CASE("RuleView rejects malformed values", "[rpz][rule]") {
    auto good = encode_rule_value(local_rule());
    REQUIRE(RuleView::parse(good).has_value());

    SECTION("every truncation") {
        for (std::size_t n = 0; n < good.size(); ++n) {
            std::span<const std::uint8_t> part(good.data(), n);
            INFO("length " << n);
            CHECK_FALSE(RuleView::parse(part).has_value());
        }
    }
    SECTION("unknown version") {
        good[0] = 2;
        CHECK_FALSE(RuleView::parse(good).has_value());
    }
    SECTION("action out of range") {
        good[1] = 0;
        CHECK_FALSE(RuleView::parse(good).has_value());
        good[1] = 7;
        CHECK_FALSE(RuleView::parse(good).has_value());
    }
    SECTION("unknown flag") {
        good[3] = 0x80;
        CHECK_FALSE(RuleView::parse(good).has_value());
    }
    SECTION("record count larger than the data") {
        good[9] = 3;
        CHECK_FALSE(RuleView::parse(good).has_value());
    }
    SECTION("rdlen past the end") {
        good[17] = 200;
        CHECK_FALSE(RuleView::parse(good).has_value());
    }
    SECTION("trailing bytes that are not a TLV") {
        good.push_back(0);
        CHECK_FALSE(RuleView::parse(good).has_value());
        good.insert(good.end(), {0, 0, 5, 1});  // TLV claiming 5 bytes, 1 present
        CHECK_FALSE(RuleView::parse(good).has_value());
    }
    SECTION("local data without records, records without local data") {
        Rule empty;
        empty.action = Action::LocalData;
        CHECK_FALSE(RuleView::parse(encode_rule_value(empty)).has_value());
        Rule nx = local_rule();
        nx.action = Action::Nxdomain;
        CHECK_FALSE(RuleView::parse(encode_rule_value(nx)).has_value());
    }
    SECTION("wildcard-target flag needs exactly one CNAME with a valid name") {
        Rule wc = local_rule();
        wc.flags = kCnameWildcardTarget;
        CHECK_FALSE(RuleView::parse(encode_rule_value(wc)).has_value());
        wc.records = {LocalRecord{5, 10, {3, 'a', 'b'}}};
        CHECK_FALSE(RuleView::parse(encode_rule_value(wc)).has_value());
        wc.records = {LocalRecord{1, 10, {1, 'a', 0}}};
        CHECK_FALSE(RuleView::parse(encode_rule_value(wc)).has_value());
        wc.records = {LocalRecord{5, 10, {1, 'a', 0}}};
        CHECK(RuleView::parse(encode_rule_value(wc)).has_value());
    }
}

TEST_CASE("encode_rule_value refuses rdata over 65535 octets", "[rpz][rule]") {
    Rule r;
    r.action = Action::LocalData;
    r.records.push_back(LocalRecord{16, 1, std::vector<std::uint8_t>(65536, 'x')});
    CHECK_THROWS_AS(encode_rule_value(r), std::length_error);
}

TEST_CASE("diagnostics escape control bytes quoted from feeds", "[rpz]") {
    dnsfw::rpz::Diagnostic d;
    d.file = "feed.txt";
    d.line = 3;
    d.message = "invalid name: \"evil\x1b]0;PWNED\x07\x1b[2J.example\"";
    const std::string s = d.to_string();
    CHECK(s == "feed.txt:3: error: invalid name: \"evil\\x1b]0;PWNED\\x07\\x1b[2J.example\"");
    CHECK(s.find('\x1b') == std::string::npos);
}
