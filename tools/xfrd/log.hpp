// dnsfw::xfrd — the daemon's log: one line per event on stderr,
// "LEVEL SUBJECT: text", e.g. "info zone threat.rpz.: IXFR from ...".
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
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

    /// At most this many lines per `key` in one window of kLimitWindowMs.
    static constexpr unsigned kLimitPerWindow = 10;
    static constexpr std::uint64_t kLimitWindowMs = 1000;
    /// "LEVEL body" (body names its subject), rate-limited per `key` (e.g.
    /// the subject and the reason of a refusal): past kLimitPerWindow lines
    /// in a window the lines are counted, and when the window has ended
    /// one "LEVEL SUBJECT: suppressed K similar lines (KEY)" line follows
    /// (from the next limited() of that key or from flush_suppressed()).
    /// `now_ms`: a monotonic clock (0: the steady clock).
    void limited(LogLevel level, std::string_view key, std::string_view body,
                 std::uint64_t now_ms = 0) const noexcept;
    /// Writes the summaries of ended windows (call it periodically).
    void flush_suppressed(std::uint64_t now_ms = 0) const noexcept;
    /// Tests: lines go to `sink` instead of stderr (nullptr: stderr again).
    void set_sink(std::function<void(std::string_view)> sink) { sink_ = std::move(sink); }

private:
    struct Window {
        std::uint64_t start_ms = 0;
        unsigned written = 0;
        std::uint64_t suppressed = 0;
        LogLevel level = LogLevel::Info;
    };
    void flush_locked(std::uint64_t now_ms, bool all_ended) const noexcept;
    mutable std::mutex limit_mu_;
    mutable std::map<std::string, Window, std::less<>> windows_;
    std::function<void(std::string_view)> sink_;
    void log_zone(LogLevel level, std::string_view zone, std::string_view text) const noexcept;
    void write_line(LogLevel level, std::string_view body) const noexcept;
    LogLevel level_ = LogLevel::Info;
};

/// `in` with bytes outside printable ASCII written as \xHH and the
/// backslash doubled: peer-controlled text (control-socket input) in a log.
std::string escape_bytes(std::string_view in);

}  // namespace dnsfw::xfrd
