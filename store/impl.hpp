// dnsfw::store internal — Store::Impl, shared by store.cpp and snapshot.cpp.
#pragma once

#include "store/lmdb.hpp"
#include "store/store.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dnsfw::store {

/// "store <path>: <what>: <LMDB or system message>".
std::string error_text(const std::string& path, std::string_view what, int rc);
/// Throws StoreError(error_text(...), rc).
[[noreturn]] void throw_error(const std::string& path, std::string_view what, int rc);

/// A zone record as read from the "zones" table, with its key.
struct StoredZone {
    rpz::Name apex;  ///< the key: apex wire name, lower-case
    ZoneInfo info;
};

struct Store::Impl {
    std::string path;
    OpenOptions options;
    lmdb::Env env;
    MDB_dbi meta_dbi = 0;
    MDB_dbi zones_dbi = 0;
    MDB_dbi rules_dbi = 0;
    /// "journal" and "status" (journal.cpp): absent in stores written before
    /// they existed until a writer opens the store (open creates them).
    /// Readers open them lazily (open_optional_dbis) once they exist.
    MDB_dbi journal_dbi = 0;
    MDB_dbi status_dbi = 0;
    std::atomic<bool> has_journal_dbi{false};
    std::atomic<bool> has_status_dbi{false};
    /// Serialises mdb_dbi_open calls of readers (LMDB allows only one
    /// transaction at a time to open handles).
    mutable std::mutex dbi_mutex;
    /// meta/format as found at open (after a writer's upgrade: the current one).
    std::uint32_t format_version = 0;

    /// Serialises this process's writers (LMDB's writer lock serialises
    /// processes; within one process a second write txn would also block,
    /// this just keeps the retry/grow logic single-threaded).
    std::mutex write_mutex;
    /// Held shared by every short read transaction of the Store's own
    /// methods and by Snapshot while it (re)starts its read transaction;
    /// held exclusive while the memory map is resized (mdb_env_set_mapsize
    /// unmaps the old map, so nobody may be reading through it).
    mutable std::shared_mutex map_mutex;
    /// Snapshots of this Store whose read transaction is live (not reset).
    /// While non-zero the map cannot be resized in this process.
    std::atomic<std::size_t> active_snapshots{0};

    /// Begins a short read transaction for Store's own methods. Caller holds
    /// map_mutex shared (`lock`); on MDB_MAP_RESIZED (another process grew
    /// the map beyond ours) adopts the new size and retries. Throws StoreError.
    lmdb::Txn begin_read(std::shared_lock<std::shared_mutex>& lock, std::string_view what);

    /// Resizes the map to `new_size` (0 = adopt the size in the file).
    /// Throws StoreError if snapshots are live in this process or LMDB fails.
    void resize_map(std::size_t new_size, std::string_view what);

    /// Every zone record, sorted by order (then name). Throws StoreError on
    /// LMDB errors or a corrupt record.
    std::vector<StoredZone> read_all_zones(MDB_txn* txn) const;
    /// One zone record, or nullopt if absent. Throws StoreError.
    std::optional<ZoneInfo> read_zone(MDB_txn* txn, std::span<const std::uint8_t> apex) const;
    /// Makes sure the journal/status handles are open if the tables exist
    /// (readers of a store whose writer created them after this open).
    /// Returns has_journal_dbi && has_status_dbi. Throws StoreError.
    bool open_optional_dbis();

    /// Deletes every journal entry of zone `id`. Returns an LMDB error code.
    int delete_journal(MDB_txn* txn, std::uint32_t id) const;
    /// Drops the oldest journal entries of zone `id` until they total at
    /// most `max_bytes` (keys + values). Returns an LMDB error code.
    int trim_journal(MDB_txn* txn, std::uint32_t id, std::uint64_t max_bytes) const;

    /// A big-endian u32/u64 record of the "meta" table. Throws StoreError if
    /// absent or of the wrong size.
    std::uint64_t read_meta_uint(MDB_txn* txn, std::string_view key, std::size_t width) const;
};

/// Map growth step of run_write.
inline constexpr std::size_t kGrowthQuantum = std::size_t{1} << 20;

/// Lower-cased copy of a wire name.
inline rpz::Name lower_wire(std::span<const std::uint8_t> wire) {
    rpz::Name out(wire.begin(), wire.end());
    // Lower-case label bytes only (length octets are < 64, never 'A'..'Z'
    // but skip them anyway for clarity).
    for (std::size_t i = 0; i < out.size() && out[i] != 0; i += 1 + std::size_t{out[i]}) {
        for (std::size_t j = i + 1; j <= i + out[i] && j < out.size(); ++j)
            if (out[j] >= 'A' && out[j] <= 'Z') out[j] = static_cast<std::uint8_t>(out[j] + 32);
    }
    return out;
}

/// Seconds since the epoch.
inline std::uint64_t unix_now() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
}

/// Runs `body(txn)` in one write transaction and commits. On MDB_MAP_FULL the
/// transaction is aborted, the map grown (by at least `growth_hint` bytes)
/// and the whole body re-run. Any other failure throws StoreError and
/// leaves the store unchanged. `body` returns an LMDB code; it may also
/// throw StoreError for logical errors.
template <typename Body>
void run_write(Store::Impl& s, std::string_view what, std::size_t growth_hint, Body&& body) {
    std::lock_guard<std::mutex> writer(s.write_mutex);
    int resized = 0;
    for (;;) {
        lmdb::Txn txn;
        int rc = txn.begin(s.env.get(), 0);
        if (rc == MDB_MAP_RESIZED && resized++ < 8) {
            s.resize_map(0, what);  // another process grew the file: adopt its size
            continue;
        }
        if (rc != 0) throw_error(s.path, what, rc);
        rc = body(txn.get());
        if (rc == 0) rc = txn.commit();
        if (rc == 0) return;
        txn.abort();
        if (rc != MDB_MAP_FULL) throw_error(s.path, what, rc);

        MDB_envinfo info;
        mdb_env_info(s.env.get(), &info);
        const std::size_t cur = info.me_mapsize;
        const std::size_t max = s.options.max_map_size;
        if (cur >= max) {
            throw StoreError(error_text(s.path, what, rc) + " (map size " + std::to_string(cur) +
                                 " bytes reached max_map_size " + std::to_string(max) + ")",
                             rc);
        }
        std::size_t want = std::max(cur * 2, cur + growth_hint);
        want = (want + kGrowthQuantum - 1) / kGrowthQuantum * kGrowthQuantum;
        s.resize_map(std::min(want, max), what);
    }
}

}  // namespace dnsfw::store
