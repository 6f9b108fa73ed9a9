// dnsfw::xfrd internal — pieces of the Responder (serve.hpp) shared by
// serve.cpp (dispatch, ACL/TSIG, SOA, NOTIFY), serve_xfr.cpp (AXFR/IXFR
// streams) and serve_update.cpp (RFC 2136 UPDATE). Not a public header.
#pragma once

#include "tools/xfrd/serve.hpp"
#include "tools/xfrd/serve_wire.hpp"
#include "tools/xfrd/tsig.hpp"

#include <optional>
#include <string>
#include <vector>

namespace dnsfw::xfrd::detail {

/// One request being answered: what was parsed from it and who sent it.
struct Request {
    std::span<const std::uint8_t> bytes;
    wire::Header header;
    rpz::Name qname;  ///< question / zone section name, case as sent
    rpz::Name qname_lower;
    std::uint16_t qtype = 0;
    std::uint16_t qclass = 0;
    std::size_t after_question = 0;  ///< offset of the first RR
    const sockaddr_storage* peer = nullptr;
    std::string peer_text;     ///< "127.0.0.1:40000"
    std::string peer_address;  ///< "127.0.0.1" (no port)
    bool tcp = false;
    /// The verified TSIG session (responses are signed with it), if signed.
    std::optional<TsigSession> tsig;
    std::string key_name;  ///< "" = unsigned

    /// " (key NAME)" or "" — appended to log lines.
    std::string key_note() const { return key_name.empty() ? "" : " (key " + key_name + ")"; }
};

/// Builds a response with the request's ID, opcode and RD bit, QR set,
/// AA if `aa`, rcode `rcode`, and the question echoed.
wire::MessageBuilder response_builder(const Request& req, std::uint8_t rcode, bool aa);

/// Finishes `mb`, signing it with the request's TSIG session if any.
std::vector<std::uint8_t> finish(Request& req, wire::MessageBuilder& mb);

/// A response carrying only the header, the question and `rcode` (signed if
/// the request was).
std::vector<std::uint8_t> error_message(Request& req, std::uint8_t rcode);

/// The apex NS record sent with the zone (the store keeps none; secondaries
/// such as Knot require one): the SOA MNAME. nullopt if the SOA is malformed.
std::optional<rpz::ZoneRecord> apex_ns(const rpz::Name& apex, const store::ZoneInfo& info);

/// The zone's SOA as a record.
rpz::ZoneRecord soa_record(const rpz::Name& apex, std::uint32_t ttl,
                           std::span<const std::uint8_t> rdata);

/// Target size of one AXFR/IXFR message (RFC 5936 allows 64 KiB; 16 KiB
/// keeps TCP writes and memory small).
inline constexpr std::size_t kMessageTarget = 16 * 1024;

/// AXFR (and IXFR that falls back to the whole zone): SOA, apex NS, every
/// rule's records, SOA, streamed from `snapshot` (one zone, index 0) by a
/// producer thread that converts rules while the caller sends. The
/// snapshot is used only by that thread until the stream is destroyed.
std::unique_ptr<ResponseStream> make_full_stream(Request& req, const rpz::Name& apex,
                                                 std::unique_ptr<store::Snapshot> snapshot);

/// IXFR from the journal: current SOA, then per entry SOA(from), removed
/// RRs, SOA(to), added RRs, then the current SOA (RFC 1995 section 4).
std::unique_ptr<ResponseStream> make_journal_stream(Request& req, const rpz::Name& apex,
                                                    std::vector<store::JournalEntry> entries);

/// Handles an UPDATE whose TSIG (if any) is verified and whose zone is `zone`.
Outcome handle_update(Request& req, const ZoneConfig& zone, store::Store& store, const LogFn& log);

/// Log helper: "zone NAME: text".
void log_zone(const LogFn& log, std::string_view level, std::string_view zone,
              const std::string& text);

}  // namespace dnsfw::xfrd::detail
