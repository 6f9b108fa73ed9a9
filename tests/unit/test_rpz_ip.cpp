// Unit tests for dnsfw::rpz IP addresses, prefixes, IP keys and the RPZ
// owner-name encoding of IP triggers — including every row of the peer
// cases /work/shared/peer-cases/parse/rpz-ip-owner-names.tsv.
#include <catch2/catch.hpp>

#include "rpz/rpz.hpp"

#include <string>

using namespace dnsfw::rpz;

namespace {

Name name(std::string_view text) {
    auto n = name_from_text(text);
    REQUIRE(n.has_value());
    return *n;
}

IpPrefix pfx(std::string_view text) {
    auto p = prefix_from_text(text);
    REQUIRE(p.has_value());
    return *p;
}

IpAddress ip(std::string_view text) {
    auto a = ip_from_text(text);
    REQUIRE(a.has_value());
    return *a;
}

Trigger trigger_of(std::string_view suffix) {
    if (suffix == "rpz-ip") return Trigger::ResponseIp;
    if (suffix == "rpz-client-ip") return Trigger::ClientIp;
    if (suffix == "rpz-nsip") return Trigger::NsIp;
    FAIL("unknown suffix " << suffix);
    return Trigger::Qname;
}

/// Loads "<labels>.<suffix> CNAME ." (line 3) between two good QNAME rules
/// through the real zone parser.
Zone load_owner(std::string_view labels, std::string_view suffix) {
    std::string owner(labels);
    if (!owner.empty() && owner.back() == '.') owner.pop_back();  // relative to the zone
    const std::string text = "$TTL 300\n"
                             "before.example CNAME .\n" +
                             owner + "." + std::string(suffix) +
                             " CNAME .\n"
                             "after.example CNAME .\n";
    return parse_zone_text(text, "ip.rpz", name("rpz.example"), InputFormat::Rpz);
}

const Rule* ip_rule(const Zone& z, Trigger t) {
    for (const Rule& r : z.rules)
        if (r.trigger == t) return &r;
    return nullptr;
}

struct Row {
    const char* labels;
    const char* suffix;
    const char* expected;  // prefix text, or "REJECT"
    const char* why;       // where we differ from the peer row, and why
};

// The 18 rows of parse/rpz-ip-owner-names.tsv. `expected` is OUR result;
// rows whose peer expectation differs say why in `why`.
const Row kPeerRows[] = {
    {"32.3.2.168.192", "rpz-ip", "192.168.2.3/32", ""},
    {"27.73.2.168.192", "rpz-ip", "REJECT",
     "peer (PowerDNS) masks to 192.168.2.64/27; issue 3 makes 'bits set beyond the prefix' an "
     "invalid encoding (reported and skipped), like BIND: a rule whose owner says .73/27 is a "
     "typo we must not silently widen"},
    {"24.0.2.168.192", "rpz-ip", "192.168.2.0/24", ""},
    {"21.0.248.44.5", "rpz-ip", "5.44.248.0/21", ""},
    {"128.57.zz.1.0.db8.2001", "rpz-ip", "2001:db8:0:1::57/128", ""},
    {"48.zz.1.0.db8.2001", "rpz-ip", "REJECT",
     "peer (PowerDNS) masks to 2001:db8::/48; hextet 1 is beyond /48: bits beyond the prefix "
     "are an invalid encoding (issue 3)"},
    {"128.5.C0A8.FFFF.0.1.0.db8.2001", "rpz-ip", "2001:db8:0:1:0:ffff:c0a8:5/128",
     "upper-case hex accepted (owner names are case-insensitive)"},
    {"64.0.0.0.0.0.1.0.0.", "rpz-ip", "REJECT",
     "peer (PowerDNS) accepts explicit zero groups; issue 3 rejects non-canonical IPv6 (the "
     "canonical owner is 64.zz.1.0.0): one prefix must have one owner name, or two spellings "
     "of the same rule could coexist in one zone"},
    {"64.zz.2.0.0", "rpz-ip", "0:0:2::/64", ""},
    {"80.0.0.0.1.0.0.0.0", "rpz-ip", "REJECT",
     "peer (PowerDNS) accepts it; non-canonical: the canonical owner is 80.0.0.0.1.zz"},
    {"80.0.0.0.1.zz", "rpz-ip", "::1:0:0:0/80", "zz at the most significant end"},
    {"32.zz.db8.2001", "rpz-ip", "2001:db8::/32", ""},
    {"128.1.zz.cc.bb.aa.db8.2001", "rpz-ip", "2001:db8:aa:bb:cc::1/128", ""},
    {"128.124.0.0.cc.bb.aa.db8.2001", "rpz-ip", "REJECT",
     "peer row says Unbound accepts it; BIND and issue 3 reject non-canonical IPv6 "
     "(canonical: 128.124.zz.cc.bb.aa.db8.2001)"},
    {"128.2.0.0.0.0.3.2.2001", "rpz-ip", "REJECT", ""},
    {"1000.4.0.53.10", "rpz-client-ip", "REJECT", ""},
    {"8.0.0.0.10", "rpz-ip", "10.0.0.0/8", ""},
    {"32.42.30.20.10", "rpz-nsip", "10.20.30.42/32", "same encoding for rpz-nsip"},
};

}  // namespace

TEST_CASE("peer rows: RPZ IP owner names (parse/rpz-ip-owner-names.tsv)", "[rpz][ip][peer]") {
    for (const Row& row : kPeerRows) {
        INFO(row.labels << "." << row.suffix << " -> " << row.expected << " " << row.why);
        const Trigger t = trigger_of(row.suffix);
        Zone z = load_owner(row.labels, row.suffix);
        // The rest of the zone always loads.
        CHECK(z.rules.size() >= 2);
        const Rule* r = ip_rule(z, t);
        if (std::string_view(row.expected) == "REJECT") {
            CHECK(r == nullptr);
            REQUIRE(z.diagnostics.size() == 1);
            const auto& d = z.diagnostics[0];
            CHECK(d.severity == Diagnostic::Severity::Error);
            CHECK(d.line == 3);
            CHECK(d.to_string().find("ip.rpz:3: error: invalid ") == 0);
            CHECK(z.rules.size() == 2);
        } else {
            CHECK(z.diagnostics.empty());
            REQUIRE(r != nullptr);
            CHECK(r->action == Action::Nxdomain);
            CHECK(r->key == ip_key(pfx(row.expected)));
            auto p = prefix_from_ip_key(r->key);
            REQUIRE(p);
            CHECK(to_string(*p) == row.expected);
        }
    }
}

TEST_CASE("RPZ IP owners: the reasons for rejecting", "[rpz][ip]") {
    auto why = [](std::string_view labels) {
        std::string error;
        auto p = parse_rpz_ip_labels(name(labels), &error);
        CHECK_FALSE(p.has_value());
        return error;
    };
    CHECK(why("1000.4.0.53.10") == "IPv4 prefix length out of range 1..32");
    CHECK(why("33.4.0.53.10") == "IPv4 prefix length out of range 1..32");
    CHECK(why("0.4.0.53.10") == "IPv4 prefix length out of range 1..32");
    CHECK(why("129.zz.1") == "IPv6 prefix length out of range 1..128");
    CHECK(why("024.0.2.0.192").find("leading zeros") != std::string::npos);
    CHECK(why("x.0.2.0.192").find("prefix length") != std::string::npos);
    CHECK(why("24.2.0.192").find("missing octets") != std::string::npos);
    CHECK(why("24") .find("missing address") != std::string::npos);
    CHECK(why("24.256.2.0.192").find("octet") != std::string::npos);
    CHECK(why("24.00.2.0.192").find("octet") != std::string::npos);
    CHECK(why("27.73.2.168.192") == "address has bits set beyond the prefix length");
    CHECK(why("48.zz.1.0.db8.2001") == "address has bits set beyond the prefix length");
    CHECK(why("128.2.0.0.0.0.3.2.2001") == "not in canonical form 128.2.zz.3.2.2001");
    CHECK(why("128.1.zz.zz.2001") == "more than one 'zz' in an IPv6 address");
    CHECK(why("128.1.2.3.4.5.6.7") == "an IPv6 address needs 8 hextets (or 'zz')");
    CHECK(why("128.1.2.3.4.5.6.7.8.9") == "an IPv6 address needs 8 hextets (or 'zz')");
    CHECK(why("128.12345.zz.2001") == "IPv6 hextet is not 1..4 hex digits");
    CHECK(why("128.g.zz.2001") == "IPv6 hextet is not 1..4 hex digits");
    // zz for a single zero hextet is not canonical (RFC 5952 §4.2.2 too).
    CHECK(why("128.1.1.1.1.1.1.zz.2001") == "not in canonical form 128.1.1.1.1.1.1.0.2001");
    // Leading zeros in a hextet.
    CHECK(why("32.zz.0db8.2001") == "not in canonical form 32.zz.db8.2001");
    // Two zero runs of equal length: the less significant one is zz.
    CHECK(why("128.1.1.0.0.1.zz.2001") == "not in canonical form 128.1.1.zz.1.0.0.2001");
    // The longest run wins over an earlier shorter one.
    CHECK(why("128.1.0.0.0.1.zz.2001") == "not in canonical form 128.1.zz.1.0.0.2001");
    // A v4-mapped address must be written as IPv4.
    CHECK(why("128.201.c000.ffff.zz") == "not in canonical form 32.1.2.0.192");
    CHECK(parse_rpz_ip_labels(name("128.1.1.zz.1.0.0.2001")).has_value());
    CHECK(parse_rpz_ip_labels(name("32.ZZ.DB8.2001")).has_value());  // any case
}

TEST_CASE("RPZ IP owners: canonical labels round-trip", "[rpz][ip]") {
    for (const char* text :
         {"192.0.2.1/32", "192.0.2.0/24", "10.0.0.0/8", "128.0.0.0/1", "0.0.0.0/1", "::1/128",
          "2001:db8::/32", "2001:db8:0:1::57/128", "8000::/1", "fe80::/10", "2001::1:0:0:1:1/128",
          "1:2:3:4:5:6:7:8/128", "2001:db8:aa:bb:cc::1/128"}) {
        INFO(text);
        const IpPrefix p = pfx(text);
        const std::string labels = rpz_ip_labels(p);
        auto back = parse_rpz_ip_labels(name(labels));
        REQUIRE(back.has_value());
        CHECK(*back == p);
        CHECK(to_string(p) == text);
    }
    CHECK(rpz_ip_labels(pfx("192.0.2.0/24")) == "24.0.2.0.192");
    CHECK(rpz_ip_labels(pfx("2001:db8::/32")) == "32.zz.db8.2001");
    CHECK(rpz_ip_labels(pfx("2001:0:0:1::1:1/128")) == "128.1.1.zz.1.0.0.2001");
}

TEST_CASE("IP addresses, prefixes and keys", "[rpz][ip]") {
    CHECK(ip("192.0.2.1").is_v4());
    CHECK(ip("::ffff:192.0.2.1") == ip("192.0.2.1"));
    CHECK_FALSE(ip("2001:db8::1").is_v4());
    CHECK(to_string(ip("2001:0db8:0:0:0:0:0:1")) == "2001:db8::1");
    CHECK_FALSE(ip_from_text("192.0.2"));
    CHECK_FALSE(ip_from_text("300.0.0.1"));
    CHECK_FALSE(ip_from_text(""));
    CHECK_FALSE(prefix_from_text("192.0.2.0/33"));
    CHECK(pfx("192.0.2.77/24") == pfx("192.0.2.0/24"));  // masked
    CHECK(pfx("192.0.2.0/24").length == 120);
    CHECK(pfx("192.0.2.0/24").contains(ip("192.0.2.200")));
    CHECK_FALSE(pfx("192.0.2.0/24").contains(ip("192.0.3.1")));
    CHECK(pfx("2001:db8::/33").contains(ip("2001:db8:7fff::1")));
    CHECK_FALSE(pfx("2001:db8::/33").contains(ip("2001:db8:8000::1")));
    CHECK(ip("10.0.0.1") < ip("10.0.0.2"));

    IpKey k;
    make_ip_key(ip("192.0.2.77"), 120, k);
    CHECK(std::vector<std::uint8_t>(k.bytes.begin(), k.bytes.end()) == ip_key(pfx("192.0.2.0/24")));
    CHECK(k.bytes[16] == 120);
    CHECK(k.bytes[15] == 0);
    CHECK(prefix_from_ip_key(k.view()) == pfx("192.0.2.0/24"));
    k.bytes[15] = 1;  // a bit beyond the length
    CHECK_FALSE(prefix_from_ip_key(k.view()));
    CHECK_FALSE(prefix_from_ip_key(std::vector<std::uint8_t>(16, 0)));

    char buf[64];
    const auto key = ip_key(pfx("2001:db8::/32"));
    const std::size_t n = format_rule_key(Trigger::ResponseIp, key, buf);
    CHECK(std::string(buf, n) == "2001:db8::/32");
    CHECK(rule_owner_text(Trigger::NsIp, ip_key(pfx("10.20.30.42/32"))) ==
          "32.42.30.20.10.rpz-nsip");
    CHECK(rule_key_to_text(Trigger::ClientIp, ip_key(pfx("10.0.0.0/8"))) == "10.0.0.0/8");
}

TEST_CASE("an IPv6 owner covering every IPv4 address is refused", "[rpz][ip]") {
    // ::ffff:0:0/96 (and any shorter prefix containing it) would rewrite
    // every IPv4 answer: refused like '*' at the apex.
    for (const char* owner : {"96.0.0.ffff.zz", "8.zz", "1.zz"}) {
        INFO(owner);
        auto name = dnsfw::rpz::name_from_text(owner);
        REQUIRE(name);
        std::string why;
        CHECK_FALSE(dnsfw::rpz::parse_rpz_ip_labels(*name, &why));
        CHECK(why.find("covers every IPv4 address") != std::string::npos);
    }
    // 2001:db8::/32 does not contain ::ffff:0:0/96
    auto ok = dnsfw::rpz::name_from_text("32.zz.db8.2001");
    REQUIRE(ok);
    CHECK(dnsfw::rpz::parse_rpz_ip_labels(*ok, nullptr));
}
