// dnsfw::store internal — Store::Impl, shared by store.cpp and snapshot.cpp.
#pragma once

#include "store/lmdb.hpp"
#include "store/store.hpp"

#include <atomic>
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
    /// A big-endian u32/u64 record of the "meta" table. Throws StoreError if
    /// absent or of the wrong size.
    std::uint64_t read_meta_uint(MDB_txn* txn, std::string_view key, std::size_t width) const;
};

}  // namespace dnsfw::store
