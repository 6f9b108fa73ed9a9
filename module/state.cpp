// Module-wide state: store, per-worker snapshots, hit log, fail-open retry.
// No Unbound includes.
#include "module/state.hpp"

#include <sched.h>

#include <chrono>
#include <ctime>
#include <optional>
#include <sstream>

namespace dnsfw::module {

namespace {

/// How often the fail-open retry tries to open the store.
constexpr std::chrono::seconds kRetryInterval{1};
/// How often the store generation is polled (inotify usually wakes the
/// maintenance thread sooner); also how often a refresh query is sent again
/// while a sweep is due and no resolver thread has anchored it yet.
constexpr std::chrono::milliseconds kPollInterval{100};
/// How long a due sweep may go without an anchor before the resolver
/// threads sweep themselves (fallback for that generation).
constexpr std::chrono::milliseconds kAnchorPatience{2000};
/// How often the sweep answers its anchor's wake-up query meanwhile (the
/// anchor asks again at once): far below Unbound's smallest UDP timeout
/// (50 ms), so the anchor never times out.
constexpr std::chrono::milliseconds kHeartbeat{20};
/// How often a running sweep looks at the wake-up socket and the store.
constexpr std::chrono::milliseconds kSweepCheck{5};
/// A sweep pass spends at most 1/kYieldShare of its wall time in
/// sched_yield() (see run_sweep), so yielding makes a pass at most about a
/// third longer, however busy the CPUs are.
constexpr int kYieldShare = 4;

/// Raises `a` to at least `v`.
void raise_to(std::atomic<std::uint64_t>& a, std::uint64_t v) noexcept {
    std::uint64_t cur = a.load(std::memory_order_relaxed);
    while (cur < v && !a.compare_exchange_weak(cur, v, std::memory_order_acq_rel)) {
    }
}

std::string join_zones(const std::vector<std::string>& zones) {
    std::string out;
    for (const auto& z : zones) {
        if (!out.empty()) out += ", ";
        out += z;
    }
    return out;
}

}  // namespace

void Logger::operator()(LogLevel level, const std::string& message) const noexcept {
    if (!enabled(level) || !sink_) return;
    try {
        sink_(level, "dnsfw: " + message);
    } catch (...) {
        // Logging must never take the resolver down.
    }
}

bool WorkerSlot::sync() noexcept {
    if (!snapshot) return false;
    snapshot->refresh();
    const std::uint64_t g = snapshot->generation();
    if (g == generation) return false;
    generation = g;
    // Runs once per store change, not per query: allocation is acceptable.
    try {
        apex.assign(snapshot->zone_count(), rpz::Name{});
        for (std::size_t i = 0; i < apex.size(); ++i) {
            if (auto n = rpz::name_from_text(snapshot->zone_info(i).name)) apex[i] = std::move(*n);
        }
    } catch (...) {
        apex.clear();  // answers go out without the SOA
    }
    client_ip_rules = response_ip_rules = ns_rules = false;
    for (std::size_t z = 0; z < snapshot->zone_count(); ++z) {
        if (snapshot->policy(z).override == rpz::PolicyOverride::Disabled) continue;
        auto has = [&](rpz::Trigger t) { return snapshot->trigger_rule_count(z, t) != 0; };
        // A zone limited to some clients answers differently per client,
        // exactly like CLIENT-IP rules.
        client_ip_rules = client_ip_rules || has(rpz::Trigger::ClientIp) ||
                          !snapshot->policy(z).clients.empty();
        response_ip_rules = response_ip_rules || has(rpz::Trigger::ResponseIp);
        ns_rules = ns_rules || has(rpz::Trigger::NsDname) || has(rpz::Trigger::NsIp);
    }
    return true;
}

Protection::Protection(const std::string& store_path, const std::vector<std::string>& zones,
                       std::size_t workers)
    : store_(store::Store::open(store_path, store::OpenOptions{})) {
    slots_.resize(workers == 0 ? 1 : workers);
    for (WorkerSlot& slot : slots_) {
        slot.snapshot = store_.snapshot(zones);
        slot.sync();
    }
}

ModuleState::ModuleState(Config config, std::size_t workers, Logger log, RefreshTarget refresh)
    : config_(std::move(config)),
      workers_(workers == 0 ? 1 : workers),
      log_(std::move(log)),
      refresh_(refresh) {
    // The hit log first: its failure is a configuration problem as much as
    // the store's.
    if (!config_.hit_log.empty()) {
        try {
            hit_log_ = std::make_unique<HitLog>(
                config_.hit_log, [l = log_](LogLevel level, const std::string& m) { l(level, m); },
                config_.hit_log_queue);
        } catch (const std::exception& e) {
            if (!config_.fail_open) {
                throw std::runtime_error(std::string(e.what()) + " (configured in " +
                                         config_.source + ")");
            }
            log_(LogLevel::Error, std::string("WARNING: running WITHOUT the hit log: ") + e.what() +
                                      " (fail-open = true in " + config_.source + ")");
        }
    }

    try {
        publish(open_protection());
    } catch (const std::exception& e) {
        if (!config_.fail_open) {
            throw std::runtime_error(std::string("cannot open the policy store: ") + e.what() +
                                     " (store = \"" + config_.store + "\" in " + config_.source +
                                     "; set fail-open = true to resolve without policy instead)");
        }
        log_(LogLevel::Error,
             std::string("WARNING: starting UNPROTECTED: cannot open the policy store: ") +
                 e.what() + " (store = \"" + config_.store + "\" in " + config_.source +
                 ", fail-open = true). Queries are resolved WITHOUT policy; retrying every " +
                 std::to_string(kRetryInterval.count()) + " s.");
    }
    if (refresh_.len == 0) {
        workers_sweep_.store(true, std::memory_order_release);
        log_(LogLevel::Warning,
             "no UDP address of this resolver is known (interface names only, or do-udp: no): "
             "after a store change, answers cached earlier are removed at the next cache miss, "
             "by that resolver thread (which answers nothing else meanwhile), instead of at once "
             "by the maintenance thread");
    } else if (!wake_.open(refresh_.addr.ss_family)) {
        workers_sweep_.store(true, std::memory_order_release);
        log_(LogLevel::Warning,
             "cannot open the maintenance thread's loopback UDP socket: after a store change, "
             "the first resolver thread that notices it removes the answers cached earlier "
             "(and answers nothing else meanwhile)");
    } else {
        wake_address_ = wake_.address();
    }
    watch_.watch(config_.store);
    std::optional<std::uint64_t> initial;
    if (Protection* p = protection(); p != nullptr && p->slot(0) != nullptr) {
        initial = p->slot(0)->generation;
    }
    maintenance_ = std::thread([this, initial] { maintenance_loop(initial); });
}

ModuleState::~ModuleState() {
    stopping_.store(true, std::memory_order_release);
    watch_.stop();
    if (maintenance_.joinable()) maintenance_.join();
    hit_log_.reset();  // flushes
}

std::unique_ptr<Protection> ModuleState::open_protection() const {
    auto p = std::make_unique<Protection>(config_.store, config_.zones, workers_);
    report_zones(*p);
    return p;
}

void ModuleState::publish(std::unique_ptr<Protection> p) {
    Protection* raw = p.get();
    owned_ = std::move(p);
    protection_.store(raw, std::memory_order_release);
}

bool ModuleState::anchor_wanted() const noexcept {
    if (!sweep_wanted() || workers_sweep_.load(std::memory_order_acquire)) return false;
    return fallback_generation_.load(std::memory_order_acquire) <
           wanted_generation_.load(std::memory_order_acquire);
}

bool ModuleState::worker_sweeps(std::uint64_t generation) const noexcept {
    if (swept_generation_.load(std::memory_order_acquire) >= generation) return false;
    return workers_sweep_.load(std::memory_order_acquire) ||
           generation <= fallback_generation_.load(std::memory_order_acquire);
}

void ModuleState::fall_back_to_worker_sweep(const char* why) noexcept {
    raise_to(fallback_generation_, wanted_generation_.load(std::memory_order_acquire));
    if (!fallback_logged_.exchange(true)) {
        log_(LogLevel::Warning,
             std::string("the message-cache sweep after a store change runs on a resolver "
                         "thread this time (which answers nothing else meanwhile): ") +
                 why);
    }
}

bool ModuleState::claim_sweep(std::uint64_t generation) noexcept {
    std::uint64_t current = claimed_generation_.load(std::memory_order_relaxed);
    while (current < generation) {
        if (claimed_generation_.compare_exchange_weak(current, generation,
                                                      std::memory_order_acq_rel)) {
            return true;
        }
    }
    return false;
}

void ModuleState::note_swept(std::uint64_t generation) noexcept {
    raise_to(swept_generation_, generation);
}

void ModuleState::log_sweep(std::uint64_t generation, std::size_t zones, const SweepResult& r,
                            std::chrono::microseconds took, const char* where) const noexcept {
    const LogLevel level = r.complete ? LogLevel::Info : LogLevel::Error;
    if (!log_.enabled(level)) return;
    try {
        log_(level, "store generation " + std::to_string(generation) + ": " +
                        std::to_string(zones) + " active zone(s); removed " +
                        std::to_string(r.removed) + " of " + std::to_string(r.examined) +
                        " cached answers, policed now (" + std::to_string(took.count()) +
                        " us, " + where + ")" +
                        (r.complete ? "" : "; OUT OF MEMORY: sweep incomplete"));
    } catch (...) {
    }
}

void ModuleState::report_zones(const Protection& p) const {
    auto* slot = const_cast<Protection&>(p).slot(0);
    if (slot == nullptr || !slot->snapshot) return;
    const store::Snapshot& s = *slot->snapshot;
    for (const auto& missing : s.missing_zones()) {
        log_(LogLevel::Error, "WARNING: zone " + missing + " (zones in " + config_.source +
                                  ") is not in the store " + config_.store +
                                  "; it applies once loaded");
    }
    std::ostringstream os;
    os << "store " << config_.store << " generation " << s.generation() << ", "
       << s.zone_count() << " active zone(s)";
    std::vector<std::string> names;
    for (std::size_t i = 0; i < s.zone_count(); ++i) {
        const auto& zi = s.zone_info(i);
        names.push_back(zi.name + " (serial " + std::to_string(zi.serial) + ", " +
                        std::to_string(zi.rule_count) + " rules)");
    }
    if (!names.empty()) os << ": " << join_zones(names);
    if (s.zone_count() == 0) {
        log_(LogLevel::Error, "WARNING: " + os.str() + ": no policy applies until a zone is loaded");
    } else {
        log_(LogLevel::Info, os.str());
    }
}

void ModuleState::maintenance_loop(std::optional<std::uint64_t> initial_generation) {
    using Clock = std::chrono::steady_clock;
    std::string last_error;
    // The generation the snapshots were opened at: the cache may hold
    // answers from before (a reload that kept the cache), so it is swept
    // for it too. A change after that, or protection appearing later,
    // makes another sweep due.
    std::uint64_t last_generation = initial_generation.value_or(0);
    bool have_generation = initial_generation.has_value();
    if (have_generation) raise_to(wanted_generation_, last_generation);
    bool refresh_failure_reported = false;
    Clock::time_point next_retry = Clock::now() + kRetryInterval;
    Clock::time_point last_refresh{};
    Clock::time_point due_since = Clock::now();
    bool due = false;
    Sweeper sweeper;
    while (!stopping_.load(std::memory_order_acquire) &&
           watch_.wait(static_cast<int>(kPollInterval.count()), wake_.fd())) {
        wake_.drain();
        Protection* p = protection();
        if (p == nullptr) {
            // Fail-open: try the store again once a second.
            if (Clock::now() < next_retry) continue;
            next_retry = Clock::now() + kRetryInterval;
            try {
                publish(open_protection());
                have_generation = false;  // sweep (and wake a resolver thread) at once
                log_(LogLevel::Error, "store " + config_.store +
                                          " is readable now: policy enforcement is ACTIVE");
                watch_.watch(config_.store);
                p = protection();
            } catch (const std::exception& e) {
                if (last_error != e.what()) {
                    last_error = e.what();
                    log_(LogLevel::Warning, std::string("still UNPROTECTED: ") + e.what());
                }
                continue;
            }
        }
        std::uint64_t generation = 0;
        try {
            generation = p->store().generation();
        } catch (const std::exception& e) {
            log_(LogLevel::Debug, std::string("reading the store generation: ") + e.what());
            continue;
        }
        if (!have_generation || generation != last_generation) {
            have_generation = true;
            last_generation = generation;
            raise_to(wanted_generation_, generation);
            last_refresh = {};  // wake a resolver thread at once
            log_(LogLevel::Debug, "store generation " + std::to_string(generation) + " seen");
        }
        if (!sweep_wanted()) {
            due = false;
            if (wake_.pending()) wake_.answer();  // an anchor with nothing left to wait for
            continue;
        }
        if (!due) {
            due = true;
            due_since = Clock::now();
        }
        if (gate_.anchored()) {
            run_sweep(*p, sweeper);
            due_since = Clock::now();  // patience for the next anchor starts anew
            continue;
        }
        // No resolver thread anchors the sweep yet (or, in the fallback
        // mode, sweeps): the refresh query makes one do it.
        const auto now = Clock::now();
        if (now - last_refresh >= kPollInterval) {
            last_refresh = now;
            if (!send_refresh_query(refresh_, generation) && refresh_.len != 0 &&
                !refresh_failure_reported) {
                refresh_failure_reported = true;
                log_(LogLevel::Warning, "cannot send the refresh query to this resolver");
            }
        }
        if (now - due_since >= kAnchorPatience && !workers_sweep_.load()) {
            fall_back_to_worker_sweep(
                "no resolver thread took the maintenance thread's refresh query within 2 s "
                "(does access-control refuse the first interface: address?)");
            due_since = now;
        }
    }
}

void ModuleState::run_sweep(Protection& p, Sweeper& s) {
    using Clock = std::chrono::steady_clock;
    const std::optional<CacheTables> tables = gate_.enter();
    if (!tables) return;
    if (!s.rules) {
        try {
            auto slot = std::make_unique<WorkerSlot>();
            slot->snapshot = p.store().snapshot(config_.zones);
            s.rules = std::move(slot);
        } catch (const std::exception& e) {
            log_(LogLevel::Error, std::string("cannot open a store snapshot for the cache sweep: ") +
                                      e.what() + "; the resolver threads sweep instead");
            gate_.leave();
            fall_back_to_worker_sweep("the maintenance thread cannot read the store");
            if (wake_.pending()) wake_.answer();
            return;
        }
    }
    for (;;) {
        // The generation is read before the pass reaches any hash bin (see
        // module/README.md, "Why no stale answer survives a sweep").
        s.rules->sync();
        const std::uint64_t g = s.rules->generation;
        if (!s.in_pass || s.pass_generation != g) {
            if (!s.in_pass) {
                s.pass_start = Clock::now();
                s.yielded = {};
            }
            s.in_pass = true;
            s.pass_generation = g;
            log_(LogLevel::Debug, "sweeping the message cache for store generation " +
                                      std::to_string(g) + " (maintenance thread)");
        }
        Clock::time_point next_check = Clock::now() + kSweepCheck;
        const std::function<SweepControl()> poll = [&]() -> SweepControl {
            if (stopping_.load(std::memory_order_acquire) || gate_.revoked()) {
                return SweepControl::Pause;
            }
            // Between slices, holding no lock: let a resolver thread that is
            // ready to run have the CPU now, rather than preempt the sweep
            // while it holds a spin lock the resolver threads need (on 2
            // cores they would spin until it runs again). Capped at
            // 1/kYieldShare of the pass's wall time.
            auto now = Clock::now();
            if (s.yielded * kYieldShare < now - s.pass_start) {
                sched_yield();
                const auto after = Clock::now();
                s.yielded += after - now;
                now = after;
            }
            if (now < next_check) return SweepControl::Continue;
            next_check = now + kSweepCheck;
            wake_.drain();
            if (wake_.pending() && now - wake_.pending_since() >= kHeartbeat) wake_.answer();
            // A newer generation: check the rest of this pass against its
            // rules at once (the pass still vouches only for `g`).
            s.rules->sync();
            return SweepControl::Continue;
        };
        const CacheSweeper::Outcome outcome =
            s.cache.run(*tables, *s.rules, static_cast<std::int64_t>(std::time(nullptr)), poll);
        if (outcome == CacheSweeper::Outcome::Paused) {
            if (gate_.revoked()) {
                log_(LogLevel::Debug, "sweep for store generation " +
                                          std::to_string(s.cache.generation()) +
                                          " paused: its anchor ended; resumes with the next");
            }
            break;
        }
        const std::uint64_t swept = s.cache.generation();
        note_swept(swept);
        s.in_pass = false;
        log_sweep(swept, s.rules->snapshot->zone_count(), s.cache.result(),
                  std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() -
                                                                        s.pass_start),
                  "maintenance thread");
        s.rules->sync();
        if (s.rules->generation == swept) break;  // else a pass for the newer one
    }
    gate_.leave();
    // Wakes the anchor: it finishes if nothing is left to sweep.
    if (wake_.pending()) wake_.answer();
}

std::size_t ModuleState::memory() const noexcept {
    std::size_t bytes = sizeof(*this);
    if (hit_log_) bytes += sizeof(HitLog) + hit_log_->capacity() * sizeof(HitRecord);
    if (const Protection* p = protection()) bytes += (p->workers() + 1) * sizeof(WorkerSlot);
    return bytes;
}

void ModuleState::log_totals() const noexcept {
    Protection* p = protection();
    if (p == nullptr) return;
    std::array<std::uint64_t, 8> total{};
    for (std::size_t w = 0; w < p->workers(); ++w) {
        const WorkerSlot* s = p->slot(w);
        for (std::size_t a = 0; a < total.size(); ++a) total[a] += s->applied[a];
    }
    try {
        std::ostringstream os;
        os << "applied policies:";
        for (std::uint8_t a = 1; a <= 6; ++a) {
            os << ' ' << rpz::to_string(static_cast<rpz::Action>(a)) << '=' << total[a];
        }
        if (hit_log_) {
            os << "; hit log " << hit_log_->path() << ": " << hit_log_->written() << " written, "
               << hit_log_->dropped() << " dropped, " << hit_log_->lost() << " lost";
        }
        log_(LogLevel::Info, os.str());
    } catch (...) {
    }
}

}  // namespace dnsfw::module
