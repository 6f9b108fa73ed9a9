// dnsfw::xfrd internal — DNS wire-format helpers shared by the TSIG code,
// the Responder and (optionally) the secondary client: a bounds-checked
// reader, a message builder with owner-name compression, record conversion
// from ldns, and peer/serial utilities.
//
// Not a public header of the daemon: tools/xfrd/*.cpp and the xfrd unit
// tests include it. Nothing here touches the network or the store.
#pragma once

#include "rpz/rpz.hpp"

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

struct ldns_struct_rr;

namespace dnsfw::xfrd::wire {

// RR types, classes, opcodes and rcodes used by the daemon.
inline constexpr std::uint16_t kTypeA = 1;
inline constexpr std::uint16_t kTypeNs = 2;
inline constexpr std::uint16_t kTypeCname = 5;
inline constexpr std::uint16_t kTypeSoa = 6;
inline constexpr std::uint16_t kTypeMx = 15;
inline constexpr std::uint16_t kTypeAaaa = 28;
inline constexpr std::uint16_t kTypeOpt = 41;
inline constexpr std::uint16_t kTypeTsig = 250;
inline constexpr std::uint16_t kTypeIxfr = 251;
inline constexpr std::uint16_t kTypeAxfr = 252;
inline constexpr std::uint16_t kTypeAny = 255;
inline constexpr std::uint16_t kClassIn = 1;
inline constexpr std::uint16_t kClassNone = 254;
inline constexpr std::uint16_t kClassAny = 255;

inline constexpr std::uint8_t kOpcodeQuery = 0;
inline constexpr std::uint8_t kOpcodeNotify = 4;
inline constexpr std::uint8_t kOpcodeUpdate = 5;

inline constexpr std::uint8_t kRcodeNoError = 0;
inline constexpr std::uint8_t kRcodeFormErr = 1;
inline constexpr std::uint8_t kRcodeServFail = 2;
inline constexpr std::uint8_t kRcodeNxDomain = 3;
inline constexpr std::uint8_t kRcodeNotImp = 4;
inline constexpr std::uint8_t kRcodeRefused = 5;
inline constexpr std::uint8_t kRcodeYxDomain = 6;
inline constexpr std::uint8_t kRcodeYxRrset = 7;
inline constexpr std::uint8_t kRcodeNxRrset = 8;
inline constexpr std::uint8_t kRcodeNotAuth = 9;
inline constexpr std::uint8_t kRcodeNotZone = 10;

// Header flag bits (the 16-bit flags word).
inline constexpr std::uint16_t kFlagQr = 0x8000;
inline constexpr std::uint16_t kFlagAa = 0x0400;
inline constexpr std::uint16_t kFlagTc = 0x0200;
inline constexpr std::uint16_t kFlagRd = 0x0100;

/// Size of the DNS header.
inline constexpr std::size_t kHeaderSize = 12;

/// "NOERROR", "FORMERR", ... ("RCODE17" for others).
std::string rcode_name(unsigned rcode);

inline std::uint16_t get16(const std::uint8_t* p) noexcept {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t get32(const std::uint8_t* p) noexcept {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           p[3];
}
inline void put16(std::vector<std::uint8_t>& out, std::uint16_t v) {
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}
inline void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    put16(out, static_cast<std::uint16_t>(v >> 16));
    put16(out, static_cast<std::uint16_t>(v));
}
inline void set16(std::span<std::uint8_t> buf, std::size_t at, std::uint16_t v) noexcept {
    buf[at] = static_cast<std::uint8_t>(v >> 8);
    buf[at + 1] = static_cast<std::uint8_t>(v);
}

/// The fixed header of a message.
struct Header {
    std::uint16_t id = 0;
    std::uint16_t flags = 0;
    std::uint16_t qdcount = 0, ancount = 0, nscount = 0, arcount = 0;
    std::uint8_t opcode() const noexcept { return static_cast<std::uint8_t>((flags >> 11) & 0xf); }
    std::uint8_t rcode() const noexcept { return static_cast<std::uint8_t>(flags & 0xf); }
    bool qr() const noexcept { return (flags & kFlagQr) != 0; }
};

/// The header of `msg`, or nullopt if shorter than 12 octets.
std::optional<Header> read_header(std::span<const std::uint8_t> msg) noexcept;

/// Reads the (possibly compressed) name at `pos`, appending its uncompressed
/// wire form (case kept) to `out` (cleared first) and moving `pos` past the
/// name's octets in the message. False if malformed (bad pointer, loop,
/// too long, past the end).
bool read_name(std::span<const std::uint8_t> msg, std::size_t& pos, rpz::Name& out);

/// Lower-cases the ASCII letters of a wire name in place.
void lower_name(rpz::Name& name) noexcept;

/// One resource record as found in a message: offsets into the message.
struct RawRr {
    std::size_t start = 0;  ///< offset of the owner name
    rpz::Name owner;        ///< uncompressed, case as sent
    std::uint16_t type = 0;
    std::uint16_t cls = 0;
    std::uint32_t ttl = 0;
    std::size_t rdata = 0;  ///< offset of the rdata
    std::uint16_t rdlength = 0;
    std::size_t end = 0;  ///< offset after the record
};

/// Reads the question at `pos`: name, type, class. False if malformed.
bool read_question(std::span<const std::uint8_t> msg, std::size_t& pos, rpz::Name& qname,
                   std::uint16_t& qtype, std::uint16_t& qclass);
/// Reads the RR at `pos`. False if malformed or truncated.
bool read_rr(std::span<const std::uint8_t> msg, std::size_t& pos, RawRr& rr);

/// The TSIG record of a message, located.
struct TsigLocation {
    RawRr rr;  ///< the TSIG RR (start = where the digest's message ends)
    bool found = false;
    bool malformed = false;  ///< message unparseable, or a TSIG that is not the last RR
};
/// Walks every section of `msg` to find a TSIG record. A TSIG anywhere but
/// as the last additional record, or a message that does not parse to its
/// end, sets `malformed`.
TsigLocation locate_tsig(std::span<const std::uint8_t> msg);

/// Builds one DNS message: header, question, then records in section order
/// (answer, authority, additional). Owner names are compressed against
/// earlier owners and the question name; rdata is written as given
/// (uncompressed, always valid). Counts are patched by finish().
class MessageBuilder {
  public:
    enum class Section { Answer = 0, Authority = 1, Additional = 2 };

    /// Starts a message with `id` and `flags` (opcode and rcode included).
    MessageBuilder(std::uint16_t id, std::uint16_t flags);

    /// Adds the question (at most one; before any record).
    void question(std::span<const std::uint8_t> qname, std::uint16_t qtype, std::uint16_t qclass);
    /// Adds one record to `section` (sections must not go backwards).
    void add(Section section, std::span<const std::uint8_t> owner, std::uint16_t type,
             std::uint16_t cls, std::uint32_t ttl, std::span<const std::uint8_t> rdata);
    /// Sets the rcode (low four bits of the flags).
    void set_rcode(std::uint8_t rcode) noexcept;
    /// Current size in octets.
    std::size_t size() const noexcept { return buf_.size(); }
    /// Records added so far (all sections).
    std::size_t record_count() const noexcept;
    /// Patches the counts and returns the message; the builder is left empty.
    std::vector<std::uint8_t> finish();

  private:
    void put_name(std::span<const std::uint8_t> name);

    std::vector<std::uint8_t> buf_;
    std::uint16_t counts_[4] = {0, 0, 0, 0};  // qd, an, ns, ar
    int section_ = 0;
    /// Lower-cased name suffix (wire) -> offset in buf_ (< 0x4000).
    std::unordered_map<std::string, std::uint16_t> names_;
};

/// Converts an ldns record into a ZoneRecord the way the zone parser does
/// (ldns_rr2canonical: owner and case-insensitive rdata names lower-cased;
/// rdata uncompressed). The class is not checked. nullopt if ldns cannot
/// write the rdata.
std::optional<rpz::ZoneRecord> zone_record_from_ldns(const ldns_struct_rr* rr);

/// Lower-cases the rdata names of `type` where the type's rdata names are
/// case-insensitive (RFC 4034 section 6.2), by a round trip through ldns.
/// Returns the rdata unchanged if ldns cannot parse it.
std::vector<std::uint8_t> canonical_rdata(std::uint16_t type, std::span<const std::uint8_t> rdata);

/// "127.0.0.1:5300" / "[::1]:5300" for an IPv4/IPv6 socket address.
std::string peer_text(const sockaddr_storage& peer);

/// The SOA serial field of uncompressed SOA rdata, or nullopt if malformed.
std::optional<std::uint32_t> soa_serial(std::span<const std::uint8_t> soa_rdata);
/// The SOA rdata with its serial replaced; unchanged if malformed.
std::vector<std::uint8_t> with_soa_serial(std::span<const std::uint8_t> soa_rdata,
                                          std::uint32_t serial);
/// The MNAME (primary server name) of SOA rdata, or nullopt if malformed.
std::optional<rpz::Name> soa_mname(std::span<const std::uint8_t> soa_rdata);

/// RFC 1982: true if serial `a` is newer than `b` (a > b in serial arithmetic).
constexpr bool serial_newer(std::uint32_t a, std::uint32_t b) noexcept {
    return a != b && static_cast<std::uint32_t>(a - b) < 0x80000000u;
}

}  // namespace dnsfw::xfrd::wire
