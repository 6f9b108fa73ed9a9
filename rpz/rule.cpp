// dnsfw::rpz — enum names, diagnostics and the stored rule-value encoding.
//
// Rule value layout (all integers big-endian):
//   u8 version(=1) | u8 action | u16 flags | u32 ttl | u16 n_records |
//   n × (u16 type | u32 ttl | u16 rdlen | rdata) | extensions
// Extensions are TLVs (u16 tag | u16 len | bytes) that readers skip; they must
// exactly fill the rest of the value.
#include "rpz/rpz.hpp"

#include <stdexcept>

namespace dnsfw::rpz {
namespace {

constexpr std::uint8_t kRuleVersion = 1;
constexpr std::size_t kHeaderSize = 1 + 1 + 2 + 4 + 2;
constexpr std::size_t kRecordHeaderSize = 2 + 4 + 2;
constexpr std::uint16_t kTypeCname = 5;
constexpr std::uint16_t kKnownFlags = kCnameWildcardTarget;

void put16(std::vector<std::uint8_t>& out, std::uint16_t v) {
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}

void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    out.push_back(static_cast<std::uint8_t>(v >> 24));
    out.push_back(static_cast<std::uint8_t>(v >> 16));
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}

std::uint16_t get16(const std::uint8_t* p) noexcept {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

std::uint32_t get32(const std::uint8_t* p) noexcept {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
           (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

bool valid_action(std::uint8_t a) noexcept {
    return a >= static_cast<std::uint8_t>(Action::Nxdomain) &&
           a <= static_cast<std::uint8_t>(Action::LocalData);
}

}  // namespace

std::string_view to_string(Action a) noexcept {
    switch (a) {
    case Action::Nxdomain: return "nxdomain";
    case Action::Nodata: return "nodata";
    case Action::Passthru: return "passthru";
    case Action::Drop: return "drop";
    case Action::TcpOnly: return "tcp-only";
    case Action::LocalData: return "local-data";
    }
    return "unknown";
}

std::string_view to_string(Trigger t) noexcept {
    switch (t) {
    case Trigger::ClientIp: return "client-ip";
    case Trigger::Qname: return "qname";
    case Trigger::ResponseIp: return "response-ip";
    case Trigger::NsDname: return "nsdname";
    case Trigger::NsIp: return "nsip";
    }
    return "unknown";
}

std::optional<Action> action_from_string(std::string_view s) noexcept {
    for (Action a : {Action::Nxdomain, Action::Nodata, Action::Passthru, Action::Drop,
                     Action::TcpOnly, Action::LocalData}) {
        if (s == to_string(a)) return a;
    }
    if (s == "no-op") return Action::Passthru;
    return std::nullopt;
}

std::optional<InputFormat> format_from_string(std::string_view s) noexcept {
    if (s == "rpz") return InputFormat::Rpz;
    if (s == "list") return InputFormat::List;
    if (s == "hosts") return InputFormat::Hosts;
    return std::nullopt;
}

std::string Diagnostic::to_string() const {
    std::string out = file;
    out += ':';
    out += std::to_string(line);
    out += severity == Severity::Error ? ": error: " : ": warning: ";
    out += escaped_message();
    return out;
}

std::string Diagnostic::escaped_message() const {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(message.size());
    for (const char c : message) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            out += "\\x";
            out += kHex[u >> 4];
            out += kHex[u & 15];
        } else {
            out += c;
        }
    }
    return out;
}

std::vector<std::uint8_t> encode_rule_value(const Rule& rule) {
    if (rule.records.size() > 0xffff) throw std::length_error("rule has more than 65535 records");
    std::size_t total = kHeaderSize;
    for (const LocalRecord& r : rule.records) {
        if (r.rdata.size() > 0xffff) throw std::length_error("rdata longer than 65535 octets");
        total += kRecordHeaderSize + r.rdata.size();
    }
    std::vector<std::uint8_t> out;
    out.reserve(total);
    out.push_back(kRuleVersion);
    out.push_back(static_cast<std::uint8_t>(rule.action));
    put16(out, rule.flags);
    put32(out, rule.ttl);
    put16(out, static_cast<std::uint16_t>(rule.records.size()));
    for (const LocalRecord& r : rule.records) {
        put16(out, r.type);
        put32(out, r.ttl);
        put16(out, static_cast<std::uint16_t>(r.rdata.size()));
        out.insert(out.end(), r.rdata.begin(), r.rdata.end());
    }
    return out;
}

std::optional<RuleView> RuleView::parse(std::span<const std::uint8_t> bytes) noexcept {
    if (bytes.size() < kHeaderSize) return std::nullopt;
    const std::uint8_t* p = bytes.data();
    if (p[0] != kRuleVersion || !valid_action(p[1])) return std::nullopt;
    RuleView v;
    v.action_ = static_cast<Action>(p[1]);
    v.flags_ = get16(p + 2);
    v.ttl_ = get32(p + 4);
    v.n_records_ = get16(p + 8);
    if ((v.flags_ & ~kKnownFlags) != 0) return std::nullopt;
    // Local data needs records to synthesise; the other actions have none.
    if ((v.action_ == Action::LocalData) != (v.n_records_ != 0)) return std::nullopt;

    std::size_t pos = kHeaderSize;
    for (std::uint16_t i = 0; i < v.n_records_; ++i) {
        if (bytes.size() - pos < kRecordHeaderSize) return std::nullopt;
        std::size_t len = get16(p + pos + 6);
        if (bytes.size() - pos - kRecordHeaderSize < len) return std::nullopt;
        pos += kRecordHeaderSize + len;
    }
    v.records_ = bytes.subspan(kHeaderSize, pos - kHeaderSize);

    if ((v.flags_ & kCnameWildcardTarget) != 0) {
        // Exactly one CNAME whose rdata is the suffix name.
        if (v.n_records_ != 1 || get16(p + kHeaderSize) != kTypeCname) return std::nullopt;
        auto rdata = v.records_.subspan(kRecordHeaderSize);
        if (name_wire_length(rdata) != rdata.size()) return std::nullopt;
    }

    // Extensions: TLVs that must exactly fill the remainder.
    while (pos < bytes.size()) {
        if (bytes.size() - pos < 4) return std::nullopt;
        std::size_t len = get16(p + pos + 2);
        if (bytes.size() - pos - 4 < len) return std::nullopt;
        pos += 4 + len;
    }
    return v;
}

Rule RuleView::to_rule() const {
    Rule r;
    r.action = action_;
    r.flags = flags_;
    r.ttl = ttl_;
    r.records.reserve(n_records_);
    // Not via for_each_record: that is noexcept and push_back may throw.
    const std::uint8_t* p = records_.data();
    for (std::uint16_t i = 0; i < n_records_; ++i) {
        std::size_t len = get16(p + 6);
        r.records.push_back(LocalRecord{get16(p), get32(p + 2), {p + 8, p + 8 + len}});
        p += kRecordHeaderSize + len;
    }
    return r;
}

}  // namespace dnsfw::rpz
