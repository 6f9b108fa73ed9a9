// Removing cached answers that the current rules police (CacheSweeper).
//
// Locks (Unbound 1.17.1, util/storage/lruhash.c, slabhash.c,
// services/cache/rrset.c): every step below takes only the locks Unbound's
// own lookups take, in the same order, and holds them only while copying:
//  * collecting keys: slab table lock -> bin lock, table lock released
//    (as lruhash_lookup does), the bin's keys copied into a preallocated
//    buffer (no allocation while a spin lock is held), bin lock released.
//    An entry's key never changes while it is in the table, and its memory
//    is freed only after it left the bin (lruhash_remove frees outside the
//    bin lock), so reading keys under the bin lock is what Unbound's own
//    bin_find_entry does.
//  * reading one answer: slabhash_lookup (entry read lock), then
//    rrset_array_lock (the answer's RRsets' read locks, in the order the
//    reply lists them, with the id and TTL checks the worker's
//    answer_from_cache does), copy out, rrset_array_unlock, entry unlock.
//    RRset keys are never freed while Unbound runs (alloc_special keeps
//    them), so the id check is safe on any thread.
//  * delegation facts: rrset_cache_lookup, one read lock at a time.
//  * removing: slabhash_remove (table, bin, entry write lock), which frees
//    the key and the reply with free() (query_entry_delete,
//    reply_info_delete: no per-thread allocator).
// Nothing here touches a worker's scratch region, alloc cache, mesh or
// `now`: the sweep has its own region and is given the time.
#include "module/cache.hpp"

#include "module/facts.hpp"

#include <cstring>
#include <vector>

extern "C" {
#include "services/cache/rrset.h"
#include "util/locks.h"
#include "util/storage/lruhash.h"
#include "util/storage/slabhash.h"
}

namespace dnsfw::module {

namespace {

/// Hash bins (while collecting) or entries (while checking) between polls.
constexpr std::size_t kPollEvery = 256;

}  // namespace

struct CacheSweeper::Impl {
    /// One collected message-cache key.
    struct Item {
        hashvalue_type hash;
        std::uint32_t offset;  ///< of the qname in `names`
        std::uint16_t length;
        std::uint16_t qtype;
    };

    std::vector<std::uint8_t> names;
    std::vector<Item> items;
    /// One bin's keys, copied under the bin lock (capacity reserved before).
    std::vector<std::uint8_t> bin_names;
    std::vector<Item> bin_items;

    bool collected = false;  ///< a pass is in progress (items hold its keys)
    bool out_of_memory = false;
    std::uint64_t generation = 0;  ///< of the pass in progress / the last one
    std::size_t start = 0;         ///< first index this pass checks
    std::size_t done = 0;          ///< entries checked so far in this pass
    std::size_t resume_at = 0;     ///< where the next pass starts
    std::size_t removed = 0;
    SweepResult last;
    regional* scratch = nullptr;

    ~Impl() {
        if (scratch != nullptr) regional_destroy(scratch);
    }

    /// Copies the keys of one bin into bin_items / bin_names. False if they
    /// did not fit (nothing partial is kept; `needed` says how many).
    bool copy_bin(const lruhash_bin& bin, std::size_t& needed) noexcept {
        bin_items.clear();
        bin_names.clear();
        needed = 0;
        bool fits = true;
        for (const lruhash_entry* e = bin.overflow_list; e != nullptr; e = e->overflow_next) {
            const auto* key = static_cast<const msgreply_entry*>(e->key);
            if (key == nullptr || key->key.qclass != LDNS_RR_CLASS_IN) continue;
            const std::size_t len = key->key.qname_len;
            if (len == 0 || len > 255) continue;
            ++needed;
            if (!fits || bin_items.size() == bin_items.capacity() ||
                bin_names.size() + len > bin_names.capacity()) {
                fits = false;
                continue;
            }
            // Within capacity: never allocates, never throws.
            const auto offset = static_cast<std::uint32_t>(bin_names.size());
            bin_names.insert(bin_names.end(), key->key.qname, key->key.qname + len);
            bin_items.push_back({e->hash, offset, static_cast<std::uint16_t>(len), key->key.qtype});
        }
        return fits;
    }

    /// Collects the keys of every class-IN entry, one bin at a time.
    Outcome collect(slabhash* msg, const std::function<SweepControl()>& poll) noexcept {
        names.clear();
        items.clear();
        out_of_memory = false;
        try {
            bin_items.reserve(64);
            bin_names.reserve(64 * 256);
        } catch (...) {
            out_of_memory = true;
            return Outcome::Complete;  // nothing collected: an empty pass
        }
        std::size_t since_poll = 0;
        for (std::size_t s = 0; s < msg->size; ++s) {
            lruhash* table = msg->array[s];
            const std::size_t slab_items = items.size();
            const std::size_t slab_names = names.size();
            lock_quick_lock(&table->lock);
            std::size_t size = table->size;
            lock_quick_unlock(&table->lock);
            for (std::size_t b = 0; b < size;) {
                if (++since_poll >= kPollEvery) {
                    since_poll = 0;
                    if (poll() == SweepControl::Pause) {
                        names.clear();
                        items.clear();
                        return Outcome::Paused;
                    }
                }
                lock_quick_lock(&table->lock);
                if (table->size != size) {
                    // The table grew (its bins were split): collect this
                    // slab again (entries seen twice are checked twice,
                    // none is missed).
                    size = table->size;
                    lock_quick_unlock(&table->lock);
                    items.resize(slab_items);
                    names.resize(slab_names);
                    b = 0;
                    continue;
                }
                lruhash_bin* bin = &table->array[b];
                lock_quick_lock(&bin->lock);
                lock_quick_unlock(&table->lock);
                std::size_t needed = 0;
                const bool fits = copy_bin(*bin, needed);
                lock_quick_unlock(&bin->lock);
                if (!fits) {
                    try {
                        bin_items.reserve(needed * 2);
                        bin_names.reserve(needed * 2 * 256);
                    } catch (...) {
                        out_of_memory = true;
                        ++b;  // skip this bin: the pass is incomplete (logged)
                    }
                    continue;  // copy the same bin again
                }
                try {
                    const auto base = static_cast<std::uint32_t>(names.size());
                    names.insert(names.end(), bin_names.begin(), bin_names.end());
                    for (Item it : bin_items) {
                        it.offset += base;
                        items.push_back(it);
                    }
                } catch (...) {
                    out_of_memory = true;  // check what was collected
                    return Outcome::Complete;
                }
                ++b;
            }
        }
        return Outcome::Complete;
    }

    /// Checks one cached answer; removes it if the rules police it now.
    void check(const CacheTables& tables, const WorkerSlot& slot, std::time_t now,
               const Item& item) noexcept {
        query_info qinfo{};
        qinfo.qname = names.data() + item.offset;
        qinfo.qname_len = item.length;
        qinfo.qtype = item.qtype;
        qinfo.qclass = LDNS_RR_CLASS_IN;
        bool remove = slot.client_ip_rules;
        if (!remove) {
            std::uint8_t chain[kMaxChainLinks][rpz::kMaxNameWire + 1];
            std::size_t lens[kMaxChainLinks];
            rpz::IpAddress answer_ips[kMaxAnswerIps];
            std::size_t n = 0;
            std::size_t n_ips = 0;
            // Read the cached answer: entry lock, then its RRsets' locks.
            lruhash_entry* e = slabhash_lookup(tables.msg, item.hash, &qinfo, 0);
            if (e == nullptr) return;  // gone meanwhile
            auto* rep = static_cast<reply_info*>(e->data);
            if (rrset_array_lock(rep->ref, rep->rrset_count, now)) {
                ChainLink links[kMaxChainLinks];
                n = walk_cname_chain(qinfo, rep, {links, kMaxChainLinks});
                for (std::size_t i = 0; i < n; ++i) {
                    std::memcpy(chain[i], links[i].name.data(), links[i].name.size());
                    lens[i] = links[i].name.size();
                }
                if (slot.response_ip_rules && n > 0) {
                    n_ips = collect_answer_ips(rep, links[n - 1].name, {answer_ips, kMaxAnswerIps});
                }
                rrset_array_unlock(rep->ref, rep->rrset_count);
            } else {
                // An RRset changed or expired: no worker serves this message
                // as it is; judge it by its name alone.
                std::memcpy(chain[0], qinfo.qname, qinfo.qname_len);
                lens[0] = qinfo.qname_len;
                n = 1;
            }
            lock_rw_unlock(&e->lock);

            std::span<const std::uint8_t> ns_names[kMaxNsNames];
            rpz::IpAddress ns_ips[kMaxNsIps];
            for (std::size_t i = 0; i < n; ++i) {
                rpz::ResponseFacts facts;
                if (i + 1 == n) facts.answer_ips = {answer_ips, n_ips};
                if (slot.ns_rules && scratch != nullptr) {
                    std::size_t nn = 0;
                    std::size_t ni = 0;
                    collect_delegation(tables.rrset, now, scratch, {chain[i], lens[i]},
                                       {ns_names, kMaxNsNames}, nn, {ns_ips, kMaxNsIps}, ni);
                    facts.ns_names = {ns_names, nn};
                    facts.ns_ips = {ns_ips, ni};
                }
                rpz::Query q;
                q.qname = {chain[i], lens[i]};
                q.qtype = item.qtype;
                q.qclass = LDNS_RR_CLASS_IN;
                const rpz::Decision d = rpz::evaluate(*slot.snapshot, q, &facts);
                if (scratch != nullptr) regional_free_all(scratch);
                if (!d.matched) continue;
                remove = d.action() != rpz::Action::Passthru;
                break;  // the first link with a match decides
            }
        }
        if (!remove) return;
        // The stored hash already covers the CD flag.
        slabhash_remove(tables.msg, item.hash, &qinfo);
        ++removed;
    }
};

CacheSweeper::CacheSweeper() : impl_(std::make_unique<Impl>()) {}
CacheSweeper::~CacheSweeper() = default;

std::uint64_t CacheSweeper::generation() const noexcept {
    return impl_->generation;
}
SweepResult CacheSweeper::result() const noexcept {
    return impl_->last;
}

CacheSweeper::Outcome CacheSweeper::run(const CacheTables& tables, const WorkerSlot& rules,
                                        std::int64_t now,
                                        const std::function<SweepControl()>& poll) noexcept {
    Impl& m = *impl_;
    if (tables.msg == nullptr || !rules.snapshot) return Outcome::Complete;
    if (m.scratch == nullptr) m.scratch = regional_create();
    if (!m.collected || m.generation != rules.generation) {
        // A new pass. If one for an older generation was under way, go on
        // from where it stopped (wrapping around): the entries it had not
        // reached yet have waited longest.
        if (m.collected && !m.items.empty()) m.resume_at = (m.start + m.done) % m.items.size();
        m.collected = false;
        m.generation = rules.generation;
        if (m.collect(tables.msg, poll) == Outcome::Paused) return Outcome::Paused;
        m.collected = true;
        m.start = m.items.empty() ? 0 : m.resume_at % m.items.size();
        m.done = 0;
        m.removed = 0;
    }
    const std::size_t n = m.items.size();
    while (m.done < n) {
        if (m.done % kPollEvery == 0 && m.done != 0 && poll() == SweepControl::Pause) {
            return Outcome::Paused;
        }
        m.check(tables, rules, static_cast<std::time_t>(now), m.items[(m.start + m.done) % n]);
        ++m.done;
    }
    m.last = SweepResult{n, m.removed, !m.out_of_memory};
    m.collected = false;
    m.resume_at = 0;
    m.items.clear();
    m.names.clear();
    return Outcome::Complete;
}

SweepResult remove_policed_answers(module_env* env, const WorkerSlot& slot) noexcept {
    if (env == nullptr || env->msg_cache == nullptr) return {};
    try {
        CacheSweeper sweeper;
        const std::function<SweepControl()> never_stop = [] { return SweepControl::Continue; };
        sweeper.run({env->msg_cache, env->rrset_cache}, slot, static_cast<std::int64_t>(*env->now),
                    never_stop);
        return sweeper.result();
    } catch (...) {
        return SweepResult{0, 0, false};  // out of memory before anything started
    }
}

void remove_cached_answer(module_qstate* qstate) noexcept {
    msg_cache_remove(qstate->env, qstate->qinfo.qname, qstate->qinfo.qname_len, qstate->qinfo.qtype,
                     qstate->qinfo.qclass, qstate->query_flags);
}

}  // namespace dnsfw::module
