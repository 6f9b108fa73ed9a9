// dnsfw::module — keeping Unbound's message cache consistent with the store.
//
// Unbound answers a repeated query from its message cache before any module
// runs. An answer cached before a rule existed would therefore bypass that
// rule until its TTL ran out. After every store change the cached answers
// of every name the new rules police are removed: normally by the
// maintenance thread (sweep.hpp: CacheSweeper, anchored by a resolver
// thread), in the fallback mode by the first resolver thread that notices
// the change (remove_policed_answers()).
#pragma once

#include "module/state.hpp"
#include "module/sweep.hpp"
#include "module/unbound.hpp"
#include "rpz/rpz.hpp"

#include <cstddef>

namespace dnsfw::module {

/// Runs a complete CacheSweeper pass on this resolver thread (the fallback
/// when no sweep can be anchored): removes every message-cache entry of
/// class IN that the rules of `slot` police with an action other than
/// PASSTHRU (a QNAME rule on the query name or on any CNAME target of the
/// cached answer, a Response-IP rule on its final A/AAAA records, an
/// NSDNAME/NSIP rule on the name servers of the zone cuts above a chain
/// link, as cached), or every entry while CLIENT-IP rules are active.
/// Removed rather than expired, so serve-expired cannot answer with it
/// either. Allocates (once per store change).
SweepResult remove_policed_answers(module_env* env, const WorkerSlot& slot) noexcept;

/// Removes the cached answer of this query state's question (after an
/// answer resolved under an older store generation turned out to be
/// policed under the new one).
void remove_cached_answer(module_qstate* qstate) noexcept;

}  // namespace dnsfw::module
