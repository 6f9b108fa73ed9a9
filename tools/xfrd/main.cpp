// dnsfw-xfrd: the update daemon (IXFR/AXFR/NOTIFY/UPDATE into the dnsfw
// store). See tools/xfrd/config.hpp for the configuration file and
// tools/README.md for its behaviour.
#include "tools/xfrd/config.hpp"
#include "tools/xfrd/daemon.hpp"

#include <csignal>
#include <cstring>
#include <iostream>
#include <string>

#ifndef DNSFW_VERSION
#define DNSFW_VERSION "dev"
#endif

namespace {

constexpr const char* kUsage =
    "usage: dnsfw-xfrd --config FILE [--check]\n"
    "\n"
    "Runs in the foreground and logs one line per event on stderr.\n"
    "  --config FILE  the TOML configuration (see configs/xfrd.toml)\n"
    "  --check        validate the configuration, print the problem, exit 0 (valid) or 1\n"
    "  --version      print the version\n"
    "Signals: SIGHUP reloads the configuration; SIGTERM and SIGINT stop the daemon\n"
    "(its last log line is 'info dnsfw-xfrd: stopped'). The listen addresses and the\n"
    "control socket are bound before the store is opened (or created).\n";

}  // namespace

int main(int argc, char** argv) {
    std::string config_path;
    bool check = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--config" && i + 1 < argc) {
            config_path = argv[++i];
        } else if (a.rfind("--config=", 0) == 0) {
            config_path = a.substr(9);
        } else if (a == "--check") {
            check = true;
        } else if (a == "--help" || a == "-h") {
            std::cout << kUsage;
            return 0;
        } else if (a == "--version") {
            std::cout << "dnsfw-xfrd " << DNSFW_VERSION << "\n";
            return 0;
        } else {
            std::cerr << "dnsfw-xfrd: unknown argument '" << a << "'\n" << kUsage;
            return 2;
        }
    }
    if (config_path.empty()) {
        std::cerr << "dnsfw-xfrd: --config FILE is required\n" << kUsage;
        return 2;
    }
    dnsfw::xfrd::Config config;
    try {
        config = dnsfw::xfrd::load_config(config_path);
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    if (check) {
        std::cout << config_path << ": ok (" << config.zones.size()
                  << (config.zones.size() == 1 ? " zone, " : " zones, ") << config.keys.size()
                  << (config.keys.size() == 1 ? " key, " : " keys, ") << config.listen.size()
                  << (config.listen.size() == 1 ? " listen address)" : " listen addresses)")
                  << "\n";
        return 0;
    }
    // A peer closing its connection must not kill the daemon on write.
    std::signal(SIGPIPE, SIG_IGN);
    dnsfw::xfrd::Daemon daemon(std::move(config));
    return daemon.run();
}
