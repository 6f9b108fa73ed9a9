// dnsfw::store — incremental updates (apply_delta), the per-zone journal
// that IXFR answers come from, and per-zone transfer status records.
// (Key layouts: the KEY SPACE comment in store.cpp; codecs in codec.cpp.)
//
// apply_delta edits the zone's rules in place under its current zone id, in
// the same write transaction as the zone record (serial, SOA, counts), the
// journal append/trim and the generation bump, so readers see the zone
// before or after the delta, never between. Status writes are their own
// small transactions and never bump the generation: a Snapshot renews its
// read transaction after one (any commit moves LMDB's txn id), but its
// generation() — what the module's cache sweep watches — stays put.
#include "store/codec.hpp"
#include "store/impl.hpp"

#include <algorithm>
#include <limits>

namespace dnsfw::store {

namespace {

std::string apex_text_or_throw(const Store::Impl& s, const std::string& name, std::string_view op,
                               rpz::Name& apex) {
    auto wire = rpz::name_from_text(name);
    if (!wire || wire->size() <= 1)
        throw StoreError(error_text(s.path, std::string(op) + ": invalid zone name '" + name + "'", 0));
    apex = lower_wire(*wire);
    return rpz::name_to_text(apex);
}

int put_generation(Store::Impl& s, MDB_txn* txn, std::uint64_t value) {
    std::uint8_t buf[8];
    codec::put_u64(buf, value);
    MDB_val k{codec::kMetaGeneration.size(), const_cast<char*>(codec::kMetaGeneration.data())};
    MDB_val d{sizeof buf, buf};
    return mdb_put(txn, s.meta_dbi, &k, &d, 0);
}

int put_zone_record(Store::Impl& s, MDB_txn* txn, const rpz::Name& apex, const ZoneInfo& info) {
    const auto value = codec::encode_zone_record(info);
    MDB_val k = lmdb::to_val(apex);
    MDB_val d = lmdb::to_val(value);
    return mdb_put(txn, s.zones_dbi, &k, &d, 0);
}

/// Sequence number of zone `id`'s newest journal entry (0 if none), or an
/// LMDB error code in `rc`.
std::uint64_t last_journal_seq(MDB_txn* txn, MDB_dbi dbi, std::uint32_t id, int& rc) {
    lmdb::Cursor cur;
    rc = cur.open(txn, dbi);
    if (rc != 0) return 0;
    std::uint8_t after[4];
    codec::put_u32(after, id + 1);  // ids never reach UINT32_MAX (replace_zone refuses)
    MDB_val k{sizeof after, after};
    MDB_val d{};
    rc = mdb_cursor_get(cur.get(), &k, &d, MDB_SET_RANGE);
    if (rc == 0)
        rc = mdb_cursor_get(cur.get(), &k, &d, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cur.get(), &k, &d, MDB_LAST);
    if (rc == MDB_NOTFOUND) {
        rc = 0;
        return 0;
    }
    if (rc != 0) return 0;
    const auto key = lmdb::to_span(k);
    if (key.size() != codec::kJournalKeySize || codec::get_u32(key.data()) != id) return 0;
    return codec::get_u64(key.data() + 4);
}

/// Encodes the rule values of `delta` (validating trigger and key).
std::vector<std::vector<std::uint8_t>> encode_upserts(const Store::Impl& s, const std::string& what,
                                                      const rpz::RuleDelta& delta) {
    auto check_key = [&](rpz::Trigger t, std::span<const std::uint8_t> key) {
        const auto tv = static_cast<std::size_t>(t);
        if (tv == 0 || tv > static_cast<std::size_t>(rpz::Trigger::NsIp) ||
            !codec::valid_rule_key(t, key))
            throw StoreError(error_text(s.path, what, 0) + ": rule " +
                             (tv == 0 || tv > 5 ? std::string("?") : rpz::rule_key_to_text(t, key)) +
                             " has a malformed key or trigger");
    };
    for (const rpz::RuleKey& k : delta.removed) check_key(k.trigger, k.key);
    std::vector<std::vector<std::uint8_t>> values;
    values.reserve(delta.upserted.size());
    for (const rpz::Rule& r : delta.upserted) {
        check_key(r.trigger, r.key);
        try {
            values.push_back(rpz::encode_rule_value(r));
        } catch (const std::exception& e) {
            throw StoreError(error_text(s.path, what, 0) + ": rule " +
                             rpz::rule_key_to_text(r.trigger, r.key) + ": " + e.what());
        }
        if (!rpz::RuleView::parse(values.back()))
            throw StoreError(error_text(s.path, what, 0) + ": rule " +
                             rpz::rule_key_to_text(r.trigger, r.key) + " is not a valid rule");
    }
    return values;
}

}  // namespace

// ---------------------------------------------------------------------------
// Impl helpers

bool Store::Impl::open_optional_dbis() {
    if (has_journal_dbi && has_status_dbi) return true;
    std::lock_guard<std::mutex> guard(dbi_mutex);
    if (has_journal_dbi && has_status_dbi) return true;
    std::shared_lock<std::shared_mutex> lock(map_mutex);
    lmdb::Txn txn = begin_read(lock, "opening journal/status tables");
    MDB_dbi j = 0;
    MDB_dbi st = 0;
    const int rj = has_journal_dbi ? 0 : mdb_dbi_open(txn.get(), codec::kJournalDb, 0, &j);
    const int rs = has_status_dbi ? 0 : mdb_dbi_open(txn.get(), codec::kStatusDb, 0, &st);
    if (rj != 0 && rj != MDB_NOTFOUND) throw_error(path, "opening table journal", rj);
    if (rs != 0 && rs != MDB_NOTFOUND) throw_error(path, "opening table status", rs);
    // Committing a read txn makes the handles it opened live for the env.
    if (const int rc = txn.commit(); rc != 0) throw_error(path, "opening journal/status tables", rc);
    if (!has_journal_dbi && rj == 0) {
        journal_dbi = j;
        has_journal_dbi = true;
    }
    if (!has_status_dbi && rs == 0) {
        status_dbi = st;
        has_status_dbi = true;
    }
    return has_journal_dbi && has_status_dbi;
}

int Store::Impl::delete_journal(MDB_txn* txn, std::uint32_t id) const {
    return trim_journal(txn, id, 0);
}

int Store::Impl::trim_journal(MDB_txn* txn, std::uint32_t id, std::uint64_t max_bytes) const {
    if (!has_journal_dbi) return 0;
    lmdb::Cursor cur;
    int rc = cur.open(txn, journal_dbi);
    if (rc != 0) return rc;
    std::uint8_t prefix[4];
    codec::put_u32(prefix, id);
    auto in_zone = [&](const MDB_val& k) {
        return k.mv_size == codec::kJournalKeySize && std::memcmp(k.mv_data, prefix, 4) == 0;
    };
    // Pass 1: the zone's total (sizes only; values are not touched).
    std::uint64_t total = 0;
    MDB_val k{sizeof prefix, prefix};
    MDB_val d{};
    for (rc = mdb_cursor_get(cur.get(), &k, &d, MDB_SET_RANGE); rc == 0 && in_zone(k);
         rc = mdb_cursor_get(cur.get(), &k, &d, MDB_NEXT))
        total += k.mv_size + d.mv_size;
    if (rc != 0 && rc != MDB_NOTFOUND) return rc;
    if (total <= max_bytes) return 0;
    // Pass 2: drop the oldest entries until the rest fits.
    k = MDB_val{sizeof prefix, prefix};
    // (After a delete the cursor sits on the following entry; MDB_NEXT
    // knows this and does not skip it.)
    for (rc = mdb_cursor_get(cur.get(), &k, &d, MDB_SET_RANGE); rc == 0 && in_zone(k);
         rc = mdb_cursor_get(cur.get(), &k, &d, MDB_NEXT)) {
        if (total <= max_bytes) return 0;
        total -= k.mv_size + d.mv_size;
        if ((rc = mdb_cursor_del(cur.get(), 0)) != 0) return rc;
    }
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

// ---------------------------------------------------------------------------
// apply_delta

ZoneInfo Store::apply_delta(const ZoneDelta& delta) {
    Impl& s = *impl_;
    rpz::Name apex;
    const std::string zone_text = apex_text_or_throw(s, delta.zone, "apply delta", apex);
    const std::string what = "apply delta to zone " + zone_text + " (serial " +
                             std::to_string(delta.from_serial) + " -> " +
                             std::to_string(delta.to_serial) + ")";
    if (delta.to_serial == delta.from_serial)
        throw StoreError(error_text(s.path, what, 0) + ": the serial must change");
    if (delta.soa_rdata.size() > 0xFFFF)
        throw StoreError(error_text(s.path, what, 0) + ": SOA rdata longer than 65535 octets");
    if (!s.has_journal_dbi)
        throw StoreError(error_text(s.path, what, 0) + ": store opened read-only", EACCES);

    const auto values = encode_upserts(s, what, delta.changes);
    JournalEntry entry;
    entry.from_serial = delta.from_serial;
    entry.to_serial = delta.to_serial;
    entry.to_soa_ttl = delta.soa_ttl;
    entry.to_soa_rdata = delta.soa_rdata;
    entry.removed = delta.changes.removed_records;
    entry.added = delta.changes.added_records;
    std::size_t payload = 0;
    for (const auto& v : values) payload += v.size() + codec::kMaxRuleKey + 16;
    payload += delta.changes.removed.size() * (codec::kMaxRuleKey + 16);
    for (const auto* rrs : {&entry.removed, &entry.added})
        for (const auto& rr : *rrs) payload += rr.owner.size() + rr.rdata.size() + 11;
    // Rules may be rewritten on new pages while the old ones stay referenced
    // by readers; the journal entry may span overflow pages.
    const std::size_t growth_hint = 3 * payload + (256u << 10);

    ZoneInfo out;
    run_write(s, what, growth_hint, [&](MDB_txn* txn) -> int {
        auto stored = s.read_zone(txn, apex);
        if (!stored) throw StoreError(error_text(s.path, what, 0) + ": no such zone");
        ZoneInfo info = std::move(*stored);
        if (info.serial != delta.from_serial)
            throw StoreError(error_text(s.path, what, 0) + ": the stored serial is " +
                                 std::to_string(info.serial),
                             kSerialMismatch);

        std::uint8_t key[codec::kMaxRuleKey];
        for (const rpz::RuleKey& rk : delta.changes.removed) {
            const std::size_t klen = codec::make_rule_key(key, info.id, rk.trigger, rk.key);
            MDB_val k{klen, key};
            const int rc = mdb_del(txn, s.rules_dbi, &k, nullptr);
            if (rc == MDB_NOTFOUND) continue;  // already gone: nothing to count
            if (rc != 0) return rc;
            auto& n = info.trigger_rules[static_cast<std::size_t>(rk.trigger)];
            if (n > 0) --n;
        }
        for (std::size_t i = 0; i < delta.changes.upserted.size(); ++i) {
            const rpz::Rule& r = delta.changes.upserted[i];
            const std::size_t klen = codec::make_rule_key(key, info.id, r.trigger, r.key);
            MDB_val k{klen, key};
            MDB_val d = lmdb::to_val(values[i]);
            int rc = mdb_put(txn, s.rules_dbi, &k, &d, MDB_NOOVERWRITE);
            if (rc == MDB_KEYEXIST) {
                d = lmdb::to_val(values[i]);  // KEYEXIST pointed d at the stored value
                rc = mdb_put(txn, s.rules_dbi, &k, &d, 0);
            } else if (rc == 0) {
                ++info.trigger_rules[static_cast<std::size_t>(r.trigger)];
            }
            if (rc != 0) return rc;
            const auto t = static_cast<std::size_t>(r.trigger);
            if (rpz::is_ip_trigger(r.trigger)) {
                info.prefix_lengths[t].set(r.key[rpz::kIpKeySize - 1]);
            } else if (codec::is_wildcard_key(r.key)) {
                const auto depth = static_cast<std::uint8_t>(*codec::name_key_labels(r.key) - 1);
                info.max_wildcard_depth[t] = std::max(info.max_wildcard_depth[t], depth);
            }
        }
        info.rule_count = 0;
        for (std::uint64_t n : info.trigger_rules) info.rule_count += n;

        // The journal entry: the SOA before comes from the stored record.
        entry.from_soa_ttl = info.soa_ttl;
        entry.from_soa_rdata = info.soa_rdata;
        entry.time = unix_now();
        info.serial = delta.to_serial;
        info.soa_ttl = delta.soa_ttl;
        info.soa_rdata = delta.soa_rdata;
        if (info.journal_max_bytes > 0) {
            int rc = 0;
            const std::uint64_t seq = last_journal_seq(txn, s.journal_dbi, info.id, rc) + 1;
            if (rc != 0) return rc;
            std::vector<std::uint8_t> value;
            try {
                value = codec::encode_journal_entry(entry);
            } catch (const std::length_error& e) {
                throw StoreError(error_text(s.path, what, 0) + ": journal entry: " + e.what());
            }
            std::uint8_t jkey[codec::kJournalKeySize];
            codec::make_journal_key(jkey, info.id, seq);
            MDB_val k{sizeof jkey, jkey};
            MDB_val d = lmdb::to_val(value);
            if ((rc = mdb_put(txn, s.journal_dbi, &k, &d, 0)) != 0) return rc;
        }
        if (int rc = s.trim_journal(txn, info.id, info.journal_max_bytes); rc != 0) return rc;
        if (int rc = put_zone_record(s, txn, apex, info); rc != 0) return rc;
        const std::uint64_t generation = s.read_meta_uint(txn, codec::kMetaGeneration, 8);
        out = info;
        return put_generation(s, txn, generation + 1);
    });
    return out;
}

// ---------------------------------------------------------------------------
// Journal reads and bound

std::optional<std::vector<JournalEntry>> Store::journal_since(const std::string& zone,
                                                              std::uint32_t serial) const {
    Impl& s = *impl_;
    rpz::Name apex;
    const std::string zone_text = apex_text_or_throw(s, zone, "read journal", apex);
    const std::string what = "read journal of zone " + zone_text;
    s.open_optional_dbis();
    std::shared_lock<std::shared_mutex> lock(s.map_mutex);
    lmdb::Txn txn = s.begin_read(lock, what);
    auto info = s.read_zone(txn.get(), apex);
    if (!info) throw StoreError(error_text(s.path, what, 0) + ": no such zone");
    std::vector<JournalEntry> out;
    if (info->serial == serial) return out;
    if (!s.has_journal_dbi) return std::nullopt;

    // Walk back from the newest entry while the chain ends where the next
    // one starts, until an entry starts at `serial`.
    lmdb::Cursor cur;
    int rc = cur.open(txn.get(), s.journal_dbi);
    if (rc != 0) throw_error(s.path, what, rc);
    const std::uint64_t last = last_journal_seq(txn.get(), s.journal_dbi, info->id, rc);
    if (rc != 0) throw_error(s.path, what, rc);
    std::uint32_t expect_to = info->serial;
    std::uint64_t first = 0;
    for (std::uint64_t seq = last; seq >= 1; --seq) {
        std::uint8_t jkey[codec::kJournalKeySize];
        codec::make_journal_key(jkey, info->id, seq);
        MDB_val k{sizeof jkey, jkey};
        MDB_val d{};
        rc = mdb_get(txn.get(), s.journal_dbi, &k, &d);
        if (rc == MDB_NOTFOUND) break;  // trimmed below this point
        if (rc != 0) throw_error(s.path, what, rc);
        std::uint32_t from = 0;
        std::uint32_t to = 0;
        if (!codec::journal_head(lmdb::to_span(d), from, to))
            throw StoreError(error_text(s.path, what, 0) + ": corrupt journal entry " +
                             std::to_string(seq));
        if (to != expect_to) break;  // the chain is broken: no history from here
        if (from == serial) {
            first = seq;
            break;
        }
        expect_to = from;
    }
    if (first == 0) return std::nullopt;
    for (std::uint64_t seq = first; seq <= last; ++seq) {
        std::uint8_t jkey[codec::kJournalKeySize];
        codec::make_journal_key(jkey, info->id, seq);
        MDB_val k{sizeof jkey, jkey};
        MDB_val d{};
        rc = mdb_get(txn.get(), s.journal_dbi, &k, &d);
        if (rc != 0) throw_error(s.path, what, rc);
        auto e = codec::decode_journal_entry(lmdb::to_span(d));
        if (!e)
            throw StoreError(error_text(s.path, what, 0) + ": corrupt journal entry " +
                             std::to_string(seq));
        out.push_back(std::move(*e));
    }
    return out;
}

ZoneInfo Store::set_journal_limit(const std::string& name, std::uint64_t max_bytes) {
    Impl& s = *impl_;
    rpz::Name apex;
    const std::string zone_text = apex_text_or_throw(s, name, "set journal size", apex);
    const std::string what = "set journal size of zone " + zone_text;
    if (!s.has_journal_dbi)
        throw StoreError(error_text(s.path, what, 0) + ": store opened read-only", EACCES);
    ZoneInfo out;
    run_write(s, what, 64u << 10, [&](MDB_txn* txn) -> int {
        auto info = s.read_zone(txn, apex);
        if (!info) throw StoreError(error_text(s.path, what, 0) + ": no such zone");
        info->journal_max_bytes = max_bytes;
        if (int rc = s.trim_journal(txn, info->id, max_bytes); rc != 0) return rc;
        out = *info;
        return put_zone_record(s, txn, apex, *info);  // generation unchanged: no policy change
    });
    return out;
}

// ---------------------------------------------------------------------------
// Status records

void Store::put_status(const std::string& name, const ZoneStatus& status) {
    Impl& s = *impl_;
    rpz::Name apex;
    const std::string zone_text = apex_text_or_throw(s, name, "record status", apex);
    const std::string what = "record status of zone " + zone_text;
    if (!s.has_status_dbi)
        throw StoreError(error_text(s.path, what, 0) + ": store opened read-only", EACCES);
    const auto value = codec::encode_status(status);
    run_write(s, what, 64u << 10, [&](MDB_txn* txn) -> int {
        MDB_val k = lmdb::to_val(apex);
        MDB_val d = lmdb::to_val(value);
        return mdb_put(txn, s.status_dbi, &k, &d, 0);
    });
}

std::optional<ZoneStatus> Store::status(const std::string& name) const {
    Impl& s = *impl_;
    rpz::Name apex;
    const std::string zone_text = apex_text_or_throw(s, name, "read status", apex);
    s.open_optional_dbis();
    if (!s.has_status_dbi) return std::nullopt;
    std::shared_lock<std::shared_mutex> lock(s.map_mutex);
    lmdb::Txn txn = s.begin_read(lock, "read status");
    MDB_val k = lmdb::to_val(apex);
    MDB_val d{};
    const int rc = mdb_get(txn.get(), s.status_dbi, &k, &d);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    if (rc != 0) throw_error(s.path, "read status of zone " + zone_text, rc);
    auto st = codec::decode_status(lmdb::to_span(d));
    if (!st) throw StoreError(error_text(s.path, "corrupt status record of zone " + zone_text, 0));
    return st;
}

std::vector<std::pair<std::string, ZoneStatus>> Store::statuses() const {
    Impl& s = *impl_;
    s.open_optional_dbis();
    std::vector<std::pair<std::string, ZoneStatus>> out;
    if (!s.has_status_dbi) return out;
    std::shared_lock<std::shared_mutex> lock(s.map_mutex);
    lmdb::Txn txn = s.begin_read(lock, "read status");
    lmdb::Cursor cur;
    int rc = cur.open(txn.get(), s.status_dbi);
    if (rc != 0) throw_error(s.path, "read status", rc);
    MDB_val k{};
    MDB_val d{};
    for (rc = mdb_cursor_get(cur.get(), &k, &d, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur.get(), &k, &d, MDB_NEXT)) {
        const auto apex = lmdb::to_span(k);
        const std::string zone_text = rpz::name_to_text(apex);
        auto st = codec::decode_status(lmdb::to_span(d));
        if (!st)
            throw StoreError(error_text(s.path, "corrupt status record of zone " + zone_text, 0));
        out.emplace_back(zone_text, std::move(*st));
    }
    if (rc != MDB_NOTFOUND) throw_error(s.path, "read status", rc);
    return out;
}

}  // namespace dnsfw::store
