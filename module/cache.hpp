// dnsfw::module — keeping Unbound's message cache consistent with the store.
//
// Unbound answers a repeated query from its message cache before any module
// runs. An answer cached before a rule existed would therefore bypass that
// rule until its TTL ran out. After every store change the first resolver
// thread that notices it expires the cached answers of every name the new
// rules police (see watch.hpp for how that thread is woken promptly).
#pragma once

#include "module/unbound.hpp"
#include "rpz/rpz.hpp"

#include <cstddef>

namespace dnsfw::module {

/// Expires (TTL 0, no prefetch, no serve-expired) every message-cache entry
/// of class IN whose query name matches a rule of `rules` with an action
/// other than PASSTHRU. Must run on a resolver thread (the cache may not be
/// touched elsewhere). Holds each cache slab's lock while it walks it, and
/// evaluates every entry (about a microsecond each). Returns the number of
/// entries expired.
std::size_t expire_policed_answers(module_env* env, const rpz::RuleSource& rules) noexcept;

/// Removes the cached answer of this query state's question (after an
/// answer resolved under an older store generation turned out to be
/// policed under the new one).
void remove_cached_answer(module_qstate* qstate) noexcept;

}  // namespace dnsfw::module
