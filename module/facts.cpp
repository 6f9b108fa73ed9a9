// Response facts: CNAME chain, answer addresses, delegation path.
#include "module/facts.hpp"

#include <cstring>

extern "C" {
#include "services/cache/rrset.h"
#include "util/locks.h"
#include "util/storage/lruhash.h"
#include "util/storage/slabhash.h"
}

namespace dnsfw::module {

namespace {

const packed_rrset_data* data_of(const ub_packed_rrset_key* k) noexcept {
    return static_cast<const packed_rrset_data*>(k->entry.data);
}

bool same_name(std::span<const std::uint8_t> a, const std::uint8_t* b, std::size_t blen) noexcept {
    if (a.size() != blen) return false;
    return query_dname_compare(const_cast<std::uint8_t*>(a.data()),
                               const_cast<std::uint8_t*>(b)) == 0;
}

/// The wire name in an RR's rdata (after the 2-byte length), if well formed.
std::span<const std::uint8_t> rdata_name(const packed_rrset_data* d, std::size_t i) noexcept {
    if (d->rr_len[i] < 3) return {};
    const std::span<const std::uint8_t> wire{d->rr_data[i] + 2, d->rr_len[i] - 2};
    const std::size_t len = rpz::name_wire_length(wire);
    if (len == 0) return {};
    return wire.first(len);
}

/// Appends the addresses of one A/AAAA RRset.
void append_ips(const packed_rrset_data* d, std::uint16_t type, std::span<rpz::IpAddress> out,
                std::size_t& n) noexcept {
    for (std::size_t i = 0; i < d->count && n < out.size(); ++i) {
        if (type == LDNS_RR_TYPE_A && d->rr_len[i] == 2 + 4) {
            out[n++] = rpz::IpAddress::from_v4(d->rr_data[i] + 2);
        } else if (type == LDNS_RR_TYPE_AAAA && d->rr_len[i] == 2 + 16) {
            out[n++] = rpz::IpAddress::from_v6(d->rr_data[i] + 2);
        }
    }
}

/// rrset_cache_lookup() without its lru_touch(): the cached RRset `name`
/// `type` IN (flags 0), read-locked, or nullptr (none, or its TTL ended
/// before `now`). Locks as lruhash_lookup takes them (slab table lock ->
/// bin lock, table lock released; entry read lock under the bin lock), but
/// the table lock only to reach the bin: the bin is searched under its own
/// lock, which is what guards its list (and the keys in it do not change
/// while they are in the table).
ub_packed_rrset_key* rrset_peek(rrset_cache* cache, std::span<const std::uint8_t> name,
                                std::uint16_t type, std::time_t now) noexcept {
    ub_packed_rrset_key key{};
    key.entry.key = &key;
    key.rk.dname = const_cast<std::uint8_t*>(name.data());
    key.rk.dname_len = name.size();
    key.rk.type = htons(type);
    key.rk.rrset_class = htons(LDNS_RR_CLASS_IN);
    key.rk.flags = 0;
    const hashvalue_type hash = rrset_key_hash(&key.rk);
    slabhash* slabs = &cache->table;
    lruhash* table = slabs->array[(hash & slabs->mask) >> slabs->shift];
    lock_quick_lock(&table->lock);
    lruhash_bin* bin = &table->array[hash & static_cast<hashvalue_type>(table->size_mask)];
    lock_quick_lock(&bin->lock);
    const lruhash_compfunc_type compare = table->compfunc;
    lock_quick_unlock(&table->lock);
    lruhash_entry* found = nullptr;
    for (lruhash_entry* e = bin->overflow_list; e != nullptr; e = e->overflow_next) {
        if (e->hash == hash && compare(e->key, &key) == 0) {
            found = e;
            break;
        }
    }
    if (found != nullptr) lock_rw_rdlock(&found->lock);
    lock_quick_unlock(&bin->lock);
    if (found == nullptr) return nullptr;
    if (now > data_of(static_cast<const ub_packed_rrset_key*>(found->key))->ttl) {
        lock_rw_unlock(&found->lock);
        return nullptr;
    }
    return static_cast<ub_packed_rrset_key*>(found->key);
}

/// The cached RRset `name` `type` IN, read-locked, or nullptr.
ub_packed_rrset_key* find_rrset(rrset_cache* cache, std::span<const std::uint8_t> name,
                                std::uint16_t type, std::time_t now, CacheRead how) noexcept {
    if (how == CacheRead::Peek) return rrset_peek(cache, name, type, now);
    return rrset_cache_lookup(cache, const_cast<std::uint8_t*>(name.data()), name.size(), type,
                              LDNS_RR_CLASS_IN, 0, now, 0);
}

/// Addresses of `ns` in the RRset cache.
void cached_addresses(rrset_cache* cache, std::time_t now, std::span<const std::uint8_t> ns,
                      std::span<rpz::IpAddress> out, std::size_t& n, CacheRead how) noexcept {
    for (const std::uint16_t type : {std::uint16_t{LDNS_RR_TYPE_A}, std::uint16_t{LDNS_RR_TYPE_AAAA}}) {
        ub_packed_rrset_key* k = find_rrset(cache, ns, type, now, how);
        if (k == nullptr) continue;
        append_ips(data_of(k), type, out, n);
        lock_rw_unlock(&k->entry.lock);
    }
}

}  // namespace

std::size_t walk_cname_chain(const query_info& qinfo, const reply_info* rep,
                             std::span<ChainLink> out) noexcept {
    if (out.empty()) return 0;
    const std::size_t an = rep != nullptr ? rep->an_numrrsets : 0;
    std::size_t n = 0;
    out[n++] = ChainLink{{qinfo.qname, qinfo.qname_len}, an};
    while (n < out.size()) {
        ChainLink& cur = out[n - 1];
        std::size_t found = an;
        for (std::size_t i = 0; i < an; ++i) {
            const ub_packed_rrset_key* k = rep->rrsets[i];
            if (ntohs(k->rk.type) != LDNS_RR_TYPE_CNAME) continue;
            if (same_name(cur.name, k->rk.dname, k->rk.dname_len)) {
                found = i;
                break;
            }
        }
        if (found == an) break;
        const packed_rrset_data* d = data_of(rep->rrsets[found]);
        if (d->count < 1) break;
        const auto target = rdata_name(d, 0);
        if (target.empty()) break;
        // A loop ends the chain.
        bool seen = false;
        for (std::size_t j = 0; j < n && !seen; ++j) {
            seen = same_name(out[j].name, target.data(), target.size());
        }
        if (seen) break;
        cur.cname_rrset = found;
        out[n++] = ChainLink{target, an};
    }
    return n;
}

std::size_t collect_answer_ips(const reply_info* rep, std::span<const std::uint8_t> name,
                               std::span<rpz::IpAddress> out) noexcept {
    std::size_t n = 0;
    if (rep == nullptr) return 0;
    for (std::size_t i = 0; i < rep->an_numrrsets; ++i) {
        const ub_packed_rrset_key* k = rep->rrsets[i];
        const std::uint16_t type = ntohs(k->rk.type);
        if (type != LDNS_RR_TYPE_A && type != LDNS_RR_TYPE_AAAA) continue;
        if (!same_name(name, k->rk.dname, k->rk.dname_len)) continue;
        append_ips(data_of(k), type, out, n);
    }
    return n;
}

void collect_delegation(rrset_cache* cache, std::time_t now, regional* region,
                        std::span<const std::uint8_t> name,
                        std::span<std::span<const std::uint8_t>> names, std::size_t& n_names,
                        std::span<rpz::IpAddress> ips, std::size_t& n_ips,
                        CacheRead how) noexcept {
    n_names = 0;
    n_ips = 0;
    if (cache == nullptr || rpz::name_wire_length(name) == 0) return;
    std::size_t offset = 0;
    for (;;) {
        const std::span<const std::uint8_t> cut = name.subspan(offset);
        ub_packed_rrset_key* k = find_rrset(cache, cut, LDNS_RR_TYPE_NS, now, how);
        if (k != nullptr) {
            const std::size_t first = n_names;
            const packed_rrset_data* d = data_of(k);
            for (std::size_t i = 0; i < d->count && n_names < names.size(); ++i) {
                const auto ns = rdata_name(d, i);
                if (ns.empty()) continue;
                auto* copy = static_cast<std::uint8_t*>(regional_alloc_init(region, ns.data(), ns.size()));
                if (copy == nullptr) break;
                names[n_names++] = {copy, ns.size()};
            }
            lock_rw_unlock(&k->entry.lock);
            // Addresses after the NS RRset's lock is released (one lock at a time).
            for (std::size_t i = first; i < n_names; ++i) {
                cached_addresses(cache, now, names[i], ips, n_ips, how);
            }
        }
        if (cut.size() <= 1) break;  // the root
        offset += static_cast<std::size_t>(cut[0]) + 1;
    }
}

std::optional<rpz::IpAddress> client_ip(const dnsfw_ub_client& client) noexcept {
    if (client.addr.ss_family == AF_INET) {
        sockaddr_in sin{};
        std::memcpy(&sin, &client.addr, sizeof sin);
        std::uint8_t b[4];
        std::memcpy(b, &sin.sin_addr, 4);
        return rpz::IpAddress::from_v4(b);
    }
    if (client.addr.ss_family == AF_INET6) {
        sockaddr_in6 sin6{};
        std::memcpy(&sin6, &client.addr, sizeof sin6);
        std::uint8_t b[16];
        std::memcpy(b, &sin6.sin6_addr, 16);
        return rpz::IpAddress::from_v6(b);
    }
    return std::nullopt;
}

}  // namespace dnsfw::module
