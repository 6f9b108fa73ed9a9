// Module-wide state: store, per-worker snapshots, hit log, fail-open retry.
// No Unbound includes.
#include "module/state.hpp"

#include <chrono>
#include <optional>
#include <sstream>

namespace dnsfw::module {

namespace {

/// How often the fail-open retry tries to open the store.
constexpr std::chrono::seconds kRetryInterval{1};
/// How often the store generation is polled (inotify usually wakes the
/// maintenance thread sooner).
constexpr std::chrono::milliseconds kPollInterval{100};

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
                config_.hit_log, [l = log_](LogLevel level, const std::string& m) { l(level, m); });
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
        log_(LogLevel::Warning,
             "no UDP address of this resolver is known (interface names only, or do-udp: no): "
             "after a store change, answers cached earlier are expired at the next cache miss "
             "instead of at once");
    }
    watch_.watch(config_.store);
    std::optional<std::uint64_t> initial;
    if (Protection* p = protection(); p != nullptr && p->slot(0) != nullptr) {
        initial = p->slot(0)->generation;
    }
    maintenance_ = std::thread([this, initial] { maintenance_loop(initial); });
}

ModuleState::~ModuleState() {
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

bool ModuleState::claim_sweep(std::uint64_t generation) noexcept {
    std::uint64_t current = swept_generation_.load(std::memory_order_relaxed);
    while (current < generation) {
        if (swept_generation_.compare_exchange_weak(current, generation,
                                                    std::memory_order_acq_rel)) {
            return true;
        }
    }
    return false;
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
    std::string last_error;
    // The generation the snapshots were opened at (the first query sweeps
    // for it); a change after that, or protection appearing later, sends a
    // refresh query.
    std::uint64_t last_generation = initial_generation.value_or(0);
    bool have_generation = initial_generation.has_value();
    bool refresh_failure_reported = false;
    std::int64_t waited_ms = 0;
    const auto retry_ms = static_cast<std::int64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(kRetryInterval).count());
    while (watch_.wait(static_cast<int>(kPollInterval.count()))) {
        Protection* p = protection();
        if (p == nullptr) {
            // Fail-open: try the store again once a second.
            waited_ms += kPollInterval.count();
            if (waited_ms < retry_ms) continue;
            waited_ms = 0;
            try {
                publish(open_protection());
                have_generation = false;  // wake a resolver thread at once
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
        if (have_generation && generation == last_generation) continue;
        have_generation = true;
        last_generation = generation;
        // Wake a resolver thread: it refreshes, expires stale cached answers.
        if (!send_refresh_query(refresh_, generation) && refresh_.len != 0 &&
            !refresh_failure_reported) {
            refresh_failure_reported = true;
            log_(LogLevel::Warning, "cannot send the refresh query to this resolver");
        }
        log_(LogLevel::Debug, "store generation " + std::to_string(generation) + " seen");
    }
}

std::size_t ModuleState::memory() const noexcept {
    std::size_t bytes = sizeof(*this);
    if (hit_log_) bytes += sizeof(HitLog) + HitLog::kDefaultCapacity * sizeof(HitRecord);
    if (const Protection* p = protection()) bytes += p->workers() * sizeof(WorkerSlot);
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
