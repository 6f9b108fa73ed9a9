#include "resolver_config.hpp"

#include "common.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <toml++/toml.h>

#include <charconv>
#include <sstream>

namespace dnsfw::cli {

namespace {

/// A path for a quoted Unbound config string (which has no escapes).
std::string unbound_quoted(const std::string& path, std::string_view what) {
    if (path.find_first_of("\"\n\r") != std::string::npos) {
        throw CommandError(std::string(what) + " '" + path +
                           "' contains a quote or newline, which unbound.conf cannot express");
    }
    return "\"" + path + "\"";
}

/// A TOML value in basic-string syntax (double quotes, escapes as needed).
template <typename T>
std::string toml_value(const T& value) {
    std::ostringstream os;
    os << toml::toml_formatter{value, toml::format_flags::none};
    return os.str();
}

}  // namespace

std::string Endpoint::to_string() const { return address + "@" + std::to_string(port); }

bool Endpoint::is_loopback() const noexcept {
    if (ipv6) {
        in6_addr a{};
        return inet_pton(AF_INET6, address.c_str(), &a) == 1 && IN6_IS_ADDR_LOOPBACK(&a);
    }
    in_addr a{};
    return inet_pton(AF_INET, address.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

Endpoint parse_endpoint(std::string_view text, std::uint16_t default_port,
                        std::string_view option) {
    auto fail = [&](const std::string& why) -> Endpoint {
        throw UsageError("--" + std::string(option) + ": " + why + " in '" + std::string(text) +
                         "' (expected ADDR@PORT, e.g. 127.0.0.1@5353 or ::1@5353)");
    };
    std::string_view addr = text;
    Endpoint ep;
    ep.port = default_port;
    if (auto at = text.rfind('@'); at != std::string_view::npos) {
        addr = text.substr(0, at);
        std::string_view port = text.substr(at + 1);
        unsigned value = 0;
        auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
        if (port.empty() || ec != std::errc{} || ptr != port.data() + port.size() || value == 0 ||
            value > 65535) {
            return fail("bad port '" + std::string(port) + "'");
        }
        ep.port = static_cast<std::uint16_t>(value);
    }
    if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']') {
        addr = addr.substr(1, addr.size() - 2);
    }
    ep.address = std::string(addr);
    in_addr a4{};
    in6_addr a6{};
    if (inet_pton(AF_INET, ep.address.c_str(), &a4) == 1) {
        ep.ipv6 = false;
    } else if (inet_pton(AF_INET6, ep.address.c_str(), &a6) == 1) {
        ep.ipv6 = true;
    } else {
        return fail("'" + ep.address + "' is not an IPv4 or IPv6 address");
    }
    return ep;
}

std::string render_unbound_conf(const UnboundConfig& c) {
    std::ostringstream os;
    os << "# unbound.conf written by `dnsfw resolver`: Unbound with the dnsfw module.\n"
          "# The module reads its own settings from the file named by $"
       << kModuleConfigEnv
       << " (dnsfw.toml\n"
          "# beside this file). For a hand-made setup start from configs/unbound.conf.\n"
          "server:\n";
    for (const auto& l : c.listen) os << "    interface: " << l.to_string() << "\n";
    if (!c.listen.empty()) os << "    port: " << c.listen.front().port << "\n";
    os << "    do-daemonize: no\n"
          "    username: \"\"\n"
          "    chroot: \"\"\n"
          "    pidfile: \"\"\n"
          "    directory: "
       << unbound_quoted(c.workdir, "work directory")
       << "\n"
          "    num-threads: "
       << c.threads
       << "\n"
          "    # Only clients on this machine may query (see tools/README.md).\n"
          "    access-control: 127.0.0.0/8 allow\n"
          "    access-control: ::1 allow\n"
          "    # Allows an upstream or authoritative server on loopback.\n"
          "    do-not-query-localhost: no\n"
          "    # dnsfw decides before the iterator resolves anything.\n"
          "    module-config: \"dynlib iterator\"\n"
          "    # Extended DNS Errors: the module marks policy answers (code 15, Blocked).\n"
          "    ede: yes\n"
          "    # Keep the additional section of negative answers: policy NXDOMAIN and\n"
          "    # NODATA answers carry the policy zone's SOA there.\n"
          "    minimal-responses: no\n"
          "    log-time-ascii: yes\n"
          "    verbosity: 1\n"
          "    use-syslog: no\n"
          "    logfile: \"\"\n"
          "\n"
          "dynlib:\n"
          "    dynlib-file: "
       << unbound_quoted(c.module_path, "module path") << "\n";
    if (!c.forward.empty()) {
        os << "\nforward-zone:\n"
              "    name: \".\"\n";
        for (const auto& f : c.forward) os << "    forward-addr: " << f.to_string() << "\n";
    }
    return os.str();
}

std::string render_module_toml(const ModuleConfig& c) {
    std::ostringstream os;
    os << "# dnsfw module configuration written by `dnsfw resolver`\n"
          "# (format: configs/dnsfw.toml).\n"
       << "store = " << toml_value(toml::value<std::string>{c.store}) << "\n";
    if (!c.zones.empty()) {
        toml::array zones;
        for (const auto& z : c.zones) zones.push_back(z);
        os << "zones = " << toml_value(zones) << "\n";
    }
    if (c.hit_log) os << "hit-log = " << toml_value(toml::value<std::string>{*c.hit_log}) << "\n";
    os << "fail-open = " << (c.fail_open ? "true" : "false") << "\n"
       << "ede = " << c.ede << "\n";
    return os.str();
}

}  // namespace dnsfw::cli
