// dnsfw::rpz — IP addresses, prefixes, the RPZ owner-name encoding of IP
// triggers and IP rule keys.
//
// RPZ encoding (draft-vixie-dnsop-dns-rpz §4.1): `<prefix>.<address labels>`
// with the address least significant part first.
//   IPv4: prefix 1..32, then d.c.b.a in decimal ("24.0.2.0.192").
//   IPv6: prefix 1..128, then the eight hextets least significant first in
//         hex without leading zeros; the longest run (>= 2) of zero hextets
//         is written once as "zz" (on a tie the less significant run):
//         "32.zz.db8.2001" = 2001:db8::/32.
// Only the canonical form is accepted, so every prefix has exactly one owner
// name (the same rule cannot hide under two spellings).
#include "rpz/rpz.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace dnsfw::rpz {
namespace {

constexpr std::array<std::uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void set_error(std::string* error, const char* text) {
    if (error != nullptr) *error = text;
}

bool all_digits(std::string_view s) noexcept {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// Decimal without leading zeros, at most `max`. nullopt otherwise.
std::optional<unsigned> strict_decimal(std::string_view s, unsigned max) noexcept {
    if (!all_digits(s) || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
    unsigned v = 0;
    for (char c : s) v = v * 10 + static_cast<unsigned>(c - '0');
    if (v > max) return std::nullopt;
    return v;
}

int hex_digit(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool is_zz(std::string_view s) noexcept {
    return s.size() == 2 && (s[0] == 'z' || s[0] == 'Z') && (s[1] == 'z' || s[1] == 'Z');
}

/// The hextets of an address, most significant first.
std::array<std::uint16_t, 8> hextets(const IpAddress& ip) noexcept {
    std::array<std::uint16_t, 8> h{};
    for (std::size_t i = 0; i < 8; ++i)
        h[i] = static_cast<std::uint16_t>((ip.bytes[2 * i] << 8) | ip.bytes[2 * i + 1]);
    return h;
}

/// Writes `ip` as text into `out` (NUL-terminated); returns the length or 0.
std::size_t format_ip(const IpAddress& ip, std::span<char> out) noexcept {
    char buf[INET6_ADDRSTRLEN];
    const char* r = ip.is_v4() ? inet_ntop(AF_INET, ip.bytes.data() + 12, buf, sizeof buf)
                               : inet_ntop(AF_INET6, ip.bytes.data(), buf, sizeof buf);
    if (r == nullptr) return 0;
    const std::size_t n = std::strlen(buf);
    if (n >= out.size()) return 0;
    std::memcpy(out.data(), buf, n + 1);
    return n;
}

std::size_t format_prefix(const IpPrefix& p, std::span<char> out) noexcept {
    std::size_t n = format_ip(p.addr, out);
    if (n == 0) return 0;
    const unsigned len = p.addr.is_v4() && p.length >= 96 ? p.length - 96u : p.length;
    char tail[8];
    const int t = std::snprintf(tail, sizeof tail, "/%u", len);
    if (t <= 0 || n + static_cast<std::size_t>(t) >= out.size()) return 0;
    std::memcpy(out.data() + n, tail, static_cast<std::size_t>(t) + 1);
    return n + static_cast<std::size_t>(t);
}

}  // namespace

IpAddress IpAddress::from_v4(const std::uint8_t* v4) noexcept {
    IpAddress a;
    std::copy(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), a.bytes.begin());
    std::memcpy(a.bytes.data() + 12, v4, 4);
    return a;
}

IpAddress IpAddress::from_v6(const std::uint8_t* v6) noexcept {
    IpAddress a;
    std::memcpy(a.bytes.data(), v6, 16);
    return a;
}

bool IpAddress::is_v4() const noexcept {
    return std::equal(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), bytes.begin());
}

std::optional<IpAddress> ip_from_text(std::string_view text) noexcept {
    char buf[INET6_ADDRSTRLEN + 1];
    if (text.empty() || text.size() >= sizeof buf) return std::nullopt;
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    std::uint8_t raw[16];
    if (text.find(':') == std::string_view::npos) {
        if (inet_pton(AF_INET, buf, raw) != 1) return std::nullopt;
        return IpAddress::from_v4(raw);
    }
    if (inet_pton(AF_INET6, buf, raw) != 1) return std::nullopt;
    return IpAddress::from_v6(raw);
}

std::string to_string(const IpAddress& ip) {
    char buf[INET6_ADDRSTRLEN + 1];
    const std::size_t n = format_ip(ip, buf);
    return n == 0 ? std::string("<invalid>") : std::string(buf, n);
}

bool IpPrefix::contains(const IpAddress& ip) const noexcept {
    if (length > 128) return false;
    const std::size_t full = length / 8u;
    if (std::memcmp(addr.bytes.data(), ip.bytes.data(), full) != 0) return false;
    const unsigned rest = length % 8u;
    if (rest == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xFFu << (8u - rest));
    return (addr.bytes[full] & mask) == (ip.bytes[full] & mask);
}

IpPrefix masked(const IpPrefix& prefix) noexcept {
    IpPrefix out = prefix;
    if (out.length > 128) out.length = 128;
    for (std::size_t i = 0; i < 16; ++i) {
        const std::size_t bit = i * 8;
        if (bit >= out.length) {
            out.addr.bytes[i] = 0;
        } else if (bit + 8 > out.length) {
            const unsigned keep = out.length - static_cast<unsigned>(bit);
            out.addr.bytes[i] &= static_cast<std::uint8_t>(0xFFu << (8u - keep));
        }
    }
    return out;
}

std::string to_string(const IpPrefix& prefix) {
    char buf[INET6_ADDRSTRLEN + 8];
    const std::size_t n = format_prefix(prefix, buf);
    return n == 0 ? std::string("<invalid>") : std::string(buf, n);
}

std::optional<IpPrefix> prefix_from_text(std::string_view text) noexcept {
    const std::size_t slash = text.find('/');
    auto ip = ip_from_text(text.substr(0, slash));
    if (!ip) return std::nullopt;
    const unsigned max = ip->is_v4() ? 32 : 128;
    unsigned len = max;
    if (slash != std::string_view::npos) {
        auto l = strict_decimal(text.substr(slash + 1), max);
        if (!l) return std::nullopt;
        len = *l;
    }
    IpPrefix p{*ip, static_cast<std::uint8_t>(ip->is_v4() ? len + 96 : len)};
    return masked(p);
}

std::optional<IpPrefix> parse_rpz_ip_labels(std::span<const std::uint8_t> wire,
                                            std::string* error) {
    if (name_wire_length(wire) != wire.size() || wire.empty()) {
        set_error(error, "malformed name");
        return std::nullopt;
    }
    std::array<std::string_view, 10> labels{};
    std::size_t n = 0;
    for (std::size_t pos = 0; wire[pos] != 0; pos += 1u + wire[pos]) {
        if (n == labels.size()) {
            set_error(error, "too many labels for an IP address");
            return std::nullopt;
        }
        labels[n++] = {reinterpret_cast<const char*>(wire.data() + pos + 1), wire[pos]};
    }
    if (n < 2) {
        set_error(error, "missing address (expected <prefix>.<reversed address>)");
        return std::nullopt;
    }
    const bool has_zz = std::any_of(labels.begin() + 1, labels.begin() + static_cast<long>(n), is_zz);
    IpPrefix p;
    if (n == 5 && !has_zz) {  // IPv4
        auto len = strict_decimal(labels[0], 99999);
        if (!len) {
            set_error(error, "prefix length is not a decimal number without leading zeros");
            return std::nullopt;
        }
        if (*len < 1 || *len > 32) {
            set_error(error, "IPv4 prefix length out of range 1..32");
            return std::nullopt;
        }
        std::uint8_t v4[4];
        for (std::size_t i = 0; i < 4; ++i) {
            auto o = strict_decimal(labels[4 - i], 255);
            if (!o) {
                set_error(error, "IPv4 octet is not a decimal 0..255 without leading zeros");
                return std::nullopt;
            }
            v4[i] = static_cast<std::uint8_t>(*o);
        }
        p = IpPrefix{IpAddress::from_v4(v4), static_cast<std::uint8_t>(*len + 96)};
    } else {  // IPv6
        if (n - 1 < 4 && !has_zz) {
            set_error(error, "missing octets: an IPv4 address needs 4 labels, IPv6 8 hextets or 'zz'");
            return std::nullopt;
        }
        auto len = strict_decimal(labels[0], 99999);
        if (!len) {
            set_error(error, "prefix length is not a decimal number without leading zeros");
            return std::nullopt;
        }
        if (*len < 1 || *len > 128) {
            set_error(error, "IPv6 prefix length out of range 1..128");
            return std::nullopt;
        }
        // Hextets least significant first; `zz` expands to the missing ones.
        std::array<std::uint16_t, 8> lsf{};
        const std::size_t groups = n - 1;
        std::size_t zz_count = 0;
        for (std::size_t i = 1; i < n; ++i) zz_count += is_zz(labels[i]) ? 1 : 0;
        if (zz_count > 1) {
            set_error(error, "more than one 'zz' in an IPv6 address");
            return std::nullopt;
        }
        if ((zz_count == 0 && groups != 8) || (zz_count == 1 && groups > 8)) {
            set_error(error, zz_count == 0 ? "an IPv6 address needs 8 hextets (or 'zz')"
                                           : "too many hextets around 'zz'");
            return std::nullopt;
        }
        const std::size_t zz_width = zz_count == 1 ? 8 - (groups - 1) : 0;
        std::size_t out = 0;
        for (std::size_t i = 1; i < n; ++i) {
            if (is_zz(labels[i])) {
                out += zz_width;  // zeros already
                continue;
            }
            const std::string_view h = labels[i];
            if (h.empty() || h.size() > 4) {
                set_error(error, "IPv6 hextet is not 1..4 hex digits");
                return std::nullopt;
            }
            unsigned v = 0;
            for (char c : h) {
                const int d = hex_digit(c);
                if (d < 0) {
                    set_error(error, "IPv6 hextet is not 1..4 hex digits");
                    return std::nullopt;
                }
                v = v * 16 + static_cast<unsigned>(d);
            }
            lsf[out++] = static_cast<std::uint16_t>(v);
        }
        std::uint8_t v6[16];
        for (std::size_t i = 0; i < 8; ++i) {  // i = most significant first
            v6[2 * i] = static_cast<std::uint8_t>(lsf[7 - i] >> 8);
            v6[2 * i + 1] = static_cast<std::uint8_t>(lsf[7 - i]);
        }
        p = IpPrefix{IpAddress::from_v6(v6), static_cast<std::uint8_t>(*len)};
    }
    if (masked(p) != p) {
        set_error(error, "address has bits set beyond the prefix length");
        return std::nullopt;
    }
    // An IPv6 prefix of 96 bits or fewer that contains ::ffff:0:0/96 covers
    // every IPv4 address (IPv4 is matched as v4-mapped, prefix + 96): one
    // stray line must not rewrite every IPv4 answer, as '*' at the apex must
    // not rewrite every name.
    if (p.length <= 96) {
        IpPrefix all_v4{IpAddress{}, p.length};
        std::copy(kV4MappedPrefix.begin(), kV4MappedPrefix.end(), all_v4.addr.bytes.begin());
        if (masked(all_v4) == p) {
            set_error(error, "prefix covers every IPv4 address (::ffff:0:0/96); write IPv4 "
                             "prefixes in IPv4 form, 1..32");
            return std::nullopt;
        }
    }
    // The one canonical spelling (IPv6: zz placement, no leading zeros,
    // lower case is irrelevant since owners are case-insensitive).
    const std::string canon = rpz_ip_labels(p);
    std::string given;
    for (std::size_t i = 0; i < n; ++i) {
        if (i) given += '.';
        for (char c : labels[i]) given += (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    }
    if (given != canon) {
        if (error != nullptr) *error = "not in canonical form " + canon;
        return std::nullopt;
    }
    return p;
}

std::string rpz_ip_labels(const IpPrefix& prefix) {
    char buf[8];
    std::string out;
    if (prefix.addr.is_v4() && prefix.length > 96) {
        out = std::to_string(prefix.length - 96);
        for (std::size_t i = 16; i-- > 12;) out += "." + std::to_string(prefix.addr.bytes[i]);
        return out;
    }
    out = std::to_string(prefix.length);
    const auto h = hextets(prefix.addr);
    // Longest zero run of >= 2 hextets; on a tie the less significant one.
    std::size_t best = 8, best_len = 0;
    for (std::size_t i = 0; i < 8;) {
        if (h[i] != 0) {
            ++i;
            continue;
        }
        std::size_t j = i;
        while (j < 8 && h[j] == 0) ++j;
        if (j - i >= 2 && j - i >= best_len) {
            best = i;
            best_len = j - i;
        }
        i = j;
    }
    for (std::size_t k = 8; k-- > 0;) {
        if (best_len != 0 && k >= best && k < best + best_len) {
            if (k == best + best_len - 1) out += ".zz";
            continue;
        }
        std::snprintf(buf, sizeof buf, ".%x", static_cast<unsigned>(h[k]));
        out += buf;
    }
    return out;
}

void make_ip_key(const IpAddress& ip, std::uint8_t length, IpKey& out) noexcept {
    const IpPrefix p = masked(IpPrefix{ip, length});
    std::memcpy(out.bytes.data(), p.addr.bytes.data(), 16);
    out.bytes[16] = p.length;
}

void make_ip_key(const IpPrefix& prefix, IpKey& out) noexcept {
    make_ip_key(prefix.addr, prefix.length, out);
}

std::vector<std::uint8_t> ip_key(const IpPrefix& prefix) {
    IpKey k;
    make_ip_key(prefix, k);
    return {k.bytes.begin(), k.bytes.end()};
}

std::optional<IpPrefix> prefix_from_ip_key(std::span<const std::uint8_t> key) noexcept {
    if (key.size() != kIpKeySize || key[16] > 128) return std::nullopt;
    IpPrefix p{IpAddress::from_v6(key.data()), key[16]};
    if (masked(p) != p) return std::nullopt;
    return p;
}

std::size_t format_rule_key(Trigger t, std::span<const std::uint8_t> key,
                            std::span<char> out) noexcept {
    if (!is_ip_trigger(t)) return format_name_key(key, out);
    auto p = prefix_from_ip_key(key);
    if (!p) return 0;
    return format_prefix(*p, out);
}

std::string rule_key_to_text(Trigger t, std::span<const std::uint8_t> key) {
    if (!is_ip_trigger(t)) return name_key_to_text(key);
    auto p = prefix_from_ip_key(key);
    return p ? to_string(*p) : std::string("<invalid>");
}

std::string rule_owner_text(Trigger t, std::span<const std::uint8_t> key) {
    if (t == Trigger::Qname) return name_key_to_text(key);
    std::string base;
    if (is_ip_trigger(t)) {
        auto p = prefix_from_ip_key(key);
        if (!p) return "<invalid>";
        base = rpz_ip_labels(*p);
    } else {
        base = name_key_to_text(key);
    }
    return base + "." + std::string(trigger_label(t));
}

}  // namespace dnsfw::rpz
