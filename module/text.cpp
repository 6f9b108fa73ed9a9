// Allocation-free text formatting. No Unbound includes.
#include "module/text.hpp"

#include "rpz/rpz.hpp"

#include <array>
#include <cstring>
#include <ctime>

namespace dnsfw::module {

void TextBuffer::append(std::string_view s) noexcept {
    const std::size_t room = capacity_ - size_;
    const std::size_t n = s.size() <= room ? s.size() : room;
    if (n != 0) std::memcpy(data_ + size_, s.data(), n);
    size_ += n;
    if (n < s.size()) truncated_ = true;
}

void TextBuffer::append(char c) noexcept {
    if (size_ < capacity_) {
        data_[size_++] = c;
    } else {
        truncated_ = true;
    }
}

void TextBuffer::append_uint(std::uint64_t v) noexcept { append_uint_padded(v, 1); }

void TextBuffer::append_uint_padded(std::uint64_t v, unsigned width) noexcept {
    std::array<char, 24> digits{};
    std::size_t n = 0;
    do {
        digits[n++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0 && n < digits.size());
    while (n < width && n < digits.size()) digits[n++] = '0';
    while (n > 0) append(digits[--n]);
}

void append_name(TextBuffer& out, std::span<const std::uint8_t> wire) noexcept {
    std::array<char, rpz::kMaxNameText> buf;
    const std::size_t n = rpz::format_name(wire, buf);
    out.append(n == 0 ? std::string_view("<invalid>") : std::string_view(buf.data(), n));
}

void append_name_key(TextBuffer& out, std::span<const std::uint8_t> key) noexcept {
    std::array<char, rpz::kMaxNameText> buf;
    const std::size_t n = rpz::format_name_key(key, buf);
    out.append(n == 0 ? std::string_view("<invalid>") : std::string_view(buf.data(), n));
}

void append_rr_type(TextBuffer& out, std::uint16_t type) noexcept {
    static constexpr std::pair<std::uint16_t, std::string_view> kTypes[] = {
        {1, "A"},        {2, "NS"},        {5, "CNAME"},    {6, "SOA"},      {12, "PTR"},
        {13, "HINFO"},   {15, "MX"},       {16, "TXT"},     {17, "RP"},      {18, "AFSDB"},
        {24, "SIG"},     {25, "KEY"},      {28, "AAAA"},    {29, "LOC"},     {33, "SRV"},
        {35, "NAPTR"},   {36, "KX"},       {37, "CERT"},    {39, "DNAME"},   {41, "OPT"},
        {42, "APL"},     {43, "DS"},       {44, "SSHFP"},   {45, "IPSECKEY"}, {46, "RRSIG"},
        {47, "NSEC"},    {48, "DNSKEY"},   {49, "DHCID"},   {50, "NSEC3"},   {51, "NSEC3PARAM"},
        {52, "TLSA"},    {53, "SMIMEA"},   {55, "HIP"},     {59, "CDS"},     {60, "CDNSKEY"},
        {61, "OPENPGPKEY"}, {62, "CSYNC"}, {63, "ZONEMD"},  {64, "SVCB"},    {65, "HTTPS"},
        {99, "SPF"},     {108, "EUI48"},   {109, "EUI64"},  {249, "TKEY"},   {250, "TSIG"},
        {251, "IXFR"},   {252, "AXFR"},    {255, "ANY"},    {256, "URI"},    {257, "CAA"},
    };
    for (const auto& [value, name] : kTypes) {
        if (value == type) {
            out.append(name);
            return;
        }
    }
    out.append("TYPE");
    out.append_uint(type);
}

void append_iso_time(TextBuffer& out, std::int64_t unix_ns) noexcept {
    std::int64_t secs = unix_ns / 1'000'000'000;
    std::int64_t ns = unix_ns % 1'000'000'000;
    if (ns < 0) {
        ns += 1'000'000'000;
        secs -= 1;
    }
    const std::time_t t = static_cast<std::time_t>(secs);
    std::tm tm{};
    if (gmtime_r(&t, &tm) == nullptr) {
        out.append("1970-01-01T00:00:00.000Z");
        return;
    }
    out.append_uint_padded(static_cast<std::uint64_t>(tm.tm_year + 1900), 4);
    out.append('-');
    out.append_uint_padded(static_cast<std::uint64_t>(tm.tm_mon + 1), 2);
    out.append('-');
    out.append_uint_padded(static_cast<std::uint64_t>(tm.tm_mday), 2);
    out.append('T');
    out.append_uint_padded(static_cast<std::uint64_t>(tm.tm_hour), 2);
    out.append(':');
    out.append_uint_padded(static_cast<std::uint64_t>(tm.tm_min), 2);
    out.append(':');
    out.append_uint_padded(static_cast<std::uint64_t>(tm.tm_sec), 2);
    out.append('.');
    out.append_uint_padded(static_cast<std::uint64_t>(ns / 1'000'000), 3);
    out.append('Z');
}

void append_json_escaped(TextBuffer& out, std::string_view s) noexcept {
    static constexpr char kHex[] = "0123456789abcdef";
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out.append('\\');
            out.append(ch);
        } else if (c < 0x20) {
            out.append("\\u00");
            out.append(kHex[c >> 4]);
            out.append(kHex[c & 0xf]);
        } else {
            out.append(ch);
        }
    }
}

}  // namespace dnsfw::module
