// dnsfw::xfrd — TSIG (RFC 8945) over DNS messages in wire form.
//
// One TsigSession follows one exchange: a request and its response(s). For
// zone transfers every response message is signed and the MAC of each covers
// the previous one (RFC 8945 section 5.3.1); a verifier also accepts up to 99
// unsigned messages between signed ones, and requires the last to be signed.
#pragma once

#include "tools/xfrd/config.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dnsfw::xfrd {

/// What verifying a message found. The TSIG error codes (RFC 8945) of a
/// response to a bad request: BadKey 17, BadSig 16, BadTime 18.
enum class TsigResult : std::uint8_t {
    Ok,         ///< signed with the expected key, MAC and time valid
    Unsigned,   ///< no TSIG record
    BadKey,     ///< unknown key name or algorithm
    BadSig,     ///< MAC does not verify
    BadTime,    ///< outside the fudge window
    Malformed,  ///< TSIG record not last, not parseable, or several
};
std::string_view to_string(TsigResult r) noexcept;

/// The canonical name of a TSIG algorithm ("hmac-sha256." for
/// "HMAC-SHA256" or "hmac-sha256."; "hmac-md5.sig-alg.reg.int." for
/// "hmac-md5"), or nullopt if unsupported.
std::optional<std::string> canonical_tsig_algorithm(std::string_view name);

/// The name of the key a message's TSIG record names, if it has one.
std::optional<std::string> tsig_key_name(std::span<const std::uint8_t> message);

/// The fields of a message's TSIG record (logs, error responses).
struct TsigRecord {
    std::string key_name;   ///< presentation, lower-case, trailing dot
    std::string algorithm;  ///< presentation, lower-case, trailing dot, as sent
    std::uint64_t time_signed = 0;
    std::uint16_t fudge = 0;
    std::vector<std::uint8_t> mac;
    std::uint16_t original_id = 0;
    std::uint16_t error = 0;  ///< TSIG error field (0, 16 BADSIG, 17 BADKEY, 18 BADTIME)
    std::vector<std::uint8_t> other;
};
/// The TSIG record of `message`, if it has one that parses (and is last).
std::optional<TsigRecord> parse_tsig(std::span<const std::uint8_t> message);

/// One signed exchange. Not thread-safe; cheap to create.
class TsigSession {
public:
    /// Keeps a copy of `key`. A key of an unknown algorithm is accepted (to
    /// build BADKEY error responses naming it); signing with it throws
    /// std::invalid_argument and verifying gives BadKey.
    explicit TsigSession(const TsigKey& key);

    /// Client: signs the request `message` (wire without TSIG; ARCOUNT is
    /// updated) and remembers its MAC for verifying the responses.
    std::vector<std::uint8_t> sign_request(std::span<const std::uint8_t> message);
    /// Client: verifies the next response message of the exchange. The
    /// first response must be signed (Unsigned is then a refusal). Later
    /// messages may be unsigned (result Unsigned: keep going, they are
    /// covered by the next signed one) up to 99 in a row; the 100th is
    /// BadSig. A response carrying a TSIG error with an empty MAC (the
    /// server refused our key/MAC/time) gives BadKey/BadSig/BadTime.
    TsigResult verify_response(std::span<const std::uint8_t> message);
    /// Client: true once the last verified message was signed (call at the
    /// end of a transfer: an unsigned tail is refused).
    bool last_signed() const noexcept;

    /// Server: verifies a request and remembers its MAC for the responses.
    TsigResult verify_request(std::span<const std::uint8_t> message);
    /// Server: signs the next response message (the first covers the request
    /// MAC, each later one the previous response MAC).
    std::vector<std::uint8_t> sign_response(std::span<const std::uint8_t> message);
    /// Server: records a response message sent without TSIG (allowed after
    /// the first, up to 99 in a row); the next sign_response() covers it.
    /// Throws std::logic_error before the first signed response.
    void skip_response(std::span<const std::uint8_t> message);
    /// Server: a response to a request that failed verification (RFC 8945
    /// 5.3.2): TSIG with error `tsig_error` (16/17/18), unsigned MAC.
    std::vector<std::uint8_t> error_response(std::span<const std::uint8_t> message,
                                             std::uint16_t tsig_error);

    const TsigKey& key() const noexcept { return key_; }

    /// Tests: fixes the clock used for signing and the time check (unix
    /// seconds; 0 = the real clock).
    void set_clock(std::uint64_t unix_seconds) noexcept { clock_ = unix_seconds; }

    /// The fudge (seconds) put into signatures (RFC 8945 recommends 300).
    static constexpr std::uint16_t kFudge = 300;

private:
    std::uint64_t now() const noexcept;

    std::uint64_t clock_ = 0;
    std::vector<std::uint8_t> pending_;   ///< unsigned messages since the last signed one
    std::uint64_t request_time_ = 0;      ///< Time Signed of the verified request
    int algorithm_ = -1;                  ///< index into tsig.cpp's algorithm table, -1 unknown
    std::vector<std::uint8_t> key_wire_;  ///< key name, wire, lower-case
    std::vector<std::uint8_t> alg_wire_;  ///< algorithm name, wire, lower-case

    TsigKey key_;
    std::vector<std::uint8_t> prior_mac_;
    unsigned unsigned_run_ = 0;
    bool last_signed_ = false;
    bool first_ = true;
};

}  // namespace dnsfw::xfrd
