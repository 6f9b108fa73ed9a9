// dnsfw::store — the LMDB store of policy zones.
//
// One LMDB environment (a directory holding data.mdb and lock.mdb) holds any
// number of named policy zones. It is memory-mapped and shared by every
// resolver thread and process; one process writes at a time (LMDB's writer
// lock), readers never wait.
//
// The key space is documented at the top of store.cpp and in README.md.
//
// Thread-safety: a Store may be shared by threads. A Snapshot belongs to one
// thread at a time (it holds an MDB_txn opened with MDB_NOTLS, so it may
// move between threads, but never be used by two at once).
#pragma once

#include "rpz/rpz.hpp"

#include <array>
#include <bitset>
#include <cstdint>
#include <type_traits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace dnsfw::store {

/// Every failure of the store outside the query path: open, write, corrupt
/// data. what() names the path and the LMDB error.
class StoreError : public std::runtime_error {
public:
    StoreError(const std::string& what, int mdb_code = 0)
        : std::runtime_error(what), code_(mdb_code) {}
    /// The LMDB error code (e.g. MDB_MAP_FULL), kSerialMismatch, or 0.
    int code() const noexcept { return code_; }

private:
    int code_;
};

/// StoreError::code() of apply_delta when the stored serial is not the
/// delta's from_serial (someone else changed the zone first).
inline constexpr int kSerialMismatch = -100000;

/// What the store records about one zone.
struct ZoneInfo {
    std::string name;               ///< presentation, with trailing dot
    std::uint32_t id = 0;           ///< internal key prefix (changes on replace)
    std::uint32_t order = 0;        ///< precedence position, 1 = first
    std::uint32_t serial = 0;
    std::uint64_t rule_count = 0;
    std::uint32_t soa_ttl = 0;
    std::vector<std::uint8_t> soa_rdata;
    std::uint64_t loaded_at = 0;    ///< unix seconds of the last replace
    /// Per-trigger maximum label count of a wildcard parent (index = Trigger value).
    std::array<std::uint8_t, 8> max_wildcard_depth{};
    /// Per-trigger rule counts (index = Trigger value); they sum to rule_count.
    std::array<std::uint64_t, 8> trigger_rules{};
    /// Per IP trigger (index = Trigger value): the prefix lengths (IPv6
    /// terms, 0..128) present, so a longest-prefix lookup probes only those.
    std::array<std::bitset<129>, 8> prefix_lengths{};
    /// The zone's settings (override, TTL cap, recursive-only, ...).
    rpz::ZonePolicy policy;
    /// Upper bound of the zone's journal in bytes (oldest entries are
    /// dropped past it); 0 = keep no history. Default kDefaultJournalBytes.
    std::uint64_t journal_max_bytes = 0;
};

/// Default journal bound of a zone: 64 MiB.
inline constexpr std::uint64_t kDefaultJournalBytes = std::uint64_t{64} << 20;

/// One journal entry: the change of a zone from serial `from_serial` to
/// `to_serial`, in RR form (as an IXFR difference sequence carries it).
struct JournalEntry {
    std::uint32_t from_serial = 0;
    std::uint32_t to_serial = 0;
    std::uint64_t time = 0;                    ///< unix seconds of the commit
    std::uint32_t from_soa_ttl = 0;
    std::vector<std::uint8_t> from_soa_rdata;  ///< the SOA before
    std::uint32_t to_soa_ttl = 0;
    std::vector<std::uint8_t> to_soa_rdata;    ///< the SOA after
    std::vector<rpz::ZoneRecord> removed;      ///< RRs deleted (apex SOA excluded)
    std::vector<rpz::ZoneRecord> added;        ///< RRs added (apex SOA excluded)
};

/// An incremental change to one stored zone (Store::apply_delta).
struct ZoneDelta {
    std::string zone;                    ///< presentation, trailing dot optional, any case
    std::uint32_t from_serial = 0;       ///< must equal the stored serial
    std::uint32_t to_serial = 0;         ///< the serial after (from the new SOA)
    std::uint32_t soa_ttl = 0;           ///< the new SOA
    std::vector<std::uint8_t> soa_rdata;
    rpz::RuleDelta changes;              ///< rules to remove / add or replace, and their RR form
};

/// A process as recorded in a status record (ZoneStatus::daemon): enough to
/// tell later, from another process, whether it still runs, even after its
/// pid was reused or the machine rebooted. Linux: /proc.
struct ProcessId {
    std::uint32_t pid = 0;          ///< 0 = none recorded
    /// /proc/PID/stat starttime (clock ticks after boot); 0 unknown.
    std::uint64_t start_ticks = 0;
    std::string boot_id;  ///< /proc/sys/kernel/random/boot_id; "" unknown
    /// readlink /proc/self/ns/pid, e.g. "pid:[4026531836]"; "" unknown.
    std::string pid_ns;
    bool operator==(const ProcessId&) const = default;

    /// The calling process.
    static ProcessId self();
    /// Process `pid` as the caller sees it (start_ticks 0 if it is gone).
    static ProcessId of(std::uint32_t pid);
    enum class Liveness : std::uint8_t {
        Running,  ///< that process exists (same boot, pid and start time)
        Gone,     ///< it exited or was killed (pid free, a zombie, reused, or another boot)
        Unknown,  ///< cannot tell: nothing recorded, or another pid namespace
    };
    /// Whether the recorded process still runs, as seen from the caller.
    Liveness liveness() const;
};

/// Transfer and update bookkeeping of one zone (Store::put_status), shown by
/// `dnsfw status`. Times are unix seconds, 0 = never.
struct ZoneStatus {
    std::uint64_t last_attempt = 0;
    std::uint64_t last_success = 0;
    std::uint64_t last_failure = 0;
    std::string last_error;       ///< reason of the last failure ("" = none yet)
    std::string last_source;      ///< e.g. "IXFR from 127.0.0.1:5301", "zone push", "UPDATE from 127.0.0.1"
    std::uint64_t transfers_full = 0;
    std::uint64_t transfers_incremental = 0;
    std::uint64_t transfers_failed = 0;
    std::uint64_t updates = 0;    ///< deltas applied by zone push / RFC 2136 UPDATE
    std::uint32_t primary_serial = 0;  ///< last serial seen at the primary (secondaries)
    std::uint64_t next_check = 0;      ///< when the daemon will next query the primary
    // Extensions of the record (TLVs: readers that predate them skip them).
    /// A transfer is under way since this time (0 = none): set when the
    /// daemon starts a transfer, cleared when it ends (success or failure).
    /// Still set while `daemon` is gone = the transfer was interrupted.
    std::uint64_t transfer_started = 0;
    std::string transfer_kind;         ///< that transfer, e.g. "AXFR from 127.0.0.1:5301"
    /// Records the last committed transfer skipped (the daemon logs each one).
    std::uint64_t last_transfer_skipped = 0;
    /// The dnsfw-xfrd process that last wrote this status (pid 0 = none).
    ProcessId daemon;
    bool operator==(const ZoneStatus&) const = default;
};

struct OpenOptions {
    bool read_only = true;
    /// Map size in bytes for writers (grown automatically on MDB_MAP_FULL up
    /// to max_map_size). Readers reserve max(map_size, max_map_size) of
    /// address space up front (never physical memory), so a writer in another
    /// process growing the file up to that size never forces them to remap.
    std::size_t map_size = std::size_t{1} << 30;
    /// Upper bound of automatic growth (writers) / the reserved map (readers).
    std::size_t max_map_size = std::size_t{64} << 30;
    /// Create the directory and an empty store if missing (writers only).
    bool create = false;
};

/// Size figures of an open store (Store::stats()).
struct StoreStats {
    std::uint64_t zones = 0;         ///< entries of the "zones" table
    std::uint64_t rules = 0;         ///< entries of the "rules" table (all zones)
    std::uint64_t page_size = 0;     ///< LMDB page size
    std::uint64_t used_bytes = 0;    ///< pages in use (incl. free list) x page size
    std::uint64_t file_bytes = 0;    ///< size of data.mdb on disk
    std::uint64_t map_size = 0;      ///< current map size of this process
    std::uint64_t generation = 0;
    std::uint32_t readers = 0;       ///< reader slots in use (all processes)
    std::uint32_t max_readers = 0;
};

class Snapshot;

/// An open store. Move-only owner of the MDB_env.
class Store {
public:
    /// Opens (and with options.create, creates) the store at directory `path`.
    /// Throws StoreError naming the path if it is missing, unreadable, not a
    /// dnsfw store, or of an unknown format version.
    static Store open(const std::string& path, const OpenOptions& options);

    Store(Store&&) noexcept;
    Store& operator=(Store&&) noexcept;
    ~Store();

    const std::string& path() const noexcept;

    /// Creates or atomically replaces zone `zone.name` with `zone`'s rules and
    /// SOA in ONE write transaction: readers see the old zone or the new one,
    /// never a mix. A new zone goes last in the order and a replaced zone
    /// keeps its position, unless `order` is given (1-based, clamped to
    /// 1..N; zones at or after that position move down). Rules are stored in
    /// (trigger, key) order — sorted here if the caller did not — and of
    /// duplicate (trigger, key) rules the first wins. Bumps the store
    /// generation. Grows the map on MDB_MAP_FULL up to max_map_size. Throws
    /// StoreError (nothing changed) on failure, e.g. a full disk, a map that
    /// cannot grow, or a malformed rule key. Returns the stored record.
    /// The zone's settings: `policy` if given, else those of the zone being
    /// replaced (ZonePolicy{} for a new zone).
    /// A replace clears the zone's journal (its history no longer leads to
    /// the new content: IXFR clients get the whole zone) and keeps its
    /// journal bound; a new zone gets kDefaultJournalBytes.
    ZoneInfo replace_zone(const rpz::Zone& zone, std::optional<std::uint32_t> order = {},
                          const std::optional<rpz::ZonePolicy>& policy = {});

    /// Replaces the settings of zone `name` (presentation, any case) in one
    /// write transaction, bumping the generation; rules are untouched.
    /// Throws StoreError if the zone does not exist or the policy is invalid
    /// (Cname override without a target, an EDE code not in 15,16,17,18,4).
    /// Returns the stored record.
    ZoneInfo set_zone_policy(const std::string& name, const rpz::ZonePolicy& policy);

    /// Applies `delta` to its zone in ONE write transaction: removes the
    /// rules of changes.removed, writes changes.upserted (replacing a stored
    /// rule of the same key), sets the new serial and SOA, updates the rule
    /// counts and the per-trigger facts (prefix lengths and wildcard depths
    /// only grow until the next replace_zone — extra probes, never a missed
    /// rule), appends a JournalEntry (from the RR form in `changes`, trimmed
    /// to the zone's journal_max_bytes, oldest first) and bumps the
    /// generation. Readers see the zone before or after, never between.
    /// Throws StoreError (nothing changed) if the zone is missing, the stored
    /// serial is not delta.from_serial (code kSerialMismatch), a rule key is
    /// malformed, or LMDB fails (e.g. MDB_MAP_FULL after growth failed).
    ZoneInfo apply_delta(const ZoneDelta& delta);

    /// The journal entries that lead from `serial` to the zone's current
    /// serial, oldest first: empty if `serial` is current, nullopt if the
    /// journal does not reach back to `serial` (trimmed, or the zone was
    /// replaced since) — the caller then sends the whole zone. Throws
    /// StoreError if the zone is missing.
    std::optional<std::vector<JournalEntry>> journal_since(const std::string& zone,
                                                           std::uint32_t serial) const;

    /// Sets the journal bound of zone `name` (trims at once if needed), one
    /// write transaction, generation not bumped. Throws StoreError if missing.
    ZoneInfo set_journal_limit(const std::string& name, std::uint64_t max_bytes);

    /// Records the status of zone `name` (which need not exist in the store
    /// yet, e.g. before its first transfer succeeds) in its own small write
    /// transaction; does not bump the generation. Throws StoreError.
    void put_status(const std::string& name, const ZoneStatus& status);

    /// The recorded status of zone `name`, if any.
    std::optional<ZoneStatus> status(const std::string& name) const;

    /// Every recorded status, by zone name (presentation, lower-case, trailing dot).
    std::vector<std::pair<std::string, ZoneStatus>> statuses() const;

    /// Removes a zone and its rules in one transaction. False if absent.
    bool remove_zone(const std::string& name);

    /// All zones in precedence order.
    std::vector<ZoneInfo> list_zones() const;

    /// One zone by name (presentation, trailing dot optional, any case).
    std::optional<ZoneInfo> zone(const std::string& name) const;

    /// The store generation: incremented by every committed change.
    std::uint64_t generation() const;

    /// Size figures (entries, bytes on disk, readers). Throws StoreError.
    StoreStats stats() const;

    /// Opens a read snapshot of the zones `active` (names, in precedence
    /// order; empty = every zone in stored order). Zones named but missing
    /// are skipped and listed in Snapshot::missing_zones(). Throws StoreError.
    /// The Snapshot must be destroyed before this Store. While a Snapshot
    /// holds a live read transaction, this process cannot grow the map: a
    /// replace_zone() that needs a bigger map then fails with StoreError
    /// (release() idle snapshots, or open writers with a big enough map_size).
    std::unique_ptr<Snapshot> snapshot(const std::vector<std::string>& active = {}) const;

    /// Internal: the environment handle (for Snapshot).
    struct Impl;
    Impl* impl() const noexcept { return impl_.get(); }

private:
    explicit Store(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// A consistent read view of the active zones, usable as an rpz::RuleSource.
///
/// Query-path use: one Snapshot per worker thread, kept open; call refresh()
/// before each query. refresh() costs one atomic read of LMDB's meta page
/// when nothing changed, and renews the read transaction (re-reading zone
/// metadata) when the store has a new generation. All methods are noexcept.
class Snapshot final : public rpz::RuleSource {
public:
    ~Snapshot() override;
    Snapshot(const Snapshot&) = delete;
    Snapshot& operator=(const Snapshot&) = delete;

    /// Brings the view up to date. Returns true if it changed. On failure
    /// (e.g. the store became unreadable) keeps the last view and returns false.
    bool refresh() noexcept;

    /// Releases the read transaction until the next refresh() (lets writers
    /// reuse pages while the thread is idle). find() answers nothing and
    /// zone_count() is 0 until a refresh() succeeds.
    void release() noexcept;

    std::size_t zone_count() const noexcept override;
    std::size_t max_wildcard_depth(std::size_t zone, rpz::Trigger trigger) const noexcept override;
    std::optional<rpz::RuleView> find(std::size_t zone, rpz::Trigger trigger,
                                      std::span<const std::uint8_t> key) const noexcept override;
    const rpz::ZonePolicy& policy(std::size_t zone) const noexcept override;
    std::uint64_t trigger_rule_count(std::size_t zone, rpz::Trigger trigger) const noexcept override;
    const std::bitset<129>& prefix_lengths(std::size_t zone,
                                           rpz::Trigger trigger) const noexcept override;

    /// Zone metadata of active zone `i` (name, serial, SOA) as of this view.
    const ZoneInfo& zone_info(std::size_t i) const noexcept;
    /// Active zone names requested but not present in the store (as of this
    /// view; presentation form, lower-case, trailing dot).
    const std::vector<std::string>& missing_zones() const noexcept;
    std::uint64_t generation() const noexcept;
    /// The LMDB error of the last failed refresh() (e.g. MDB_MAP_RESIZED when
    /// another process grew the store beyond this reader's reserved map), or 0.
    int last_error() const noexcept;

    /// Calls f(trigger, key, RuleView) for every rule of active zone `i`, in
    /// key order (tools; allocation-free per rule). Rules whose value does not
    /// parse are skipped. Throws StoreError if the snapshot is released or
    /// LMDB fails, std::out_of_range if `i` >= zone_count().
    template <typename F>
    void for_each_rule(std::size_t i, F&& f) const;

    struct Impl;

private:
    friend class Store;
    explicit Snapshot(std::unique_ptr<Impl> impl);
    void for_each_rule_impl(std::size_t i,
                            void (*cb)(void*, rpz::Trigger, std::span<const std::uint8_t>,
                                       const rpz::RuleView&),
                            void* ctx) const;
    std::unique_ptr<Impl> impl_;
};

template <typename F>
void Snapshot::for_each_rule(std::size_t i, F&& f) const {
    for_each_rule_impl(
        i,
        [](void* ctx, rpz::Trigger t, std::span<const std::uint8_t> k, const rpz::RuleView& v) {
            (*static_cast<std::remove_reference_t<F>*>(ctx))(t, k, v);
        },
        &f);
}

}  // namespace dnsfw::store
