// dnsfw::module — the query path: turn an Unbound query state into an
// rpz::Query, evaluate it against the worker's snapshot, and turn the
// Decision into an answer (or pass the query on to the next module).
//
// Everything here is noexcept and runs on the resolver thread that owns the
// query; the only locks are Unbound's own (and, for the maintenance
// thread's refresh queries only, the sweep gate's: sweep.hpp). No disk I/O apart from reading
// the store's memory map; no heap allocation apart from the query's region
// (and a one-off rebuild of per-worker caches after a store change).
#pragma once

#include "module/state.hpp"
#include "module/unbound.hpp"

namespace dnsfw::module {

/// operate(): events new/pass decide the policy; moddone finishes a query
/// that was passed down; a redirect's target result completes the answer.
void handle_operate(ModuleState& state, module_qstate* qstate, module_ev event, int id) noexcept;

/// inform_super(): the resolution of a redirect (local-data CNAME) target
/// finished; copy its answer into the waiting query's region.
void handle_inform_super(module_qstate* sub, int id, module_qstate* super) noexcept;

/// clear(): forget the per-query state (it lives in the query's region);
/// for a sweep anchor, stop its wake-up query and release the sweep gate
/// (waits until the maintenance thread no longer uses Unbound's caches).
/// `state` may be nullptr.
void handle_clear(ModuleState* state, module_qstate* qstate, int id) noexcept;

/// Unbound's inplace_cb_query_response hook (registered in init through
/// dynlib's wrapper): called by the iterator for every upstream reply,
/// before it classifies and caches it. For a query state this module
/// passed on with its answer kept out of the cache (until moddone approves
/// it), lifts qstate->no_cache_store for referrals only, so delegations are
/// still cached. Always returns 1.
int handle_query_response(module_qstate* qstate, dns_msg* response, int id) noexcept;

/// Unbound's inplace_cb_query hook (every query sent upstream): ends the
/// referral exception of handle_query_response() for guarded query states,
/// so only the referral itself reached the cache. Always returns 1 (0
/// would cancel the upstream query).
int handle_outgoing_query(module_qstate* qstate, int id) noexcept;

}  // namespace dnsfw::module
