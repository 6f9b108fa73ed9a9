// dnsfw::xfrd — the daemon: wiring of the loop, store, listeners, zones,
// NOTIFY-out, control socket and signals.
#include "tools/xfrd/daemon.hpp"

#include "tools/xfrd/context.hpp"
#include "tools/xfrd/control.hpp"
#include "tools/xfrd/notify.hpp"
#include "tools/xfrd/secondary.hpp"
#include "tools/xfrd/serve.hpp"
#include "tools/xfrd/serve_wire.hpp"
#include "tools/xfrd/server.hpp"

#include <nlohmann/json.hpp>

#include <csignal>
#include <map>
#include <optional>
#include <sstream>

namespace dnsfw::xfrd {

namespace {

constexpr std::uint64_t kPollMs = 100;

std::string join(const std::vector<std::string>& v, const char* sep) {
    std::string out;
    for (const std::string& s : v) out += (out.empty() ? "" : sep) + s;
    return out;
}

std::vector<std::string> split_words(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> out;
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

bool same_endpoints(const std::vector<Endpoint>& a, const std::vector<Endpoint>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i].text != b[i].text) return false;
    return true;
}

/// The rate-limit key of a refusal line ("SUBJECT: refused: REASON" ->
/// "SUBJECT: refused: REASON" without the peer), nullopt for other lines.
std::optional<std::string> refusal_key(const std::string& line) {
    const std::size_t at = line.find(" refused");
    const std::size_t tsig = line.find("TSIG ");
    if (at == std::string::npos && tsig == std::string::npos) return std::nullopt;
    const std::size_t colon = line.find(": ");
    std::string subject = colon == std::string::npos ? "dnsfw-xfrd" : line.substr(0, colon);
    std::string reason = at != std::string::npos ? line.substr(at + 1) : "TSIG failure";
    // The kind of request ("AXFR", "NOTIFY", ...) is the first word after the subject.
    std::string kind;
    if (colon != std::string::npos) {
        const std::size_t sp = line.find(' ', colon + 2);
        kind = line.substr(colon + 2, sp == std::string::npos ? std::string::npos : sp - colon - 2);
    }
    return subject + ": " + kind + " " + reason;
}

}  // namespace

struct Daemon::Impl {
    explicit Impl(Config cfg) : config(std::make_unique<Config>(std::move(cfg))) {}

    uv_loop_t loop{};
    bool loop_open = false;
    Context ctx;
    std::unique_ptr<Config> config;
    std::vector<std::unique_ptr<Config>> retired;  ///< kept while TCP answers may use them
    std::optional<store::Store> store;
    std::unique_ptr<Responder> responder;
    std::unique_ptr<Server> server;
    std::unique_ptr<ControlServer> control;
    std::unique_ptr<Notifier> notifier;
    std::map<std::string, std::unique_ptr<ZoneSecondary>> secondaries;
    std::unique_ptr<Timer> poll_timer;
    Handle<uv_signal_t> sig_hup, sig_term, sig_int;
    std::map<std::string, std::uint32_t> known_serials;  ///< configured zones present in the store
    std::uint64_t last_generation = ~std::uint64_t{0};
    /// `stop` commands: answered "ok" once the daemon has closed its
    /// listeners, its control socket and the store (teardown).
    std::vector<std::shared_ptr<ControlServer::Reply>> stop_replies;
    std::unique_ptr<Timer> drain_timer;  ///< teardown: lets the last replies out
    std::uint64_t drain_deadline_ms = 0;
    bool started = false;  ///< the `ready` line was logged

    int run();
    void teardown();
    void stop(const std::string& why);
    std::string reload();
    Outcome handle_request(std::span<const std::uint8_t> req, const sockaddr_storage& peer,
                           bool tcp);
    void zone_changed(const std::string& zone, const std::string& how);
    void poll_store(bool initial);
    void apply_journal_limit(const ZoneConfig& z, const store::ZoneInfo& info);
    void sync_secondaries();
    void control_command(const std::string& line, std::shared_ptr<ControlServer::Reply> reply);
    nlohmann::json zone_status(const ZoneConfig& z);
    static void on_signal(uv_signal_t* h, int signum);
};

Daemon::Daemon(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Daemon::~Daemon() = default;
int Daemon::run() { return impl_->run(); }

int Daemon::Impl::run() {
    ctx.log.set_level(log_level_from_string(config->log_level).value_or(LogLevel::Info));
    if (int rc = uv_loop_init(&loop); rc != 0) {
        ctx.log.daemon(LogLevel::Error, std::string("cannot start the event loop: ") + uv_strerror(rc));
        return 1;
    }
    loop_open = true;
    ctx.loop = &loop;
    ctx.config = config.get();
    ctx.committed = [this](const std::string& zone) { zone_changed(zone, ""); };
    ctx.self = store::ProcessId::self();
    int status = 0;
    try {
        // Sockets first: a daemon that cannot listen must not create (or
        // open for writing) the store.
        server = std::make_unique<Server>(
            &loop, ctx.log,
            [this](std::span<const std::uint8_t> req, const sockaddr_storage& peer, bool tcp) {
                return handle_request(req, peer, tcp);
            });
        server->bind(config->listen);
        if (!config->control.empty()) {
            control = std::make_unique<ControlServer>(
                &loop, ctx.log,
                [this](const std::string& line, std::shared_ptr<ControlServer::Reply> reply) {
                    control_command(line, std::move(reply));
                });
            control->bind(config->control);
        }
        store::OpenOptions opts;
        opts.read_only = false;
        opts.create = true;
        if (config->map_size) opts.map_size = static_cast<std::size_t>(*config->map_size);
        if (config->max_map_size) {
            opts.max_map_size = static_cast<std::size_t>(*config->max_map_size);
            opts.map_size = std::min(opts.map_size, opts.max_map_size);
        }
        try {
            store.emplace(store::Store::open(config->store, opts));
        } catch (const std::exception& e) {
            throw std::runtime_error(std::string("cannot open the store: ") + e.what());
        }
        ctx.store = &*store;
        responder = std::make_unique<Responder>(
            *store, *config, [this](std::string_view level, const std::string& line) {
                // Refusals are driven by peers: at most a few lines per
                // second for each subject and reason.
                if (auto key = refusal_key(line)) {
                    ctx.log.limited(log_level_from_string(level).value_or(LogLevel::Info), *key,
                                    line);
                    return;
                }
                ctx.log.line(level, line);
            });
        notifier = std::make_unique<Notifier>(ctx);
        sig_hup = Handle<uv_signal_t>(&loop, this);
        sig_term = Handle<uv_signal_t>(&loop, this);
        sig_int = Handle<uv_signal_t>(&loop, this);
        uv_signal_start(sig_hup.get(), &Impl::on_signal, SIGHUP);
        uv_signal_start(sig_term.get(), &Impl::on_signal, SIGTERM);
        uv_signal_start(sig_int.get(), &Impl::on_signal, SIGINT);
        poll_timer = std::make_unique<Timer>(&loop, this, [](void* p) {
            static_cast<Impl*>(p)->poll_store(false);
        });
    } catch (const std::exception& e) {
        ctx.log.daemon(LogLevel::Error, e.what());
        status = 1;
    }
    if (status == 0) {
        started = true;
        std::string where = server->bound().empty() ? "(no address)" : join(server->bound(), ", ");
        if (control) where += "; control " + control->path();
        ctx.log.log(LogLevel::Info, "dnsfw-xfrd ready",
                    "listening on " + where + "; " + std::to_string(config->zones.size()) +
                        (config->zones.size() == 1 ? " zone" : " zones") + "; store " +
                        config->store);
        poll_store(true);
        sync_secondaries();
        poll_timer->start_repeating(kPollMs);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    teardown();
    return status;
}

void Daemon::Impl::teardown() {
    // Destroy every owner of a handle, then let the loop run the close
    // callbacks so that their memory is freed before the loop closes.
    secondaries.clear();  // transfers in flight are cancelled (nothing partial is committed)
    notifier.reset();
    server.reset();  // uv_close closes the listening sockets at once
    if (control) control->close_listener();  // no new commands; the socket file goes
    poll_timer.reset();
    sig_hup.reset();
    sig_term.reset();
    sig_int.reset();
    responder.reset();
    store.reset();
    if (started) ctx.log.daemon(LogLevel::Info, "stopped");
    // Only now may a `stop` client go on (and start another daemon): the
    // addresses, the control socket and the store are free.
    for (auto& reply : stop_replies) {
        reply->line("dnsfw-xfrd stopped");
        reply->ok();
    }
    stop_replies.clear();
    if (loop_open) {
        if (control) {
            // Let the last replies out, for at most kDrainMs; then close.
            constexpr std::uint64_t kDrainMs = 2000;
            drain_deadline_ms = uv_now(&loop) + kDrainMs;
            drain_timer = std::make_unique<Timer>(&loop, this, [](void* p) {
                auto* self = static_cast<Impl*>(p);
                if (self->control && self->control->connections() > 0 &&
                    uv_now(&self->loop) < self->drain_deadline_ms)
                    return;
                self->control.reset();
                self->drain_timer.reset();  // the Timer's last act is this callback
            });
            drain_timer->start_repeating(10);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        control.reset();
        drain_timer.reset();
        uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0)
            ctx.log.daemon(LogLevel::Warning, "event loop closed with handles still open");
        loop_open = false;
    }
    control.reset();
}

void Daemon::Impl::stop(const std::string& why) {
    ctx.log.daemon(LogLevel::Info, "stopping (" + why + ")");
    uv_stop(&loop);  // run() tears down once this loop iteration ends
}

void Daemon::Impl::on_signal(uv_signal_t* h, int signum) {
    auto* self = owner_of<Impl>(h);
    if (self == nullptr) return;
    if (signum == SIGHUP) {
        self->ctx.log.daemon(LogLevel::Info, "SIGHUP: reloading " + self->config->path);
        self->reload();
        return;
    }
    self->stop(signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

Outcome Daemon::Impl::handle_request(std::span<const std::uint8_t> req,
                                     const sockaddr_storage& peer, bool tcp) {
    Outcome o = responder->handle(req, peer, tcp);
    if (o.notified_zone) {
        const ZoneConfig* z = config->zone(*o.notified_zone);
        auto it = z != nullptr ? secondaries.find(z->name) : secondaries.end();
        if (it != secondaries.end()) {
            it->second->refresh("NOTIFY from " + wire::peer_text(peer));
        }
    }
    // The Responder already recorded the UPDATE in the zone's status
    // (updates, last_source); the daemon's part is the NOTIFY.
    if (o.changed_zone) zone_changed(*o.changed_zone, "");
    return o;
}

void Daemon::Impl::apply_journal_limit(const ZoneConfig& z, const store::ZoneInfo& info) {
    if (!z.journal_size || info.journal_max_bytes == *z.journal_size) return;
    try {
        store->set_journal_limit(z.name, *z.journal_size);
        ctx.log.zone(LogLevel::Debug, z.name,
                     "journal limit " + std::to_string(*z.journal_size) + " bytes");
    } catch (const std::exception& e) {
        ctx.log.zone(LogLevel::Error, z.name, std::string("cannot set the journal size: ") + e.what());
    }
}

void Daemon::Impl::zone_changed(const std::string& zone, const std::string& how) {
    const ZoneConfig* z = config->zone(zone);
    if (z == nullptr) return;
    std::optional<store::ZoneInfo> info;
    try {
        info = store->zone(z->name);
    } catch (const std::exception& e) {
        ctx.log.zone(LogLevel::Error, z->name, std::string("cannot read the store: ") + e.what());
        return;
    }
    if (!info) {
        known_serials.erase(z->name);
        return;
    }
    auto it = known_serials.find(z->name);
    const bool is_new = it == known_serials.end();
    if (!is_new && it->second == info->serial) return;
    if (!how.empty())
        ctx.log.zone(LogLevel::Info, z->name,
                     (is_new ? std::string("appeared in the store at serial ")
                             : "serial " + std::to_string(it->second) + " -> ") +
                         std::to_string(info->serial) + " " + how);
    known_serials[z->name] = info->serial;
    if (is_new) apply_journal_limit(*z, *info);
    if (!z->notify.empty()) notifier->notify(*z, *info);
}

void Daemon::Impl::poll_store(bool initial) {
    // Old configurations may still be used by answers being streamed.
    if (!retired.empty() && server && server->connections() == 0) retired.clear();
    ctx.log.flush_suppressed();
    std::uint64_t gen = 0;
    std::vector<store::ZoneInfo> zones;
    try {
        gen = store->generation();
        if (!initial && gen == last_generation) return;
        zones = store->list_zones();
    } catch (const std::exception& e) {
        if (initial) ctx.log.daemon(LogLevel::Error, std::string("cannot read the store: ") + e.what());
        return;
    }
    last_generation = gen;
    std::map<std::string, const store::ZoneInfo*> by_name;
    for (const store::ZoneInfo& info : zones) by_name[info.name] = &info;
    for (const ZoneConfig& z : config->zones) {
        auto f = by_name.find(z.name);
        if (f == by_name.end()) {
            const bool was_there = known_serials.erase(z.name) != 0;
            auto sec = secondaries.find(z.name);
            if (was_there && !initial && sec != secondaries.end()) {
                ctx.log.zone(LogLevel::Warning, z.name,
                             "removed from the store by another process; transferring it again");
                sec->second->transfer_now(true, nullptr);
            }
            continue;
        }
        const store::ZoneInfo& info = *f->second;
        if (initial) apply_journal_limit(z, info);
        auto it = known_serials.find(z.name);
        if (it != known_serials.end() && it->second == info.serial) continue;
        const bool is_new = it == known_serials.end();
        if (!initial)
            ctx.log.zone(LogLevel::Info, z.name,
                         (is_new ? std::string("appeared in the store at serial ")
                                 : "serial " + std::to_string(it->second) + " -> ") +
                             std::to_string(info.serial) + " (changed by another process)");
        known_serials[z.name] = info.serial;
        if (is_new && !initial) apply_journal_limit(z, info);
        // At start-up too: secondaries may have missed changes made while
        // the daemon was down.
        if (!z.notify.empty()) notifier->notify(z, info);
    }
}

void Daemon::Impl::sync_secondaries() {
    for (auto it = secondaries.begin(); it != secondaries.end();) {
        const ZoneConfig* z = config->zone(it->first);
        if (z == nullptr || z->primaries.empty()) {
            ctx.log.zone(LogLevel::Info, it->first,
                         z == nullptr ? "removed from the configuration"
                                      : "no primaries any more: no longer a secondary");
            it->second->retire();
            it = secondaries.erase(it);
            continue;
        }
        it->second->set_config(*z);
        ++it;
    }
    for (const ZoneConfig& z : config->zones) {
        if (z.primaries.empty() || secondaries.count(z.name) != 0) continue;
        auto sec = std::make_unique<ZoneSecondary>(ctx, z);
        sec->start();
        secondaries.emplace(z.name, std::move(sec));
    }
}

std::string Daemon::Impl::reload() {
    Config fresh;
    try {
        fresh = load_config(config->path);
    } catch (const std::exception& e) {
        ctx.log.daemon(LogLevel::Error, std::string("reload failed, keeping the running "
                                                    "configuration: ") + e.what());
        return e.what();
    }
    if (fresh.store != config->store) {
        std::string why = "the store cannot change without a restart (" + config->store + " -> " +
                          fresh.store + ")";
        ctx.log.daemon(LogLevel::Error, "reload failed, keeping the running configuration: " + why);
        return why;
    }
    if (fresh.map_size != config->map_size || fresh.max_map_size != config->max_map_size)
        ctx.log.daemon(LogLevel::Warning,
                       "reload: map-size / max-map-size take effect at the next restart");
    if (fresh.control != config->control)
        ctx.log.daemon(LogLevel::Warning,
                       "reload: the control socket stays " + config->control + " until a restart");
    std::unique_ptr<Server> new_server;
    // Rebind when the addresses changed, or when an earlier failure left
    // the listeners incomplete.
    if (!same_endpoints(fresh.listen, config->listen) || !server ||
        server->bound().size() != config->listen.size()) {
        // Close the old listeners first: the new set may reuse their addresses.
        std::vector<Endpoint> old_listen = config->listen;
        server.reset();
        auto make = [this]() {
            return std::make_unique<Server>(
                &loop, ctx.log,
                [this](std::span<const std::uint8_t> req, const sockaddr_storage& peer, bool tcp) {
                    return handle_request(req, peer, tcp);
                });
        };
        try {
            new_server = make();
            new_server->bind(fresh.listen);
        } catch (const std::exception& e) {
            new_server.reset();  // closes what it bound (uv_close closes the sockets at once)
            server = make();
            try {
                server->bind(old_listen);
            } catch (const std::exception& e2) {
                ctx.log.daemon(LogLevel::Error,
                               std::string("cannot listen on the old addresses again: ") + e2.what());
            }
            ctx.log.daemon(LogLevel::Error, std::string("reload failed, keeping the running "
                                                        "configuration: ") + e.what());
            return e.what();
        }
    }
    std::vector<std::string> added, removed;
    for (const ZoneConfig& z : fresh.zones)
        if (config->zone(z.name) == nullptr) added.push_back(z.name);
    for (const ZoneConfig& z : config->zones)
        if (fresh.zone(z.name) == nullptr) removed.push_back(z.name);

    auto next = std::make_unique<Config>(std::move(fresh));
    responder->set_config(*next);
    ctx.config = next.get();
    retired.push_back(std::move(config));
    config = std::move(next);
    if (new_server) server = std::move(new_server);
    ctx.log.set_level(log_level_from_string(config->log_level).value_or(LogLevel::Info));
    for (const std::string& name : removed) {
        notifier->forget(name);
        known_serials.erase(name);
    }
    sync_secondaries();
    poll_store(true);  // zones new to the store view, journal limits
    ctx.log.daemon(LogLevel::Info,
                   "configuration reloaded: " + std::to_string(config->zones.size()) + " zones" +
                       (added.empty() ? "" : "; added " + join(added, ", ")) +
                       (removed.empty() ? "" : "; removed " + join(removed, ", ")) +
                       (server ? "; listening on " + join(server->bound(), ", ") : ""));
    return "";
}

nlohmann::json Daemon::Impl::zone_status(const ZoneConfig& z) {
    nlohmann::json j;
    j["zone"] = z.name;
    j["role"] = z.primaries.empty() ? "primary" : "secondary";
    try {
        if (auto info = store->zone(z.name)) {
            j["serial"] = info->serial;
            j["rules"] = info->rule_count;
            j["loaded"] = true;
        } else {
            j["serial"] = nullptr;
            j["rules"] = 0;
            j["loaded"] = false;
        }
        store::ZoneStatus st = store->status(z.name).value_or(store::ZoneStatus{});
        j["last_attempt"] = st.last_attempt;
        j["last_success"] = st.last_success;
        j["last_failure"] = st.last_failure;
        j["last_error"] = st.last_error;
        j["last_source"] = st.last_source;
        j["transfers_full"] = st.transfers_full;
        j["transfers_incremental"] = st.transfers_incremental;
        j["transfers_failed"] = st.transfers_failed;
        j["updates"] = st.updates;
        j["primary_serial"] = st.primary_serial;
        j["next_check"] = st.next_check;
        j["transfer_started"] = st.transfer_started;
        j["transfer_kind"] = st.transfer_kind;
        j["last_transfer_skipped"] = st.last_transfer_skipped;
    } catch (const std::exception& e) {
        j["store_error"] = e.what();
    }
    if (auto it = secondaries.find(z.name); it != secondaries.end())
        j["secondary"] = it->second->live_status();
    j["notify_pending"] = notifier->in_flight(z.name);
    return j;
}

void Daemon::Impl::control_command(const std::string& line,
                                   std::shared_ptr<ControlServer::Reply> reply) {
    const std::vector<std::string> w = split_words(line);
    ctx.log.daemon(LogLevel::Debug, "control: " + escape_bytes(line));
    if (w.empty()) {
        reply->error("empty command");
        return;
    }
    const std::string& cmd = w[0];
    if (cmd == "reload" && w.size() == 1) {
        std::string err = reload();
        if (err.empty())
            reply->ok();
        else
            reply->error(err);
        return;
    }
    if (cmd == "stop" && w.size() == 1) {
        // Answered by teardown(), once the sockets and the store are closed.
        stop_replies.push_back(std::move(reply));
        stop("control stop");
        return;
    }
    if (cmd == "status" && w.size() == 1) {
        for (const ZoneConfig& z : config->zones) reply->line(zone_status(z).dump());
        reply->ok();
        return;
    }
    if ((cmd == "transfer" && (w.size() == 2 || (w.size() == 3 && w[2] == "full"))) ||
        (cmd == "notify" && w.size() == 2)) {
        const ZoneConfig* z = config->zone(w[1]);
        if (z == nullptr) {
            reply->error("zone " + w[1] + " is not in the configuration");
            return;
        }
        if (cmd == "notify") {
            std::optional<store::ZoneInfo> info;
            try {
                info = store->zone(z->name);
            } catch (const std::exception& e) {
                reply->error(std::string("cannot read the store: ") + e.what());
                return;
            }
            if (!info) {
                reply->error("zone " + z->name + " is not in the store yet");
                return;
            }
            if (z->notify.empty()) {
                reply->error("zone " + z->name + " has no notify targets");
                return;
            }
            std::size_t n = notifier->notify(*z, *info);
            reply->line("zone " + z->name + ": NOTIFY (serial " + std::to_string(info->serial) +
                        ") sent to " + std::to_string(n) + " of " +
                        std::to_string(z->notify.size()) + " targets");
            if (n == z->notify.size())
                reply->ok();
            else
                reply->error("some NOTIFYs could not be sent (see the log)");
            return;
        }
        auto it = secondaries.find(z->name);
        if (it == secondaries.end()) {
            reply->error("zone " + z->name + " has no primaries");
            return;
        }
        const std::string name = z->name;
        it->second->transfer_now(w.size() == 3, [reply, name](bool ok, const std::string& msg) {
            if (ok) {
                reply->line("zone " + name + ": " + msg);
                reply->ok();
            } else {
                reply->error(msg);
            }
        });
        return;
    }
    reply->error("unknown command '" + line +
                 "' (expected: reload | transfer ZONE [full] | notify ZONE | status | stop)");
}

}  // namespace dnsfw::xfrd
