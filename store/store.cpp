// dnsfw::store — the LMDB store of policy zones: open, load, remove, list.
// (Snapshot, the query-path reader, is in snapshot.cpp.)
//
// ===========================================================================
// KEY SPACE (format version 2; version 1 stores are read, and upgraded in
// place by the first writer that opens them)
// ===========================================================================
// One LMDB environment = one directory holding data.mdb and lock.mdb.
// Named databases (DBIs), all with LMDB's default memcmp key order:
//
//  "meta"  — store-wide records; keys are ASCII strings:
//      "format"        -> u32 BE  layout version (2; 1 is read and upgraded by
//                         writers). Missing = not a dnsfw store; other
//                         values are refused.
//      "generation"    -> u64 BE  +1 on every committed change.
//      "next_zone_id"  -> u32 BE  next zone id to allocate (ids are never
//                         reused, so a new id sorts after every live one).
//      (status records live in their own "status" table, below)
//
//  "zones" — one record per policy zone:
//      key   = zone apex, wire format, lower-case
//      value = u8 version(2) | u32 id | u32 order | u32 serial |
//              u64 rule_count | u32 soa_ttl | u64 loaded_at (unix s) |
//              u8[8] max_wildcard_depth (index = rpz::Trigger) |
//              u16 soa_rdlen | soa_rdata | TLV extensions (u16 tag | u16 len |
//              bytes; readers skip unknown tags). Version 2 requires:
//              tag 1 per-trigger rule counts, tag 2 the prefix lengths present
//              per IP trigger, tag 3 the rpz::ZonePolicy (layouts in codec.hpp).
//              Optional: tag 4 u64 journal_max_bytes (absent = 64 MiB, the
//              default, for records written before it existed).
//              Version 1 records (no TLVs) read as: all rules QNAME, default
//              policy.
//      `order` is the precedence position, dense 1..N. `id` is the prefix of
//      the zone's rules; it changes on every replace.
//
//  "rules" — every rule of every zone:
//      key   = u32 BE zone id | u8 trigger (rpz::Trigger) | owner key
//      value = rpz::encode_rule_value bytes (u8 version | action | flags | ttl
//              | records | TLV extensions — room for per-rule provenance)
//      owner key for QNAME and NSDNAME: rpz::make_name_key of the owner
//        (labels reversed, [len][bytes], lower-case, no root label), so
//        "www.example.com" -> "\3com\7example\3www"; a wildcard "*.example.com"
//        is key("example.com") + "\1*".
//      owner key for the IP triggers (ClientIp, ResponseIp, NsIp): 17 bytes,
//        rpz::make_ip_key: the 16-byte address (IPv4 v4-mapped, ::ffff:a.b.c.d)
//        masked to the prefix | u8 prefix length in IPv6 terms (0..128; IPv4
//        /24 = 120). A longest-prefix lookup is one point read per prefix
//        length present in the zone (the zone record's tag-2 set), longest
//        first.
//      All of a zone's rules are one contiguous key range; within it,
//      trigger order then owner-key order (= rpz parser's sort order).
//
//  "journal" — per-zone history for IXFR (Store::apply_delta appends,
//      Store::journal_since reads). Added after format 2 without a format
//      bump: older code ignores the table; writers create it at open.
//      key   = u32 BE zone id | u64 BE sequence (1, 2, ... per zone id)
//      value = u8 version(1) | u32 from_serial | u32 to_serial | u64 time |
//              u32 from_soa_ttl | u16 len | from SOA rdata | u32 to_soa_ttl |
//              u16 len | to SOA rdata | u32 n | n x RR removed | u32 n |
//              n x RR added | TLVs; RR = u8 len | owner wire | u16 type |
//              u32 ttl | u16 len | rdata (codec.hpp)
//      Keyed by zone id, not apex: replace_zone (new id) deletes the old id's
//      range in its txn, and even a stale entry could never be read as the
//      new content's history. A zone's entries total at most its
//      journal_max_bytes (keys + values); apply_delta drops the oldest ones
//      past that in the same txn. journal_since walks back from the newest
//      entry while each entry's to_serial is the next one's from_serial.
//
//  "status" — per-zone transfer/update bookkeeping (Store::put_status).
//      key   = zone apex, wire format, lower-case (the zone need not exist)
//      value = u8 version(1) | u64 last_attempt | u64 last_success |
//              u64 last_failure | u64 transfers_full | u64 transfers_incremental
//              | u64 transfers_failed | u64 updates | u32 primary_serial |
//              u64 next_check | u16 len | last_error | u16 len | last_source |
//              TLVs (codec.hpp: transfer under way since / kind, records the
//              last transfer skipped, the writing process). Added TLVs need no
//              version bump: readers skip unknown tags. A status write is its
//              own txn and does NOT bump meta/generation (not a policy change).
//
// Query cost: checking a name against one zone is at most one point read
// (mdb_get) per label: the exact key, then key(ancestor)+"\1*" for each
// ancestor, longest first. The evaluator (rpz::evaluate) does the probing
// through Snapshot::find; max_wildcard_depth lets it skip ancestors deeper
// than any wildcard parent of the zone.
//
// Updates: replace_zone writes the new rules under a NEW zone id (with
// MDB_APPEND, since the id sorts last and rules arrive sorted), deletes the
// old id's range, rewrites the zone record and bumps the generation — all in
// one write txn. Readers (MVCC) see the old zone or the new one, never a mix,
// and never wait. Freed pages are reused only once no reader still holds a
// snapshot older than the commit, so a replace needs room for both copies.
//
// Incremental updates: apply_delta edits the zone's rules in place under
// its current id (deletes, then puts), updates the zone record (serial, SOA,
// counts; prefix lengths and wildcard depths only grow until the next
// replace), appends and trims the journal and bumps the generation — one
// write txn, so readers again see before or after, never between.
//
// Concurrency: one writer process at a time (LMDB's writer lock; a second
// `dnsfw zone load` waits for the first). The environment is opened with
// MDB_NOTLS, so read transactions belong to Snapshot objects, not threads.
// ===========================================================================
#include "store/store.hpp"

#include "store/codec.hpp"
#include "store/impl.hpp"

#include <sys/statvfs.h>

#include <cerrno>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <limits>
#include <system_error>

namespace dnsfw::store {

namespace {

constexpr unsigned kMaxReaders = 1022;
constexpr mdb_mode_t kFileMode = 0664;  // group-writable lock.mdb: resolver user may differ

std::string missing_store_text(const std::string& path) {
    return "store " + path + ": No such file or directory (create it with `dnsfw zone load`)";
}

std::string not_a_store_text(const std::string& path, std::string_view why) {
    return "store " + path + ": not a dnsfw store (" + std::string(why) + ")";
}

int put_meta_uint(MDB_txn* txn, MDB_dbi dbi, std::string_view key, std::uint64_t v,
                  std::size_t width) {
    std::uint8_t buf[8];
    if (width == 4)
        codec::put_u32(buf, static_cast<std::uint32_t>(v));
    else
        codec::put_u64(buf, v);
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val d{width, buf};
    return mdb_put(txn, dbi, &k, &d, 0);
}

/// Deletes every "rules" entry of zone `id`. Returns an LMDB error code.
int delete_zone_rules(MDB_txn* txn, MDB_dbi rules, std::uint32_t id) {
    lmdb::Cursor cur;
    int rc = cur.open(txn, rules);
    if (rc != 0) return rc;
    std::uint8_t prefix[4];
    codec::put_u32(prefix, id);
    MDB_val k{sizeof prefix, prefix};
    MDB_val d{};
    rc = mdb_cursor_get(cur.get(), &k, &d, MDB_SET_RANGE);
    while (rc == 0) {
        if (k.mv_size < 4 || std::memcmp(k.mv_data, prefix, 4) != 0) return 0;
        rc = mdb_cursor_del(cur.get(), 0);
        if (rc != 0) return rc;
        // After a delete the cursor already sits on the following entry;
        // LMDB's MDB_NEXT knows this and does not skip it.
        rc = mdb_cursor_get(cur.get(), &k, &d, MDB_NEXT);
    }
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/// Writes `zones` back with dense orders 1..N, rewriting only records whose
/// order changed, except `always` (index) which is written regardless.
int renumber_and_write(MDB_txn* txn, MDB_dbi zones_dbi, std::vector<StoredZone>& zones,
                       std::size_t always) {
    for (std::size_t i = 0; i < zones.size(); ++i) {
        const auto order = static_cast<std::uint32_t>(i + 1);
        if (zones[i].info.order == order && i != always) continue;
        zones[i].info.order = order;
        const auto value = codec::encode_zone_record(zones[i].info);
        MDB_val k = lmdb::to_val(zones[i].apex);
        MDB_val d = lmdb::to_val(value);
        if (int rc = mdb_put(txn, zones_dbi, &k, &d, 0); rc != 0) return rc;
    }
    return 0;
}

}  // namespace

// ---------------------------------------------------------------------------
// Errors and Impl helpers

std::string error_text(const std::string& path, std::string_view what, int rc) {
    std::string out = "store " + path + ": " + std::string(what);
    if (rc != 0) {
        out += ": ";
        out += mdb_strerror(rc);
        // LMDB reports a short write (what a full file system usually gives)
        // as EIO: say what the file system has left, so an operator sees why.
        if (rc == EIO || rc == ENOSPC || rc == EDQUOT) {
            struct statvfs fs {};
            if (::statvfs(path.c_str(), &fs) == 0) {
                const unsigned long long avail =
                    static_cast<unsigned long long>(fs.f_bavail) * fs.f_frsize;
                out += " (file system of " + path + ": " + std::to_string(avail) +
                       " bytes available" + (avail < (1ull << 20) ? ", FULL" : "") + ")";
            }
        }
    }
    return out;
}

void throw_error(const std::string& path, std::string_view what, int rc) {
    throw StoreError(error_text(path, what, rc), rc);
}

lmdb::Txn Store::Impl::begin_read(std::shared_lock<std::shared_mutex>& lock,
                                  std::string_view what) {
    lmdb::Txn txn;
    int rc = txn.begin(env.get(), MDB_RDONLY);
    if (rc == MDB_MAP_RESIZED) {
        lock.unlock();
        resize_map(0, what);
        lock.lock();
        rc = txn.begin(env.get(), MDB_RDONLY);
    }
    if (rc != 0) throw_error(path, what, rc);
    return txn;
}

void Store::Impl::resize_map(std::size_t new_size, std::string_view what) {
    std::unique_lock<std::shared_mutex> exclusive(map_mutex);
    if (const std::size_t live = active_snapshots.load(); live != 0) {
        const int rc = new_size == 0 ? MDB_MAP_RESIZED : MDB_MAP_FULL;
        const std::string need =
            new_size == 0 ? "the map must be re-mapped at the size another process grew the file to"
                          : "the map must grow to " + std::to_string(new_size) + " bytes";
        throw StoreError(error_text(path, what, rc) + " (" + need + ", but " +
                             std::to_string(live) +
                             " read snapshot(s) of this store are live in this process; destroy "
                             "or release() them, or open with a larger map_size / max_map_size)",
                         rc);
    }
    if (int rc = mdb_env_set_mapsize(env.get(), new_size); rc != 0)
        throw_error(path, std::string(what) + ": resizing the map", rc);
}

std::vector<StoredZone> Store::Impl::read_all_zones(MDB_txn* txn) const {
    std::vector<StoredZone> out;
    lmdb::Cursor cur;
    int rc = cur.open(txn, zones_dbi);
    if (rc != 0) throw_error(path, "reading zones", rc);
    MDB_val k{};
    MDB_val d{};
    for (rc = mdb_cursor_get(cur.get(), &k, &d, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur.get(), &k, &d, MDB_NEXT)) {
        auto apex = lmdb::to_span(k);
        auto info = codec::decode_zone_record(apex, lmdb::to_span(d));
        if (!info)
            throw StoreError(error_text(path, "corrupt zone record", 0) + " (key " +
                             rpz::name_to_text(apex) + ")");
        out.push_back(StoredZone{rpz::Name(apex.begin(), apex.end()), std::move(*info)});
    }
    if (rc != MDB_NOTFOUND) throw_error(path, "reading zones", rc);
    std::sort(out.begin(), out.end(), [](const StoredZone& a, const StoredZone& b) {
        return a.info.order != b.info.order ? a.info.order < b.info.order : a.apex < b.apex;
    });
    return out;
}

std::optional<ZoneInfo> Store::Impl::read_zone(MDB_txn* txn,
                                               std::span<const std::uint8_t> apex) const {
    MDB_val k = lmdb::to_val(apex);
    MDB_val d{};
    const int rc = mdb_get(txn, zones_dbi, &k, &d);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    if (rc != 0) throw_error(path, "reading zone " + rpz::name_to_text(apex), rc);
    auto info = codec::decode_zone_record(apex, lmdb::to_span(d));
    if (!info)
        throw StoreError(error_text(path, "corrupt zone record", 0) + " (key " +
                         rpz::name_to_text(apex) + ")");
    return info;
}

std::uint64_t Store::Impl::read_meta_uint(MDB_txn* txn, std::string_view key,
                                          std::size_t width) const {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val d{};
    const int rc = mdb_get(txn, meta_dbi, &k, &d);
    if (rc == MDB_NOTFOUND)
        throw StoreError(not_a_store_text(path, "no meta/" + std::string(key) + " record"));
    if (rc != 0) throw_error(path, "reading meta/" + std::string(key), rc);
    if (d.mv_size != width)
        throw StoreError(error_text(path, "corrupt meta/" + std::string(key) + " record", 0));
    const auto* p = static_cast<const std::uint8_t*>(d.mv_data);
    return width == 4 ? codec::get_u32(p) : codec::get_u64(p);
}

// ---------------------------------------------------------------------------
// Open

namespace {

/// Rewrites a format-1 store's zone records in the current layout and sets
/// meta/format, in one write transaction (rules need no change: format 1
/// only held name keys, which format 2 keeps). The generation is not
/// bumped: the policy in force does not change.
void upgrade_format(Store::Impl& s) {
    run_write(s, "upgrade store format", 64u << 10, [&](MDB_txn* txn) -> int {
        for (const StoredZone& z : s.read_all_zones(txn)) {
            const auto value = codec::encode_zone_record(z.info);
            MDB_val k = lmdb::to_val(z.apex);
            MDB_val d = lmdb::to_val(value);
            if (int rc = mdb_put(txn, s.zones_dbi, &k, &d, 0); rc != 0) return rc;
        }
        return put_meta_uint(txn, s.meta_dbi, codec::kMetaFormat, codec::kFormatVersion, 4);
    });
    s.format_version = codec::kFormatVersion;
}

/// Opens "journal" and "status" in `txn` if they exist (with `create`:
/// creates them; `txn` must then be a write txn). The caller commits.
void open_optional_tables(Store::Impl& s, MDB_txn* txn, bool create) {
    const unsigned flags = create ? unsigned{MDB_CREATE} : 0u;
    int rc = 0;
    if (!s.has_journal_dbi) {
        rc = mdb_dbi_open(txn, codec::kJournalDb, flags, &s.journal_dbi);
        if (rc == 0) s.has_journal_dbi = true;
        if (rc != 0 && rc != MDB_NOTFOUND) throw_error(s.path, "opening table journal", rc);
    }
    if (!s.has_status_dbi) {
        rc = mdb_dbi_open(txn, codec::kStatusDb, flags, &s.status_dbi);
        if (rc == 0) s.has_status_dbi = true;
        if (rc != 0 && rc != MDB_NOTFOUND) throw_error(s.path, "opening table status", rc);
    }
}

/// Opens the three tables in `txn` (which the caller commits, making the
/// handles live for the environment) and checks the format version. With
/// `init`, a store with no "meta" table is initialised — but only if the
/// environment is empty (an LMDB file of some other program is refused).
void open_tables(Store::Impl& s, MDB_txn* txn, bool init) {
    int rc = mdb_dbi_open(txn, codec::kMetaDb, 0, &s.meta_dbi);
    if (rc == MDB_NOTFOUND && init) {
        MDB_dbi main_dbi = 0;
        MDB_stat st{};
        rc = mdb_dbi_open(txn, nullptr, 0, &main_dbi);
        if (rc == 0) rc = mdb_stat(txn, main_dbi, &st);
        if (rc != 0) throw_error(s.path, "initialising", rc);
        if (st.ms_entries != 0)
            throw StoreError(not_a_store_text(s.path, "an LMDB environment without dnsfw tables"));
        const unsigned create = MDB_CREATE;
        rc = mdb_dbi_open(txn, codec::kMetaDb, create, &s.meta_dbi);
        if (rc == 0) rc = mdb_dbi_open(txn, codec::kZonesDb, create, &s.zones_dbi);
        if (rc == 0) rc = mdb_dbi_open(txn, codec::kRulesDb, create, &s.rules_dbi);
        if (rc == 0) rc = mdb_dbi_open(txn, codec::kJournalDb, create, &s.journal_dbi);
        if (rc == 0) rc = mdb_dbi_open(txn, codec::kStatusDb, create, &s.status_dbi);
        if (rc == 0)
            rc = put_meta_uint(txn, s.meta_dbi, codec::kMetaFormat, codec::kFormatVersion, 4);
        if (rc == 0) rc = put_meta_uint(txn, s.meta_dbi, codec::kMetaGeneration, 0, 8);
        if (rc == 0)
            rc = put_meta_uint(txn, s.meta_dbi, codec::kMetaNextZoneId, codec::kFirstZoneId, 4);
        if (rc != 0) throw_error(s.path, "initialising", rc);
        s.format_version = codec::kFormatVersion;
        s.has_journal_dbi = true;
        s.has_status_dbi = true;
        return;
    }
    if (rc == MDB_NOTFOUND) throw StoreError(not_a_store_text(s.path, "no meta/format record"));
    if (rc != 0) throw_error(s.path, "opening table meta", rc);

    MDB_val k{codec::kMetaFormat.size(), const_cast<char*>(codec::kMetaFormat.data())};
    MDB_val d{};
    rc = mdb_get(txn, s.meta_dbi, &k, &d);
    if (rc == MDB_NOTFOUND) throw StoreError(not_a_store_text(s.path, "no meta/format record"));
    if (rc != 0) throw_error(s.path, "reading meta/format", rc);
    if (d.mv_size != 4) throw StoreError(not_a_store_text(s.path, "malformed meta/format record"));
    const std::uint32_t version = codec::get_u32(static_cast<const std::uint8_t*>(d.mv_data));
    if (version < codec::kOldestFormatVersion || version > codec::kFormatVersion) {
        throw StoreError("store " + s.path + ": unknown format version " + std::to_string(version) +
                         " (this dnsfw reads versions " +
                         std::to_string(codec::kOldestFormatVersion) + " to " +
                         std::to_string(codec::kFormatVersion) + ")");
    }
    s.format_version = version;
    rc = mdb_dbi_open(txn, codec::kZonesDb, 0, &s.zones_dbi);
    if (rc == 0) rc = mdb_dbi_open(txn, codec::kRulesDb, 0, &s.rules_dbi);
    if (rc == MDB_NOTFOUND) throw StoreError(not_a_store_text(s.path, "missing zones/rules table"));
    if (rc != 0) throw_error(s.path, "opening tables", rc);
    open_optional_tables(s, txn, false);
}

}  // namespace

Store Store::open(const std::string& path, const OpenOptions& options) {
    namespace fs = std::filesystem;
    if (path.empty()) throw StoreError("store: empty path");
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    impl->options = options;
    const bool writer = !options.read_only;
    const bool create = writer && options.create;

    std::error_code ec;
    if (create) {
        fs::create_directories(path, ec);
        if (ec) throw StoreError("store " + path + ": cannot create directory: " + ec.message());
    } else {
        const auto st = fs::status(path, ec);
        if (st.type() == fs::file_type::not_found)
            throw StoreError(missing_store_text(path), ENOENT);
        if (st.type() != fs::file_type::unknown && st.type() != fs::file_type::directory &&
            st.type() != fs::file_type::none) {
            throw StoreError(
                "store " + path + ": not a directory (a store is a directory holding data.mdb)",
                ENOTDIR);
        }
        if (fs::status(fs::path(path) / "data.mdb", ec).type() == fs::file_type::not_found)
            throw StoreError(missing_store_text(path), ENOENT);
    }

    int rc = impl->env.create();
    if (rc != 0) throw_error(path, "creating environment", rc);
    MDB_env* env = impl->env.get();
    rc = mdb_env_set_maxreaders(env, kMaxReaders);
    if (rc == 0) rc = mdb_env_set_maxdbs(env, codec::kMaxDbs);
    if (rc == 0)
        rc = mdb_env_set_mapsize(
            env, writer ? options.map_size : std::max(options.map_size, options.max_map_size));
    if (rc != 0) throw_error(path, "configuring environment", rc);
    const unsigned flags = MDB_NOTLS | (writer ? 0u : unsigned{MDB_RDONLY});
    rc = mdb_env_open(env, path.c_str(), flags, kFileMode);
    if (rc == ENOENT) throw StoreError(missing_store_text(path), rc);
    if (rc != 0) throw_error(path, "cannot open", rc);

    // Check (and, for a creating writer, initialise) the tables. A read txn
    // is enough unless the store is new, so an open never waits for another
    // process's long write.
    lmdb::Txn txn;
    rc = txn.begin(env, MDB_RDONLY);
    if (rc != 0) throw_error(path, "cannot open", rc);
    MDB_dbi probe = 0;
    const bool initialised = mdb_dbi_open(txn.get(), codec::kMetaDb, 0, &probe) == 0;
    if (initialised || !create) {
        open_tables(*impl, txn.get(), false);
        rc = txn.commit();
    } else {
        txn.abort();
        rc = txn.begin(env, 0);
        if (rc != 0) throw_error(path, "initialising", rc);
        open_tables(*impl, txn.get(), true);
        rc = txn.commit();
    }
    if (rc != 0) throw_error(path, "cannot open", rc);
    if (writer && impl->format_version < codec::kFormatVersion) upgrade_format(*impl);
    if (writer && !(impl->has_journal_dbi && impl->has_status_dbi)) {
        // A store written before the journal and status tables existed:
        // create them once (older dnsfw versions ignore them).
        Store::Impl& s = *impl;
        run_write(s, "create journal and status tables", 64u << 10, [&](MDB_txn* t) -> int {
            s.has_journal_dbi = false;  // a retried txn re-opens the handles it lost
            s.has_status_dbi = false;
            open_optional_tables(s, t, true);
            return 0;
        });
    }
    return Store(std::move(impl));
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;

const std::string& Store::path() const noexcept {
    return impl_->path;
}

// ---------------------------------------------------------------------------
// Writes

namespace {

bool rule_less(const rpz::Rule& a, const rpz::Rule& b) {
    if (a.trigger != b.trigger) return a.trigger < b.trigger;
    return std::lexicographical_compare(a.key.begin(), a.key.end(), b.key.begin(), b.key.end());
}

}  // namespace

namespace {

/// Why a policy cannot be stored, or empty.
std::string policy_problem(const rpz::ZonePolicy& p) {
    if (static_cast<std::uint8_t>(p.override) > static_cast<std::uint8_t>(rpz::PolicyOverride::Cname))
        return "unknown policy override";
    if (p.override == rpz::PolicyOverride::Cname && p.override_cname.empty())
        return "policy cname needs a target name";
    if (!p.override_cname.empty() &&
        rpz::name_wire_length(p.override_cname) != p.override_cname.size())
        return "malformed policy cname target";
    if (p.ede && !rpz::is_allowed_ede(*p.ede))
        return "EDE code " + std::to_string(*p.ede) + " not allowed (use 15, 16, 17, 18 or 4)";
    if (p.ede_text.size() > 1024) return "EDE text longer than 1024 bytes";
    if (p.clients.size() > rpz::kMaxZoneClients)
        return "more than " + std::to_string(rpz::kMaxZoneClients) + " client prefixes";
    for (const rpz::IpPrefix& c : p.clients)
        if (c.length > 128 || rpz::masked(c) != c) return "malformed client prefix";
    return {};
}

}  // namespace

ZoneInfo Store::replace_zone(const rpz::Zone& zone, std::optional<std::uint32_t> order,
                             const std::optional<rpz::ZonePolicy>& policy) {
    Impl& s = *impl_;
    if (zone.name.empty() || rpz::name_wire_length(zone.name) != zone.name.size())
        throw StoreError(error_text(s.path, "replace zone: malformed zone name", 0));
    const rpz::Name apex = lower_wire(zone.name);
    const std::string zone_text = rpz::name_to_text(apex);
    const std::string what = "load zone " + zone_text;
    if (zone.soa_rdata.size() > 0xFFFF)
        throw StoreError(error_text(s.path, what + ": SOA rdata longer than 65535 octets", 0));
    if (policy) {
        if (auto why = policy_problem(*policy); !why.empty())
            throw StoreError(error_text(s.path, what + ": " + why, 0));
    }

    // Rules in key order (trigger, then owner key). The parser already sorts
    // them; check, and sort (stably, so the first of duplicates wins) if not.
    const auto& rules = zone.rules;
    std::vector<std::size_t> idx(rules.size());
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    bool sorted = true;
    for (std::size_t i = 1; i < rules.size() && sorted; ++i)
        sorted = rule_less(rules[i - 1], rules[i]);
    if (!sorted) {
        std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
            return rule_less(rules[a], rules[b]);
        });
        idx.erase(std::unique(idx.begin(), idx.end(),
                              [&](std::size_t a, std::size_t b) {
                                  return rules[a].trigger == rules[b].trigger &&
                                         rules[a].key == rules[b].key;
                              }),
                  idx.end());
    }

    // Validate keys, compute wildcard depths, encode values once (retries
    // after map growth reuse them).
    ZoneInfo info;
    info.name = zone_text;
    info.serial = zone.serial;
    info.soa_ttl = zone.soa_ttl;
    info.soa_rdata = zone.soa_rdata;
    info.rule_count = idx.size();
    std::vector<std::uint8_t> values;
    std::vector<std::size_t> value_end(idx.size());
    std::size_t key_bytes = 0;
    for (std::size_t n = 0; n < idx.size(); ++n) {
        const rpz::Rule& r = rules[idx[n]];
        const auto t = static_cast<std::size_t>(r.trigger);
        if (t == 0 || t > static_cast<std::size_t>(rpz::Trigger::NsIp) ||
            !codec::valid_rule_key(r.trigger, r.key)) {
            throw StoreError(error_text(s.path, what, 0) + ": rule " + std::to_string(idx[n]) +
                             " has a malformed key or trigger");
        }
        ++info.trigger_rules[t];
        if (rpz::is_ip_trigger(r.trigger)) {
            info.prefix_lengths[t].set(r.key[rpz::kIpKeySize - 1]);
        } else if (codec::is_wildcard_key(r.key)) {
            const auto depth = static_cast<std::uint8_t>(*codec::name_key_labels(r.key) - 1);
            info.max_wildcard_depth[t] = std::max(info.max_wildcard_depth[t], depth);
        }
        std::vector<std::uint8_t> v;
        try {
            v = rpz::encode_rule_value(r);
        } catch (const std::exception& e) {
            throw StoreError(error_text(s.path, what, 0) + ": rule " +
                             rpz::name_key_to_text(r.key) + ": " + e.what());
        }
        values.insert(values.end(), v.begin(), v.end());
        value_end[n] = values.size();
        key_bytes += codec::kRulePrefixSize + r.key.size();
    }
    // LMDB leaf nodes cost 8 bytes + key + value; pages are up to full when
    // appending. Twice the payload covers branch pages and the deleted copy.
    const std::size_t growth_hint = 2 * (values.size() + key_bytes + 8 * idx.size()) + (64u << 10);

    run_write(s, what, growth_hint, [&](MDB_txn* txn) -> int {
        const auto next_id =
            static_cast<std::uint32_t>(s.read_meta_uint(txn, codec::kMetaNextZoneId, 4));
        const std::uint64_t generation = s.read_meta_uint(txn, codec::kMetaGeneration, 8);
        if (next_id == std::numeric_limits<std::uint32_t>::max())
            throw StoreError(error_text(s.path, what, 0) + ": zone ids exhausted");
        std::vector<StoredZone> zones = s.read_all_zones(txn);
        std::optional<std::size_t> old_pos;
        for (std::size_t i = 0; i < zones.size(); ++i)
            if (zones[i].apex == apex) old_pos = i;

        // New rules under the new id: every key sorts after every existing
        // key (ids only grow), so MDB_APPEND applies.
        {
            lmdb::Cursor cur;
            if (int rc = cur.open(txn, s.rules_dbi); rc != 0) return rc;
            std::uint8_t key[codec::kMaxRuleKey];
            std::size_t begin = 0;
            for (std::size_t n = 0; n < idx.size(); ++n) {
                const rpz::Rule& r = rules[idx[n]];
                const std::size_t klen = codec::make_rule_key(key, next_id, r.trigger, r.key);
                MDB_val k{klen, key};
                MDB_val d{value_end[n] - begin, values.data() + begin};
                begin = value_end[n];
                const int rc = mdb_cursor_put(cur.get(), &k, &d, MDB_APPEND);
                if (rc == MDB_KEYEXIST)
                    throw StoreError(error_text(s.path, what, rc) + " (rules out of key order)",
                                     rc);
                if (rc != 0) return rc;
            }
        }

        std::size_t pos = zones.size();  // default: a new zone goes last
        rpz::ZonePolicy kept;  // a reload keeps the zone's settings
        info.journal_max_bytes = kDefaultJournalBytes;
        if (old_pos) {
            kept = zones[*old_pos].info.policy;
            info.journal_max_bytes = zones[*old_pos].info.journal_max_bytes;
            if (int rc = delete_zone_rules(txn, s.rules_dbi, zones[*old_pos].info.id); rc != 0)
                return rc;
            // The old history does not lead to the new content.
            if (int rc = s.delete_journal(txn, zones[*old_pos].info.id); rc != 0) return rc;
            pos = *old_pos;  // replacing keeps the position
            zones.erase(zones.begin() + static_cast<std::ptrdiff_t>(*old_pos));
        }
        if (order)
            pos = std::min<std::size_t>(std::max<std::uint32_t>(*order, 1) - 1, zones.size());
        info.id = next_id;
        info.loaded_at = unix_now();
        info.policy = policy ? *policy : kept;
        zones.insert(zones.begin() + static_cast<std::ptrdiff_t>(pos), StoredZone{apex, info});
        if (int rc = renumber_and_write(txn, s.zones_dbi, zones, pos); rc != 0) return rc;
        info.order = zones[pos].info.order;

        if (int rc = put_meta_uint(txn, s.meta_dbi, codec::kMetaNextZoneId, next_id + 1, 4); rc)
            return rc;
        return put_meta_uint(txn, s.meta_dbi, codec::kMetaGeneration, generation + 1, 8);
    });
    return info;
}

ZoneInfo Store::set_zone_policy(const std::string& name, const rpz::ZonePolicy& policy) {
    Impl& s = *impl_;
    const auto wire = rpz::name_from_text(name);
    if (!wire || wire->size() <= 1)
        throw StoreError(error_text(s.path, "set zone policy: invalid zone name '" + name + "'", 0));
    const std::string what = "set policy of zone " + rpz::name_to_text(*wire);
    if (auto why = policy_problem(policy); !why.empty())
        throw StoreError(error_text(s.path, what + ": " + why, 0));
    ZoneInfo out;
    run_write(s, what, 64u << 10, [&](MDB_txn* txn) -> int {
        auto info = s.read_zone(txn, *wire);
        if (!info) throw StoreError(error_text(s.path, what + ": no such zone", 0));
        info->policy = policy;
        const auto value = codec::encode_zone_record(*info);
        MDB_val k = lmdb::to_val(*wire);
        MDB_val d = lmdb::to_val(value);
        if (int rc = mdb_put(txn, s.zones_dbi, &k, &d, 0); rc != 0) return rc;
        const std::uint64_t generation = s.read_meta_uint(txn, codec::kMetaGeneration, 8);
        out = *info;
        return put_meta_uint(txn, s.meta_dbi, codec::kMetaGeneration, generation + 1, 8);
    });
    return out;
}

bool Store::remove_zone(const std::string& name) {
    Impl& s = *impl_;
    const auto wire = rpz::name_from_text(name);
    if (!wire) return false;
    const std::string what = "remove zone " + rpz::name_to_text(*wire);
    bool removed = false;
    run_write(s, what, 64u << 10, [&](MDB_txn* txn) -> int {
        removed = false;
        std::vector<StoredZone> zones = s.read_all_zones(txn);
        auto it = std::find_if(zones.begin(), zones.end(),
                               [&](const StoredZone& z) { return z.apex == *wire; });
        if (it == zones.end()) return 0;  // nothing to do; the empty txn commits
        if (int rc = delete_zone_rules(txn, s.rules_dbi, it->info.id); rc != 0) return rc;
        if (int rc = s.delete_journal(txn, it->info.id); rc != 0) return rc;
        MDB_val k = lmdb::to_val(it->apex);
        if (int rc = mdb_del(txn, s.zones_dbi, &k, nullptr); rc != 0) return rc;
        if (s.has_status_dbi) {
            MDB_val sk = lmdb::to_val(it->apex);
            if (int rc = mdb_del(txn, s.status_dbi, &sk, nullptr); rc != 0 && rc != MDB_NOTFOUND)
                return rc;
        }
        zones.erase(it);
        if (int rc = renumber_and_write(txn, s.zones_dbi, zones, zones.size()); rc != 0) return rc;
        const std::uint64_t generation = s.read_meta_uint(txn, codec::kMetaGeneration, 8);
        removed = true;
        return put_meta_uint(txn, s.meta_dbi, codec::kMetaGeneration, generation + 1, 8);
    });
    return removed;
}

// ---------------------------------------------------------------------------
// Reads

std::vector<ZoneInfo> Store::list_zones() const {
    std::shared_lock<std::shared_mutex> lock(impl_->map_mutex);
    lmdb::Txn txn = impl_->begin_read(lock, "list zones");
    std::vector<ZoneInfo> out;
    for (auto& z : impl_->read_all_zones(txn.get())) out.push_back(std::move(z.info));
    return out;
}

std::optional<ZoneInfo> Store::zone(const std::string& name) const {
    const auto wire = rpz::name_from_text(name);
    if (!wire) return std::nullopt;
    std::shared_lock<std::shared_mutex> lock(impl_->map_mutex);
    lmdb::Txn txn = impl_->begin_read(lock, "read zone");
    return impl_->read_zone(txn.get(), *wire);
}

std::uint64_t Store::generation() const {
    std::shared_lock<std::shared_mutex> lock(impl_->map_mutex);
    lmdb::Txn txn = impl_->begin_read(lock, "read generation");
    return impl_->read_meta_uint(txn.get(), codec::kMetaGeneration, 8);
}

StoreStats Store::stats() const {
    namespace fs = std::filesystem;
    StoreStats out;
    std::shared_lock<std::shared_mutex> lock(impl_->map_mutex);
    lmdb::Txn txn = impl_->begin_read(lock, "stats");
    MDB_stat st{};
    if (int rc = mdb_stat(txn.get(), impl_->zones_dbi, &st); rc != 0)
        throw_error(impl_->path, "stats", rc);
    out.zones = st.ms_entries;
    if (int rc = mdb_stat(txn.get(), impl_->rules_dbi, &st); rc != 0)
        throw_error(impl_->path, "stats", rc);
    out.rules = st.ms_entries;
    out.page_size = st.ms_psize;
    out.generation = impl_->read_meta_uint(txn.get(), codec::kMetaGeneration, 8);
    MDB_envinfo info{};
    mdb_env_info(impl_->env.get(), &info);
    out.used_bytes = (std::uint64_t{info.me_last_pgno} + 1) * out.page_size;
    out.map_size = info.me_mapsize;
    out.readers = info.me_numreaders;
    out.max_readers = info.me_maxreaders;
    std::error_code ec;
    const auto size = fs::file_size(fs::path(impl_->path) / "data.mdb", ec);
    out.file_bytes = ec ? 0 : size;
    return out;
}

}  // namespace dnsfw::store
