// dnsfw::xfrd — the daemon's log: one line per event on stderr,
// "LEVEL SUBJECT: text", e.g. "info zone threat.rpz.: IXFR from ...".
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace dnsfw::xfrd {

enum class LogLevel : int { Debug = 0, Info = 1, Warning = 2, Error = 3 };

/// "debug", "info", "warning", "error".
std::string_view to_string(LogLevel level) noexcept;
/// Inverse of to_string(LogLevel); nullopt if unknown.
std::optional<LogLevel> log_level_from_string(std::string_view s) noexcept;

/// Writes log lines to stderr (each with one write(2), so lines of
/// concurrent writers never interleave). Lines below the threshold are
/// dropped. Not thread-safe to reconfigure; log() may be called from any
/// thread.
class Logger {
public:
    void set_level(LogLevel level) noexcept { level_ = level; }
    LogLevel level() const noexcept { return level_; }
    bool enabled(LogLevel level) const noexcept {
        return static_cast<int>(level) >= static_cast<int>(level_);
    }
    /// "LEVEL SUBJECT: text".
    void log(LogLevel level, std::string_view subject, std::string_view text) const noexcept;
    /// "LEVEL zone NAME: text".
    void zone(LogLevel level, std::string_view zone, std::string_view text) const noexcept {
        log_zone(level, zone, text);
    }
    /// "LEVEL dnsfw-xfrd: text".
    void daemon(LogLevel level, std::string_view text) const noexcept {
        log(level, "dnsfw-xfrd", text);
    }
    /// "LEVEL line" for a line that already names its subject (the
    /// Responder's LogFn); an unknown level is logged as "info".
    void line(std::string_view level, std::string_view line) const noexcept;

private:
    void log_zone(LogLevel level, std::string_view zone, std::string_view text) const noexcept;
    void write_line(LogLevel level, std::string_view body) const noexcept;
    LogLevel level_ = LogLevel::Info;
};

}  // namespace dnsfw::xfrd
