// collect_delegation() (module/facts.cpp) against Unbound's own RRset cache
// (services/cache/rrset.c from libunbound.a): CacheRead::Peek, the cache
// sweep's way of reading it, finds what rrset_cache_lookup finds, and leaves
// the LRU order alone.
#include <catch2/catch.hpp>

#include "module/facts.hpp"
#include "rpz/rpz.hpp"

extern "C" {
#include "services/cache/rrset.h"
#include "util/alloc.h"
#include "util/config_file.h"
#include "util/storage/lruhash.h"
#include "util/storage/slabhash.h"
}

#include <arpa/inet.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

using namespace dnsfw;
using module::CacheRead;

namespace {

rpz::Name wire(const std::string& text) {
    auto n = rpz::name_from_text(text);
    if (!n) throw std::invalid_argument(text);
    return *n;
}

/// Unbound's RRset cache with its allocator, as the daemon sets them up.
struct RrsetCache {
    config_file* cfg = config_create();
    alloc_cache alloc{};
    rrset_cache* cache = nullptr;
    std::time_t now = std::time(nullptr);

    RrsetCache() {
        if (cfg == nullptr) throw std::bad_alloc();
        alloc_init(&alloc, nullptr, 0);
        cache = rrset_cache_create(cfg, &alloc);
        if (cache == nullptr) throw std::bad_alloc();
    }
    ~RrsetCache() {
        rrset_cache_delete(cache);
        alloc_clear(&alloc);
        config_delete(cfg);
    }
    RrsetCache(const RrsetCache&) = delete;
    RrsetCache& operator=(const RrsetCache&) = delete;

    /// Caches `owner` `type` IN with the given rdatas (wire form, without
    /// the length), TTL `ttl` seconds from now (negative: expired).
    void add(const std::string& owner, std::uint16_t type,
             const std::vector<std::vector<std::uint8_t>>& rdatas, long ttl = 3600) {
        const rpz::Name name = wire(owner);
        std::size_t bytes = sizeof(packed_rrset_data);
        for (const auto& r : rdatas) bytes += sizeof(std::size_t) + sizeof(std::uint8_t*) +
                                              sizeof(time_t) + 2 + r.size();
        auto* d = static_cast<packed_rrset_data*>(std::calloc(1, bytes));
        ub_packed_rrset_key* k = alloc_special_obtain(&alloc);
        auto* dname = static_cast<std::uint8_t*>(std::malloc(name.size()));
        if (d == nullptr || k == nullptr || dname == nullptr) throw std::bad_alloc();
        d->ttl = now + ttl;
        d->count = rdatas.size();
        d->trust = rrset_trust_ans_noAA;
        d->security = sec_status_unchecked;
        d->rr_len = reinterpret_cast<std::size_t*>(d + 1);
        for (std::size_t i = 0; i < rdatas.size(); ++i) d->rr_len[i] = 2 + rdatas[i].size();
        packed_rrset_ptr_fixup(d);
        for (std::size_t i = 0; i < rdatas.size(); ++i) {
            d->rr_ttl[i] = d->ttl;
            d->rr_data[i][0] = static_cast<std::uint8_t>(rdatas[i].size() >> 8);
            d->rr_data[i][1] = static_cast<std::uint8_t>(rdatas[i].size());
            std::memcpy(d->rr_data[i] + 2, rdatas[i].data(), rdatas[i].size());
        }
        std::memcpy(dname, name.data(), name.size());
        k->rk.dname = dname;
        k->rk.dname_len = name.size();
        k->rk.type = htons(type);
        k->rk.rrset_class = htons(LDNS_RR_CLASS_IN);
        k->rk.flags = 0;
        k->entry.hash = rrset_key_hash(&k->rk);
        k->entry.data = d;
        rrset_ref ref{k, k->id};
        rrset_cache_update(cache, &ref, &alloc, now);
    }

    /// Every slab's RRsets, most recently used first ("owner/type").
    std::vector<std::string> lru_order() const {
        std::vector<std::string> out;
        for (std::size_t s = 0; s < cache->table.size; ++s) {
            lruhash* t = cache->table.array[s];
            lock_quick_lock(&t->lock);
            for (lruhash_entry* e = t->lru_start; e != nullptr; e = e->lru_next) {
                const auto* k = static_cast<const ub_packed_rrset_key*>(e->key);
                out.push_back(rpz::name_to_text({k->rk.dname, k->rk.dname_len}) + "/" +
                              std::to_string(ntohs(k->rk.type)));
            }
            lock_quick_unlock(&t->lock);
            out.push_back("|");
        }
        return out;
    }
};

struct Delegation {
    std::vector<std::string> names;
    std::vector<rpz::IpAddress> ips;
};

Delegation delegation(RrsetCache& c, const std::string& name, CacheRead how) {
    regional* region = regional_create();
    REQUIRE(region != nullptr);
    std::span<const std::uint8_t> names[module::kMaxNsNames];
    rpz::IpAddress ips[module::kMaxNsIps];
    std::size_t nn = 0;
    std::size_t ni = 0;
    const rpz::Name q = wire(name);
    module::collect_delegation(c.cache, c.now, region, q, {names, module::kMaxNsNames}, nn,
                               {ips, module::kMaxNsIps}, ni, how);
    Delegation d;
    for (std::size_t i = 0; i < nn; ++i) d.names.push_back(rpz::name_to_text(names[i]));
    d.ips.assign(ips, ips + ni);
    regional_destroy(region);
    return d;
}

}  // namespace

TEST_CASE("collect_delegation: Peek finds what rrset_cache_lookup finds, without touching "
          "the LRU order", "[facts][unbound]") {
    RrsetCache c;
    c.add("example.", LDNS_RR_TYPE_NS, {wire("ns1.example."), wire("ns2.other.")});
    c.add("ns1.example.", LDNS_RR_TYPE_A, {{192, 0, 2, 1}});
    c.add("ns2.other.", LDNS_RR_TYPE_AAAA,
          {{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}});
    c.add("sub.example.", LDNS_RR_TYPE_NS, {wire("ns.gone.")}, -10);  // expired
    c.add(".", LDNS_RR_TYPE_NS, {wire("a.root.")});
    // Entries the lookups do not touch, so the LRU order has a middle.
    for (int i = 0; i < 50; ++i) c.add("x" + std::to_string(i) + ".test.", LDNS_RR_TYPE_A, {{10, 0, 0, 1}});

    const auto order = c.lru_order();
    const Delegation peek = delegation(c, "www.sub.example.", CacheRead::Peek);
    CHECK(c.lru_order() == order);
    CHECK(peek.names == std::vector<std::string>{"ns1.example.", "ns2.other.", "a.root."});
    REQUIRE(peek.ips.size() == 2);
    std::uint8_t v4[4] = {192, 0, 2, 1};
    CHECK(peek.ips[0] == rpz::IpAddress::from_v4(v4));

    const Delegation lookup = delegation(c, "www.sub.example.", CacheRead::Lookup);
    CHECK(lookup.names == peek.names);
    CHECK(lookup.ips == peek.ips);
    CHECK(c.lru_order() != order);  // rrset_cache_lookup moved what it found to the front

    CHECK(delegation(c, "nowhere.invalid.", CacheRead::Peek).names ==
          std::vector<std::string>{"a.root."});
}
