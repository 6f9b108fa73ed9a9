// dnsfw::xfrd — the primary side: answers SOA queries, AXFR, IXFR and
// RFC 2136 UPDATE for the zones in the store, as configured.
//
// Network-free: the daemon hands over a request's bytes and the peer, and
// sends back the messages produced. Runs on the daemon's loop thread.
#pragma once

#include "store/store.hpp"
#include "tools/xfrd/config.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace dnsfw::xfrd {

/// Log sink: level ("debug", "info", "warning", "error") and one line.
using LogFn = std::function<void(std::string_view level, const std::string& line)>;

/// The remaining messages of an AXFR/IXFR response, produced one at a time so
/// a million-rule zone is never held in memory whole. Holds a store read
/// snapshot until destroyed (the zone is streamed as of the request).
///
/// A whole-zone stream (AXFR, IXFR fallback) reads the snapshot on a
/// producer thread of its own that stays at most a few chunks of records
/// ahead; the destructor stops and joins it. Destroy every stream before the
/// Store; while one lives, this process cannot grow the LMDB map (see
/// Store::snapshot). Messages are about 16 KiB; the question is in the first
/// only; each is signed when the request was (RFC 8945 5.3.1 chain).
class ResponseStream {
public:
    virtual ~ResponseStream() = default;
    /// Writes the next message (TSIG-signed when the request was) into `out`.
    /// False when the response is complete. Throws (store::StoreError, ...)
    /// if the store fails mid-stream: drop the connection (the client then
    /// sees a cut transfer and keeps its zone).
    virtual bool next(std::vector<std::uint8_t>& out) = 0;
};

/// What to do with one request.
struct Outcome {
    /// Messages to send now, in order (SOA answer, errors, UPDATE result,
    /// NOTIFY acknowledgement). Empty: send nothing (e.g. unparseable junk).
    std::vector<std::vector<std::uint8_t>> messages;
    /// AXFR/IXFR over TCP: the rest of the response, sent after `messages`.
    std::unique_ptr<ResponseStream> stream;
    /// An UPDATE changed this zone (presentation name): the daemon NOTIFYs
    /// its secondaries and records status.
    std::optional<std::string> changed_zone;
    /// The request was a NOTIFY for this zone from an allowed peer: the
    /// daemon schedules a refresh (secondary side). `messages` holds the ack.
    std::optional<std::string> notified_zone;
};

/// Answers requests for the configured zones. Not thread-safe (one per loop).
class Responder {
public:
    /// `store` (opened for writing) and `config` must outlive the Responder;
    /// after a reload, call set_config.
    Responder(store::Store& store, const Config& config, LogFn log);
    void set_config(const Config& config);

    /// Handles one request from `peer` (`tcp`: arrived over TCP). Malformed
    /// requests get FORMERR when the header parses, nothing otherwise;
    /// refused ACL/TSIG gets REFUSED / NOTAUTH with the TSIG error (RFC
    /// 8945); AXFR/IXFR over UDP gets a single SOA-only answer (IXFR) or
    /// REFUSED... every refusal is logged with the peer and reason.
    ///
    /// In detail: responses (QR=1) and messages under 12 octets: nothing.
    /// Not exactly one question: FORMERR. Opcodes other than QUERY, NOTIFY,
    /// UPDATE: NOTIMP. TSIG: malformed FORMERR; unknown key or algorithm
    /// NOTAUTH+BADKEY, bad MAC NOTAUTH+BADSIG (both unsigned), clock skew
    /// NOTAUTH+BADTIME (signed). QUERY: SOA at a configured apex (answer,
    /// AA), AXFR (TCP only), IXFR (RFC 1995: current or newer serial -> the
    /// SOA; over UDP -> the SOA; journal -> difference sequences; else the
    /// whole zone), other types REFUSED; zone not configured REFUSED (SOA) /
    /// NOTAUTH (AXFR/IXFR); not in allow-transfer REFUSED; configured but
    /// not yet in the store SERVFAIL. NOTIFY: ack (AA, question echoed) and
    /// notified_zone when the peer is a primary (by address, any port; with
    /// the primary's key if it has one) or in allow-notify, else REFUSED.
    /// UPDATE: see serve_update.cpp (RFC 2136; REFUSED for zones with
    /// primaries or peers outside allow-update). Store failures: SERVFAIL,
    /// logged as errors. Never throws.
    Outcome handle(std::span<const std::uint8_t> request, const sockaddr_storage& peer, bool tcp);

private:
    store::Store* store_;
    const Config* config_;
    LogFn log_;
};

}  // namespace dnsfw::xfrd
