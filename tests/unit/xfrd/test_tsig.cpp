// Unit tests of dnsfw::xfrd TSIG (RFC 8945): signing and verifying
// requests and multi-message responses, every failure kind, and messages
// signed by an independent implementation (dnspython 2.3, fixed clock).
#include "xfrd_test_util.hpp"

using namespace xfrd_test;
using dnsfw::xfrd::TsigKey;
using dnsfw::xfrd::TsigResult;
using dnsfw::xfrd::TsigSession;

namespace {

std::vector<std::uint8_t> from_hex(std::string_view hex) {
    std::vector<std::uint8_t> out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(
            static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
    return out;
}

const std::string kSecret = "0123456789abcdef0123456789abcdef";

std::vector<std::uint8_t> soa_response(std::uint16_t id, int n) {
    wire::MessageBuilder mb(id, wire::kFlagQr | wire::kFlagAa);
    mb.question(name("threat.rpz"), wire::kTypeAxfr, wire::kClassIn);
    mb.add(wire::MessageBuilder::Section::Answer, name("a" + std::to_string(n) + ".threat.rpz"),
           wire::kTypeCname, wire::kClassIn, 300, name("."));
    return mb.finish();
}

/// The offset of the TSIG MAC size field in a signed message.
std::size_t mac_size_offset(const std::vector<std::uint8_t>& msg) {
    auto loc = wire::locate_tsig(msg);
    REQUIRE(loc.found);
    std::size_t pos = loc.rr.rdata;
    rpz::Name alg;
    REQUIRE(wire::read_name(msg, pos, alg));
    return pos + 8;
}

}  // namespace

TEST_CASE("TSIG: request and multi-message response, every algorithm", "[xfrd][tsig]") {
    for (const char* alg :
         {"hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"}) {
        INFO(alg);
        const TsigKey key = make_key("xfr-key.", alg, kSecret);
        TsigSession client(key), server(key);
        const auto q = query("threat.rpz", wire::kTypeAxfr, 7);
        const auto signed_q = client.sign_request(q);
        CHECK(wire::get16(signed_q.data() + 10) == 1);  // ARCOUNT
        CHECK(dnsfw::xfrd::tsig_key_name(signed_q) == std::optional<std::string>("xfr-key."));
        REQUIRE(server.verify_request(signed_q) == TsigResult::Ok);
        for (int i = 0; i < 4; ++i) {
            const auto r = server.sign_response(soa_response(7, i));
            REQUIRE(client.verify_response(r) == TsigResult::Ok);
            CHECK(client.last_signed());
        }
    }
}

TEST_CASE("TSIG: tampering, wrong key, wrong algorithm", "[xfrd][tsig]") {
    const TsigKey key = make_key("xfr-key.", "hmac-sha256", kSecret);
    TsigSession client(key);
    auto signed_q = client.sign_request(query("threat.rpz", wire::kTypeAxfr));

    SECTION("a flipped bit in the message is BADSIG") {
        auto bad = signed_q;
        bad[14] ^= 0x20;  // first letter of the qname: case matters to the MAC
        TsigSession server(key);
        CHECK(server.verify_request(bad) == TsigResult::BadSig);
    }
    SECTION("another secret is BADSIG") {
        TsigSession server(make_key("xfr-key.", "hmac-sha256", "another secret entirely"));
        CHECK(server.verify_request(signed_q) == TsigResult::BadSig);
    }
    SECTION("another key name is BADKEY") {
        TsigSession server(make_key("other-key.", "hmac-sha256", kSecret));
        CHECK(server.verify_request(signed_q) == TsigResult::BadKey);
    }
    SECTION("another algorithm is BADKEY") {
        TsigSession server(make_key("xfr-key.", "hmac-sha512", kSecret));
        CHECK(server.verify_request(signed_q) == TsigResult::BadKey);
    }
    SECTION("an unsigned message is Unsigned") {
        TsigSession server(key);
        CHECK(server.verify_request(query("threat.rpz", wire::kTypeAxfr)) == TsigResult::Unsigned);
    }
    SECTION("a TSIG that is not the last record is malformed") {
        auto bad = signed_q;
        // Append a copy of an A record after the TSIG.
        const std::vector<std::uint8_t> a = {0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4};
        bad.insert(bad.end(), a.begin(), a.end());
        wire::set16(bad, 10, 2);
        TsigSession server(key);
        CHECK(server.verify_request(bad) == TsigResult::Malformed);
    }
    SECTION("a rewritten ID verifies through Original ID") {
        auto fwd = signed_q;
        wire::set16(fwd, 0, 0x9999);
        TsigSession server(key);
        CHECK(server.verify_request(fwd) == TsigResult::Ok);
    }
}

TEST_CASE("TSIG: time window", "[xfrd][tsig]") {
    const TsigKey key = make_key("xfr-key.", "hmac-sha256", kSecret);
    TsigSession client(key);
    client.set_clock(1'700'000'000);
    const auto signed_q = client.sign_request(query("threat.rpz", wire::kTypeSoa));
    TsigSession server(key);
    server.set_clock(1'700'000'000 + TsigSession::kFudge);
    CHECK(server.verify_request(signed_q) == TsigResult::Ok);
    server.set_clock(1'700'000'000 + TsigSession::kFudge + 1);
    CHECK(server.verify_request(signed_q) == TsigResult::BadTime);
    server.set_clock(1'700'000'000 - TsigSession::kFudge - 1);
    REQUIRE(server.verify_request(signed_q) == TsigResult::BadTime);

    // The BADTIME answer is signed with the request MAC; the client sees BadTime.
    wire::MessageBuilder mb(wire::get16(signed_q.data()), wire::kFlagQr | wire::kRcodeNotAuth);
    mb.question(name("threat.rpz"), wire::kTypeSoa, wire::kClassIn);
    const auto err = server.error_response(mb.finish(), 18);
    auto rec = dnsfw::xfrd::parse_tsig(err);
    REQUIRE(rec.has_value());
    CHECK(rec->error == 18);
    CHECK(rec->mac.size() == 32);
    CHECK(rec->time_signed == 1'700'000'000);  // echoes the request
    CHECK(rec->other.size() == 6);
    CHECK(client.verify_response(err) == TsigResult::BadTime);
}

TEST_CASE("TSIG: error responses name the problem to the client", "[xfrd][tsig]") {
    const TsigKey key = make_key("xfr-key.", "hmac-sha256", kSecret);
    TsigSession client(key);
    const auto signed_q = client.sign_request(query("threat.rpz", wire::kTypeAxfr));
    for (std::uint16_t code : {std::uint16_t{16}, std::uint16_t{17}}) {
        // A server that does not know the key answers with the request's key name.
        TsigSession server(TsigKey{"xfr-key.", "hmac-sha256.", {}, {}});
        wire::MessageBuilder mb(wire::get16(signed_q.data()), wire::kFlagQr | wire::kRcodeNotAuth);
        mb.question(name("threat.rpz"), wire::kTypeAxfr, wire::kClassIn);
        const auto err = server.error_response(mb.finish(), code);
        auto rec = dnsfw::xfrd::parse_tsig(err);
        REQUIRE(rec.has_value());
        CHECK(rec->error == code);
        CHECK(rec->mac.empty());
        TsigSession c2 = client;
        CHECK(c2.verify_response(err) == (code == 17 ? TsigResult::BadKey : TsigResult::BadSig));
    }
}

TEST_CASE("TSIG: unsigned messages inside a stream", "[xfrd][tsig]") {
    const TsigKey key = make_key("xfr-key.", "hmac-sha256", kSecret);
    TsigSession client(key), server(key);
    REQUIRE(server.verify_request(client.sign_request(query("threat.rpz", wire::kTypeAxfr, 9))) ==
            TsigResult::Ok);

    SECTION("the first response must be signed") {
        CHECK(client.verify_response(soa_response(9, 0)) == TsigResult::Unsigned);
        CHECK_FALSE(client.last_signed());
        CHECK_THROWS_AS(server.skip_response(soa_response(9, 0)), std::logic_error);
    }
    SECTION("unsigned messages are covered by the next signed one") {
        REQUIRE(client.verify_response(server.sign_response(soa_response(9, 0))) == TsigResult::Ok);
        for (int i = 1; i <= 3; ++i) {
            const auto m = soa_response(9, i);
            server.skip_response(m);
            CHECK(client.verify_response(m) == TsigResult::Unsigned);
            CHECK_FALSE(client.last_signed());
        }
        CHECK(client.verify_response(server.sign_response(soa_response(9, 4))) == TsigResult::Ok);
        CHECK(client.last_signed());
    }
    SECTION("a forged unsigned message breaks the next MAC") {
        REQUIRE(client.verify_response(server.sign_response(soa_response(9, 0))) == TsigResult::Ok);
        const auto m = soa_response(9, 1);
        server.skip_response(m);
        CHECK(client.verify_response(soa_response(9, 66)) == TsigResult::Unsigned);
        CHECK(client.verify_response(server.sign_response(soa_response(9, 2))) ==
              TsigResult::BadSig);
    }
    SECTION("the 100th unsigned message in a row is refused") {
        REQUIRE(client.verify_response(server.sign_response(soa_response(9, 0))) == TsigResult::Ok);
        for (int i = 1; i <= 99; ++i)
            REQUIRE(client.verify_response(soa_response(9, i)) == TsigResult::Unsigned);
        CHECK(client.verify_response(soa_response(9, 100)) == TsigResult::BadSig);
    }
    SECTION("a response from the stream replayed out of order fails") {
        const auto r1 = server.sign_response(soa_response(9, 0));
        const auto r2 = server.sign_response(soa_response(9, 1));
        REQUIRE(client.verify_response(r1) == TsigResult::Ok);
        CHECK(client.verify_response(r1) == TsigResult::BadSig);  // prior MAC moved on
    }
}

TEST_CASE("TSIG: truncated MACs (RFC 8945 5.2.2.1)", "[xfrd][tsig]") {
    const TsigKey key = make_key("xfr-key.", "hmac-sha256", kSecret);
    TsigSession client(key);
    const auto full = client.sign_request(query("threat.rpz", wire::kTypeAxfr));
    auto truncate = [&](std::size_t keep) {
        auto m = full;
        const std::size_t at = mac_size_offset(m);
        const std::size_t old = wire::get16(m.data() + at);
        m.erase(m.begin() + static_cast<long>(at + 2 + keep),
                m.begin() + static_cast<long>(at + 2 + old));
        wire::set16(m, at, static_cast<std::uint16_t>(keep));
        auto loc = wire::locate_tsig(full);
        wire::set16(m, loc.rr.rdata - 2,
                    static_cast<std::uint16_t>(loc.rr.rdlength - (old - keep)));
        return m;
    };
    TsigSession server(key);
    CHECK(server.verify_request(truncate(16)) == TsigResult::Ok);
    CHECK(server.verify_request(truncate(9)) == TsigResult::BadSig);
}

TEST_CASE("TSIG: messages signed by dnspython verify", "[xfrd][tsig][interop]") {
    // Generated with dnspython 2.3 (time.time() fixed at 1700000000), key
    // "test-key." secret "0123456789abcdef0123456789abcdef".
    struct Vector {
        const char* alg;
        const char* hex;
    };
    const Vector requests[] = {
        {"hmac-sha256",
         "2a2a01000001000000000001067468726561740372707a0000fc000108746573742d6b65790000fa00ff00000"
         "000003d0b686d61632d7368613235360000006553f100012c00206aeb1c8f18f1d7ba2bf84f16905fa4864f59"
         "6656ecc9946e635c2b6f6d7738ac2a2a00000000"},
        {"hmac-md5",
         "2a2a01000001000000000001067468726561740372707a0000fc000108746573742d6b65790000fa00ff00000"
         "000003a08484d41432d4d4435075349472d414c470352454703494e540000006553f100012c0010db93bf9889"
         "e79ddf82b54d56822e71aa2a2a00000000"},
        {"hmac-sha512",
         "2a2a01000001000000000001067468726561740372707a0000fc000108746573742d6b65790000fa00ff00000"
         "000005d0b686d61632d7368613531320000006553f100012c00408bbc1c16bb854a8020c7aaa1a1a15dd378d8"
         "86d9a62debde86d170c1e7c5c64eec47821ad80b22feca3ca03977460353569b4dd9f8d06b21c37f2e3c2d25e"
         "6382a2a00000000"},
        {"hmac-sha1",
         "2a2a01000001000000000001067468726561740372707a0000fc000108746573742d6b65790000fa00ff00000"
         "000002f09686d61632d736861310000006553f100012c00144aa72940c1297357e83b9e3e44a8e79cad06a379"
         "2a2a00000000"},
        {"hmac-sha224",
         "2a2a01000001000000000001067468726561740372707a0000fc000108746573742d6b65790000fa00ff00000"
         "00000390b686d61632d7368613232340000006553f100012c001c2f977d6bbfd23789db78be8a9c85e0b3ac62"
         "8b8e2ca603da941d82922a2a00000000"},
        {"hmac-sha384",
         "2a2a01000001000000000001067468726561740372707a0000fc000108746573742d6b65790000fa00ff00000"
         "000004d0b686d61632d7368613338340000006553f100012c0030ed646d390c967994aa674347e181f9d9e968"
         "cc0fb7df2a742acdb76426a5076f9f4afae5c6933e6c5221a56a25409c102a2a00000000"},
    };
    for (const auto& v : requests) {
        INFO(v.alg);
        TsigSession server(make_key("test-key.", v.alg, kSecret));
        server.set_clock(1'700'000'100);
        CHECK(server.verify_request(from_hex(v.hex)) == TsigResult::Ok);
    }

    // A three-message AXFR response to the sha256 request (first message
    // with the request MAC and all variables, later ones with timers only).
    const char* responses[] = {
        "2a2a85000001000200000001067468726561740372707a0000fc0001c00c0006000100000e10001d026e73c00c"
        "0168c00c0000000700000e1000000258000151800000003c026130c00c000500010000012c0001000874657374"
        "2d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006553f100012c0020133c4e9de327eb"
        "c476d63e1a4cfcda0ca833f1ec864dc4752a6402ba413de1c32a2a00000000",
        "2a2a85000000000100000001026131067468726561740372707a00000500010000012c00010008746573742d6b"
        "65790000fa00ff00000000003d0b686d61632d7368613235360000006553f100012c00203d29a279c089834064"
        "45671c00c4a568f75e33630f38db69f57b0c45e1f1b3402a2a00000000",
        "2a2a85000000000200000001026132067468726561740372707a00000500010000012c000100c00f0006000100"
        "000e10001d026e73c00f0168c00f0000000700000e1000000258000151800000003c08746573742d6b65790000"
        "fa00ff00000000003d0b686d61632d7368613235360000006553f100012c00208ff87ef767ca5cdfd656955deb"
        "0341eaa4f67dd6eb969b10d9dae18079d8f6782a2a00000000",
    };
    // A session that verified the request holds its MAC: it checks the
    // response chain as the client that sent the request would.
    TsigSession session(make_key("test-key.", "hmac-sha256", kSecret));
    session.set_clock(1'700'000'100);
    REQUIRE(session.verify_request(from_hex(requests[0].hex)) == TsigResult::Ok);
    for (const char* r : responses) CHECK(session.verify_response(from_hex(r)) == TsigResult::Ok);
    CHECK(session.last_signed());
    // Out of order, the chain breaks.
    TsigSession again(make_key("test-key.", "hmac-sha256", kSecret));
    again.set_clock(1'700'000'100);
    REQUIRE(again.verify_request(from_hex(requests[0].hex)) == TsigResult::Ok);
    CHECK(again.verify_response(from_hex(responses[1])) == TsigResult::BadSig);
}
