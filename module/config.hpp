// dnsfw::module — the module's own configuration file (dnsfw.toml).
//
// Unbound gives a dynlib module nothing but its file name, so the module
// reads a TOML file of its own. This header and config.cpp know nothing of
// Unbound: they are unit-tested on their own.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace dnsfw::module {

/// Where the configuration is read from when DNSFW_CONFIG is unset.
inline constexpr std::string_view kDefaultConfigPath = "/etc/dnsfw/dnsfw.toml";
/// Environment variable naming the configuration file.
inline constexpr std::string_view kConfigEnvVar = "DNSFW_CONFIG";
/// RFC 8914 info-code 15, "Blocked": the default EDE of rewritten answers.
inline constexpr std::uint16_t kEdeBlocked = 15;

/// Verbosity of the module's own lines in Unbound's log.
enum class LogLevel : std::uint8_t { Error = 0, Warning = 1, Info = 2, Debug = 3 };

/// "error", "warning", "info", "debug".
std::string_view to_string(LogLevel level) noexcept;

/// The parsed configuration. Value type.
struct Config {
    /// The file this was read from (for messages).
    std::string source;
    /// `store`: LMDB store directory (required). A relative path is taken
    /// relative to the directory of the configuration file.
    std::string store;
    /// `zones`: active zone names in precedence order, as written (the store
    /// matches them without regard to case or trailing dot). Empty = every
    /// zone of the store in stored order.
    std::vector<std::string> zones;
    /// `hit-log`: path of the JSON-lines hit log; empty = no hit log.
    /// Relative paths as for `store`.
    std::string hit_log;
    /// `hit-log-queue`: records the hit log's queue holds between the
    /// resolver threads and its writer thread (1024 .. 1048576, rounded up
    /// to a power of two; about 1.1 KB each). A record that finds the queue
    /// full is dropped and counted (reported in Unbound's log).
    std::size_t hit_log_queue = 16384;
    /// `fail-open`: start (unprotected) even if the store cannot be opened.
    bool fail_open = false;
    /// `ede`: RFC 8914 info-code added to rewritten answers; nullopt = none.
    std::optional<std::uint16_t> ede = kEdeBlocked;
    /// `log-level`.
    LogLevel log_level = LogLevel::Info;
};

/// A configuration problem. what() is "<file>[:<line>[:<col>]]: <cause>".
class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// The configuration file to read: $DNSFW_CONFIG if set and not empty,
/// otherwise kDefaultConfigPath.
std::string config_path_from_environment();

/// Reads and validates the configuration file at `path`.
/// Throws ConfigError naming the file (and line, where known) if the file
/// cannot be read, is not valid TOML, has an unknown key, a value of the
/// wrong type or out of range, or lacks `store`.
Config load_config(const std::string& path);

/// Same as load_config for text in memory; `source` names it in messages
/// and is the base for relative paths.
Config parse_config(std::string_view text, const std::string& source);

}  // namespace dnsfw::module
