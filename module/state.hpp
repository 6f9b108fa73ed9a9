// dnsfw::module — module-wide state: configuration, the open store with one
// Snapshot per resolver thread, the hit log, and the maintenance thread
// (fail-open retries, store-change refresh queries, and the message-cache
// sweep after a store change; see watch.hpp and sweep.hpp).
//
// Lifetime: created by init() (Unbound's main thread, after it daemonised and
// dropped privileges), destroyed by deinit() (on stop and on every reload,
// after the worker threads were joined). Everything a resolver thread uses
// is reached from here, never from thread_local storage: a reload destroys
// and re-creates this state while Unbound's main thread lives on.
//
// No Unbound includes.
#pragma once

#include "module/config.hpp"
#include "module/hitlog.hpp"
#include "module/sweep.hpp"
#include "module/watch.hpp"
#include "rpz/rpz.hpp"
#include "store/store.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace dnsfw::module {

/// The module's log: a sink (Unbound's log functions) behind a level gate.
/// Thread-safe if the sink is.
class Logger {
public:
    Logger() = default;
    Logger(LogSink sink, LogLevel level) : sink_(std::move(sink)), level_(level) {}
    bool enabled(LogLevel level) const noexcept { return level <= level_; }
    /// Logs "dnsfw: <message>" if `level` is enabled. Never throws.
    void operator()(LogLevel level, const std::string& message) const noexcept;
    void set_level(LogLevel level) noexcept { level_ = level; }

private:
    LogSink sink_;
    LogLevel level_ = LogLevel::Info;
};

/// What one resolver thread owns. Used only by that thread (no locks); the
/// slots of different threads are on different cache lines.
struct alignas(64) WorkerSlot {
    /// Read view of the active zones, kept open; refreshed before each query.
    std::unique_ptr<store::Snapshot> snapshot;
    /// Store generation the caches below were built for.
    std::uint64_t generation = ~std::uint64_t{0};
    /// Wire names of the active zones' apexes, by zone index (empty entry if
    /// the name did not parse): owners of the SOA added to policy answers.
    std::vector<rpz::Name> apex;
    /// Applied policies by rpz::Action value (index 0: unused).
    std::array<std::uint64_t, 8> applied{};
    /// What the active zones hold (rebuilt with `apex`): any CLIENT-IP rule
    /// or any zone limited to some clients (ZonePolicy::clients): answers
    /// then differ per client and must stay out of the message cache; any Response-IP
    /// rule, any NSDNAME or NSIP rule (the delegation path is then read).
    bool client_ip_rules = false;
    bool response_ip_rules = false;
    bool ns_rules = false;
    /// This module switched the worker's env->unique_mesh on (CLIENT-IP rules).
    bool set_unique_mesh = false;

    /// Brings the snapshot up to date and rebuilds the caches if the
    /// generation changed. noexcept: on failure keeps the last view.
    /// Returns true if the generation changed.
    bool sync() noexcept;
};

/// An open store with one WorkerSlot per resolver thread. Published once
/// (see ModuleState::protection()), then immutable apart from the slots.
class Protection {
public:
    /// Opens the store read-only and a snapshot of `zones` per worker.
    /// Throws store::StoreError naming the path.
    Protection(const std::string& store_path, const std::vector<std::string>& zones,
               std::size_t workers);
    Protection(const Protection&) = delete;
    Protection& operator=(const Protection&) = delete;

    std::size_t workers() const noexcept { return slots_.size(); }
    /// The slot of worker `i`; nullptr if out of range.
    WorkerSlot* slot(std::size_t i) noexcept { return i < slots_.size() ? &slots_[i] : nullptr; }
    const store::Store& store() const noexcept { return store_; }

private:
    store::Store store_;             // declared first: outlives the snapshots
    std::vector<WorkerSlot> slots_;
};

/// Everything the module keeps between init() and deinit().
class ModuleState {
public:
    /// Sets up protection from `config` for `workers` resolver threads and
    /// starts the maintenance thread. If the store cannot be opened (or the
    /// hit log cannot be opened): throws std::runtime_error naming the path
    /// and cause, unless config.fail_open, in which case it logs a loud
    /// warning and starts unprotected, retrying the store once a second.
    /// `refresh` is where to send refresh queries after store changes
    /// (len 0: none; then a change is noticed at the next cache miss).
    ModuleState(Config config, std::size_t workers, Logger log, RefreshTarget refresh = {});
    /// Stops the maintenance thread and the hit-log writer (flushing it).
    ~ModuleState();
    ModuleState(const ModuleState&) = delete;
    ModuleState& operator=(const ModuleState&) = delete;

    const Config& config() const noexcept { return config_; }
    const Logger& log() const noexcept { return log_; }
    /// The active protection, or nullptr while unprotected (fail-open).
    /// Acquire load; lock-free.
    Protection* protection() const noexcept { return protection_.load(std::memory_order_acquire); }
    /// The hit log, or nullptr if none is configured (or it failed to open
    /// with fail-open).
    HitLog* hit_log() noexcept { return hit_log_.get(); }
    std::size_t workers() const noexcept { return workers_; }
    /// The anchor gate of the maintenance thread's cache sweep (sweep.hpp).
    SweepGate& sweep_gate() noexcept { return gate_; }
    /// Where a sweep's anchor sends its wake-up queries (the maintenance
    /// thread's WakeSocket; len 0 if there is none).
    const RefreshTarget& wake_address() const noexcept { return wake_address_; }
    /// Whether the message cache still has to be swept for a store
    /// generation the maintenance thread has seen.
    bool sweep_wanted() const noexcept {
        return swept_generation_.load(std::memory_order_acquire) <
               wanted_generation_.load(std::memory_order_acquire);
    }
    /// Whether a sweep is due that the maintenance thread should run: a
    /// refresh query should anchor it (and an anchor keep waiting).
    bool anchor_wanted() const noexcept;
    /// Whether the resolver thread that sees `generation` first must sweep
    /// the message cache itself (the fallback mode: no refresh target or
    /// wake-up socket, or no sweep could be anchored for that generation).
    bool worker_sweeps(std::uint64_t generation) const noexcept;
    /// Switches the sweep for the generations seen so far to the fallback
    /// mode (an anchor could not send its wake-up query). Logs once.
    void fall_back_to_worker_sweep(const char* why) noexcept;
    /// True for exactly one caller per store generation (the first that
    /// reports it): in the fallback mode, that resolver thread sweeps.
    bool claim_sweep(std::uint64_t generation) noexcept;
    /// Records that the message cache was swept for `generation`.
    void note_swept(std::uint64_t generation) noexcept;
    /// Logs the result of a sweep pass ("store generation N: ...").
    void log_sweep(std::uint64_t generation, std::size_t zones, const SweepResult& r,
                   std::chrono::microseconds took, const char* where) const noexcept;
    /// Approximate heap bytes (for Unbound's get_mem).
    std::size_t memory() const noexcept;
    /// Logs the applied-policy totals (call after the workers stopped).
    void log_totals() const noexcept;

private:
    std::unique_ptr<Protection> open_protection() const;
    void publish(std::unique_ptr<Protection> p);
    void report_zones(const Protection& p) const;
    /// The maintenance thread's own view of the store for sweeping, and
    /// the sweep in progress.
    struct Sweeper {
        std::unique_ptr<WorkerSlot> rules;  ///< own Snapshot: belongs to this thread
        CacheSweeper cache;
        std::uint64_t pass_generation = 0;  ///< generation the timed pass is for
        std::chrono::steady_clock::time_point pass_start{};
        std::chrono::steady_clock::duration yielded{};  ///< in sched_yield() this pass
        bool in_pass = false;
    };
    void maintenance_loop(std::optional<std::uint64_t> initial_generation);
    void run_sweep(Protection& p, Sweeper& s);

    Config config_;
    std::size_t workers_;
    Logger log_;
    RefreshTarget refresh_;
    std::unique_ptr<HitLog> hit_log_;
    std::unique_ptr<Protection> owned_;
    std::atomic<Protection*> protection_{nullptr};
    SweepGate gate_;
    WakeSocket wake_;  // used by the maintenance thread only
    RefreshTarget wake_address_;
    std::atomic<std::uint64_t> wanted_generation_{0};   // seen by the maintenance thread
    std::atomic<std::uint64_t> swept_generation_{0};    // the cache was swept for it
    std::atomic<std::uint64_t> claimed_generation_{0};  // fallback: claimed by a worker
    std::atomic<std::uint64_t> fallback_generation_{0}; // fallback up to this generation
    std::atomic<bool> workers_sweep_{false};            // fallback for good
    std::atomic<bool> fallback_logged_{false};
    std::atomic<bool> stopping_{false};
    DirWatch watch_;
    std::thread maintenance_;  // last: joined before the members above go
};

}  // namespace dnsfw::module
