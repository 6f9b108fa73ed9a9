// Removing cached answers that the current rules police (CacheSweeper).
//
// Locks (Unbound 1.17.1, util/storage/lruhash.c, slabhash.c,
// services/cache/rrset.c). Every step takes only locks Unbound's own lookups
// take, in the same order; a spin lock is held only for a few pointer reads,
// never while copying an answer, evaluating rules or allocating:
//  * reaching a hash bin: slab table lock -> bin lock (lruhash_lookup's
//    order), table lock released at once (it guards `array` and `size`,
//    which table_grow replaces; lruhash_lookup keeps it while it searches
//    the bin and lru_touch()es the entry). This is the only time the sweep
//    takes a table lock, once per bin, never per entry: no lookup by key,
//    so no lru_touch either (the sweep leaves the LRU order as it was).
//  * under the bin lock: each entry's read lock (lruhash_lookup's order:
//    bin, then entry), then the bin lock is released. A read-locked entry
//    is neither freed nor changed: lruhash_remove, reclaim_space and
//    lruhash_insert take its write lock before they free or replace its
//    key or data.
//  * per read-locked entry, without any spin lock: rrset_array_lock (the
//    answer's RRsets' read locks, in the order the reply lists them, with
//    the id and TTL checks the worker's answer_from_cache does), copy the
//    CNAME chain names and final addresses out, rrset_array_unlock, entry
//    unlock. RRset keys are never freed while Unbound runs (alloc_special
//    keeps them), so the id check is safe on any thread. Unbound takes an
//    RRset lock after a message entry lock, never the other way round, so
//    holding the read locks of a bin's few entries at once cannot deadlock.
//  * evaluating: no lock at all. Delegation facts (NSDNAME/NSIP rules only):
//    the RRset cache read as rrset_cache_lookup does, one RRset read lock at
//    a time, but without its LRU update and with the slab table lock held
//    only to reach the bin (facts.hpp, CacheRead::Peek).
//  * removing: slabhash_remove (table, bin, entry write lock), which frees
//    the key and the reply with free() (query_entry_delete,
//    reply_info_delete: no per-thread allocator), outside its locks.
// Nothing here touches a worker's scratch region, alloc cache, mesh or
// `now`: the sweep has its own region and is given the time.
//
// Order of a pass: slab by slab, bin by bin, from a start position (where
// an unfinished older pass stopped) to the end, then from the first slab
// round to the start position. A table only grows, by doubling
// (table_grow): an entry of bin j moves to a bin i with i mod old_size ==
// j, so i >= j, and a forward walk that goes on at the same index after a
// growth misses no entry (entries already seen may be seen again). Only the
// wrap-around part of the start slab, [0, start bin), walked after its
// upper part, could lose an entry to a bin above that was walked before:
// if that slab grew after its upper part was walked, it is walked once
// more, whole.
#include "module/cache.hpp"

#include "module/facts.hpp"

#include <cstring>
#include <memory>
#include <new>

extern "C" {
#include "services/cache/rrset.h"
#include "util/locks.h"
#include "util/storage/lruhash.h"
#include "util/storage/slabhash.h"
}

namespace dnsfw::module {

namespace {

/// Work units (hash bins reached plus answers checked) between polls.
constexpr std::size_t kPollEvery = 64;
/// Entries per bin the buffers hold at first (grown, outside any lock, for
/// a bin that has more).
constexpr std::size_t kInitialBinCapacity = 16;

}  // namespace

struct CacheSweeper::Impl {
    /// One cached answer, copied out under its locks.
    struct Answer {
        hashvalue_type hash;
        std::uint16_t qtype;
        std::size_t links;  ///< chain[0] is the query name
        std::uint8_t chain[kMaxChainLinks][rpz::kMaxNameWire + 1];
        std::size_t lens[kMaxChainLinks];
        std::size_t n_ips;
        rpz::IpAddress answer_ips[kMaxAnswerIps];
    };

    /// Where a pass is: `step` 0 .. slabs-1 walks slab (first_slab + step)
    /// from its start bin to its end; step `slabs` walks the start slab's
    /// bins [0, first_bin); step slabs+1 walks the start slab once more,
    /// whole (only if it grew meanwhile, see the file comment).
    struct Pass {
        slabhash* cache = nullptr;
        std::uint64_t generation = 0;
        std::size_t first_slab = 0;
        std::size_t first_bin = 0;
        std::size_t step = 0;
        std::size_t bin = 0;
        std::size_t start_slab_size = 0;  ///< size of the start slab when step 0 ended
        bool start_slab_grew = false;     ///< seen a different size during step `slabs`
        std::size_t examined = 0;
        std::size_t removed = 0;
        bool complete = true;
    };

    bool in_pass = false;
    Pass pass;
    SweepResult last;
    regional* scratch = nullptr;

    /// Entries of the bin being read (read-locked), and their copies.
    std::unique_ptr<lruhash_entry*[]> locked;
    std::unique_ptr<Answer[]> answers;
    std::size_t capacity = 0;

    ~Impl() {
        if (scratch != nullptr) regional_destroy(scratch);
    }

    /// Makes room for `n` entries per bin. False if memory ran out.
    bool reserve(std::size_t n) noexcept {
        if (n <= capacity) return true;
        auto l = std::unique_ptr<lruhash_entry*[]>(new (std::nothrow) lruhash_entry*[n]);
        auto a = std::unique_ptr<Answer[]>(new (std::nothrow) Answer[n]);
        if (!l || !a) return false;
        locked = std::move(l);
        answers = std::move(a);
        capacity = n;
        return true;
    }

    /// The slab step `step` of `p` walks.
    static std::size_t slab_of(const Pass& p, std::size_t slabs) noexcept {
        return p.step < slabs ? (p.first_slab + p.step) % slabs : p.first_slab;
    }

    /// Starts a pass over `cache` for `generation` at bin `bin` of slab `slab`.
    void begin(slabhash* cache, std::uint64_t generation, std::size_t slab, std::size_t bin) noexcept {
        pass = Pass{};
        pass.cache = cache;
        pass.generation = generation;
        pass.first_slab = cache->size != 0 ? slab % cache->size : 0;
        pass.first_bin = bin;
        pass.bin = bin;
        in_pass = true;
    }

    /// Copies one read-locked entry's answer into `a`. False for entries
    /// the sweep does not judge (not class IN, malformed key).
    bool copy_answer(const lruhash_entry* e, const WorkerSlot& rules, std::time_t now,
                     Answer& a) noexcept {
        const auto* key = static_cast<const msgreply_entry*>(e->key);
        if (key == nullptr || key->key.qclass != LDNS_RR_CLASS_IN) return false;
        const std::size_t len = key->key.qname_len;
        if (len == 0 || len > rpz::kMaxNameWire) return false;
        a.hash = e->hash;
        a.qtype = key->key.qtype;
        a.n_ips = 0;
        a.links = 1;
        std::memcpy(a.chain[0], key->key.qname, len);
        a.lens[0] = len;
        // With CLIENT-IP rules every entry goes: nothing else to read.
        auto* rep = static_cast<reply_info*>(e->data);
        if (rules.client_ip_rules || rep == nullptr) return true;
        if (!rrset_array_lock(rep->ref, rep->rrset_count, now)) {
            // An RRset changed or expired: no worker serves this message as
            // it is; judge it by its name alone.
            return true;
        }
        query_info qinfo{};
        qinfo.qname = key->key.qname;
        qinfo.qname_len = len;
        qinfo.qtype = key->key.qtype;
        qinfo.qclass = key->key.qclass;
        ChainLink links[kMaxChainLinks];
        const std::size_t n = walk_cname_chain(qinfo, rep, {links, kMaxChainLinks});
        for (std::size_t i = 1; i < n; ++i) {
            std::memcpy(a.chain[i], links[i].name.data(), links[i].name.size());
            a.lens[i] = links[i].name.size();
        }
        a.links = n > 0 ? n : 1;
        if (rules.response_ip_rules && n > 0) {
            a.n_ips = collect_answer_ips(rep, links[n - 1].name, {a.answer_ips, kMaxAnswerIps});
        }
        rrset_array_unlock(rep->ref, rep->rrset_count);
        return true;
    }

    /// What read_bin() found.
    enum class BinRead {
        Read,     ///< the bin's answers are in answers[0, n)
        PastEnd,  ///< the table has no bin of that index
        TooMany,  ///< more entries than `capacity`: nothing was read
    };

    /// Reads bin `b` of `table`: reaches it (table lock, bin lock, table
    /// lock released), read-locks its entries, releases the bin lock, then
    /// copies each answer out and unlocks its entry. `size` receives the
    /// table's size seen under its lock; `n` the answers copied; `entries`
    /// the entries in the bin.
    BinRead read_bin(lruhash* table, std::size_t b, const WorkerSlot& rules, std::time_t now,
                     std::size_t& size, std::size_t& n, std::size_t& entries) noexcept {
        n = 0;
        entries = 0;
        lock_quick_lock(&table->lock);
        size = table->size;
        if (b >= size) {
            lock_quick_unlock(&table->lock);
            return BinRead::PastEnd;
        }
        lruhash_bin* bin = &table->array[b];
        lock_quick_lock(&bin->lock);
        lock_quick_unlock(&table->lock);
        for (lruhash_entry* e = bin->overflow_list; e != nullptr; e = e->overflow_next) ++entries;
        if (entries > capacity) {
            lock_quick_unlock(&bin->lock);
            return BinRead::TooMany;
        }
        std::size_t k = 0;
        for (lruhash_entry* e = bin->overflow_list; e != nullptr; e = e->overflow_next) {
            lock_rw_rdlock(&e->lock);
            locked[k++] = e;
        }
        lock_quick_unlock(&bin->lock);
        for (std::size_t i = 0; i < k; ++i) {
            if (copy_answer(locked[i], rules, now, answers[n])) ++n;
            lock_rw_unlock(&locked[i]->lock);
        }
        return BinRead::Read;
    }

    /// Judges one copied answer; removes it if the rules police it now.
    void check(const CacheTables& tables, const WorkerSlot& rules, std::time_t now,
               const Answer& a) noexcept {
        bool remove = rules.client_ip_rules;
        if (!remove) {
            std::span<const std::uint8_t> ns_names[kMaxNsNames];
            rpz::IpAddress ns_ips[kMaxNsIps];
            for (std::size_t i = 0; i < a.links; ++i) {
                rpz::ResponseFacts facts;
                if (i + 1 == a.links) facts.answer_ips = {a.answer_ips, a.n_ips};
                if (rules.ns_rules && scratch != nullptr) {
                    std::size_t nn = 0;
                    std::size_t ni = 0;
                    collect_delegation(tables.rrset, now, scratch, {a.chain[i], a.lens[i]},
                                       {ns_names, kMaxNsNames}, nn, {ns_ips, kMaxNsIps}, ni,
                                       CacheRead::Peek);
                    facts.ns_names = {ns_names, nn};
                    facts.ns_ips = {ns_ips, ni};
                }
                rpz::Query q;
                q.qname = {a.chain[i], a.lens[i]};
                q.qtype = a.qtype;
                q.qclass = LDNS_RR_CLASS_IN;
                const rpz::Decision d = rpz::evaluate(*rules.snapshot, q, &facts);
                if (scratch != nullptr) regional_free_all(scratch);
                if (!d.matched) continue;
                remove = d.action() != rpz::Action::Passthru;
                break;  // the first link with a match decides
            }
        }
        if (!remove) return;
        query_info qinfo{};
        qinfo.qname = const_cast<std::uint8_t*>(a.chain[0]);
        qinfo.qname_len = a.lens[0];
        qinfo.qtype = a.qtype;
        qinfo.qclass = LDNS_RR_CLASS_IN;
        // The stored hash already covers the CD flag.
        slabhash_remove(tables.msg, a.hash, &qinfo);
        ++pass.removed;
    }

    /// One step of the pass: reads and judges one bin, or moves on to the
    /// next part of the pass. Returns the work units done; sets `done` when
    /// the pass is complete.
    std::size_t advance(const CacheTables& tables, const WorkerSlot& rules, std::time_t now,
                        bool& done) noexcept {
        Pass& p = pass;
        const std::size_t slabs = p.cache->size;
        done = false;
        const bool wrap_part = p.step == slabs;
        if (wrap_part && p.bin >= p.first_bin) {
            // [0, first_bin) of the start slab is read (first_bin 0: step 0
            // read it whole). A growth from now on moves no unread entry.
            if (p.first_bin != 0 && current_size(p.first_slab) != p.start_slab_size) {
                p.start_slab_grew = true;
            }
            if (!p.start_slab_grew) {
                done = true;
                return 0;
            }
            p.step = slabs + 1;
            p.bin = 0;
            return 1;
        }
        lruhash* table = p.cache->array[slab_of(p, slabs)];
        std::size_t size = 0;
        std::size_t n = 0;
        std::size_t entries = 0;
        const BinRead r = read_bin(table, p.bin, rules, now, size, n, entries);
        if (wrap_part && size != p.start_slab_size) p.start_slab_grew = true;
        switch (r) {
            case BinRead::PastEnd:
                if (wrap_part) {
                    p.bin = p.first_bin;  // the slab ends below first_bin
                    return 1;
                }
                if (p.step == slabs + 1) {
                    done = true;
                    return 1;
                }
                if (p.step == 0) p.start_slab_size = size;
                ++p.step;  // on to the next slab (or the wrap-around part)
                p.bin = 0;
                return 1;
            case BinRead::TooMany:
                if (!reserve(entries * 2)) {
                    p.complete = false;  // skip this bin: the pass is incomplete (logged)
                    ++p.bin;
                }
                return 1;  // else read the same bin again
            case BinRead::Read:
                break;
        }
        for (std::size_t i = 0; i < n; ++i) check(tables, rules, now, answers[i]);
        p.examined += n;
        ++p.bin;
        return 1 + n;
    }

    /// The size of slab `s` now (under its table lock).
    std::size_t current_size(std::size_t s) const noexcept {
        lruhash* table = pass.cache->array[s];
        lock_quick_lock(&table->lock);
        const std::size_t size = table->size;
        lock_quick_unlock(&table->lock);
        return size;
    }
};

CacheSweeper::CacheSweeper() : impl_(std::make_unique<Impl>()) {}
CacheSweeper::~CacheSweeper() = default;

std::uint64_t CacheSweeper::generation() const noexcept {
    return impl_->pass.generation;
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
    if (!m.reserve(kInitialBinCapacity)) {
        m.last = SweepResult{0, 0, false};  // out of memory before anything started
        return Outcome::Complete;
    }
    if (!m.in_pass || m.pass.generation != rules.generation || m.pass.cache != tables.msg) {
        // A new pass. If one for an older generation was under way in the
        // same cache, go on from where it stopped (wrapping around): the
        // entries it had not reached yet have waited longest.
        std::size_t slab = 0;
        std::size_t bin = 0;
        if (m.in_pass && m.pass.cache == tables.msg && tables.msg->size != 0) {
            slab = Impl::slab_of(m.pass, tables.msg->size);
            bin = m.pass.bin;
        }
        m.begin(tables.msg, rules.generation, slab, bin);
    }
    const auto t = static_cast<std::time_t>(now);
    std::size_t units = 0;
    for (;;) {
        if (units >= kPollEvery) {
            units = 0;
            if (poll() == SweepControl::Pause) return Outcome::Paused;
        }
        bool done = false;
        units += m.advance(tables, rules, t, done);
        if (done) break;
    }
    m.last = SweepResult{m.pass.examined, m.pass.removed, m.pass.complete};
    m.in_pass = false;
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
