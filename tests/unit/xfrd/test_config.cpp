// Unit tests of the dnsfw-xfrd configuration (tools/xfrd/config.hpp):
// the TOML file, endpoints, ACL entries and acl_match.
#include <catch2/catch.hpp>

#include "tools/xfrd/config.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

using dnsfw::xfrd::AclEntry;
using dnsfw::xfrd::Config;
using dnsfw::xfrd::ConfigError;
using dnsfw::xfrd::Endpoint;
using dnsfw::xfrd::acl_match;
using dnsfw::xfrd::load_config;
using dnsfw::xfrd::parse_acl;
using dnsfw::xfrd::parse_endpoint;

namespace {

namespace fs = std::filesystem;

/// A configuration file in a fresh temporary directory.
struct ConfigFile {
    fs::path dir;
    std::string path;
    explicit ConfigFile(const std::string& text) {
        std::string tmpl = (fs::temp_directory_path() / "dnsfw-xfrd-config-XXXXXX").string();
        REQUIRE(mkdtemp(tmpl.data()) != nullptr);
        dir = tmpl;
        path = (dir / "xfrd.toml").string();
        std::ofstream(path) << text;
    }
    ~ConfigFile() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

/// The message of the ConfigError that loading `text` throws ("" if none).
std::string load_error(const std::string& text) {
    ConfigFile f(text);
    try {
        load_config(f.path);
    } catch (const ConfigError& e) {
        std::string what = e.what();
        // Messages start with the file name.
        CHECK(what.rfind(f.path, 0) == 0);
        return what.substr(f.path.size());
    }
    return "";
}

sockaddr_storage v4(const char* ip, std::uint16_t port = 0) {
    sockaddr_storage ss{};
    auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    REQUIRE(inet_pton(AF_INET, ip, &sa->sin_addr) == 1);
    return ss;
}

sockaddr_storage v6(const char* ip, std::uint16_t port = 0) {
    sockaddr_storage ss{};
    auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(port);
    REQUIRE(inet_pton(AF_INET6, ip, &sa->sin6_addr) == 1);
    return ss;
}

std::uint16_t port_of(const Endpoint& ep) {
    if (ep.addr.ss_family == AF_INET)
        return ntohs(reinterpret_cast<const sockaddr_in*>(&ep.addr)->sin_port);
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&ep.addr)->sin6_port);
}

const char* kFull = R"(
store   = "/var/lib/dnsfw/store"
listen  = ["127.0.0.1:5300", "[::1]:5300"]
control = "/run/dnsfw/xfrd.sock"
log-level = "debug"
map-size = 2097152
max-map-size = 4194304

[key.Xfr-Key]
algorithm = "HMAC-SHA256"
secret    = "c2VjcmV0LWJ5dGVz"

[key.upd-key]
algorithm = "hmac-md5"
secret    = "YWJj"

[[zone]]
name             = "Threat.RPZ"
primaries        = ["127.0.0.1:5301 key xfr-key", "10.0.0.1"]
notify           = ["127.0.0.2:53 key xfr-key", "[::1]:5302"]
allow-transfer   = ["127.0.0.0/8 key xfr-key", "::1"]
allow-notify     = ["127.0.0.1/32"]
journal-size     = 1048576
max-transfer-size = 4096
transfer-timeout = 30
refresh-min = 10
refresh-max = 600
retry-min = 2
retry-max = 60
ixfr = false

[[zone]]
name = "local.rpz."
allow-update     = ["127.0.0.1/32 key upd-key"]
)";

}  // namespace

TEST_CASE("xfrd config: a full file", "[xfrd][config]") {
    ConfigFile f(kFull);
    Config c = load_config(f.path);
    CHECK(c.path == f.path);
    CHECK(c.store == "/var/lib/dnsfw/store");
    CHECK(c.control == "/run/dnsfw/xfrd.sock");
    CHECK(c.log_level == "debug");
    CHECK(c.map_size == 2097152u);
    CHECK(c.max_map_size == 4194304u);
    REQUIRE(c.listen.size() == 2);
    CHECK(c.listen[0].addr.ss_family == AF_INET);
    CHECK(port_of(c.listen[0]) == 5300);
    CHECK(c.listen[1].addr.ss_family == AF_INET6);
    CHECK(port_of(c.listen[1]) == 5300);

    REQUIRE(c.keys.size() == 2);
    const auto* k = c.key("XFR-KEY");  // any case, trailing dot optional
    REQUIRE(k != nullptr);
    CHECK(k->name == "xfr-key.");
    CHECK(k->algorithm == "hmac-sha256.");
    CHECK(std::string(k->secret.begin(), k->secret.end()) == "secret-bytes");
    REQUIRE(c.key("upd-key.") != nullptr);
    CHECK(c.key("upd-key.")->algorithm == "hmac-md5.sig-alg.reg.int.");
    CHECK(c.key("nope") == nullptr);

    REQUIRE(c.zones.size() == 2);
    const auto* z = c.zone("threat.rpz");
    REQUIRE(z != nullptr);
    CHECK(c.zone("THREAT.rpz.") == z);
    CHECK(z->name == "threat.rpz.");
    CHECK(z->apex == *dnsfw::rpz::name_from_text("threat.rpz."));
    REQUIRE(z->primaries.size() == 2);
    CHECK(z->primaries[0].key == "xfr-key.");
    CHECK(port_of(z->primaries[0]) == 5301);
    CHECK(z->primaries[1].key.empty());
    CHECK(port_of(z->primaries[1]) == 53);  // default port
    CHECK(z->primaries[0].text == "127.0.0.1:5301 key xfr-key");
    REQUIRE(z->notify.size() == 2);
    CHECK(z->notify[1].addr.ss_family == AF_INET6);
    CHECK(port_of(z->notify[1]) == 5302);
    REQUIRE(z->allow_transfer.size() == 2);
    CHECK(z->allow_transfer[0].key == "xfr-key.");
    CHECK(z->allow_transfer[1].prefix.length == 128);
    CHECK(z->allow_update.empty());
    CHECK(z->journal_size == 1048576u);
    CHECK(z->max_transfer_size == 4096u);
    CHECK(z->transfer_timeout == 30u);
    CHECK(z->refresh_min == 10u);
    CHECK(z->refresh_max == 600u);
    CHECK(z->retry_min == 2u);
    CHECK(z->retry_max == 60u);
    CHECK_FALSE(z->ixfr);

    const auto* local = c.zone("local.rpz");
    REQUIRE(local != nullptr);
    CHECK(local->primaries.empty());
    CHECK(local->ixfr);
    CHECK_FALSE(local->journal_size.has_value());
    CHECK(local->max_transfer_size == std::uint64_t{1} << 30);
    CHECK(local->transfer_timeout == 300u);
    CHECK(c.zone("other.rpz") == nullptr);
}

TEST_CASE("xfrd config: defaults of a minimal file", "[xfrd][config]") {
    ConfigFile f("store = \"/tmp/s\"\n");
    Config c = load_config(f.path);
    CHECK(c.listen.empty());
    CHECK(c.control.empty());
    CHECK(c.log_level == "info");
    CHECK(c.zones.empty());
    CHECK_FALSE(c.map_size.has_value());
    CHECK_FALSE(c.max_map_size.has_value());
}

TEST_CASE("xfrd config: errors name the file, the line and the setting", "[xfrd][config]") {
    CHECK(load_error("store = \"/s\"\nbogus = 1\n") == ":2: key bogus: unknown setting");
    CHECK(load_error("listen = [\"127.0.0.1\"]\n") == ": key store: missing (the store directory)");
    CHECK(load_error("store = \"/s\"\n[[zone]]\nname = \"a.rpz\"\nprimary = [\"1.2.3.4\"]\n") ==
          ":4: key zone[0].primary: unknown setting");
    CHECK(load_error("store = \"/s\"\n[[zone]]\nname = \"a.rpz\"\nprimaries = [\"1.2.3.4 key k\"]\n")
              .find("key zone[0].primaries[0]: unknown key 'k.'") != std::string::npos);
    CHECK(load_error("store = \"/s\"\n[[zone]]\nname = \"a.rpz\"\n[[zone]]\nname = \"A.rpz.\"\n")
              .find("key zone[1].name: duplicate zone 'a.rpz.'") != std::string::npos);
    CHECK(load_error("store = \"/s\"\n[[zone]]\nprimaries = []\n")
              .find("key zone[0].name: missing") != std::string::npos);
    CHECK(load_error("store = \"/s\"\nlisten = [\"localhost:53\"]\n")
              .find(":2: key listen: 'localhost' is not an IPv4 or IPv6 address") !=
          std::string::npos);
    CHECK(load_error("store = \"/s\"\n[key.k]\nsecret = \"!!!\"\n") ==
          ":3: key key.k.secret: not valid base64");
    CHECK(load_error("store = \"/s\"\n[key.k]\nalgorithm = \"hmac-sha3\"\nsecret = \"YWJj\"\n")
              .find("key key.k.algorithm: unsupported algorithm 'hmac-sha3'") != std::string::npos);
    CHECK(load_error("store = \"/s\"\n[key.k]\nalgorithm = \"hmac-sha1\"\n")
              .find("key key.k.secret: missing") != std::string::npos);
    CHECK(load_error("store = \"/s\"\n[[zone]]\nname = \"a.rpz\"\nretry-min = 10\nretry-max = 5\n") ==
          ":4: key zone[0].retry-min: greater than retry-max");
    CHECK(load_error("store = \"/s\"\n[[zone]]\nname = \"a.rpz\"\ntransfer-timeout = 0\n")
              .find("key zone[0].transfer-timeout: value 0 out of range") != std::string::npos);
    CHECK(load_error("store = \"/s\"\n[[zone]]\nname = \"a.rpz\"\nixfr = \"yes\"\n") ==
          ":4: key zone[0].ixfr: expected true or false");
    CHECK(load_error("store = \"/s\"\n[[zone]]\nname = \"a.rpz\"\nprimaries = [\"1.2.3.4:0\"]\n")
              .find("key zone[0].primaries[0]: port 0 is not a peer's port") != std::string::npos);
    CHECK(load_error("store = \"/s\"\nmax-map-size = 1000\n")
              .find(":2: key max-map-size: value 1000 out of range") != std::string::npos);
    CHECK(load_error("store = \"/s\"\nlog-level = \"loud\"\n").find("key log-level: expected") !=
          std::string::npos);
    // A TOML syntax error: the parser's line.
    CHECK(load_error("store = \"/s\"\nlisten = [\n\"a\",\nbogus\n]\n").rfind(":4: ", 0) == 0);
    // A file that cannot be read.
    CHECK_THROWS_AS(load_config("/nonexistent/dir/xfrd.toml"), ConfigError);
}

TEST_CASE("xfrd config: parse_endpoint", "[xfrd][config]") {
    Endpoint e = parse_endpoint("127.0.0.1", 53);
    CHECK(e.addr.ss_family == AF_INET);
    CHECK(port_of(e) == 53);
    CHECK(e.key.empty());
    CHECK(e.addr_len == sizeof(sockaddr_in));

    CHECK(port_of(parse_endpoint("127.0.0.1:5301", 53)) == 5301);
    CHECK(port_of(parse_endpoint("127.0.0.1@5301", 53)) == 5301);
    e = parse_endpoint("[::1]:5300", 53);
    CHECK(e.addr.ss_family == AF_INET6);
    CHECK(port_of(e) == 5300);
    CHECK(e.addr_len == sizeof(sockaddr_in6));
    e = parse_endpoint("::1", 53);  // bare IPv6: default port
    CHECK(e.addr.ss_family == AF_INET6);
    CHECK(port_of(e) == 53);
    CHECK(port_of(parse_endpoint("[2001:db8::1]", 5353)) == 5353);

    e = parse_endpoint("  127.0.0.2:53   key  Xfr-Key ", 53);
    CHECK(e.key == "xfr-key.");
    CHECK(e.text == "127.0.0.2:53   key  Xfr-Key");

    CHECK_THROWS_AS(parse_endpoint("127.0.0.1:65536", 53), ConfigError);
    CHECK_THROWS_AS(parse_endpoint("127.0.0.1:", 53), ConfigError);
    CHECK_THROWS_AS(parse_endpoint("[::1", 53), ConfigError);
    CHECK_THROWS_AS(parse_endpoint("[::1]5300", 53), ConfigError);
    CHECK_THROWS_AS(parse_endpoint("example.com", 53), ConfigError);
    CHECK_THROWS_AS(parse_endpoint("127.0.0.1 key", 53), ConfigError);
    CHECK_THROWS_AS(parse_endpoint("127.0.0.1 secret k", 53), ConfigError);
    CHECK_THROWS_AS(parse_endpoint("", 53), ConfigError);
}

TEST_CASE("xfrd config: parse_acl", "[xfrd][config]") {
    AclEntry a = parse_acl("127.0.0.0/8 key upd-key");
    CHECK(a.key == "upd-key.");
    CHECK(a.prefix.length == 96 + 8);
    CHECK(parse_acl("10.1.2.3").prefix.length == 128);  // a bare address is a host
    CHECK(parse_acl("10.1.0.0/16").prefix == *dnsfw::rpz::prefix_from_text("10.1.0.0/16"));
    CHECK_THROWS_AS(parse_acl("10.1.2.3/16"), ConfigError);  // host bits set
    CHECK(parse_acl("2001:db8::/32").prefix.length == 32);
    CHECK_THROWS_AS(parse_acl("10.0.0.0/33"), ConfigError);
    CHECK_THROWS_AS(parse_acl("nothing"), ConfigError);
    CHECK_THROWS_AS(parse_acl("10.0.0.0/8 key"), ConfigError);
}

TEST_CASE("xfrd config: acl_match", "[xfrd][config]") {
    std::vector<AclEntry> acl = {parse_acl("127.0.0.0/8 key xfr-key"),
                                 parse_acl("192.0.2.0/24"),
                                 parse_acl("2001:db8::/32 key other")};

    SECTION("an entry with a key admits only requests signed with it") {
        CHECK(acl_match(acl, v4("127.0.0.1", 4000), "xfr-key.") == &acl[0]);
        CHECK(acl_match(acl, v4("127.1.2.3"), "XFR-KEY") == &acl[0]);  // case, trailing dot
        CHECK(acl_match(acl, v4("127.0.0.1"), "") == nullptr);          // unsigned
        CHECK(acl_match(acl, v4("127.0.0.1"), "other.") == nullptr);    // another key
    }
    SECTION("an entry without a key admits signed and unsigned requests") {
        CHECK(acl_match(acl, v4("192.0.2.77"), "") == &acl[1]);
        CHECK(acl_match(acl, v4("192.0.2.77"), "xfr-key.") == &acl[1]);
        CHECK(acl_match(acl, v4("192.0.3.1"), "") == nullptr);
    }
    SECTION("IPv6 and v4-mapped peers") {
        CHECK(acl_match(acl, v6("2001:db8::5"), "other") == &acl[2]);
        CHECK(acl_match(acl, v6("2001:db9::5"), "other") == nullptr);
        CHECK(acl_match(acl, v6("::ffff:192.0.2.9"), "") == &acl[1]);
        CHECK(acl_match(acl, v6("::1"), "xfr-key") == nullptr);
    }
    SECTION("the first admitting entry wins; an empty list admits nobody") {
        std::vector<AclEntry> two = {parse_acl("10.0.0.0/8 key a"), parse_acl("10.0.0.0/8")};
        CHECK(acl_match(two, v4("10.1.1.1"), "b") == &two[1]);
        CHECK(acl_match(two, v4("10.1.1.1"), "a") == &two[0]);
        CHECK(acl_match({}, v4("10.1.1.1"), "") == nullptr);
    }
    SECTION("an unknown address family is refused") {
        sockaddr_storage none{};
        none.ss_family = AF_UNIX;
        CHECK(acl_match({parse_acl("::/0")}, none, "") == nullptr);
    }
}

TEST_CASE("xfrd config: review checks (duplicates, names, prefixes, IPv6 ports, store, update)",
          "[xfrd][config]") {
    // Duplicate listen entries (the same socket, however written).
    CHECK(load_error("store = \"/s\"\nlisten = [\"127.0.0.1:5300\", \"127.0.0.1@5300\"]\n")
              .find("key listen: duplicate listen address '127.0.0.1@5300' (same as "
                    "'127.0.0.1:5300')") != std::string::npos);
    CHECK(load_error("store = \"/s\"\nlisten = [\"[::1]:53\", \"::1\"]\n")
              .find("duplicate listen address") != std::string::npos);
    // Other ports / families are fine.
    {
        ConfigFile f("store = \"/s\"\nlisten = [\"127.0.0.1:5300\", \"127.0.0.1:5301\", \"[::1]:5300\"]\n");
        CHECK(load_config(f.path).listen.size() == 3);
    }
    // A zone name that is not a domain name.
    CHECK(load_error("store = \"/s\"\n[[zone]]\nname = \"a b.rpz\"\n")
              .find(":3: key zone[0].name: bad zone name 'a b.rpz'") != std::string::npos);
    CHECK(load_error("store = \"/s\"\n[[zone]]\nname = \"a\\\\032b.rpz\"\n")
              .find("bad zone name") != std::string::npos);
    // ACL prefixes with host bits set name the canonical form.
    CHECK(load_error("store = \"/s\"\n[[zone]]\nname = \"a.rpz\"\nallow-transfer = [\"10.0.0.1/8\"]\n")
              .find("key zone[0].allow-transfer[0]: '10.0.0.1/8' has host bits set: write "
                    "10.0.0.0/8") != std::string::npos);
    CHECK(load_error("store = \"/s\"\n[[zone]]\nname = \"a.rpz\"\nallow-notify = [\"2001:db8::1/32\"]\n")
              .find("write 2001:db8::/32") != std::string::npos);
    CHECK_NOTHROW(parse_acl("10.0.0.0/8"));
    CHECK_NOTHROW(parse_acl("127.0.0.1"));
    CHECK_NOTHROW(parse_acl("::1/128"));
    // "::1:53": refused as ambiguous; brackets say what is meant.
    CHECK(load_error("store = \"/s\"\nlisten = [\"::1:53\"]\n")
              .find("'::1:53' is ambiguous: write [::1]:53 for a port, or [::1:53] for the address") !=
          std::string::npos);
    CHECK_THROWS_AS(parse_endpoint("fe80::1:5300", 53), ConfigError);
    CHECK(port_of(parse_endpoint("[::1:53]", 5300)) == 5300);
    CHECK(port_of(parse_endpoint("[::1]:53", 5300)) == 53);
    CHECK(port_of(parse_endpoint("2001:db8::1", 5300)) == 5300);  // not ambiguous
    CHECK(port_of(parse_endpoint("::1", 5300)) == 5300);
    // A relative store path is refused.
    CHECK(load_error("store = \"var/store\"\n")
              .find(":1: key store: 'var/store' is a relative path") != std::string::npos);
    // allow-update on a zone with primaries is refused.
    CHECK(load_error("store = \"/s\"\n[[zone]]\nname = \"a.rpz\"\nprimaries = [\"127.0.0.1:5301\"]\n"
                     "allow-update = [\"127.0.0.1\"]\n")
              .find(":5: key zone[0].allow-update: zone 'a.rpz.' has primaries") != std::string::npos);
}
