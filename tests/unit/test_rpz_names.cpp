// Unit tests for dnsfw::rpz names and name keys.
#include <catch2/catch.hpp>

#include "rpz/rpz.hpp"

#include <string>

using namespace dnsfw::rpz;

namespace {

Name wire(std::initializer_list<std::uint8_t> bytes) { return Name(bytes); }

std::string key_str(const NameKey& k) {
    return std::string(reinterpret_cast<const char*>(k.bytes.data()), k.size);
}

Name must_parse(std::string_view text) {
    auto n = name_from_text(text);
    REQUIRE(n.has_value());
    return *n;
}

}  // namespace

TEST_CASE("name_from_text parses presentation format into lower-case wire", "[rpz][names]") {
    CHECK(must_parse("www.Example.COM") ==
          wire({3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0}));
    CHECK(must_parse("www.example.com.") == must_parse("WWW.EXAMPLE.COM"));
    CHECK(must_parse(".") == wire({0}));
    CHECK(must_parse("") == wire({0}));
    CHECK(must_parse("*.example") == wire({1, '*', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0}));
}

TEST_CASE("name_from_text handles escapes", "[rpz][names]") {
    CHECK(must_parse("a\\.b.c") == wire({3, 'a', '.', 'b', 1, 'c', 0}));
    CHECK(must_parse("a\\065") == wire({2, 'a', 'a', 0}));  // \065 = 'A', lower-cased
    CHECK(must_parse("\\000\\255") == wire({2, 0, 255, 0}));
    CHECK(must_parse("a\\\\b") == wire({3, 'a', '\\', 'b', 0}));
    CHECK_FALSE(name_from_text("a\\256").has_value());
    CHECK_FALSE(name_from_text("a\\12").has_value());
    CHECK_FALSE(name_from_text("a\\").has_value());
}

TEST_CASE("name_from_text rejects empty labels and over-long names", "[rpz][names]") {
    CHECK_FALSE(name_from_text("a..b").has_value());
    CHECK_FALSE(name_from_text(".a").has_value());
    CHECK_FALSE(name_from_text("a..").has_value());
    CHECK(name_from_text(std::string(63, 'x') + ".com").has_value());
    CHECK_FALSE(name_from_text(std::string(64, 'x') + ".com").has_value());

    // 4 labels of 63 = 4 * 64 + 1 = 257 octets: too long. 3*64 + 62 ('.'-less 61) fits.
    std::string l63(63, 'a');
    CHECK_FALSE(name_from_text(l63 + "." + l63 + "." + l63 + "." + l63).has_value());
    std::string max_name = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');
    auto n = name_from_text(max_name);
    REQUIRE(n.has_value());
    CHECK(n->size() == kMaxNameWire);
    CHECK_FALSE(name_from_text(max_name + "b").has_value());
}

TEST_CASE("name_to_text prints presentation format with escapes", "[rpz][names]") {
    CHECK(name_to_text(must_parse("www.example.com")) == "www.example.com.");
    CHECK(name_to_text(wire({0})) == ".");
    CHECK(name_to_text(wire({3, 'a', '.', 'b', 2, 0, 200, 0})) == "a\\.b.\\000\\200.");
    CHECK(name_to_text(wire({1, ' ', 0})) == "\\032.");
    CHECK(name_to_text(wire({3, 'a', 'b'})) == "<invalid>");
    CHECK(name_to_text(wire({})) == "<invalid>");
    // Round trip through text.
    Name odd = wire({4, 'a', ';', '(', 0x7f, 1, '*', 0});
    CHECK(must_parse(name_to_text(odd)) == odd);
}

TEST_CASE("name_wire_length validates wire names", "[rpz][names]") {
    CHECK(name_wire_length(wire({0})) == 1);
    CHECK(name_wire_length(wire({1, 'a', 0, 99})) == 3);  // trailing bytes are not part of it
    CHECK(name_wire_length(wire({})) == 0);
    CHECK(name_wire_length(wire({1, 'a'})) == 0);
    CHECK(name_wire_length(wire({2, 'a'})) == 0);
    CHECK(name_wire_length(wire({0xc0, 0x0c})) == 0);  // compression pointer
    Name l64(66, 'a');
    l64[0] = 64;
    l64.back() = 0;
    CHECK(name_wire_length(l64) == 0);
    // 256 octets: too long even if well-formed otherwise.
    Name too_long;
    for (int i = 0; i < 4; ++i) {
        too_long.push_back(63);
        too_long.insert(too_long.end(), 63, 'a');
    }
    too_long.push_back(0);
    CHECK(name_wire_length(too_long) == 0);
}

TEST_CASE("name_label_count counts non-root labels", "[rpz][names]") {
    CHECK(name_label_count(must_parse(".")) == 0);
    CHECK(name_label_count(must_parse("com")) == 1);
    CHECK(name_label_count(must_parse("a.b.example.com")) == 4);
    CHECK(name_label_count(wire({1, 'a'})) == 0);
}

TEST_CASE("make_name_key reverses labels and lower-cases", "[rpz][names]") {
    NameKey k;
    Name mixed = wire({3, 'W', 'w', 'W', 7, 'E', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'O', 'm', 0});
    REQUIRE(make_name_key(mixed, k));
    CHECK(key_str(k) == std::string("\3com\7example\3www"));

    REQUIRE(make_name_key(wire({0}), k));
    CHECK(k.size == 0);
    CHECK(name_key_to_text(k.view()) == ".");

    CHECK_FALSE(make_name_key(wire({3, 'a'}), k));
}

TEST_CASE("an ancestor's key is a byte prefix of its descendants' keys", "[rpz][names]") {
    NameKey parent, child, sibling;
    REQUIRE(make_name_key(must_parse("example.com"), parent));
    REQUIRE(make_name_key(must_parse("a.b.example.com"), child));
    REQUIRE(make_name_key(must_parse("example.community"), sibling));
    std::string p = key_str(parent), c = key_str(child), s = key_str(sibling);
    CHECK(c.compare(0, p.size(), p) == 0);
    // Label-length prefixes keep "example.community" out of example.com's range.
    CHECK(s.compare(0, p.size(), p) != 0);
}

TEST_CASE("name_key_to_text prints keys leaf first without trailing dot", "[rpz][names]") {
    NameKey k;
    REQUIRE(make_name_key(must_parse("example.com"), k));
    CHECK(name_key_to_text(k.view()) == "example.com");
    k.bytes[k.size++] = 1;
    k.bytes[k.size++] = '*';
    CHECK(name_key_to_text(k.view()) == "*.example.com");
    const std::uint8_t bad[] = {5, 'a', 'b'};
    CHECK(name_key_to_text(bad) == "<invalid>");
    const std::uint8_t zero[] = {0};
    CHECK(name_key_to_text(zero) == "<invalid>");
}
