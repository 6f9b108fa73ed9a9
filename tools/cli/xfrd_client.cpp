// `dnsfw xfrd ...`: a client of dnsfw-xfrd's control socket (a unix stream
// socket). Protocol: the client writes one command line; the daemon answers
// with lines and closes the connection; the last line is `ok` or
// `error: REASON`.
#include "common.hpp"
#include "zone_input.hpp"

#include "rpz/rpz.hpp"
#include "store/store.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace dnsfw::cli {

namespace {

/// Default control socket of dnsfw-xfrd (configs/xfrd.toml, `control`).
constexpr const char* kDefaultControl = "/run/dnsfw/xfrd.sock";

/// Owns a file descriptor.
class Fd {
public:
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const noexcept { return fd_; }

private:
    int fd_;
};

/// The command line sent to the daemon for argv's operands (without "\n").
std::string command_line(const Args& args) {
    const auto& ops = args.positional();
    const std::string& verb = ops.at(0);
    const bool wants_zone = verb == "transfer" || verb == "notify";
    if (verb != "reload" && verb != "status" && verb != "stop" && !wants_zone) {
        throw UsageError("unknown xfrd command '" + verb +
                         "' (expected reload, transfer ZONE, notify ZONE, status or stop)");
    }
    if (args.flag("full") && verb != "transfer")
        throw UsageError("--full applies to 'transfer ZONE' only");
    if (!wants_zone) {
        if (ops.size() > 1) throw UsageError("'" + verb + "' takes no zone");
        return verb;
    }
    if (ops.size() < 2) throw UsageError("'" + verb + "' needs a zone: " + verb + " ZONE");
    const std::string zone = rpz::name_to_text(parse_zone_name(ops[1], "ZONE"));
    std::string line = verb + " " + zone;
    if (args.flag("full")) line += " full";
    return line;
}

/// Milliseconds left until `deadline` (-1 = no deadline), at least 0.
int remaining_ms(std::optional<std::chrono::steady_clock::time_point> deadline) {
    if (!deadline) return -1;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        *deadline - std::chrono::steady_clock::now());
    return left.count() <= 0 ? 0 : static_cast<int>(std::min<long long>(left.count(), 1 << 30));
}

}  // namespace

const CommandSpec& xfrd_spec() {
    static const CommandSpec spec{
        "dnsfw xfrd",
        "control the running dnsfw-xfrd (reload, transfer now, notify, status, stop)",
        "reload | transfer ZONE [--full] | notify ZONE | status | stop",
        "Send one command to dnsfw-xfrd over its control socket and print its reply:\n"
        "  reload         re-read the configuration file (zones added/removed, keys, ACLs)\n"
        "  transfer ZONE  transfer ZONE from its primary now, skipping the SOA check:\n"
        "                 IXFR from the stored serial, or AXFR with --full\n"
        "  notify ZONE    send NOTIFY for ZONE to its configured secondaries now\n"
        "  status         the daemon's view of each zone, one JSON object per line\n"
        "  stop           stop the daemon cleanly and wait until it is gone: the reply\n"
        "                 comes once it has closed its listening sockets, its control\n"
        "                 socket and the store (and logged 'stopped'); then this waits\n"
        "                 for the process to exit (both within --timeout), so a\n"
        "                 new dnsfw-xfrd can be started at once\n"
        "The reply ends with 'ok' or 'error: REASON'.",
        {
            {"control", "PATH", std::string("control socket (default ") + kDefaultControl +
                                    "; the 'control' setting of xfrd.toml)"},
            {"full", "", "transfer: ask a full zone transfer (AXFR) instead of IXFR"},
            {"timeout", "SECONDS", "give up waiting for the reply after this long (default 600; "
                                   "0 = wait forever)"},
        },
        1,
        2,
        "examples:\n"
        "  dnsfw xfrd reload\n"
        "  dnsfw xfrd transfer threat.rpz --full\n"
        "  dnsfw xfrd --control /tmp/xfrd.sock status\n"
        "\nexit: 0 the reply ended with 'ok', 1 it did not (or the daemon is not running),\n"
        "2 bad command line.\n",
    };
    return spec;
}

int xfrd(const Args& args) {
    const std::string line = command_line(args) + "\n";
    const std::string path = args.value("control").value_or(kDefaultControl);
    const auto timeout = args.number("timeout", 0, 86400 * 7).value_or(600);

    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path) {
        throw UsageError("--control: socket path must be 1 to " +
                         std::to_string(sizeof addr.sun_path - 1) + " bytes long");
    }
    std::memcpy(addr.sun_path, path.data(), path.size());

    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) throw CommandError(std::string("socket: ") + std::strerror(errno));
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        throw CommandError("dnsfw-xfrd not running? cannot connect to " + path + ": " +
                           std::strerror(errno));
    }
    // The daemon's process (as this process sees it; pid 0 if it cannot):
    // `stop` waits for it to exit.
    std::optional<store::ProcessId> peer;
    {
        ucred cred{};
        socklen_t len = sizeof cred;
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid > 0)
            peer = store::ProcessId::of(static_cast<std::uint32_t>(cred.pid));
    }
    std::optional<std::chrono::steady_clock::time_point> deadline;
    if (timeout > 0) {
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
    }
    const auto wait_for = [&](short events, const char* what) {
        pollfd p{fd.get(), events, 0};
        while (true) {
            int n = ::poll(&p, 1, remaining_ms(deadline));
            if (n > 0) return;
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw CommandError(std::string("poll: ") + std::strerror(errno));
            throw CommandError("no reply from dnsfw-xfrd on " + path + " within " +
                               std::to_string(timeout) + " s (" + what + ")");
        }
    };

    std::size_t sent = 0;
    while (sent < line.size()) {
        wait_for(POLLOUT, "sending the command");
        ssize_t n = ::send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            throw CommandError("cannot send to dnsfw-xfrd on " + path + ": " +
                               std::strerror(errno));
        }
        sent += static_cast<std::size_t>(n);
    }

    std::string reply;
    char buf[4096];
    while (true) {
        wait_for(POLLIN, "reading the reply");
        ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            throw CommandError("cannot read the reply of dnsfw-xfrd on " + path + ": " +
                               std::strerror(errno));
        }
        if (n == 0) break;
        reply.append(buf, static_cast<std::size_t>(n));
    }

    std::cout << reply;
    if (!reply.empty() && reply.back() != '\n') std::cout << "\n";
    std::cout.flush();
    // The last non-empty line decides.
    std::string_view text = reply;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
    const auto nl = text.rfind('\n');
    const std::string_view last = nl == std::string_view::npos ? text : text.substr(nl + 1);
    if (last == "ok" && args.positional().at(0) == "stop" && peer &&
        text.find("dnsfw-xfrd stopped\n") != std::string_view::npos) {
        // The daemon has closed its sockets and the store; wait until the
        // process has exited too (a zombie counts as exited).
        while (peer->liveness() == store::ProcessId::Liveness::Running) {
            if (remaining_ms(deadline) == 0) {
                std::cerr << "dnsfw xfrd: dnsfw-xfrd (pid " << peer->pid
                          << ") stopped but had not exited after " << timeout << " s\n";
                return kExitFailure;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    if (last == "ok") return kExitOk;
    if (reply.empty()) {
        std::cerr << "dnsfw xfrd: dnsfw-xfrd closed the connection without a reply\n";
    } else if (!last.starts_with("error")) {
        std::cerr << "dnsfw xfrd: the reply did not end with 'ok'\n";
    }
    return kExitFailure;
}

}  // namespace dnsfw::cli
