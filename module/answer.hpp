// dnsfw::module — building DNS messages in Unbound's structures.
//
// Everything is allocated in a query's region (qstate->region), which
// Unbound frees with the query; nothing here owns memory. All functions are
// noexcept and return nullptr / false when the region is out of memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "module/unbound.hpp"

namespace dnsfw::module {

/// One resource record to synthesise.
struct RrSpec {
    std::uint16_t type = 0;
    std::uint32_t ttl = 0;
    std::span<const std::uint8_t> rdata;  ///< uncompressed wire rdata
};

/// Builds one RRset (all records of `rrs` must share `type`) owned by
/// `owner` (wire) in class `rr_class`, copying owner and rdata into
/// `region`. The set is flagged as synthesised (PACKED_RRSET_RPZ), so it can
/// never be mistaken for cached network data.
ub_packed_rrset_key* make_rrset(regional* region, std::span<const std::uint8_t> owner,
                                std::uint16_t type, std::uint16_t rr_class,
                                std::span<const RrSpec> rrs) noexcept;

/// The sections of a synthesised reply.
struct ReplySections {
    std::span<ub_packed_rrset_key* const> answer;
    std::span<ub_packed_rrset_key* const> authority;
    std::span<ub_packed_rrset_key* const> additional;
};

/// Builds qstate->qinfo's reply with header `rcode` (QR and RA set, AA off,
/// TC if `truncated`) and the given RRsets (null entries are skipped). The
/// message is marked insecure, so a validator module never turns it into
/// SERVFAIL. Returns nullptr if out of memory.
dns_msg* make_reply(module_qstate* qstate, int rcode, bool truncated,
                    const ReplySections& sections) noexcept;

/// Appends an RFC 8914 Extended DNS Error option (info-code, extra text) to
/// the options Unbound sends the clients of this query
/// (qstate->edns_opts_front_out; sent when the client used EDNS).
bool add_ede(module_qstate* qstate, std::uint16_t info_code, std::string_view text) noexcept;

/// Makes Unbound send every UDP client of this query state an empty
/// NOERROR reply with TC=1 when the answer is ready, and TCP clients the
/// answer (the same mechanism as Unbound's own RPZ tcp-only action).
bool mark_tcp_only(module_qstate* qstate) noexcept;

}  // namespace dnsfw::module
