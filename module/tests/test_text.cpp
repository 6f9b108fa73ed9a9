// Unit tests for the allocation-free formatters (module/text.hpp) and the
// refresh-name check (module/watch.hpp).
#include <catch2/catch.hpp>

#include "module/text.hpp"
#include "module/watch.hpp"
#include "rpz/rpz.hpp"

#include <string>
#include <vector>

using namespace dnsfw::module;

namespace {

template <typename F>
std::string fmt(F&& f, std::size_t cap = 2048) {
    std::vector<char> storage(cap);
    TextBuffer b(storage.data(), storage.size());
    f(b);
    return std::string(b.view());
}

std::vector<std::uint8_t> wire(std::string_view text) {
    auto n = dnsfw::rpz::name_from_text(text);
    REQUIRE(n.has_value());
    return *n;
}

}  // namespace

TEST_CASE("TextBuffer never writes past its end", "[module][text]") {
    char storage[5];
    TextBuffer b(storage, sizeof storage);
    b.append("abc");
    CHECK_FALSE(b.truncated());
    b.append("def");
    CHECK(b.truncated());
    CHECK(b.view() == "abcde");
    CHECK(fmt([](TextBuffer& t) { t.append_uint_padded(7, 3); t.append_uint(1234567890123); }) ==
          "0071234567890123");
}

TEST_CASE("names print in presentation format with escapes", "[module][text]") {
    CHECK(fmt([](TextBuffer& t) { append_name(t, wire("www.Example.com")); }) == "www.example.com.");
    CHECK(fmt([](TextBuffer& t) { append_name(t, wire(".")); }) == ".");
    const std::vector<std::uint8_t> odd = {3, 'a', '.', 'b', 2, ' ', 0xff, 0};
    CHECK(fmt([&](TextBuffer& t) { append_name(t, odd); }) == "a\\.b.\\032\\255.");
    const std::vector<std::uint8_t> bad = {5, 'a', 'b', 0};
    CHECK(fmt([&](TextBuffer& t) { append_name(t, bad); }) == "<invalid>");
}

TEST_CASE("name keys print leaf first, without trailing dot", "[module][text]") {
    dnsfw::rpz::NameKey k;
    REQUIRE(dnsfw::rpz::make_name_key(wire("bad.example"), k));
    CHECK(fmt([&](TextBuffer& t) { append_name_key(t, k.view()); }) == "bad.example");
    // A wildcard owner: key of the parent + "\1*".
    k.bytes[k.size] = 1;
    k.bytes[k.size + 1] = '*';
    k.size += 2;
    CHECK(fmt([&](TextBuffer& t) { append_name_key(t, k.view()); }) == "*.bad.example");
    CHECK(fmt([](TextBuffer& t) { append_name_key(t, {}); }) == ".");
    // Consistent with the rpz library's own rendering.
    CHECK(fmt([&](TextBuffer& t) { append_name_key(t, k.view()); }) ==
          dnsfw::rpz::name_key_to_text(k.view()));
}

TEST_CASE("RR types and timestamps", "[module][text]") {
    CHECK(fmt([](TextBuffer& t) { append_rr_type(t, 1); }) == "A");
    CHECK(fmt([](TextBuffer& t) { append_rr_type(t, 28); }) == "AAAA");
    CHECK(fmt([](TextBuffer& t) { append_rr_type(t, 65); }) == "HTTPS");
    CHECK(fmt([](TextBuffer& t) { append_rr_type(t, 65280); }) == "TYPE65280");
    // 2026-12-03T16:10:48.123Z
    const std::int64_t ns = 1796314248LL * 1'000'000'000 + 123'456'789;
    CHECK(fmt([&](TextBuffer& t) { append_iso_time(t, ns); }) == "2026-12-03T16:10:48.123Z");
    CHECK(fmt([](TextBuffer& t) { append_iso_time(t, 0); }) == "1970-01-01T00:00:00.000Z");
}

TEST_CASE("JSON escaping", "[module][text]") {
    CHECK(fmt([](TextBuffer& t) { append_json_escaped(t, "a\\b\"c\n"); }) == "a\\\\b\\\"c\\u000a");
}

TEST_CASE("refresh names are recognised at label boundaries only", "[module][watch]") {
    CHECK(is_refresh_name(wire("refresh.dnsfw.internal")));
    CHECK(is_refresh_name(wire("g12-3.refresh.dnsfw.internal")));
    CHECK(is_refresh_name(wire("G12-3.REFRESH.Dnsfw.Internal.")));
    CHECK_FALSE(is_refresh_name(wire("xrefresh.dnsfw.internal")));
    CHECK_FALSE(is_refresh_name(wire("dnsfw.internal")));
    CHECK_FALSE(is_refresh_name(wire("refresh.dnsfw.internal.example")));
    CHECK_FALSE(is_refresh_name({}));
}
