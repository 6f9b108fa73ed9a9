// Removing cached answers that the current rules police.
#include "module/cache.hpp"

#include <cstring>
#include <vector>

extern "C" {
#include "util/storage/slabhash.h"
}

namespace dnsfw::module {

namespace {

/// The keys of the message cache, copied out under Unbound's locks so the
/// (slower) policy evaluation runs without holding any.
struct CollectedKeys {
    struct Item {
        hashvalue_type hash;
        std::uint32_t offset;  ///< of the qname in `names`
        std::uint16_t length;
        std::uint16_t qtype;
    };
    std::vector<std::uint8_t> names;
    std::vector<Item> items;
    bool complete = true;
};

/// slabhash_traverse callback (a C callback: must not throw).
void collect_key(lruhash_entry* entry, void* arg) {
    auto* keys = static_cast<CollectedKeys*>(arg);
    const auto* key = static_cast<const msgreply_entry*>(entry->key);
    if (key == nullptr || key->key.qclass != LDNS_RR_CLASS_IN || !keys->complete) return;
    const std::size_t len = key->key.qname_len;
    if (len == 0 || len > 255) return;
    try {
        const auto offset = static_cast<std::uint32_t>(keys->names.size());
        keys->names.insert(keys->names.end(), key->key.qname, key->key.qname + len);
        keys->items.push_back({entry->hash, offset, static_cast<std::uint16_t>(len), key->key.qtype});
    } catch (...) {
        keys->complete = false;  // out of memory: sweep what was collected
    }
}

}  // namespace

SweepResult remove_policed_answers(module_env* env, const rpz::RuleSource& rules) noexcept {
    SweepResult result;
    if (env == nullptr || env->msg_cache == nullptr) return result;
    CollectedKeys keys;
    try {
        keys.items.reserve(4096);
        keys.names.reserve(4096 * 24);
    } catch (...) {
        result.complete = false;
        return result;
    }
    slabhash_traverse(env->msg_cache, 0, &collect_key, &keys);
    result.complete = keys.complete;
    result.examined = keys.items.size();

    for (const CollectedKeys::Item& item : keys.items) {
        rpz::Query q;
        q.qname = {keys.names.data() + item.offset, item.length};
        q.qtype = item.qtype;
        q.qclass = LDNS_RR_CLASS_IN;
        const rpz::Decision d = rpz::evaluate(rules, q);
        if (!d.matched || d.action() == rpz::Action::Passthru) continue;
        // Removed, not just expired: serve-expired would still answer with
        // an expired entry. The stored hash already covers the CD flag.
        query_info qinfo{};
        qinfo.qname = keys.names.data() + item.offset;
        qinfo.qname_len = item.length;
        qinfo.qtype = item.qtype;
        qinfo.qclass = LDNS_RR_CLASS_IN;
        slabhash_remove(env->msg_cache, item.hash, &qinfo);
        ++result.removed;
    }
    return result;
}

void remove_cached_answer(module_qstate* qstate) noexcept {
    msg_cache_remove(qstate->env, qstate->qinfo.qname, qstate->qinfo.qname_len,
                     qstate->qinfo.qtype, qstate->qinfo.qclass, qstate->query_flags);
}

}  // namespace dnsfw::module
