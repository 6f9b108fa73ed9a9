// dnsfw::xfrd — log lines on stderr.
#include "tools/xfrd/log.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace dnsfw::xfrd {

std::string_view to_string(LogLevel level) noexcept {
    switch (level) {
        case LogLevel::Debug: return "debug";
        case LogLevel::Info: return "info";
        case LogLevel::Warning: return "warning";
        case LogLevel::Error: return "error";
    }
    return "info";
}

std::optional<LogLevel> log_level_from_string(std::string_view s) noexcept {
    for (LogLevel l : {LogLevel::Debug, LogLevel::Info, LogLevel::Warning, LogLevel::Error})
        if (s == to_string(l)) return l;
    return std::nullopt;
}

void Logger::write_line(LogLevel level, std::string_view body) const noexcept {
    if (!enabled(level)) return;
    try {
        std::string out;
        out.reserve(body.size() + 10);
        out.append(to_string(level)).push_back(' ');
        // One event, one line: a newline inside a message (e.g. from a peer's
        // text) would break parsers of the log.
        for (char c : body) out.push_back(c == '\n' || c == '\r' ? ' ' : c);
        out.push_back('\n');
        if (sink_) {
            sink_(out);
            return;
        }
        const char* p = out.data();
        std::size_t left = out.size();
        while (left > 0) {
            ssize_t n = ::write(STDERR_FILENO, p, left);
            if (n < 0) {
                if (errno == EINTR) continue;
                return;
            }
            p += n;
            left -= static_cast<std::size_t>(n);
        }
    } catch (...) {
        // Logging never throws (out of memory: the line is lost).
    }
}

void Logger::log(LogLevel level, std::string_view subject, std::string_view text) const noexcept {
    if (!enabled(level)) return;
    try {
        std::string body(subject);
        body.append(": ").append(text);
        write_line(level, body);
    } catch (...) {
    }
}

void Logger::log_zone(LogLevel level, std::string_view zone, std::string_view text) const noexcept {
    if (!enabled(level)) return;
    try {
        std::string body("zone ");
        body.append(zone).append(": ").append(text);
        write_line(level, body);
    } catch (...) {
    }
}

void Logger::line(std::string_view level, std::string_view line) const noexcept {
    write_line(log_level_from_string(level).value_or(LogLevel::Info), line);
}

namespace {
std::uint64_t steady_now_ms() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}
}  // namespace

void Logger::limited(LogLevel level, std::string_view key, std::string_view body,
                     std::uint64_t now_ms) const noexcept {
    if (!enabled(level)) return;
    if (now_ms == 0) now_ms = steady_now_ms();
    try {
        std::lock_guard<std::mutex> lock(limit_mu_);
        auto it = windows_.find(key);
        if (it == windows_.end()) it = windows_.emplace(std::string(key), Window{}).first;
        Window& w = it->second;
        if (w.written == 0 && w.suppressed == 0) {
            w.start_ms = now_ms;
        } else if (now_ms - w.start_ms >= kLimitWindowMs) {
            if (w.suppressed != 0) flush_locked(now_ms, false);
            w = Window{};
            w.start_ms = now_ms;
        }
        w.level = level;
        if (w.written < kLimitPerWindow) {
            ++w.written;
            write_line(level, body);
        } else {
            ++w.suppressed;
        }
    } catch (...) {
    }
}

void Logger::flush_suppressed(std::uint64_t now_ms) const noexcept {
    if (now_ms == 0) now_ms = steady_now_ms();
    try {
        std::lock_guard<std::mutex> lock(limit_mu_);
        flush_locked(now_ms, true);
    } catch (...) {
    }
}

void Logger::flush_locked(std::uint64_t now_ms, bool erase_ended) const noexcept {
    for (auto it = windows_.begin(); it != windows_.end();) {
        Window& w = it->second;
        if (now_ms - w.start_ms < kLimitWindowMs) {
            ++it;
            continue;
        }
        if (w.suppressed != 0) {
            const std::string& key = it->first;
            const std::size_t colon = key.find(": ");
            std::string subject = colon == std::string::npos ? "dnsfw-xfrd" : key.substr(0, colon);
            std::string why = colon == std::string::npos ? key : key.substr(colon + 2);
            write_line(w.level, subject + ": suppressed " + std::to_string(w.suppressed) +
                                    " similar lines in " +
                                    std::to_string(kLimitWindowMs / 1000) + " s (" + why + ")");
            w.suppressed = 0;
        }
        if (erase_ended)
            it = windows_.erase(it);
        else
            ++it;
    }
}

/// Printable ASCII as is; other bytes as \xHH (and the backslash as \\).
std::string escape_bytes(std::string_view in) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(in.size());
    for (char ch : in) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\\') {
            out += "\\\\";
        } else if (c >= 0x20 && c < 0x7f) {
            out.push_back(ch);
        } else {
            out += "\\x";
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0xf]);
        }
    }
    return out;
}

}  // namespace dnsfw::xfrd
