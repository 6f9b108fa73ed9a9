// dnsfw::module — allocation-free text formatting for the query path and the
// hit-log writer (names, name keys, RR types, timestamps, JSON strings).
// No Unbound includes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace dnsfw::module {

/// Appends to caller-owned storage, never past its end. A write that does
/// not fit is cut off and sets truncated(). noexcept, no allocation.
class TextBuffer {
public:
    TextBuffer(char* data, std::size_t capacity) noexcept : data_(data), capacity_(capacity) {}

    void append(std::string_view s) noexcept;
    void append(char c) noexcept;
    /// Unsigned decimal.
    void append_uint(std::uint64_t v) noexcept;
    /// Decimal with at least `width` digits (zero-padded).
    void append_uint_padded(std::uint64_t v, unsigned width) noexcept;

    std::string_view view() const noexcept { return {data_, size_}; }
    std::size_t size() const noexcept { return size_; }
    bool truncated() const noexcept { return truncated_; }

private:
    char* data_;
    std::size_t capacity_;
    std::size_t size_ = 0;
    bool truncated_ = false;
};

/// Presentation form of a wire name with a trailing dot ("." for the root):
/// special characters escaped as "\c", non-printable octets as "\DDD".
/// Appends "<invalid>" for a malformed name.
void append_name(TextBuffer& out, std::span<const std::uint8_t> wire) noexcept;

/// Presentation form of a name key (labels stored root side first, see
/// rpz.hpp): "*.bad.example" — no trailing dot, "." for the empty key.
/// Appends "<invalid>" for a malformed key.
void append_name_key(TextBuffer& out, std::span<const std::uint8_t> key) noexcept;

/// Mnemonic of an RR type ("A", "AAAA", ...) or "TYPE<n>" (RFC 3597).
void append_rr_type(TextBuffer& out, std::uint16_t type) noexcept;

/// UTC time "2026-12-03T16:10:48.123Z" of nanoseconds since the Unix epoch.
void append_iso_time(TextBuffer& out, std::int64_t unix_ns) noexcept;

/// Appends `s` as the inside of a JSON string (quotes, backslashes and
/// control characters escaped; no surrounding quotes).
void append_json_escaped(TextBuffer& out, std::string_view s) noexcept;

}  // namespace dnsfw::module
