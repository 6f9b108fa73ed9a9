// `dnsfw resolver`: write an unbound.conf and a dnsfw.toml into a work
// directory and run the project's Unbound with the dnsfw module in the
// foreground.
#include "common.hpp"
#include "process.hpp"
#include "resolver_config.hpp"

#include "rpz/rpz.hpp"

#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>

namespace dnsfw::cli {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kWorkdirPlaceholder = "<a new directory $TMPDIR/dnsfw-resolver-XXXXXX>";

/// Absolute, lexically normal form of a path given on the command line
/// (Unbound changes into its work directory, so relative paths would break).
std::string absolute_path(const std::string& p) {
    return fs::absolute(fs::path(p)).lexically_normal().string();
}

/// Fails if a socket of `type` cannot be bound to `ep` right now, so a busy
/// port (another DNS server, or mDNS on 5353) is reported before Unbound
/// starts. Unbound itself binds with SO_REUSEPORT and could otherwise end up
/// sharing the port with a stranger.
void check_port_free(const Endpoint& ep, int type) {
    const char* proto = type == SOCK_DGRAM ? "UDP" : "TCP";
    int fd = socket(ep.ipv6 ? AF_INET6 : AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0) throw CommandError(std::string("socket: ") + std::strerror(errno));
    int rc;
    if (ep.ipv6) {
        sockaddr_in6 sa{};
        sa.sin6_family = AF_INET6;
        sa.sin6_port = htons(ep.port);
        inet_pton(AF_INET6, ep.address.c_str(), &sa.sin6_addr);
        rc = bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
    } else {
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(ep.port);
        inet_pton(AF_INET, ep.address.c_str(), &sa.sin_addr);
        rc = bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
    }
    int err = errno;
    ::close(fd);
    if (rc == 0) return;
    std::string msg = "cannot listen on " + ep.to_string() + " (" + proto +
                      "): " + std::strerror(err);
    if (err == EADDRINUSE) {
        msg += ": the port is taken by another program (another DNS server, or mDNS on "
               "5353); pick a free one with --listen " +
               ep.address + "@PORT";
    } else if (err == EACCES) {
        msg += ": ports below 1024 need root";
    } else if (err == EADDRNOTAVAIL) {
        msg += ": no interface of this machine has that address";
    }
    throw CommandError(msg);
}

void write_file(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) throw CommandError("cannot write " + path.string() + ": " + std::strerror(errno));
}

/// A work directory made by mkdtemp; removed (if empty after removing the
/// files we wrote) when the resolver stops.
class TempWorkdir {
public:
    TempWorkdir() {
        const char* tmp = std::getenv("TMPDIR");
        std::string base = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
        std::string templ = base + "/dnsfw-resolver-XXXXXX";
        if (mkdtemp(templ.data()) == nullptr) {
            throw CommandError("cannot create a work directory in " + base + ": " +
                               std::strerror(errno));
        }
        path_ = templ;
    }
    TempWorkdir(const TempWorkdir&) = delete;
    TempWorkdir& operator=(const TempWorkdir&) = delete;
    ~TempWorkdir() {
        std::error_code ec;
        for (const char* f : {"unbound.conf", "dnsfw.toml"}) fs::remove(path_ / f, ec);
        fs::remove(path_, ec);  // only if Unbound left nothing behind
    }
    const fs::path& path() const noexcept { return path_; }

private:
    fs::path path_;
};

}  // namespace

const CommandSpec& resolver_spec() {
    static const CommandSpec spec{
        "dnsfw resolver",
        "run Unbound with the dnsfw module (foreground)",
        "",
        "Run Unbound with the dnsfw module in the foreground, enforcing the store's\n"
        "policy zones. Writes unbound.conf and dnsfw.toml into a work directory and\n"
        "runs '<unbound> -d -c <workdir>/unbound.conf' with DNSFW_CONFIG set to\n"
        "<workdir>/dnsfw.toml. Ctrl-C (SIGINT) or SIGTERM stops it; SIGHUP makes\n"
        "Unbound reload. Only clients on loopback (127.0.0.0/8, ::1) are allowed.",
        {
            {"store", "DIR", "store directory (must exist: see 'dnsfw zone load')", false, true},
            {"listen", "ADDR@PORT", "address to serve on (default 127.0.0.1@53)", true},
            {"forward", "ADDR@PORT",
             "forward every query to this resolver (default: recurse from the root)", true},
            {"log", "FILE", "append a JSON line per applied policy to FILE (hit log)"},
            {"zones", "A,B", "zones to enforce, in precedence order (default: every zone in "
                             "stored order)"},
            {"threads", "N", "Unbound worker threads (default 2)"},
            {"workdir", "DIR", "directory for the generated files (default: a new one under "
                               "$TMPDIR or /tmp, removed on exit)"},
            {"unbound", "PATH", "Unbound binary (default: <dnsfw dir>/../deps/unbound/sbin/"
                                "unbound)"},
            {"module", "PATH", "module library (default: <dnsfw dir>/../lib/"
                               "libdnsfw_module.so)"},
            {"fail-open", "", "if the store cannot be opened, start anyway and resolve "
                              "without policy (default: Unbound refuses to start)"},
            {"print-config", "", "print both generated files and exit without starting"},
        },
        0,
        0,
        "example:\n"
        "  dnsfw resolver --store var/store --listen 127.0.0.1@5353 --log var/hits.jsonl\n"
        "  dig @127.0.0.1 -p 5353 example.com\n"
        "\nexit: Unbound's exit status once it has started (128+N if killed by signal N);\n"
        "before that 1 (missing store, Unbound or module, busy port) or 2 (bad command line).\n",
    };
    return spec;
}

int resolver(const Args& args) {
    // --- settings from the command line -------------------------------------
    UnboundConfig ub;
    for (const auto& l : args.values("listen")) ub.listen.push_back(parse_endpoint(l, 53, "listen"));
    if (ub.listen.empty()) ub.listen.push_back(parse_endpoint("127.0.0.1@53", 53, "listen"));
    for (const auto& f : args.values("forward")) {
        ub.forward.push_back(parse_endpoint(f, 53, "forward"));
    }
    ub.threads = static_cast<unsigned>(args.number("threads", 1, 64).value_or(2));

    ModuleConfig mod;
    mod.store = absolute_path(*args.value("store"));
    if (auto z = args.value("zones")) {
        for (const auto& name : split_list(*z)) {
            auto wire = rpz::name_from_text(name);
            if (!wire) throw UsageError("--zones: '" + name + "' is not a valid zone name");
            mod.zones.push_back(rpz::name_to_text(*wire));
        }
    }
    if (auto log = args.value("log")) mod.hit_log = absolute_path(*log);
    mod.fail_open = args.flag("fail-open");

    const fs::path exe_dir = executable_dir();
    const std::string unbound_bin = args.value("unbound")
                                        ? absolute_path(*args.value("unbound"))
                                        : (exe_dir / "../deps/unbound/sbin/unbound")
                                              .lexically_normal()
                                              .string();
    ub.module_path = args.value("module")
                         ? absolute_path(*args.value("module"))
                         : (exe_dir / "../lib/libdnsfw_module.so").lexically_normal().string();

    if (args.flag("print-config")) {
        ub.workdir = args.value("workdir") ? absolute_path(*args.value("workdir"))
                                           : std::string(kWorkdirPlaceholder);
        std::cout << "# ---- " << ub.workdir << "/unbound.conf\n"
                  << render_unbound_conf(ub) << "\n# ---- " << ub.workdir << "/dnsfw.toml\n"
                  << render_module_toml(mod);
        return kExitOk;
    }

    // --- checks that give a clear message before Unbound runs ---------------
    if (access(unbound_bin.c_str(), X_OK) != 0) {
        throw CommandError("no Unbound binary at " + unbound_bin + " (" + std::strerror(errno) +
                           "): run tools/setup, or give --unbound PATH");
    }
    if (access(ub.module_path.c_str(), R_OK) != 0) {
        throw CommandError("no dnsfw module at " + ub.module_path + " (" + std::strerror(errno) +
                           "): run tools/setup, or give --module PATH");
    }
    {
        auto st = open_existing_store(mod.store, false);
        auto zones = st.list_zones();
        if (zones.empty()) {
            std::cerr << "dnsfw resolver: warning: store " << mod.store
                      << " has no zones: nothing will be blocked\n";
        }
        for (const auto& wanted : mod.zones) {
            if (!st.zone(wanted)) {
                std::cerr << "dnsfw resolver: warning: zone " << wanted
                          << " is not in the store (yet); it is skipped until loaded\n";
            }
        }
    }
    if (mod.hit_log) {
        fs::path parent = fs::path(*mod.hit_log).parent_path();
        std::error_code ec;
        if (!fs::is_directory(parent, ec)) {
            throw CommandError("--log: directory " + parent.string() + " does not exist");
        }
    }
    for (const auto& l : ub.listen) {
        check_port_free(l, SOCK_DGRAM);
        check_port_free(l, SOCK_STREAM);
        if (!l.is_loopback()) {
            std::cerr << "dnsfw resolver: note: listening on " << l.to_string()
                      << ", but only loopback clients are allowed (access-control); see "
                         "configs/unbound.conf to serve a network\n";
        }
    }

    // --- work directory and files -------------------------------------------
    std::optional<TempWorkdir> temp;
    fs::path workdir;
    if (auto w = args.value("workdir")) {
        workdir = absolute_path(*w);
        std::error_code ec;
        fs::create_directories(workdir, ec);
        if (ec) throw CommandError("cannot create " + workdir.string() + ": " + ec.message());
    } else {
        temp.emplace();
        workdir = temp->path();
    }
    ub.workdir = workdir.string();
    const fs::path conf = workdir / "unbound.conf";
    const fs::path toml = workdir / "dnsfw.toml";
    write_file(conf, render_unbound_conf(ub));
    write_file(toml, render_module_toml(mod));

    std::cerr << "dnsfw resolver: serving on";
    for (const auto& l : ub.listen) std::cerr << " " << l.to_string();
    std::cerr << " (UDP and TCP); store " << mod.store;
    if (ub.forward.empty()) {
        std::cerr << "; recursing from the root servers";
    } else {
        std::cerr << "; forwarding to";
        for (const auto& f : ub.forward) std::cerr << " " << f.to_string();
    }
    if (mod.hit_log) std::cerr << "; hit log " << *mod.hit_log;
    std::cerr << "\ndnsfw resolver: config in " << workdir.string() << "; Ctrl-C stops\n";

    const int status = run_foreground(
        {unbound_bin, "-d", "-c", conf.string()},
        {std::string(kModuleConfigEnv) + "=" + toml.string()});
    if (status != 0 && status < 128) {
        std::cerr << "dnsfw resolver: unbound exited with status " << status
                  << " (see its messages above)\n";
    }
    return status;
}

}  // namespace dnsfw::cli
