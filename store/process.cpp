// dnsfw::store — ProcessId: who wrote a status record, and whether it still
// runs (Linux /proc; elsewhere only kill(pid, 0)).
#include "store/store.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>

namespace dnsfw::store {

namespace {

std::string read_first_line(const char* path) {
    std::ifstream in(path);
    std::string line;
    if (in) std::getline(in, line);
    return line;
}

std::string read_link(const char* path) {
    char buf[256];
    const ssize_t n = ::readlink(path, buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

struct ProcStat {
    char state = '?';
    std::uint64_t start_ticks = 0;
};

/// State (field 3) and starttime (field 22) of /proc/PID/stat; the command
/// name (field 2) may hold spaces and parentheses, so fields are counted
/// from its last ')'.
std::optional<ProcStat> proc_stat(std::uint32_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    if (!in) return std::nullopt;
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::size_t paren = text.rfind(')');
    if (paren == std::string::npos) return std::nullopt;
    std::istringstream fields(text.substr(paren + 1));
    ProcStat out;
    std::string f;
    for (int field = 3; fields >> f; ++field) {
        if (field == 3) out.state = f.empty() ? '?' : f[0];
        if (field == 22) {
            try {
                out.start_ticks = std::stoull(f);
            } catch (const std::exception&) {
                return std::nullopt;
            }
            return out;
        }
    }
    return std::nullopt;
}

}  // namespace

ProcessId ProcessId::of(std::uint32_t pid) {
    ProcessId id;
    id.pid = pid;
    if (auto st = proc_stat(id.pid)) id.start_ticks = st->start_ticks;
    id.boot_id = read_first_line("/proc/sys/kernel/random/boot_id");
    id.pid_ns = read_link("/proc/self/ns/pid");
    return id;
}

ProcessId ProcessId::self() { return of(static_cast<std::uint32_t>(::getpid())); }

ProcessId::Liveness ProcessId::liveness() const {
    if (pid == 0) return Liveness::Unknown;
    if (!boot_id.empty()) {
        const std::string now = read_first_line("/proc/sys/kernel/random/boot_id");
        if (!now.empty() && now != boot_id) return Liveness::Gone;  // rebooted since
    }
    if (!pid_ns.empty()) {
        const std::string ours = read_link("/proc/self/ns/pid");
        // Another pid namespace (a container): its pids mean nothing here.
        if (!ours.empty() && ours != pid_ns) return Liveness::Unknown;
    }
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return Liveness::Gone;
    auto st = proc_stat(pid);
    if (!st) {
        // No /proc entry although kill() found it: it exited in between, or
        // there is no /proc.
        return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH ? Liveness::Gone
                                                                           : Liveness::Running;
    }
    if (st->state == 'Z' || st->state == 'X') return Liveness::Gone;  // exited, not yet reaped
    if (start_ticks != 0 && st->start_ticks != start_ticks) return Liveness::Gone;  // pid reused
    return Liveness::Running;
}

}  // namespace dnsfw::store
