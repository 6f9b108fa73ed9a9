// dnsfw::xfrd — TSIG (RFC 8945) over wire-format messages.
//
// ldns 1.8.3's TSIG functions sign an ldns_pkt (re-serialising it, so the
// bytes signed are not the bytes we send) and report only true/false (no
// BADKEY/BADTIME distinction), so the MACs are computed here with
// OpenSSL's HMAC over the exact message octets.
//
// Digest input (RFC 8945 section 4.3):
//   request / first message:   [len|request MAC]  message  TSIG variables
//   later messages of a stream: len|prior MAC  messages since then  timers
// where "message" is the message without its TSIG record, ARCOUNT
// decremented and the ID replaced by the TSIG's Original ID, and the TSIG
// variables are key name, class ANY, TTL 0, algorithm, time signed, fudge,
// error, other len, other data (names in canonical lower-case wire form).
#include "tools/xfrd/tsig.hpp"

#include "tools/xfrd/serve_wire.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <memory>
#include <stdexcept>

namespace dnsfw::xfrd {

namespace {

struct Algorithm {
    std::string_view name;  ///< canonical, no trailing dot
    const char* digest;     ///< OpenSSL digest name
    std::size_t size;       ///< MAC size
};

constexpr std::array<Algorithm, 6> kAlgorithms = {{
    {"hmac-md5.sig-alg.reg.int", "MD5", 16},
    {"hmac-sha1", "SHA1", 20},
    {"hmac-sha224", "SHA224", 28},
    {"hmac-sha256", "SHA256", 32},
    {"hmac-sha384", "SHA384", 48},
    {"hmac-sha512", "SHA512", 64},
}};

/// Index into kAlgorithms of `name` (any case, trailing dot optional;
/// "hmac-md5" = the md5 entry), or -1.
int find_algorithm(std::string_view name) {
    std::string n(name);
    for (auto& c : n) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    if (!n.empty() && n.back() == '.') n.pop_back();
    if (n == "hmac-md5") n = "hmac-md5.sig-alg.reg.int";
    for (std::size_t i = 0; i < kAlgorithms.size(); ++i)
        if (kAlgorithms[i].name == n) return static_cast<int>(i);
    return -1;
}

struct MacFree {
    void operator()(EVP_MAC* m) const noexcept { EVP_MAC_free(m); }
};
struct MacCtxFree {
    void operator()(EVP_MAC_CTX* c) const noexcept { EVP_MAC_CTX_free(c); }
};

/// The HMAC implementation, fetched once per process.
EVP_MAC* hmac_method() {
    static const std::unique_ptr<EVP_MAC, MacFree> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
    if (!mac) throw std::runtime_error("TSIG: OpenSSL has no HMAC");
    return mac.get();
}

/// One HMAC computation.
class Hmac {
  public:
    Hmac(const Algorithm& alg, std::span<const std::uint8_t> key)
        : ctx_(EVP_MAC_CTX_new(hmac_method())) {
        if (!ctx_) throw std::bad_alloc();
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                                const_cast<char*>(alg.digest), 0),
                               OSSL_PARAM_construct_end()};
        // An empty key is legal HMAC input; OpenSSL wants a non-null pointer.
        static const unsigned char empty = 0;
        if (EVP_MAC_init(ctx_.get(), key.empty() ? &empty : key.data(), key.size(), params) != 1)
            throw std::runtime_error(std::string("TSIG: cannot initialise HMAC-") + alg.digest);
    }
    void update(std::span<const std::uint8_t> data) {
        if (!data.empty() && EVP_MAC_update(ctx_.get(), data.data(), data.size()) != 1)
            throw std::runtime_error("TSIG: HMAC update failed");
    }
    std::vector<std::uint8_t> final() {
        std::vector<std::uint8_t> out(EVP_MAX_MD_SIZE);
        std::size_t len = 0;
        if (EVP_MAC_final(ctx_.get(), out.data(), &len, out.size()) != 1)
            throw std::runtime_error("TSIG: HMAC final failed");
        out.resize(len);
        return out;
    }

  private:
    std::unique_ptr<EVP_MAC_CTX, MacCtxFree> ctx_;
};

void put48(std::vector<std::uint8_t>& out, std::uint64_t v) {
    wire::put16(out, static_cast<std::uint16_t>(v >> 32));
    wire::put32(out, static_cast<std::uint32_t>(v));
}

/// Feeds a MAC with its two-octet length (request MAC / prior MAC).
void feed_mac(Hmac& h, std::span<const std::uint8_t> mac) {
    std::vector<std::uint8_t> len;
    wire::put16(len, static_cast<std::uint16_t>(mac.size()));
    h.update(len);
    h.update(mac);
}

/// Feeds msg[0, end) with the header's ID and ARCOUNT replaced.
void feed_message(Hmac& h, std::span<const std::uint8_t> msg, std::size_t end, std::uint16_t id,
                  std::uint16_t arcount) {
    std::array<std::uint8_t, wire::kHeaderSize> hdr{};
    std::copy_n(msg.begin(), wire::kHeaderSize, hdr.begin());
    wire::set16(hdr, 0, id);
    wire::set16(hdr, 10, arcount);
    h.update(hdr);
    h.update(msg.subspan(wire::kHeaderSize, end - wire::kHeaderSize));
}

/// The TSIG variables (full) or the timers only.
struct Variables {
    std::span<const std::uint8_t> key_wire;
    std::span<const std::uint8_t> alg_wire;
    std::uint64_t time = 0;
    std::uint16_t fudge = 0;
    std::uint16_t error = 0;
    std::span<const std::uint8_t> other;
};

void feed_variables(Hmac& h, const Variables& v, bool timers_only) {
    std::vector<std::uint8_t> buf;
    if (!timers_only) {
        rpz::Name key(v.key_wire.begin(), v.key_wire.end());
        wire::lower_name(key);
        buf.insert(buf.end(), key.begin(), key.end());
        wire::put16(buf, wire::kClassAny);
        wire::put32(buf, 0);
        rpz::Name alg(v.alg_wire.begin(), v.alg_wire.end());
        wire::lower_name(alg);
        buf.insert(buf.end(), alg.begin(), alg.end());
    }
    put48(buf, v.time);
    wire::put16(buf, v.fudge);
    if (!timers_only) {
        wire::put16(buf, v.error);
        wire::put16(buf, static_cast<std::uint16_t>(v.other.size()));
        buf.insert(buf.end(), v.other.begin(), v.other.end());
    }
    h.update(buf);
}

/// Appends a TSIG RR to `msg` (which has none) and bumps ARCOUNT.
std::vector<std::uint8_t> append_tsig(std::span<const std::uint8_t> msg, const Variables& v,
                                      std::span<const std::uint8_t> mac) {
    std::vector<std::uint8_t> out(msg.begin(), msg.end());
    const std::uint16_t id = wire::get16(msg.data());
    const std::uint16_t arcount = wire::get16(msg.data() + 10);
    wire::set16(out, 10, static_cast<std::uint16_t>(arcount + 1));
    out.insert(out.end(), v.key_wire.begin(), v.key_wire.end());
    wire::put16(out, wire::kTypeTsig);
    wire::put16(out, wire::kClassAny);
    wire::put32(out, 0);
    std::vector<std::uint8_t> rdata(v.alg_wire.begin(), v.alg_wire.end());
    put48(rdata, v.time);
    wire::put16(rdata, v.fudge);
    wire::put16(rdata, static_cast<std::uint16_t>(mac.size()));
    rdata.insert(rdata.end(), mac.begin(), mac.end());
    wire::put16(rdata, id);
    wire::put16(rdata, v.error);
    wire::put16(rdata, static_cast<std::uint16_t>(v.other.size()));
    rdata.insert(rdata.end(), v.other.begin(), v.other.end());
    wire::put16(out, static_cast<std::uint16_t>(rdata.size()));
    out.insert(out.end(), rdata.begin(), rdata.end());
    return out;
}

/// A located and decoded TSIG record.
struct Found {
    wire::TsigLocation loc;
    TsigRecord rec;
    rpz::Name key_wire;  // lower-case
    rpz::Name alg_wire;  // lower-case
};

/// Parses the TSIG of `msg`. nullopt + malformed=false: unsigned.
std::optional<Found> find_tsig(std::span<const std::uint8_t> msg, bool& malformed) {
    malformed = false;
    Found f;
    f.loc = wire::locate_tsig(msg);
    if (f.loc.malformed) {
        malformed = true;
        return std::nullopt;
    }
    if (!f.loc.found) return std::nullopt;
    const wire::RawRr& rr = f.loc.rr;
    if (rr.cls != wire::kClassAny || rr.ttl != 0) {
        malformed = true;
        return std::nullopt;
    }
    std::size_t pos = rr.rdata;
    const std::span<const std::uint8_t> rd = msg.first(rr.end);  // nothing past the RR
    if (!wire::read_name(rd, pos, f.alg_wire) || pos + 10 > rr.end) {
        malformed = true;
        return std::nullopt;
    }
    const std::uint8_t* p = msg.data() + pos;
    f.rec.time_signed = (std::uint64_t{wire::get16(p)} << 32) | wire::get32(p + 2);
    f.rec.fudge = wire::get16(p + 6);
    const std::uint16_t mac_size = wire::get16(p + 8);
    pos += 10;
    if (pos + mac_size + 6 > rr.end) {
        malformed = true;
        return std::nullopt;
    }
    f.rec.mac.assign(msg.begin() + static_cast<long>(pos),
                     msg.begin() + static_cast<long>(pos + mac_size));
    pos += mac_size;
    p = msg.data() + pos;
    f.rec.original_id = wire::get16(p);
    f.rec.error = wire::get16(p + 2);
    const std::uint16_t other_len = wire::get16(p + 4);
    pos += 6;
    if (pos + other_len != rr.end) {
        malformed = true;
        return std::nullopt;
    }
    f.rec.other.assign(msg.begin() + static_cast<long>(pos),
                       msg.begin() + static_cast<long>(pos + other_len));
    f.key_wire = rr.owner;
    wire::lower_name(f.key_wire);
    wire::lower_name(f.alg_wire);
    f.rec.key_name = rpz::name_to_text(f.key_wire);
    f.rec.algorithm = rpz::name_to_text(f.alg_wire);
    return f;
}

bool mac_equal(std::span<const std::uint8_t> computed, std::span<const std::uint8_t> received) {
    // RFC 8945 5.2.2.1: a truncated MAC is acceptable down to half the hash
    // (at least 10 octets); compare the received prefix.
    const std::size_t min = std::max<std::size_t>(10, computed.size() / 2);
    if (received.size() > computed.size() || received.size() < min) return false;
    return CRYPTO_memcmp(computed.data(), received.data(), received.size()) == 0;
}

rpz::Name name_or_root(std::string_view text) {
    auto n = rpz::name_from_text(text);
    return n ? *n : rpz::Name{0};
}

}  // namespace

std::string_view to_string(TsigResult r) noexcept {
    switch (r) {
        case TsigResult::Ok:
            return "OK";
        case TsigResult::Unsigned:
            return "unsigned";
        case TsigResult::BadKey:
            return "BADKEY";
        case TsigResult::BadSig:
            return "BADSIG";
        case TsigResult::BadTime:
            return "BADTIME";
        case TsigResult::Malformed:
            return "malformed TSIG";
    }
    return "?";
}

std::optional<std::string> canonical_tsig_algorithm(std::string_view name) {
    const int i = find_algorithm(name);
    if (i < 0) return std::nullopt;
    return std::string(kAlgorithms[static_cast<std::size_t>(i)].name) + ".";
}

std::optional<TsigRecord> parse_tsig(std::span<const std::uint8_t> message) {
    bool malformed = false;
    auto f = find_tsig(message, malformed);
    if (!f) return std::nullopt;
    return std::move(f->rec);
}

std::optional<std::string> tsig_key_name(std::span<const std::uint8_t> message) {
    auto rec = parse_tsig(message);
    if (!rec) return std::nullopt;
    return std::move(rec->key_name);
}

TsigSession::TsigSession(const TsigKey& key)
    : algorithm_(find_algorithm(key.algorithm)), key_wire_(name_or_root(key.name)), key_(key) {
    if (algorithm_ >= 0)
        alg_wire_ = name_or_root(kAlgorithms[static_cast<std::size_t>(algorithm_)].name);
    else
        alg_wire_ = name_or_root(key.algorithm);
}

std::uint64_t TsigSession::now() const noexcept {
    return clock_ != 0 ? clock_ : static_cast<std::uint64_t>(std::time(nullptr));
}

std::vector<std::uint8_t> TsigSession::sign_request(std::span<const std::uint8_t> message) {
    if (algorithm_ < 0)
        throw std::invalid_argument("TSIG key " + key_.name + ": unknown algorithm " +
                                    key_.algorithm);
    if (message.size() < wire::kHeaderSize)
        throw std::invalid_argument("TSIG: message shorter than a DNS header");
    const Algorithm& alg = kAlgorithms[static_cast<std::size_t>(algorithm_)];
    const Variables v{key_wire_, alg_wire_, now(), kFudge, 0, {}};
    Hmac h(alg, key_.secret);
    feed_message(h, message, message.size(), wire::get16(message.data()),
                 wire::get16(message.data() + 10));
    feed_variables(h, v, false);
    prior_mac_ = h.final();
    first_ = true;
    last_signed_ = false;
    unsigned_run_ = 0;
    pending_.clear();
    return append_tsig(message, v, prior_mac_);
}

TsigResult TsigSession::verify_response(std::span<const std::uint8_t> message) {
    bool malformed = false;
    auto f = find_tsig(message, malformed);
    if (malformed) {
        last_signed_ = false;
        return TsigResult::Malformed;
    }
    if (!f) {
        last_signed_ = false;
        if (first_) return TsigResult::Unsigned;  // the first response must be signed
        if (++unsigned_run_ > 99) return TsigResult::BadSig;
        pending_.insert(pending_.end(), message.begin(), message.end());
        return TsigResult::Unsigned;
    }
    last_signed_ = false;
    if (algorithm_ < 0 || f->key_wire != key_wire_ ||
        find_algorithm(f->rec.algorithm) != algorithm_)
        return TsigResult::BadKey;
    if (f->rec.error != 0 && f->rec.mac.empty()) {
        // The server refused our request's TSIG (RFC 8945 5.3.2).
        switch (f->rec.error) {
            case 17:
                return TsigResult::BadKey;
            case 18:
                return TsigResult::BadTime;
            default:
                return TsigResult::BadSig;
        }
    }
    const Algorithm& alg = kAlgorithms[static_cast<std::size_t>(algorithm_)];
    Hmac h(alg, key_.secret);
    feed_mac(h, prior_mac_);
    h.update(pending_);
    const std::uint16_t arcount = wire::get16(message.data() + 10);
    feed_message(h, message, f->loc.rr.start, f->rec.original_id,
                 static_cast<std::uint16_t>(arcount - 1));
    const Variables v{f->key_wire,  f->alg_wire,  f->rec.time_signed,
                      f->rec.fudge, f->rec.error, f->rec.other};
    feed_variables(h, v, !first_);
    if (!mac_equal(h.final(), f->rec.mac)) return TsigResult::BadSig;
    const std::uint64_t t = now();
    if (t + f->rec.fudge < f->rec.time_signed || f->rec.time_signed + f->rec.fudge < t)
        return TsigResult::BadTime;
    if (f->rec.error == 18) return TsigResult::BadTime;  // signed BADTIME answer
    if (f->rec.error != 0) return TsigResult::BadSig;
    prior_mac_ = std::move(f->rec.mac);
    pending_.clear();
    unsigned_run_ = 0;
    first_ = false;
    last_signed_ = true;
    return TsigResult::Ok;
}

bool TsigSession::last_signed() const noexcept {
    return last_signed_;
}

TsigResult TsigSession::verify_request(std::span<const std::uint8_t> message) {
    prior_mac_.clear();
    first_ = true;
    pending_.clear();
    unsigned_run_ = 0;
    bool malformed = false;
    auto f = find_tsig(message, malformed);
    if (malformed) return TsigResult::Malformed;
    if (!f) return TsigResult::Unsigned;
    request_time_ = f->rec.time_signed;
    if (algorithm_ < 0 || f->key_wire != key_wire_ ||
        find_algorithm(f->rec.algorithm) != algorithm_)
        return TsigResult::BadKey;
    const Algorithm& alg = kAlgorithms[static_cast<std::size_t>(algorithm_)];
    Hmac h(alg, key_.secret);
    const std::uint16_t arcount = wire::get16(message.data() + 10);
    feed_message(h, message, f->loc.rr.start, f->rec.original_id,
                 static_cast<std::uint16_t>(arcount - 1));
    const Variables v{f->key_wire,  f->alg_wire,  f->rec.time_signed,
                      f->rec.fudge, f->rec.error, f->rec.other};
    feed_variables(h, v, false);
    if (!mac_equal(h.final(), f->rec.mac)) return TsigResult::BadSig;
    prior_mac_ = std::move(f->rec.mac);
    const std::uint64_t t = now();
    if (t + f->rec.fudge < f->rec.time_signed || f->rec.time_signed + f->rec.fudge < t)
        return TsigResult::BadTime;
    return TsigResult::Ok;
}

std::vector<std::uint8_t> TsigSession::sign_response(std::span<const std::uint8_t> message) {
    if (algorithm_ < 0)
        throw std::invalid_argument("TSIG key " + key_.name + ": unknown algorithm " +
                                    key_.algorithm);
    if (message.size() < wire::kHeaderSize)
        throw std::invalid_argument("TSIG: message shorter than a DNS header");
    const Algorithm& alg = kAlgorithms[static_cast<std::size_t>(algorithm_)];
    const Variables v{key_wire_, alg_wire_, now(), kFudge, 0, {}};
    Hmac h(alg, key_.secret);
    feed_mac(h, prior_mac_);
    h.update(pending_);
    feed_message(h, message, message.size(), wire::get16(message.data()),
                 wire::get16(message.data() + 10));
    feed_variables(h, v, !first_);
    prior_mac_ = h.final();
    pending_.clear();
    first_ = false;
    return append_tsig(message, v, prior_mac_);
}

void TsigSession::skip_response(std::span<const std::uint8_t> message) {
    if (first_) throw std::logic_error("TSIG: the first response must be signed");
    pending_.insert(pending_.end(), message.begin(), message.end());
}

std::vector<std::uint8_t> TsigSession::error_response(std::span<const std::uint8_t> message,
                                                      std::uint16_t tsig_error) {
    if (message.size() < wire::kHeaderSize)
        throw std::invalid_argument("TSIG: message shorter than a DNS header");
    const std::uint64_t t = now();
    if (tsig_error == 18 && algorithm_ >= 0 && !prior_mac_.empty()) {
        // BADTIME: signed with the request MAC; Time Signed echoes the
        // request, Other Data carries our clock (RFC 8945 5.2.3).
        std::vector<std::uint8_t> other;
        put48(other, t);
        const Variables v{key_wire_, alg_wire_, request_time_, kFudge, tsig_error, other};
        Hmac h(kAlgorithms[static_cast<std::size_t>(algorithm_)], key_.secret);
        feed_mac(h, prior_mac_);
        feed_message(h, message, message.size(), wire::get16(message.data()),
                     wire::get16(message.data() + 10));
        feed_variables(h, v, false);
        const auto mac = h.final();
        return append_tsig(message, v, mac);
    }
    const Variables v{key_wire_, alg_wire_, t, kFudge, tsig_error, {}};
    return append_tsig(message, v, {});
}

}  // namespace dnsfw::xfrd
