// dnsfw::module — the facts of a resolved answer that the response-stage
// triggers need (rpz::ResponseFacts): the CNAME chain of the answer section,
// the A/AAAA addresses of its final name, and the name servers (names and
// addresses) of the zone cuts above each chain link, read from Unbound's
// RRset cache.
//
// Everything is noexcept and allocates only in the given region.
#pragma once

#include "module/unbound.hpp"
#include "rpz/rpz.hpp"

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <optional>
#include <span>

namespace dnsfw::module {

/// Longest CNAME chain followed in an answer (Unbound's iterator follows at
/// most 11 CNAMEs per query: MAX_RESTART_COUNT).
inline constexpr std::size_t kMaxChainLinks = 16;
/// Caps of the delegation facts per chain link.
inline constexpr std::size_t kMaxNsNames = 64;
inline constexpr std::size_t kMaxNsIps = 128;
/// Cap of answer addresses considered.
inline constexpr std::size_t kMaxAnswerIps = 64;

/// One name of the answer's CNAME chain. Link 0 is the query name.
struct ChainLink {
    std::span<const std::uint8_t> name;  ///< wire (points into the message / qinfo)
    /// Index in rep->rrsets of the CNAME RRset owned by this name (the step
    /// to the next link); rep->an_numrrsets for the last link.
    std::size_t cname_rrset = 0;
};

/// The chain of `msg`'s answer section starting at the query name. Loops
/// and chains longer than kMaxChainLinks stop the walk. Returns the number
/// of links (at least 1).
std::size_t walk_cname_chain(const query_info& qinfo, const reply_info* rep,
                             std::span<ChainLink> out) noexcept;

/// A/AAAA addresses owned by `name` in the answer section.
std::size_t collect_answer_ips(const reply_info* rep, std::span<const std::uint8_t> name,
                               std::span<rpz::IpAddress> out) noexcept;

/// How collect_delegation() reads the RRset cache.
enum class CacheRead {
    /// rrset_cache_lookup(): each RRset found also becomes the most recently
    /// used (a resolver thread answering a query).
    Lookup,
    /// The same locks in the same order, without the LRU update: the slab
    /// table lock only to reach the hash bin, the bin searched under the bin
    /// lock alone (the cache sweep: it must not reorder the LRU list, nor
    /// hold a table lock the resolver threads need while it searches).
    Peek,
};

/// The name servers of the zone cuts at or above `name`, most specific cut
/// first, as found in the RRset cache (NS RRsets of `name` and each
/// ancestor, the root included), and the cached A/AAAA addresses of those
/// name servers. NS names are copied into `region`. `names`/`ips` receive
/// at most their size; the counts are returned through n_names / n_ips.
/// RRsets whose TTL ended before `now` are skipped. Takes one RRset read
/// lock at a time (Unbound's locks only), so any thread may call it while
/// the cache exists.
void collect_delegation(rrset_cache* cache, std::time_t now, regional* region,
                        std::span<const std::uint8_t> name,
                        std::span<std::span<const std::uint8_t>> names, std::size_t& n_names,
                        std::span<rpz::IpAddress> ips, std::size_t& n_ips,
                        CacheRead how = CacheRead::Lookup) noexcept;

/// The client address as an rpz::IpAddress (IPv4 v4-mapped); nullopt for
/// other families.
std::optional<rpz::IpAddress> client_ip(const dnsfw_ub_client& client) noexcept;

}  // namespace dnsfw::module
