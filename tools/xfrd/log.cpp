// dnsfw::xfrd — log lines on stderr.
#include "tools/xfrd/log.hpp"

#include <unistd.h>

#include <cerrno>

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

}  // namespace dnsfw::xfrd
