// dnsfw::module — sweeping Unbound's message cache after a store change on
// the maintenance thread instead of a resolver thread.
//
// Why a resolver thread must still take part: Unbound's caches are shared
// and internally locked (any thread may look entries up, read and remove
// them under the slab, bin and entry locks), but they do not live as long
// as the module. On a reload Unbound stops its worker threads, may delete
// and re-create the message and RRset caches (daemon_apply_cfg, when their
// size changed) and only then de-initialises the modules. A thread of the
// module that kept sweeping through that window would touch freed memory.
//
// So a sweep runs only while a resolver thread "anchors" it: the worker that
// takes the maintenance thread's refresh query (watch.hpp) registers the
// caches of its module_env here and parks that query's state (it waits for
// a reply to a small UDP query it sends to the maintenance thread's
// WakeSocket). Unbound deletes every pending query state, calling the
// module's clear() for it, before it deletes any cache (worker_delete ->
// mesh_delete, in daemon_cleanup), and clear() calls SweepGate::release(),
// which returns only once the maintenance thread has stopped touching the
// caches. The maintenance thread answers the UDP query when the sweep is
// done (and every kHeartbeat meanwhile, so Unbound's UDP timeout never
// fires); the parked state then finishes.
//
// No Unbound includes (the sweep itself, CacheSweeper, is implemented in
// cache.cpp).
#pragma once

#include "module/watch.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

struct slabhash;
struct rrset_cache;

namespace dnsfw::module {

struct WorkerSlot;

/// Unbound's shared caches, as a resolver thread's module_env has them.
struct CacheTables {
    slabhash* msg = nullptr;
    rrset_cache* rrset = nullptr;
};

/// What one complete sweep pass did.
struct SweepResult {
    std::size_t examined = 0;  ///< cached answers (class IN) looked at
    std::size_t removed = 0;   ///< of those, removed because a rule polices them now
    bool complete = true;      ///< false if memory ran out (a hash bin was skipped)
};

/// Lets the maintenance thread use Unbound's caches only while a resolver
/// thread's query state vouches that they exist (see the file comment).
/// Thread-safe.
class SweepGate {
  public:
    /// Resolver thread: registers the query state `token` as the anchor,
    /// with the caches of its env. False if another state is the anchor.
    bool anchor(const void* token, CacheTables tables) noexcept;
    /// Resolver thread (or Unbound's main thread, from clear()): ends the
    /// anchor `token` (no-op if it is not the anchor). Returns only once the
    /// maintenance thread no longer uses the caches: at most the time the
    /// sweep needs to reach its next check (64 hash bins or cached answers).
    void release(const void* token) noexcept;
    /// Whether a state anchors the caches now.
    bool anchored() const noexcept;

    /// Maintenance thread: starts using the caches; nullopt without an
    /// anchor. Call leave() when done (also after revoked()).
    std::optional<CacheTables> enter() noexcept;
    /// Maintenance thread: stops using the caches.
    void leave() noexcept;
    /// Maintenance thread, between entries: true once release() waits.
    bool revoked() const noexcept { return revoked_.load(std::memory_order_acquire); }

  private:
    mutable std::mutex mutex_;
    std::condition_variable left_;
    const void* anchor_ = nullptr;
    CacheTables tables_;
    bool in_use_ = false;
    std::atomic<bool> revoked_{false};
};

/// The maintenance thread's UDP socket on loopback that anchors' queries
/// go to. Keeps the latest query received (its answer wakes the anchor).
/// Used by one thread; owns its descriptor.
class WakeSocket {
  public:
    WakeSocket() = default;
    ~WakeSocket();
    WakeSocket(const WakeSocket&) = delete;
    WakeSocket& operator=(const WakeSocket&) = delete;

    /// Binds a UDP socket to 127.0.0.1 (family AF_INET) or ::1 (AF_INET6),
    /// port chosen by the kernel. False on failure.
    bool open(int family) noexcept;
    /// The bound address (len 0 if not open).
    const RefreshTarget& address() const noexcept { return address_; }
    /// The descriptor to poll for input (-1 if not open).
    int fd() const noexcept { return fd_; }
    /// Reads every datagram waiting (non-blocking). A well-formed query
    /// for a name below kRefreshSuffix replaces the kept one.
    void drain() noexcept;
    /// Whether a query is kept, and since when.
    bool pending() const noexcept { return pending_len_ != 0; }
    std::chrono::steady_clock::time_point pending_since() const noexcept { return since_; }
    /// Answers the kept query (NOERROR, no records; OPT echoed if it had
    /// one) and forgets it. No-op without one.
    void answer() noexcept;

  private:
    int fd_ = -1;
    RefreshTarget address_;
    std::uint8_t query_[512]{};
    std::size_t pending_len_ = 0;
    std::size_t question_end_ = 0;
    bool had_opt_ = false;
    sockaddr_storage from_{};
    socklen_t from_len_ = 0;
    std::chrono::steady_clock::time_point since_{};
};

/// What the sweep asks between entries.
enum class SweepControl {
    Continue,  ///< go on
    Pause,     ///< stop now, keep the progress (the anchor went, or shutdown)
};

/// A sweep of the message cache that can be paused and resumed (the
/// maintenance thread's; a resolver thread runs one to completion in the
/// fallback mode). One pass walks every hash bin of every slab once: it
/// reaches the bin (the slab's table lock only for that), read-locks the
/// bin's entries under the bin lock and releases it; per class-IN entry it
/// then copies the CNAME chain names and final addresses out under the
/// entry's and its RRsets' read locks (the order Unbound's workers use),
/// releases them, and evaluates the rules without holding any lock; a
/// match other than PASSTHRU (or any entry while CLIENT-IP rules are
/// active) removes the entry. No entry is looked up by key, so the LRU
/// order stays as the resolver threads made it. Implemented in cache.cpp
/// (Unbound). Used by one thread at a time.
class CacheSweeper {
  public:
    enum class Outcome { Complete, Paused };

    CacheSweeper();
    ~CacheSweeper();
    CacheSweeper(const CacheSweeper&) = delete;
    CacheSweeper& operator=(const CacheSweeper&) = delete;

    /// Runs the pass for `rules` (its snapshot and trigger summary; the
    /// snapshot's generation must have been read before this call, see
    /// module/README.md "Why no stale answer survives a sweep"), resuming a
    /// paused pass of the same generation. A pass for a new generation
    /// starts at the hash bin where an unfinished older pass stopped,
    /// wrapping around, so entries it had not reached yet are checked
    /// first. `poll` is called after every 64 hash bins or cached answers,
    /// never while a lock is held (the caller may yield the CPU there), and
    /// may refresh `rules` to a newer generation: the rest of the pass is
    /// checked against the newer rules, but the pass completes for the
    /// generation it started with (only a pass that reached every bin after
    /// reading a generation can vouch for it). `now` is the time RRset TTLs
    /// are checked against.
    Outcome run(const CacheTables& tables, const WorkerSlot& rules, std::int64_t now,
                const std::function<SweepControl()>& poll) noexcept;
    /// The generation the pass run() last worked on started with (once
    /// run() returned Complete: the generation the cache was swept for),
    /// and the counts of the last complete pass.
    std::uint64_t generation() const noexcept;
    SweepResult result() const noexcept;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace dnsfw::module
