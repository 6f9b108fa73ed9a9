// dnsfw::module — the extern "C" entry points Unbound's dynlib module calls.
//
// Every entry point catches every exception: an exception must never
// unwind into Unbound's C code. init/deinit turn failures into one log line
// and a failed init (Unbound then refuses to start); the query-path entry
// points turn them into module_error (the client gets SERVFAIL).
#include "module/config.hpp"
#include "module/operate.hpp"
#include "module/state.hpp"

#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <memory>
#include <string>

#include "module/unbound.hpp"

#ifndef DNSFW_VERSION
#define DNSFW_VERSION "unknown"
#endif
#ifndef DNSFW_UNBOUND_VERSION
#define DNSFW_UNBOUND_VERSION PACKAGE_VERSION
#endif

namespace dnsfw::module {
namespace {

/// The module state of a running query, or nullptr.
ModuleState* state_of(module_env* env, int id) noexcept {
    if (env == nullptr || id < 0 || id >= MAX_MODULE) return nullptr;
    auto* de = static_cast<dynlibmod_env*>(env->modinfo[id]);
    return de != nullptr ? static_cast<ModuleState*>(de->dyn_env) : nullptr;
}

/// Routes the module's log lines to Unbound's log (stderr, file or syslog,
/// as unbound.conf says). Unbound's log functions are thread-safe.
LogSink unbound_log_sink() {
    return [](LogLevel level, const std::string& message) {
        switch (level) {
        case LogLevel::Error: log_err("%s", message.c_str()); break;
        case LogLevel::Warning: log_warn("%s", message.c_str()); break;
        case LogLevel::Info:
        case LogLevel::Debug: log_info("%s", message.c_str()); break;
        }
    };
}

/// inplace_cb_query_response: see handle_query_response().
int on_query_response(module_qstate* qstate, dns_msg* response, int id, void* /*arg*/) {
    return handle_query_response(qstate, response, id);
}

/// inplace_cb_query: see handle_outgoing_query().
int on_outgoing_query(query_info* /*qinfo*/, std::uint16_t /*flags*/, module_qstate* qstate,
                      sockaddr_storage* /*addr*/, socklen_t /*addrlen*/, std::uint8_t* /*zone*/,
                      std::size_t /*zonelen*/, regional* /*region*/, int id, void* /*arg*/) {
    return handle_outgoing_query(qstate, id);
}

}  // namespace
}  // namespace dnsfw::module

using dnsfw::module::ModuleState;

extern "C" {

__attribute__((visibility("default"))) int init(module_env* env, int id) {
    using namespace dnsfw::module;
    std::string path;
    try {
        auto* de = env != nullptr ? static_cast<dynlibmod_env*>(env->modinfo[id]) : nullptr;
        if (de == nullptr) {
            log_err("dnsfw: init: not loaded by Unbound's dynlib module");
            return 0;
        }
        path = config_path_from_environment();
        Config config = load_config(path);
        Logger logger(unbound_log_sink(), config.log_level);
        const auto workers = static_cast<std::size_t>(dnsfw_ub_num_threads(env));
        RefreshTarget refresh;
        if (dnsfw_ub_listen_address(env, &refresh.addr, &refresh.len) == 0) refresh.len = 0;
        auto state = std::make_unique<ModuleState>(std::move(config), workers, logger, refresh);
        const Config& c = state->config();
        std::string ede = c.ede ? std::to_string(*c.ede) : std::string("none");
        logger(LogLevel::Info,
               std::string("module " DNSFW_VERSION " (built for Unbound " DNSFW_UNBOUND_VERSION
                           ") ready: config ") +
                   c.source + ", " + (state->protection() ? "protecting" : "UNPROTECTED") +
                   ", " + std::to_string(workers) + " worker(s), EDE " + ede + ", hit log " +
                   (state->hit_log() ? state->hit_log()->path() : std::string("off")));
        // Keeps answers out of the message cache until moddone approved
        // them (operate.hpp, handle_query_response): without these hooks a
        // second worker thread could serve an answer this module is about
        // to rewrite. Only dynlib's wrapped callbacks pass Unbound's
        // function-pointer whitelist.
        inplace_cb_query_response_func_type* on_response = &on_query_response;
        inplace_cb_query_func_type* on_query = &on_outgoing_query;
        if (!de->inplace_cb_register_wrapped(reinterpret_cast<void*>(on_response),
                                             inplace_cb_query_response, nullptr, env, id) ||
            !de->inplace_cb_register_wrapped(reinterpret_cast<void*>(on_query), inplace_cb_query,
                                             nullptr, env, id)) {
            de->inplace_cb_delete_wrapped(env, inplace_cb_query_response, id);
            de->inplace_cb_delete_wrapped(env, inplace_cb_query, id);
            throw std::runtime_error("cannot register Unbound's in-place callbacks");
        }
        de->dyn_env = state.release();
        return 1;
    } catch (const ConfigError& e) {
        log_err("dnsfw: configuration error: %s", e.what());
    } catch (const std::exception& e) {
        log_err("dnsfw: init failed: %s", e.what());
    } catch (...) {
        log_err("dnsfw: init failed: unknown exception");
    }
    log_err("dnsfw: refusing to start without policy enforcement (config %s)",
            path.empty() ? "?" : path.c_str());
    return 0;
}

__attribute__((visibility("default"))) void deinit(module_env* env, int id) {
    try {
        auto* de = env != nullptr ? static_cast<dynlibmod_env*>(env->modinfo[id]) : nullptr;
        if (de == nullptr || de->dyn_env == nullptr) return;
        de->inplace_cb_delete_wrapped(env, inplace_cb_query_response, id);
        de->inplace_cb_delete_wrapped(env, inplace_cb_query, id);
        std::unique_ptr<ModuleState> state(static_cast<ModuleState*>(de->dyn_env));
        de->dyn_env = nullptr;
        state->log_totals();
        // ~ModuleState joins the background threads and flushes the hit log.
    } catch (const std::exception& e) {
        log_err("dnsfw: deinit: %s", e.what());
    } catch (...) {
        log_err("dnsfw: deinit: unknown exception");
    }
}

__attribute__((visibility("default"))) void operate(module_qstate* qstate, module_ev event, int id,
                                                    outbound_entry* /*outbound*/) {
    try {
        ModuleState* state = dnsfw::module::state_of(qstate->env, id);
        if (state == nullptr) {
            log_err("dnsfw: operate: module not initialised");
            qstate->ext_state[id] = module_error;
            return;
        }
        dnsfw::module::handle_operate(*state, qstate, event, id);
    } catch (...) {
        log_err("dnsfw: operate: unexpected exception");
        qstate->ext_state[id] = module_error;
    }
}

__attribute__((visibility("default"))) void inform_super(module_qstate* qstate, int id,
                                                         module_qstate* super) {
    try {
        dnsfw::module::handle_inform_super(qstate, id, super);
    } catch (...) {
        log_err("dnsfw: inform_super: unexpected exception");
        super->ext_state[id] = module_error;
    }
}

__attribute__((visibility("default"))) void clear(module_qstate* qstate, int id) {
    try {
        ModuleState* state =
            qstate != nullptr ? dnsfw::module::state_of(qstate->env, id) : nullptr;
        dnsfw::module::handle_clear(state, qstate, id);
    } catch (...) {
        log_err("dnsfw: clear: unexpected exception");
    }
}

__attribute__((visibility("default"))) size_t get_mem(module_env* env, int id) {
    try {
        ModuleState* state = dnsfw::module::state_of(env, id);
        return state != nullptr ? state->memory() : 0;
    } catch (...) {
        log_err("dnsfw: get_mem: unexpected exception");
        return 0;
    }
}

}  // extern "C"
