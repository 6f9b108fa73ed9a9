// dnsfw::rpz — domain names: presentation <-> wire, validation and the
// store's name keys (labels reversed, root side first).
#include "rpz/rpz.hpp"


namespace dnsfw::rpz {
namespace {

constexpr std::size_t kMaxLabel = 63;
/// A 255-octet name has at most 127 non-root labels.
constexpr std::size_t kMaxLabels = 128;

constexpr std::uint8_t lower(std::uint8_t c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<std::uint8_t>(c + ('a' - 'A')) : c;
}

constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

/// Writes into caller storage, never past its end; `ok` turns false when
/// something did not fit.
struct TextWriter {
    std::span<char> out;
    std::size_t size = 0;
    bool ok = true;
    void put(char c) noexcept {
        if (size < out.size()) {
            out[size++] = c;
        } else {
            ok = false;
        }
    }
    /// One label octet in presentation form: printable characters as they
    /// are, the characters that are special in master files as "\X", the
    /// rest as "\DDD".
    void label_octet(std::uint8_t c) noexcept {
        switch (c) {
        case '.': case '\\': case '"': case '(': case ')': case ';': case '@': case '$':
            put('\\');
            put(static_cast<char>(c));
            return;
        default:
            break;
        }
        if (c > 0x20 && c < 0x7f) {
            put(static_cast<char>(c));
            return;
        }
        put('\\');
        put(static_cast<char>('0' + c / 100));
        put(static_cast<char>('0' + c / 10 % 10));
        put(static_cast<char>('0' + c % 10));
    }
    std::size_t result() const noexcept { return ok ? size : 0; }
};

/// Splits a wire name into label offsets (excluding the root label).
/// Returns the label count, or SIZE_MAX if malformed.
std::size_t label_offsets(std::span<const std::uint8_t> wire,
                          std::array<std::uint8_t, kMaxLabels>& offsets) noexcept {
    if (name_wire_length(wire) == 0) return SIZE_MAX;
    std::size_t n = 0;
    std::size_t pos = 0;
    while (wire[pos] != 0) {
        offsets[n++] = static_cast<std::uint8_t>(pos);
        pos += 1u + wire[pos];
    }
    return n;
}

}  // namespace

std::optional<Name> name_from_text(std::string_view text) noexcept {
    if (text.empty() || text == ".") return Name{0};
    try {
        Name out;
        out.reserve(text.size() + 2);
        std::size_t label_start = 0;  // index of the current label's length octet
        out.push_back(0);
        std::size_t label_len = 0;
        bool last_was_dot = false;
        for (std::size_t i = 0; i < text.size(); ++i) {
            char c = text[i];
            std::uint8_t octet = 0;
            if (c == '.') {
                if (label_len == 0) return std::nullopt;  // empty label ("a..b", ".a")
                out[label_start] = static_cast<std::uint8_t>(label_len);
                label_start = out.size();
                out.push_back(0);
                label_len = 0;
                last_was_dot = true;
                continue;
            }
            last_was_dot = false;
            if (c == '\\') {
                if (i + 1 >= text.size()) return std::nullopt;
                if (is_digit(text[i + 1])) {
                    if (i + 3 >= text.size() || !is_digit(text[i + 2]) ||
                        !is_digit(text[i + 3]))
                        return std::nullopt;
                    unsigned v = static_cast<unsigned>(text[i + 1] - '0') * 100u +
                                 static_cast<unsigned>(text[i + 2] - '0') * 10u +
                                 static_cast<unsigned>(text[i + 3] - '0');
                    if (v > 255) return std::nullopt;
                    octet = static_cast<std::uint8_t>(v);
                    i += 3;
                } else {
                    octet = static_cast<std::uint8_t>(text[i + 1]);
                    i += 1;
                }
            } else {
                octet = static_cast<std::uint8_t>(c);
            }
            if (++label_len > kMaxLabel) return std::nullopt;
            out.push_back(lower(octet));
            if (out.size() + 1 > kMaxNameWire) return std::nullopt;
        }
        if (!last_was_dot) {
            out[label_start] = static_cast<std::uint8_t>(label_len);
            out.push_back(0);
        }
        if (out.size() > kMaxNameWire) return std::nullopt;
        return out;
    } catch (...) {
        return std::nullopt;  // allocation failure
    }
}

std::size_t format_name(std::span<const std::uint8_t> wire, std::span<char> out) noexcept {
    const std::size_t len = name_wire_length(wire);
    if (len == 0) return 0;
    TextWriter w{out};
    if (len == 1) w.put('.');
    for (std::size_t pos = 0; wire[pos] != 0; pos += 1u + wire[pos]) {
        for (std::size_t i = 1; i <= wire[pos]; ++i) w.label_octet(wire[pos + i]);
        w.put('.');
    }
    return w.result();
}

std::string name_to_text(std::span<const std::uint8_t> wire) {
    std::array<char, kMaxNameText> buf;
    const std::size_t n = format_name(wire, buf);
    return n == 0 ? std::string("<invalid>") : std::string(buf.data(), n);
}

std::size_t name_wire_length(std::span<const std::uint8_t> wire) noexcept {
    std::size_t pos = 0;
    while (pos < wire.size()) {
        std::uint8_t n = wire[pos];
        if (n == 0) {
            std::size_t total = pos + 1;
            return total <= kMaxNameWire ? total : 0;
        }
        if (n > kMaxLabel) return 0;  // also rejects compression pointers
        pos += 1u + n;
        if (pos >= kMaxNameWire) return 0;  // no room left for the root label
    }
    return 0;  // not terminated
}

std::size_t name_label_count(std::span<const std::uint8_t> wire) noexcept {
    if (name_wire_length(wire) == 0) return 0;
    std::size_t count = 0;
    for (std::size_t pos = 0; wire[pos] != 0; pos += 1u + wire[pos]) ++count;
    return count;
}

bool make_name_key(std::span<const std::uint8_t> wire, NameKey& out) noexcept {
    std::array<std::uint8_t, kMaxLabels> offsets{};
    std::size_t n = label_offsets(wire, offsets);
    if (n == SIZE_MAX) return false;
    std::size_t w = 0;
    for (std::size_t i = n; i-- > 0;) {
        std::size_t off = offsets[i];
        std::size_t len = wire[off];
        out.bytes[w++] = static_cast<std::uint8_t>(len);
        for (std::size_t j = 1; j <= len; ++j) out.bytes[w++] = lower(wire[off + j]);
    }
    out.size = w;
    return true;
}

std::size_t format_name_key(std::span<const std::uint8_t> key, std::span<char> out) noexcept {
    TextWriter w{out};
    if (key.empty()) {
        w.put('.');
        return w.result();
    }
    // Collect label offsets root side first, then print them leaf first.
    std::array<std::size_t, kMaxLabels + 1> offsets{};
    std::size_t n = 0;
    std::size_t pos = 0;
    while (pos < key.size()) {
        std::size_t len = key[pos];
        if (len == 0 || len > kMaxLabel || pos + 1 + len > key.size() || n == offsets.size())
            return 0;
        offsets[n++] = pos;
        pos += 1 + len;
    }
    for (std::size_t i = n; i-- > 0;) {
        std::size_t off = offsets[i];
        for (std::size_t j = 1; j <= key[off]; ++j) w.label_octet(key[off + j]);
        if (i != 0) w.put('.');
    }
    return w.result();
}

std::string name_key_to_text(std::span<const std::uint8_t> key) {
    std::array<char, kMaxNameText> buf;
    const std::size_t n = format_name_key(key, buf);
    return n == 0 ? std::string("<invalid>") : std::string(buf.data(), n);
}

}  // namespace dnsfw::rpz
