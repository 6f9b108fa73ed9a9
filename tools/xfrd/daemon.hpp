// dnsfw::xfrd — the update daemon dnsfw-xfrd: one libuv loop that runs the
// secondary role (SOA timers, NOTIFY in, IXFR/AXFR into the store), the
// primary role (answers via Responder, NOTIFY out on every serial change,
// including changes made by other processes), the control socket and the
// signals (SIGHUP reload, SIGTERM/SIGINT stop).
#pragma once

#include "tools/xfrd/config.hpp"

#include <memory>

namespace dnsfw::xfrd {

/// The daemon. Construct with a validated configuration, then run() on the
/// thread that owns it. Not copyable.
class Daemon {
public:
    explicit Daemon(Config config);
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;
    ~Daemon();

    /// Binds the sockets (listen addresses, control socket), then opens the
    /// store (creating it if needed: never when a socket cannot be bound),
    /// prints the `ready` line and runs until stopped (SIGTERM, SIGINT,
    /// control `stop`), logging `stopped` once the sockets and the store are
    /// closed. Returns the exit status: 0 after a clean stop, 1 if start-up
    /// failed (reason logged).
    int run();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace dnsfw::xfrd
