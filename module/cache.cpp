// Expiring cached answers that the current rules police.
#include "module/cache.hpp"

extern "C" {
#include "util/storage/slabhash.h"
}

namespace dnsfw::module {

namespace {

struct SweepContext {
    const rpz::RuleSource* rules = nullptr;
    std::size_t expired = 0;
};

/// slabhash_traverse callback; the entry is write-locked by the caller.
void expire_if_policed(lruhash_entry* entry, void* arg) {
    auto* ctx = static_cast<SweepContext*>(arg);
    auto* key = static_cast<msgreply_entry*>(entry->key);
    auto* rep = static_cast<reply_info*>(entry->data);
    if (key == nullptr || rep == nullptr || key->key.qclass != LDNS_RR_CLASS_IN) return;
    rpz::Query q;
    q.qname = {key->key.qname, key->key.qname_len};
    q.qtype = key->key.qtype;
    q.qclass = key->key.qclass;
    const rpz::Decision d = rpz::evaluate(*ctx->rules, q);
    if (!d.matched || d.action() == rpz::Action::Passthru) return;
    // Cached TTLs are absolute times: 0 is long past, so the worker treats
    // the entry as a miss (and serve-expired as too old) and the query
    // reaches this module again.
    rep->ttl = 0;
    rep->prefetch_ttl = 0;
    rep->serve_expired_ttl = 0;
    ++ctx->expired;
}

}  // namespace

std::size_t expire_policed_answers(module_env* env, const rpz::RuleSource& rules) noexcept {
    if (env == nullptr || env->msg_cache == nullptr) return 0;
    SweepContext ctx;
    ctx.rules = &rules;
    slabhash_traverse(env->msg_cache, 1, &expire_if_policed, &ctx);
    return ctx.expired;
}

void remove_cached_answer(module_qstate* qstate) noexcept {
    msg_cache_remove(qstate->env, qstate->qinfo.qname, qstate->qinfo.qname_len,
                     qstate->qinfo.qtype, qstate->qinfo.qclass, qstate->query_flags);
}

}  // namespace dnsfw::module
