// dnsfw::module — keeping Unbound's message cache consistent with the store.
//
// Unbound answers a repeated query from its message cache before any module
// runs. An answer cached before a rule existed would therefore bypass that
// rule until its TTL ran out. After every store change the first resolver
// thread that notices it removes the cached answers of every name the new
// rules police (see watch.hpp for how that thread is woken promptly).
#pragma once

#include "module/unbound.hpp"
#include "module/state.hpp"
#include "rpz/rpz.hpp"

#include <cstddef>

namespace dnsfw::module {

/// What remove_policed_answers() did.
struct SweepResult {
    std::size_t examined = 0;  ///< cached answers (class IN) looked at
    std::size_t removed = 0;   ///< of those, removed because a rule polices them now
    bool complete = true;      ///< false if memory ran out while collecting keys
};

/// Removes every message-cache entry of class IN that the rules of `slot`
/// (its snapshot and trigger summary) police with an action other than
/// PASSTHRU: a QNAME rule on the query name or on any CNAME target of the
/// cached answer, a Response-IP rule on its final A/AAAA records, an
/// NSDNAME/NSIP rule on the name servers of the zone cuts above a chain
/// link (as cached). If any active zone has CLIENT-IP rules, every entry is
/// removed (a cached answer would reach clients without the module).
/// Removed rather than expired, so serve-expired cannot answer with it
/// either. Must run on a resolver thread. Copies the keys out under each
/// slab's read lock (tens of ns per entry); then, per entry, reads the
/// cached answer under its own and its RRsets' read locks (the worker's
/// lock order), copies the chain names and addresses out, and evaluates
/// without holding any lock (a few microseconds per entry). Allocates (once
/// per store change).
SweepResult remove_policed_answers(module_env* env, const WorkerSlot& slot) noexcept;

/// Removes the cached answer of this query state's question (after an
/// answer resolved under an older store generation turned out to be
/// policed under the new one).
void remove_cached_answer(module_qstate* qstate) noexcept;

}  // namespace dnsfw::module
