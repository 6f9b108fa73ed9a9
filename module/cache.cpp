// Removing cached answers that the current rules police.
#include "module/cache.hpp"

#include "module/facts.hpp"

#include <cstring>
#include <vector>

extern "C" {
#include "util/storage/slabhash.h"
#include "services/cache/rrset.h"
#include "util/locks.h"
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

SweepResult remove_policed_answers(module_env* env, const WorkerSlot& slot) noexcept {
    SweepResult result;
    if (env == nullptr || env->msg_cache == nullptr || !slot.snapshot) return result;
    const rpz::RuleSource& rules = *slot.snapshot;
    CollectedKeys keys;
    regional* scratch = regional_create();
    if (scratch == nullptr) {
        result.complete = false;
        return result;
    }
    try {
        keys.items.reserve(4096);
        keys.names.reserve(4096 * 24);
    } catch (...) {
        regional_destroy(scratch);
        result.complete = false;
        return result;
    }
    slabhash_traverse(env->msg_cache, 0, &collect_key, &keys);
    result.complete = keys.complete;
    result.examined = keys.items.size();

    // Per entry: the chain names (copied) and the final link's addresses.
    std::uint8_t names[kMaxChainLinks][rpz::kMaxNameWire + 1];
    std::size_t lens[kMaxChainLinks];
    rpz::IpAddress answer_ips[kMaxAnswerIps];
    std::span<const std::uint8_t> ns_names[kMaxNsNames];
    rpz::IpAddress ns_ips[kMaxNsIps];

    for (const CollectedKeys::Item& item : keys.items) {
        query_info qinfo{};
        qinfo.qname = keys.names.data() + item.offset;
        qinfo.qname_len = item.length;
        qinfo.qtype = item.qtype;
        qinfo.qclass = LDNS_RR_CLASS_IN;
        bool remove = slot.client_ip_rules;
        if (!remove) {
            // Read the cached answer: entry lock, then its RRsets' locks.
            std::size_t n = 0;
            std::size_t n_ips = 0;
            lruhash_entry* e = slabhash_lookup(env->msg_cache, item.hash, &qinfo, 0);
            if (e == nullptr) continue;  // gone meanwhile
            auto* rep = static_cast<reply_info*>(e->data);
            if (rrset_array_lock(rep->ref, rep->rrset_count, *env->now)) {
                ChainLink links[kMaxChainLinks];
                n = walk_cname_chain(qinfo, rep, {links, kMaxChainLinks});
                for (std::size_t i = 0; i < n; ++i) {
                    std::memcpy(names[i], links[i].name.data(), links[i].name.size());
                    lens[i] = links[i].name.size();
                }
                if (slot.response_ip_rules && n > 0) {
                    n_ips = collect_answer_ips(rep, links[n - 1].name, {answer_ips, kMaxAnswerIps});
                }
                rrset_array_unlock(rep->ref, rep->rrset_count);
            } else {
                // An RRset changed or expired: the worker will not serve this
                // message; judge it by its name alone.
                std::memcpy(names[0], qinfo.qname, qinfo.qname_len);
                lens[0] = qinfo.qname_len;
                n = 1;
            }
            lock_rw_unlock(&e->lock);

            for (std::size_t i = 0; i < n; ++i) {
                rpz::ResponseFacts facts;
                if (i + 1 == n) facts.answer_ips = {answer_ips, n_ips};
                if (slot.ns_rules) {
                    std::size_t nn = 0;
                    std::size_t ni = 0;
                    collect_delegation(env, scratch, {names[i], lens[i]}, {ns_names, kMaxNsNames},
                                       nn, {ns_ips, kMaxNsIps}, ni);
                    facts.ns_names = {ns_names, nn};
                    facts.ns_ips = {ns_ips, ni};
                }
                rpz::Query q;
                q.qname = {names[i], lens[i]};
                q.qtype = item.qtype;
                q.qclass = LDNS_RR_CLASS_IN;
                const rpz::Decision d = rpz::evaluate(rules, q, &facts);
                regional_free_all(scratch);
                if (!d.matched) continue;
                remove = d.action() != rpz::Action::Passthru;
                break;  // the first link with a match decides
            }
        }
        if (!remove) continue;
        // The stored hash already covers the CD flag.
        slabhash_remove(env->msg_cache, item.hash, &qinfo);
        ++result.removed;
    }
    regional_destroy(scratch);
    return result;
}

void remove_cached_answer(module_qstate* qstate) noexcept {
    msg_cache_remove(qstate->env, qstate->qinfo.qname, qstate->qinfo.qname_len,
                     qstate->qinfo.qtype, qstate->qinfo.qclass, qstate->query_flags);
}

}  // namespace dnsfw::module
