// dnsfw::xfrd internal — the secondary side of a zone transfer, without the
// network: a parser that takes the response messages of an AXFR or IXFR one
// at a time (RFC 5936, RFC 1995), and the functions that commit a complete
// result to the store.
//
// Nothing here is committed until a response is complete: a transfer cut in
// the middle leaves the store untouched.
#pragma once

#include "store/store.hpp"
#include "tools/xfrd/config.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace dnsfw::xfrd {

/// One IXFR difference sequence: serial `from` -> `to`.
struct IxfrSequence {
    std::uint32_t from = 0;
    std::uint32_t to = 0;
    std::uint32_t to_soa_ttl = 0;
    std::vector<std::uint8_t> to_soa_rdata;
    std::vector<rpz::ZoneRecord> removed;  ///< apex SOA excluded
    std::vector<rpz::ZoneRecord> added;    ///< apex SOA excluded
};

/// Reads the messages of one transfer response. Not thread-safe.
class TransferParser {
public:
    enum class Mode : std::uint8_t { Axfr, Ixfr };
    enum class Step : std::uint8_t {
        More,      ///< the response goes on: feed the next message
        Done,      ///< complete: see kind()
        Fallback,  ///< IXFR refused by the primary (error rcode): ask AXFR instead
        Error,     ///< failed: see error()
    };
    enum class Kind : std::uint8_t {
        None,         ///< not complete
        UpToDate,     ///< IXFR answered with the client's own (or an older) SOA only
        Incremental,  ///< sequences()
        Full,         ///< records(): the whole zone (AXFR, or IXFR answered AXFR-style)
    };

    /// `client_serial`: the serial sent in an IXFR query (ignored for AXFR).
    /// `max_bytes`: the most message octets accepted (max-transfer-size).
    TransferParser(rpz::Name apex, Mode mode, std::uint16_t query_id,
                   std::uint32_t client_serial, std::uint64_t max_bytes);

    /// Feeds the next message (wire, without the TCP length prefix).
    Step feed(std::span<const std::uint8_t> message);

    Kind kind() const noexcept { return kind_; }
    const std::string& error() const noexcept { return error_; }
    /// The serial of the primary's SOA (the first record), once seen.
    std::uint32_t new_serial() const noexcept { return new_serial_; }
    std::uint32_t new_soa_ttl() const noexcept { return new_soa_ttl_; }
    const std::vector<std::uint8_t>& new_soa_rdata() const noexcept { return new_soa_rdata_; }
    /// Kind::Incremental: the sequences, oldest first.
    std::vector<IxfrSequence>& sequences() noexcept { return sequences_; }
    /// Kind::Full: every record of the zone, the apex SOA first (once).
    std::vector<rpz::ZoneRecord>& records() noexcept { return records_; }
    std::size_t messages() const noexcept { return messages_; }
    std::uint64_t bytes() const noexcept { return bytes_; }
    std::uint64_t record_count() const noexcept { return rrs_; }
    /// The rcode of a refusal (Step::Fallback / Error on rcode), else 0.
    unsigned rcode() const noexcept { return rcode_; }

private:
    enum class State : std::uint8_t { Start, FirstSoa, AxfrBody, IxfrDel, IxfrAdd, Done };
    Step fail(std::string why);
    Step record(rpz::ZoneRecord&& rr, std::uint16_t rr_class);

    rpz::Name apex_;
    Mode mode_;
    std::uint16_t query_id_;
    std::uint32_t client_serial_;
    std::uint64_t max_bytes_;

    State state_ = State::Start;
    Kind kind_ = Kind::None;
    std::string error_;
    unsigned rcode_ = 0;
    std::uint32_t new_serial_ = 0;
    std::uint32_t new_soa_ttl_ = 0;
    std::vector<std::uint8_t> new_soa_rdata_;
    rpz::ZoneRecord first_soa_;
    std::vector<IxfrSequence> sequences_;
    std::vector<rpz::ZoneRecord> records_;
    std::size_t messages_ = 0;
    std::uint64_t bytes_ = 0;
    std::uint64_t rrs_ = 0;
};

/// What a commit changed.
struct CommitResult {
    bool new_zone = false;
    bool changed = false;           ///< false: content and serial as stored already
    std::uint32_t from_serial = 0;  ///< stored serial before (0 for a new zone)
    std::uint32_t to_serial = 0;    ///< stored serial after
    std::uint64_t added = 0, removed = 0, changed_rules = 0;
    std::uint64_t rules = 0;        ///< rule count after
    std::size_t sequences = 0;      ///< IXFR: sequences committed
    std::vector<rpz::Diagnostic> diagnostics;  ///< records skipped (never fatal)
};

/// Thrown by the commit functions when the result cannot be applied (serial
/// going backwards, a sequence that does not start at the stored serial).
/// Store failures come as store::StoreError. Either way nothing of the
/// failing step was committed.
class CommitError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Commits IXFR sequences one by one, each as one Store::apply_delta (one
/// journal entry). Each sequence's RR changes are turned into rule changes
/// by rpz::apply_records against the zone as stored (read from a snapshot
/// that is released before the write). If a sequence fails, the ones before
/// it stay committed: `result` (filled as it goes) says how far it got, and
/// the exception propagates. `label` names the source in diagnostics.
void commit_ixfr(store::Store& store, const ZoneConfig& zone, std::vector<IxfrSequence>& sequences,
                 const std::string& label, CommitResult& result);

/// Commits a whole zone (AXFR): builds it with rpz::zone_from_records; if
/// the zone is stored, diffs it against the stored rules (rpz::diff_rules)
/// and applies that as one Store::apply_delta (the journal keeps leading to
/// it, so downstream secondaries can still IXFR), else replace_zone().
/// A serial older than the stored one (RFC 1982) is refused (CommitError)
/// unless `allow_older` (then the zone is replaced, clearing its journal).
/// The same serial with different content replaces
/// the zone (clearing its journal).
CommitResult commit_axfr(store::Store& store, const ZoneConfig& zone,
                         std::span<const rpz::ZoneRecord> records, const std::string& label,
                         bool allow_older = false);

}  // namespace dnsfw::xfrd
