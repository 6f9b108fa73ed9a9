// dnsfw::module — noticing store changes quickly, and the refresh query.
//
// Unbound answers repeated queries from its message cache without calling
// any module, so after a store change an answer cached earlier would keep
// bypassing a new rule until its TTL ran out. The module therefore removes
// the cached answers of every name the new rules police (cache.hpp). The
// maintenance thread watches the store (inotify, plus a short poll) and,
// when the generation changes, sends Unbound one "refresh query" for a
// reserved name. The resolver thread that takes it refreshes its snapshot
// and anchors the sweep, which the maintenance thread then runs (sweep.hpp
// explains why a resolver thread must vouch for Unbound's caches); in the
// fallback mode that resolver thread sweeps itself. The name never leaves
// the resolver (the module answers it itself).
//
// No Unbound includes.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <span>
#include <string>

namespace dnsfw::module {

/// "refresh.dnsfw.internal." in wire format: the reserved suffix of refresh
/// queries. Any query below it is answered REFUSED by the module.
inline constexpr std::uint8_t kRefreshSuffix[] = {
    7, 'r', 'e', 'f', 'r', 'e', 's', 'h', 5, 'd', 'n', 's', 'f', 'w',
    8, 'i', 'n', 't', 'e', 'r', 'n', 'a', 'l', 0};

/// True if `wire` is kRefreshSuffix or a name below it (any case).
bool is_refresh_name(std::span<const std::uint8_t> wire) noexcept;

/// Where Unbound answers plain DNS over UDP (len 0 = nowhere known).
struct RefreshTarget {
    sockaddr_storage addr{};
    socklen_t len = 0;
};

/// Sends one query "g<generation>-<n>.refresh.dnsfw.internal. IN A" to
/// `target` over UDP, without waiting for the answer. False on failure.
bool send_refresh_query(const RefreshTarget& target, std::uint64_t generation) noexcept;

/// Waits for changes of files in one directory (inotify) or for a stop
/// signal, with a timeout. Owns its file descriptors. Not thread-safe
/// except for stop().
class DirWatch {
public:
    DirWatch();
    ~DirWatch();
    DirWatch(const DirWatch&) = delete;
    DirWatch& operator=(const DirWatch&) = delete;

    /// Watches `dir` (replacing an earlier watch). False if it cannot be
    /// watched (e.g. it does not exist yet); wait() then just times out.
    bool watch(const std::string& dir) noexcept;
    /// Waits up to `timeout_ms` for a change, for input on `extra_fd` (if
    /// >= 0; not read here) or for stop(). Returns false once stop() was
    /// called.
    bool wait(int timeout_ms, int extra_fd = -1) noexcept;
    /// Wakes wait() for good. Any thread; async-signal-safe.
    void stop() noexcept;

private:
    int inotify_fd_ = -1;
    int watch_fd_ = -1;
    int stop_fd_ = -1;  // eventfd
};

}  // namespace dnsfw::module
