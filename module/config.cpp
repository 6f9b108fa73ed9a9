// dnsfw.toml → Config. No Unbound includes.
#include "module/config.hpp"

#include "rpz/rpz.hpp"

#include <toml++/toml.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

namespace dnsfw::module {

namespace {

/// "file:line:col: message" (line and column omitted when unknown).
std::string located(const std::string& source, const toml::source_region& where,
                    const std::string& message) {
    std::ostringstream os;
    os << source;
    if (where.begin.line != 0) {
        os << ':' << where.begin.line;
        if (where.begin.column != 0) os << ':' << where.begin.column;
    }
    os << ": " << message;
    return os.str();
}

[[noreturn]] void fail(const std::string& source, const toml::node& node,
                       const std::string& message) {
    throw ConfigError(located(source, node.source(), message));
}

/// A path from the file: relative paths are relative to the file's directory.
std::string resolve_path(const std::string& source, const std::string& value) {
    std::filesystem::path p(value);
    if (p.is_absolute()) return value;
    std::filesystem::path base = std::filesystem::path(source).parent_path();
    if (base.empty()) return value;
    return (base / p).lexically_normal().string();
}

std::string get_string(const std::string& source, const std::string& key, const toml::node& node) {
    const auto* s = node.as_string();
    if (s == nullptr) fail(source, node, "'" + key + "' must be a string");
    return s->get();
}

std::optional<std::uint16_t> parse_ede(const std::string& source, const toml::node& node) {
    if (const auto* i = node.as_integer()) {
        const std::int64_t v = i->get();
        if (v == -1) return std::nullopt;
        if (v < 0 || v > std::numeric_limits<std::uint16_t>::max())
            fail(source, node, "'ede' must be an RFC 8914 info-code 0..65535, or -1/\"none\"");
        return static_cast<std::uint16_t>(v);
    }
    if (const auto* s = node.as_string()) {
        // Names of the info-codes a policy answer may sensibly carry.
        static constexpr std::pair<std::string_view, int> kNames[] = {
            {"none", -1},      {"other", 0},     {"forged", 4},      {"forged-answer", 4},
            {"blocked", 15},   {"censored", 16}, {"filtered", 17},   {"prohibited", 18},
        };
        for (const auto& [name, code] : kNames) {
            if (s->get() == name) {
                if (code < 0) return std::nullopt;
                return static_cast<std::uint16_t>(code);
            }
        }
        fail(source, node,
             "'ede' = \"" + s->get() +
                 "\" is unknown (use a number, or none, other, forged, blocked, censored, "
                 "filtered, prohibited)");
    }
    fail(source, node, "'ede' must be an integer or a string");
}

LogLevel parse_log_level(const std::string& source, const toml::node& node) {
    const std::string s = get_string(source, "log-level", node);
    if (s == "error") return LogLevel::Error;
    if (s == "warning" || s == "warn") return LogLevel::Warning;
    if (s == "info") return LogLevel::Info;
    if (s == "debug") return LogLevel::Debug;
    fail(source, node, "'log-level' = \"" + s + "\" is unknown (use error, warning, info, debug)");
}

}  // namespace

std::string_view to_string(LogLevel level) noexcept {
    switch (level) {
    case LogLevel::Error: return "error";
    case LogLevel::Warning: return "warning";
    case LogLevel::Info: return "info";
    case LogLevel::Debug: return "debug";
    }
    return "info";
}

std::string config_path_from_environment() {
    const char* env = std::getenv(std::string(kConfigEnvVar).c_str());
    if (env != nullptr && env[0] != '\0') return env;
    return std::string(kDefaultConfigPath);
}

Config parse_config(std::string_view text, const std::string& source) {
    toml::table table;
    try {
        table = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        throw ConfigError(located(source, e.source(), std::string(e.description())));
    }

    Config config;
    config.source = source;
    bool have_store = false;
    for (const auto& [key_node, node] : table) {
        const std::string key(key_node.str());
        if (key == "store") {
            std::string v = get_string(source, key, node);
            if (v.empty()) fail(source, node, "'store' must not be empty");
            config.store = resolve_path(source, v);
            have_store = true;
        } else if (key == "zones") {
            const auto* arr = node.as_array();
            if (arr == nullptr) fail(source, node, "'zones' must be an array of zone names");
            for (const auto& element : *arr) {
                const auto* s = element.as_string();
                if (s == nullptr) fail(source, element, "'zones' entries must be strings (zone names)");
                const std::string name = s->get();
                if (name.empty() || !rpz::name_from_text(name))
                    fail(source, element, "'zones' entry \"" + name + "\" is not a domain name");
                config.zones.push_back(name);
            }
        } else if (key == "hit-log") {
            std::string v = get_string(source, key, node);
            config.hit_log = v.empty() ? std::string() : resolve_path(source, v);
        } else if (key == "hit-log-queue") {
            const auto* i = node.as_integer();
            if (i == nullptr || i->get() < 1024 || i->get() > 1048576)
                fail(source, node, "'hit-log-queue' must be an integer from 1024 to 1048576 (records)");
            config.hit_log_queue = static_cast<std::size_t>(i->get());
        } else if (key == "fail-open") {
            const auto* b = node.as_boolean();
            if (b == nullptr) fail(source, node, "'fail-open' must be true or false");
            config.fail_open = b->get();
        } else if (key == "ede") {
            config.ede = parse_ede(source, node);
        } else if (key == "log-level") {
            config.log_level = parse_log_level(source, node);
        } else {
            fail(source, node,
                 "unknown key '" + key +
                     "' (known: store, zones, hit-log, hit-log-queue, fail-open, ede, log-level)");
        }
    }
    if (!have_store) throw ConfigError(source + ": required key 'store' is missing");
    return config;
}

Config load_config(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        const int err = errno;
        throw ConfigError(path + ": cannot open configuration file: " + std::strerror(err) +
                          " (set " + std::string(kConfigEnvVar) + " to use another file)");
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw ConfigError(path + ": cannot read configuration file");
    return parse_config(text.str(), path);
}

}  // namespace dnsfw::module
