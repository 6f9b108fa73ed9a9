// dnsfw::xfrd internal — what the daemon's parts share: the loop, the store,
// the log and the current configuration.
#pragma once

#include "store/store.hpp"
#include "tools/xfrd/config.hpp"
#include "tools/xfrd/log.hpp"

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

namespace dnsfw::xfrd {

/// Owned by the Daemon; outlives every part that points to it. Runs on the
/// loop thread only.
struct Context {
    uv_loop_t* loop = nullptr;
    store::Store* store = nullptr;
    Logger log;
    /// The configuration in force (replaced on reload; parts copy what they
    /// keep beyond one callback).
    const Config* config = nullptr;
    /// Called after this process committed a change to `zone` (transfer,
    /// UPDATE): the daemon NOTIFYs the zone's secondaries.
    std::function<void(const std::string& zone)> committed;
    /// This process, stamped on every status it writes (update_status), so
    /// that `dnsfw status` can tell whether the writer still runs.
    store::ProcessId self;
};

/// A random DNS message ID.
std::uint16_t random_id();

/// Unix time in seconds.
std::uint64_t unix_now();

/// "2024-07-05T10:11:12Z" (UTC).
std::string iso_utc(std::uint64_t unix_seconds);

/// Reads, changes and writes back the status of `zone` (Store::put_status),
/// stamped with ctx.self; a store failure is logged, never thrown.
void update_status(Context& ctx, const std::string& zone,
                   const std::function<void(store::ZoneStatus&)>& change);

}  // namespace dnsfw::xfrd
