// dnsfw::cli — the two configuration files `dnsfw resolver` writes: Unbound's
// unbound.conf and the dnsfw module's dnsfw.toml.
//
// The module's configuration format is defined by module/ (see its README);
// everything the CLI knows about it is in ModuleConfig and
// render_module_toml(), so a change to the format is a change here only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dnsfw::cli {

/// Environment variable the module reads its configuration path from.
inline constexpr std::string_view kModuleConfigEnv = "DNSFW_CONFIG";
/// Where the module looks when the variable is unset.
inline constexpr std::string_view kModuleConfigDefaultPath = "/etc/dnsfw/dnsfw.toml";

/// The dnsfw module's configuration (dnsfw.toml).
struct ModuleConfig {
    std::string store;               ///< `store`: absolute path of the store directory
    std::vector<std::string> zones;  ///< `zones`: active zones in order; empty = all (key omitted)
    std::optional<std::string> hit_log;  ///< `hit-log`: JSON-lines log of applied policies
    bool fail_open = false;          ///< `fail-open`: resolve normally if the store fails
    std::uint16_t ede = 15;          ///< `ede`: Extended DNS Error code on policy answers (15 = Blocked)
};

/// A listening or forwarding address: an IPv4 or IPv6 literal and a port.
struct Endpoint {
    std::string address;  ///< as given, without brackets
    std::uint16_t port = 53;
    bool ipv6 = false;
    /// "127.0.0.1@5353" / "::1@5353" (Unbound's syntax).
    std::string to_string() const;
    /// 127.0.0.0/8 or ::1.
    bool is_loopback() const noexcept;
};

/// Parses "ADDR", "ADDR@PORT" or "[ADDR]@PORT" (ADDR an IPv4 or IPv6
/// literal). Throws UsageError naming `option` on a bad address or port.
Endpoint parse_endpoint(std::string_view text, std::uint16_t default_port,
                        std::string_view option);

/// Everything that goes into the generated unbound.conf.
struct UnboundConfig {
    std::vector<Endpoint> listen;
    std::vector<Endpoint> forward;  ///< empty: recurse from the root hints
    unsigned threads = 2;
    std::string workdir;            ///< absolute; Unbound's `directory:`
    std::string module_path;        ///< absolute path of libdnsfw_module.so
};

/// The text of unbound.conf. Throws CommandError if a path cannot be written
/// in Unbound's quoted-string syntax (contains '"' or a newline).
std::string render_unbound_conf(const UnboundConfig& config);

/// The text of dnsfw.toml.
std::string render_module_toml(const ModuleConfig& config);

}  // namespace dnsfw::cli
