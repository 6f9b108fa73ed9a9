// CacheSweeper (module/cache.cpp) against Unbound's own message cache: the
// slabhash/lruhash code of the Unbound the module is built for (linked from
// its libunbound.a), filled with answers the way dns_cache_store_msg files
// them, and a real LMDB store with QNAME rules. What the integration tests
// cannot aim at: a hash table that grows (table_grow moves entries between
// bins) at any moment of a pass, a pass for a newer generation that starts
// where a paused one stopped and wraps around, the LRU order, and a worker
// thread using the cache meanwhile.
#include <catch2/catch.hpp>

#include "module/cache.hpp"
#include "rpz/rpz.hpp"
#include "store/store.hpp"

extern "C" {
#include "util/storage/lruhash.h"
#include "util/storage/slabhash.h"
}

#include <algorithm>
#include <atomic>
#include <ctime>
#include <functional>
#include <new>
#include <stdexcept>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace dnsfw;
using module::CacheSweeper;
using module::CacheTables;
using module::SweepControl;
using module::WorkerSlot;

namespace {

constexpr const char* kZone = "sweep.rpz.";

/// A fresh directory, removed with everything in it.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "dnsfw-sweep-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

/// "n<i>.example." for every i in `policed`, as one list-format zone.
void load_rules(store::Store& s, const std::set<int>& policed) {
    std::string text;
    for (const int i : policed) text += "n" + std::to_string(i) + ".example\n";
    const auto zone_name = rpz::name_from_text(kZone);
    REQUIRE(zone_name);
    s.replace_zone(rpz::parse_zone_text(text, "test", *zone_name, rpz::InputFormat::List));
}

/// A writable store plus the read view the sweep judges by.
struct Rules {
    TempDir dir;
    store::Store writer;
    WorkerSlot slot;

    explicit Rules(const std::set<int>& policed)
        : writer(store::Store::open((dir.path / "store").string(), writer_options())) {
        load_rules(writer, policed);
        slot.snapshot = writer.snapshot({kZone});
        refresh();
    }
    void replace(const std::set<int>& policed) {
        load_rules(writer, policed);
        refresh();
    }
    void refresh() {
        slot.snapshot->refresh();
        slot.generation = slot.snapshot->generation();
    }
    static store::OpenOptions writer_options() {
        store::OpenOptions o;
        o.read_only = false;
        o.create = true;
        o.map_size = std::size_t{16} << 20;
        o.max_map_size = std::size_t{1} << 30;
        return o;
    }
};

/// Unbound's message cache, created as daemon.c creates it. insert() and
/// has() are safe on any thread (no Catch assertions in them).
struct MsgCache {
    slabhash* table;
    explicit MsgCache(std::size_t slabs)
        : table(slabhash_create(slabs, HASH_DEFAULT_STARTARRAY, std::size_t{256} << 20,
                                msgreply_sizefunc, query_info_compare, query_entry_delete,
                                reply_info_delete, nullptr)) {
        if (table == nullptr) throw std::bad_alloc();
    }
    ~MsgCache() { slabhash_delete(table); }
    MsgCache(const MsgCache&) = delete;
    MsgCache& operator=(const MsgCache&) = delete;

    CacheTables tables() const { return {table, nullptr}; }

    /// The key of `name` A in `qclass`; the name's wire form goes to `buf`.
    static query_info key(const std::string& name, std::uint16_t qclass, std::uint8_t (&buf)[256]) {
        const auto wire = rpz::name_from_text(name);
        if (!wire) throw std::invalid_argument(name);
        std::memcpy(buf, wire->data(), wire->size());
        query_info q{};
        q.qname = buf;
        q.qname_len = wire->size();
        q.qtype = LDNS_RR_TYPE_A;
        q.qclass = qclass;
        return q;
    }
    /// Stores an answer (no RRsets) for `name` A, as dns_cache_store_msg
    /// files one (the key owns a malloc'ed copy of the name).
    void insert(const std::string& name, std::uint16_t qclass = LDNS_RR_CLASS_IN) {
        std::uint8_t buf[256];
        query_info q = key(name, qclass, buf);
        q.qname = static_cast<std::uint8_t*>(std::malloc(q.qname_len));
        if (q.qname == nullptr) throw std::bad_alloc();
        std::memcpy(q.qname, buf, q.qname_len);
        reply_info* rep = construct_reply_info_base(nullptr, 0x8180, 1, 3600, 3600, 3600, 0, 0,
                                                    0, 0, sec_status_unchecked);
        const hashvalue_type h = query_info_hash(&q, BIT_RD);
        msgreply_entry* e = rep != nullptr ? query_info_entrysetup(&q, rep, h) : nullptr;
        if (e == nullptr) {
            std::free(q.qname);
            std::free(rep);
            throw std::bad_alloc();
        }
        slabhash_insert(table, h, &e->entry, rep, nullptr);
    }
    /// Whether `name` A is cached (a lookup: touches the LRU).
    bool has(const std::string& name, std::uint16_t qclass = LDNS_RR_CLASS_IN) const {
        std::uint8_t buf[256];
        query_info q = key(name, qclass, buf);
        lruhash_entry* e = slabhash_lookup(table, query_info_hash(&q, BIT_RD), &q, 0);
        if (e == nullptr) return false;
        lock_rw_unlock(&e->lock);
        return true;
    }
    void remove(const std::string& name) {
        std::uint8_t buf[256];
        query_info q = key(name, LDNS_RR_CLASS_IN, buf);
        slabhash_remove(table, query_info_hash(&q, BIT_RD), &q);
    }
    /// Every slab's entries, most recently used first, as "name/class".
    std::vector<std::vector<std::string>> lru_order() const {
        std::vector<std::vector<std::string>> out(table->size);
        for (std::size_t s = 0; s < table->size; ++s) {
            lruhash* t = table->array[s];
            lock_quick_lock(&t->lock);
            for (lruhash_entry* e = t->lru_start; e != nullptr; e = e->lru_next) {
                const auto* k = static_cast<const msgreply_entry*>(e->key);
                out[s].push_back(rpz::name_to_text({k->key.qname, k->key.qname_len}) + "/" +
                                 std::to_string(k->key.qclass));
            }
            lock_quick_unlock(&t->lock);
        }
        return out;
    }
    std::size_t bins(std::size_t slab) const {
        lruhash* t = table->array[slab];
        lock_quick_lock(&t->lock);
        const std::size_t n = t->size;
        lock_quick_unlock(&t->lock);
        return n;
    }
};

std::string name_of(int i) {
    return "n" + std::to_string(i) + ".example.";
}

std::set<int> every(int k, int n) {
    std::set<int> s;
    for (int i = 0; i < n; i += k) s.insert(i);
    return s;
}

std::int64_t now() {
    return static_cast<std::int64_t>(std::time(nullptr));
}

}  // namespace

TEST_CASE("CacheSweeper removes exactly the policed answers and keeps the LRU order",
          "[sweep][unbound]") {
    constexpr int kNames = 5000;
    const std::set<int> policed = every(7, kNames);
    Rules rules(policed);
    MsgCache cache(4);
    for (int i = 0; i < kNames; ++i) cache.insert(name_of(i));
    cache.insert(name_of(0), LDNS_RR_CLASS_CH);  // other classes are not judged
    const auto before = cache.lru_order();

    CacheSweeper sweeper;
    std::size_t polls = 0;
    const std::function<SweepControl()> poll = [&] {
        ++polls;
        return SweepControl::Continue;
    };
    REQUIRE(sweeper.run(cache.tables(), rules.slot, now(), poll) == CacheSweeper::Outcome::Complete);
    CHECK(sweeper.generation() == rules.slot.generation);
    CHECK(sweeper.result().examined == static_cast<std::size_t>(kNames));
    CHECK(sweeper.result().removed == policed.size());
    CHECK(sweeper.result().complete);
    CHECK(polls > 10);  // it lets go regularly

    // The LRU order of what is left is the order before the pass: the sweep
    // read every entry without moving it to the front.
    const auto after = cache.lru_order();
    std::size_t kept = 0;
    for (std::size_t s = 0; s < before.size(); ++s) {
        std::vector<std::string> expected;
        for (const auto& entry : before[s]) {
            const int i = std::stoi(entry.substr(1));
            if (entry.ends_with("/1") && policed.count(i) != 0) continue;  // removed
            expected.push_back(entry);
        }
        CHECK(after[s] == expected);
        kept += after[s].size();
    }
    CHECK(kept == kNames + 1 - policed.size());

    for (int i = 0; i < kNames; ++i) {
        INFO(name_of(i));
        CHECK(cache.has(name_of(i)) == (policed.count(i) == 0));
    }
    CHECK(cache.has(name_of(0), LDNS_RR_CLASS_CH));
}

TEST_CASE("CacheSweeper misses no answer while the hash tables grow under it",
          "[sweep][unbound]") {
    constexpr int kNames = 3000;
    const std::set<int> policed = every(3, kNames);
    Rules rules(policed);
    MsgCache cache(4);
    for (int i = 0; i < kNames; ++i) cache.insert(name_of(i));
    std::vector<std::size_t> bins_before;
    for (std::size_t s = 0; s < 4; ++s) bins_before.push_back(cache.bins(s));

    // Each poll stores 100 more answers (names no rule polices), so every
    // slab's table doubles during the pass, at any point of the walk.
    int next = 1'000'000;
    CacheSweeper sweeper;
    const std::function<SweepControl()> poll = [&] {
        for (int k = 0; k < 100; ++k) cache.insert(name_of(next++));
        return SweepControl::Continue;
    };
    REQUIRE(sweeper.run(cache.tables(), rules.slot, now(), poll) == CacheSweeper::Outcome::Complete);
    for (std::size_t s = 0; s < 4; ++s) CHECK(cache.bins(s) > bins_before[s]);
    CHECK(sweeper.result().removed == policed.size());
    for (int i = 0; i < kNames; ++i) {
        INFO(name_of(i));
        CHECK(cache.has(name_of(i)) == (policed.count(i) == 0));
    }
}

TEST_CASE("CacheSweeper: a newer generation's pass resumes where the paused one stopped and "
          "misses nothing when the start slab grows during the wrap-around",
          "[sweep][unbound]") {
    // One slab, so the start slab's two parts ([start, end), then [0, start))
    // are the whole pass. The table doubles at one poll of the second pass;
    // trying every poll puts that growth into each part of the walk in turn.
    constexpr int kNames = 900;  // below the table's 1024 bins
    const std::set<int> first = every(5, kNames);
    std::set<int> second = every(3, kNames);
    second.insert(first.begin(), first.end());
    int latest_growth = 0;
    for (int grow_at = 1; grow_at <= 40; ++grow_at) {
        INFO("growth at poll " << grow_at);
        Rules rules(first);
        MsgCache cache(1);
        for (int i = 0; i < kNames; ++i) cache.insert(name_of(i));
        CacheSweeper sweeper;
        // Pass 1: paused about halfway.
        int polls = 0;
        const std::function<SweepControl()> pause_midway = [&] {
            return ++polls >= 10 ? SweepControl::Pause : SweepControl::Continue;
        };
        REQUIRE(sweeper.run(cache.tables(), rules.slot, now(), pause_midway) ==
                CacheSweeper::Outcome::Paused);
        const std::uint64_t g1 = rules.slot.generation;
        rules.replace(second);
        REQUIRE(rules.slot.generation > g1);

        // Pass 2, for the newer rules: at poll `grow_at` enough answers are
        // stored to double the table.
        polls = 0;
        int next = 1'000'000;
        const std::size_t bins = cache.bins(0);
        const std::function<SweepControl()> grow = [&] {
            if (++polls == grow_at) {
                while (cache.bins(0) == bins) cache.insert(name_of(next++));
            }
            return SweepControl::Continue;
        };
        REQUIRE(sweeper.run(cache.tables(), rules.slot, now(), grow) ==
                CacheSweeper::Outcome::Complete);
        CHECK(sweeper.generation() == rules.slot.generation);
        if (polls >= grow_at) latest_growth = grow_at;
        for (int i = 0; i < kNames; ++i) {
            INFO(name_of(i));
            CHECK(cache.has(name_of(i)) == (second.count(i) == 0));
        }
    }
    // The first part of the walk ([start, end)) takes about 20 polls: some
    // growths fell into the wrap-around part.
    CHECK(latest_growth >= 25);
}

TEST_CASE("CacheSweeper runs while another thread uses the cache", "[sweep][unbound]") {
    constexpr int kNames = 20000;
    const std::set<int> policed = every(11, kNames);
    Rules rules(policed);
    MsgCache cache(4);
    for (int i = 0; i < kNames; ++i) cache.insert(name_of(i));

    // A "worker": looks answers up (cache hits), stores new ones, removes
    // some it stored (names no rule polices).
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> hits{0};
    std::thread worker([&] {
        int next = 2'000'000;
        unsigned x = 12345;
        while (!stop.load(std::memory_order_relaxed)) {
            x = x * 1103515245u + 12345u;
            const int i = static_cast<int>((x >> 8) % kNames);
            if (policed.count(i) == 0 && cache.has(name_of(i))) ++hits;
            cache.insert(name_of(next));
            if (next % 3 == 0) cache.remove(name_of(next - 1));
            ++next;
        }
    });
    CacheSweeper sweeper;
    const std::function<SweepControl()> poll = [] { return SweepControl::Continue; };
    const auto outcome = sweeper.run(cache.tables(), rules.slot, now(), poll);
    stop = true;
    worker.join();
    REQUIRE(outcome == CacheSweeper::Outcome::Complete);
    CHECK(hits.load() > 0);
    CHECK(sweeper.result().removed == policed.size());
    for (int i = 0; i < kNames; ++i) {
        INFO(name_of(i));
        CHECK(cache.has(name_of(i)) == (policed.count(i) == 0));
    }
}
