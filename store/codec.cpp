// dnsfw::store internal — encoders/decoders of the store's keys and values
// (layouts documented in codec.hpp and at the top of store.cpp).
#include "store/codec.hpp"

#include <stdexcept>

namespace dnsfw::store::codec {

namespace {

constexpr std::uint8_t kZoneRecordVersion = 2;
constexpr std::uint8_t kZoneRecordV1 = 1;
constexpr std::uint16_t kTagCounts = 1;
constexpr std::uint16_t kTagPrefixes = 2;
constexpr std::uint16_t kTagPolicy = 3;
/// Zone policy, optional second flags byte: bit 1 = override_local_data false,
/// bit 2 = a clients list follows (u16 count | count x 17-byte IP key).
constexpr std::uint8_t kFlags2KeepLocalData = 1;
constexpr std::uint8_t kFlags2Clients = 2;
constexpr std::uint8_t kFlags2Known = kFlags2KeepLocalData | kFlags2Clients;
constexpr std::array<rpz::Trigger, 3> kIpTriggers = {rpz::Trigger::ClientIp,
                                                     rpz::Trigger::ResponseIp, rpz::Trigger::NsIp};

void append_u16(std::vector<std::uint8_t>& out, std::uint16_t v) {
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}
void append_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}
void append_tlv(std::vector<std::uint8_t>& out, std::uint16_t tag,
                const std::vector<std::uint8_t>& body) {
    if (body.size() > 0xFFFF) throw std::length_error("zone record extension longer than 65535");
    append_u16(out, tag);
    append_u16(out, static_cast<std::uint16_t>(body.size()));
    out.insert(out.end(), body.begin(), body.end());
}
// version + id + order + serial + rule_count + soa_ttl + loaded_at + depths + soa_rdlen
constexpr std::size_t kZoneRecordFixed = 1 + 4 + 4 + 4 + 8 + 4 + 8 + 8 + 2;

}  // namespace

std::optional<std::size_t> name_key_labels(std::span<const std::uint8_t> key) noexcept {
    if (key.size() > kMaxRuleKeySuffix) return std::nullopt;
    std::size_t labels = 0;
    std::size_t i = 0;
    while (i < key.size()) {
        const std::size_t len = key[i];
        if (len == 0 || len > 63 || i + 1 + len > key.size()) return std::nullopt;
        i += 1 + len;
        ++labels;
    }
    return labels;
}

bool is_wildcard_key(std::span<const std::uint8_t> key) noexcept {
    // The last label of a well-formed key is "\1*" exactly when the key ends
    // with those two bytes and they start a label; walk to be sure.
    std::size_t i = 0;
    std::size_t last = key.size();
    while (i < key.size()) {
        last = i;
        i += 1 + std::size_t{key[i]};
    }
    return i == key.size() && last + 2 == key.size() && key[last] == 1 && key[last + 1] == '*';
}

bool valid_rule_key(rpz::Trigger t, std::span<const std::uint8_t> key) noexcept {
    if (rpz::is_ip_trigger(t)) return rpz::prefix_from_ip_key(key).has_value();
    return name_key_labels(key).has_value();
}

std::vector<std::uint8_t> encode_policy(const rpz::ZonePolicy& p) {
    if (p.override_cname.size() > 255) throw std::length_error("override CNAME too long");
    if (p.ede_text.size() > 0xFFFF) throw std::length_error("EDE text too long");
    std::vector<std::uint8_t> out;
    out.push_back(static_cast<std::uint8_t>(p.override));
    std::uint8_t flags = 0;
    if (p.recursive_only) flags |= 1;
    if (p.break_dnssec) flags |= 2;
    if (p.log) flags |= 4;
    if (p.add_soa) flags |= 8;
    if (p.max_policy_ttl) flags |= 16;
    if (p.ede) flags |= 32;
    if (p.override_cname_wildcard) flags |= 64;
    out.push_back(flags);
    append_u32(out, p.max_policy_ttl.value_or(0));
    append_u16(out, p.ede.value_or(0));
    out.push_back(static_cast<std::uint8_t>(p.override_cname.size()));
    out.insert(out.end(), p.override_cname.begin(), p.override_cname.end());
    append_u16(out, static_cast<std::uint16_t>(p.ede_text.size()));
    out.insert(out.end(), p.ede_text.begin(), p.ede_text.end());
    // Optional second flags byte, written only when a setting differs from
    // its default, so records with default settings are byte-identical to
    // the earlier layout (and readable by earlier readers). Absent = all 0.
    std::uint8_t flags2 = 0;
    if (!p.override_local_data) flags2 |= kFlags2KeepLocalData;
    if (!p.clients.empty()) flags2 |= kFlags2Clients;
    if (flags2 != 0) out.push_back(flags2);
    if (!p.clients.empty()) {
        if (p.clients.size() > rpz::kMaxZoneClients)
            throw std::length_error("more than " + std::to_string(rpz::kMaxZoneClients) +
                                    " client prefixes");
        append_u16(out, static_cast<std::uint16_t>(p.clients.size()));
        for (const rpz::IpPrefix& c : p.clients) {
            rpz::IpKey k;
            rpz::make_ip_key(c, k);
            out.insert(out.end(), k.bytes.begin(), k.bytes.end());
        }
    }
    return out;
}

std::optional<rpz::ZonePolicy> decode_policy(std::span<const std::uint8_t> b) {
    if (b.size() < 1 + 1 + 4 + 2 + 1) return std::nullopt;
    if (b[0] > static_cast<std::uint8_t>(rpz::PolicyOverride::Cname)) return std::nullopt;
    const std::uint8_t flags = b[1];
    if ((flags & 0x80) != 0) return std::nullopt;
    rpz::ZonePolicy p;
    p.override = static_cast<rpz::PolicyOverride>(b[0]);
    p.recursive_only = (flags & 1) != 0;
    p.break_dnssec = (flags & 2) != 0;
    p.log = (flags & 4) != 0;
    p.add_soa = (flags & 8) != 0;
    if (flags & 16) p.max_policy_ttl = get_u32(b.data() + 2);
    if (flags & 32)
        p.ede = get_u16(b.data() + 6);
    else
        p.ede.reset();
    p.override_cname_wildcard = (flags & 64) != 0;
    std::size_t i = 8;
    const std::size_t clen = b[i++];
    if (i + clen + 2 > b.size()) return std::nullopt;
    p.override_cname.assign(b.begin() + static_cast<long>(i), b.begin() + static_cast<long>(i + clen));
    if (clen != 0 && rpz::name_wire_length(p.override_cname) != clen) return std::nullopt;
    i += clen;
    const std::size_t tlen = get_u16(b.data() + i);
    i += 2;
    if (i + tlen > b.size()) return std::nullopt;
    p.ede_text.assign(reinterpret_cast<const char*>(b.data() + i), tlen);
    i += tlen;
    if (i == b.size()) return p;  // no second flags byte: every later setting at its default
    const std::uint8_t flags2 = b[i++];
    if ((flags2 & ~kFlags2Known) != 0) return std::nullopt;
    p.override_local_data = (flags2 & kFlags2KeepLocalData) == 0;
    if ((flags2 & kFlags2Clients) != 0) {
        if (i + 2 > b.size()) return std::nullopt;
        const std::size_t n = get_u16(b.data() + i);
        i += 2;
        if (n == 0 || n > rpz::kMaxZoneClients || i + n * rpz::kIpKeySize != b.size())
            return std::nullopt;
        p.clients.reserve(n);
        for (std::size_t k = 0; k < n; ++k, i += rpz::kIpKeySize) {
            auto c = rpz::prefix_from_ip_key(b.subspan(i, rpz::kIpKeySize));
            if (!c) return std::nullopt;
            p.clients.push_back(*c);
        }
    }
    if (i != b.size()) return std::nullopt;
    return p;
}

std::vector<std::uint8_t> encode_zone_record(const ZoneInfo& info) {
    if (info.soa_rdata.size() > 0xFFFF) throw std::length_error("SOA rdata longer than 65535");
    std::vector<std::uint8_t> out(kZoneRecordFixed + info.soa_rdata.size());
    std::uint8_t* p = out.data();
    p[0] = kZoneRecordVersion;
    put_u32(p + 1, info.id);
    put_u32(p + 5, info.order);
    put_u32(p + 9, info.serial);
    put_u64(p + 13, info.rule_count);
    put_u32(p + 21, info.soa_ttl);
    put_u64(p + 25, info.loaded_at);
    std::memcpy(p + 33, info.max_wildcard_depth.data(), 8);
    p[41] = static_cast<std::uint8_t>(info.soa_rdata.size() >> 8);
    p[42] = static_cast<std::uint8_t>(info.soa_rdata.size());
    if (!info.soa_rdata.empty())
        std::memcpy(p + kZoneRecordFixed, info.soa_rdata.data(), info.soa_rdata.size());
    std::vector<std::uint8_t> counts;
    for (std::uint64_t c : info.trigger_rules) {
        std::uint8_t b[8];
        put_u64(b, c);
        counts.insert(counts.end(), b, b + 8);
    }
    append_tlv(out, kTagCounts, counts);
    std::vector<std::uint8_t> prefixes;
    for (rpz::Trigger t : kIpTriggers) {
        prefixes.push_back(static_cast<std::uint8_t>(t));
        const auto& bits = info.prefix_lengths[static_cast<std::size_t>(t)];
        std::uint8_t bytes[17] = {};
        for (std::size_t l = 0; l < 129; ++l)
            if (bits.test(l)) bytes[l / 8] |= static_cast<std::uint8_t>(0x80u >> (l % 8));
        prefixes.insert(prefixes.end(), bytes, bytes + 17);
    }
    append_tlv(out, kTagPrefixes, prefixes);
    append_tlv(out, kTagPolicy, encode_policy(info.policy));
    return out;
}

std::optional<ZoneInfo> decode_zone_record(std::span<const std::uint8_t> apex,
                                           std::span<const std::uint8_t> value) {
    if (value.size() < kZoneRecordFixed ||
        (value[0] != kZoneRecordVersion && value[0] != kZoneRecordV1))
        return std::nullopt;
    const bool v1 = value[0] == kZoneRecordV1;
    if (rpz::name_wire_length(apex) != apex.size()) return std::nullopt;
    const std::uint8_t* p = value.data();
    ZoneInfo info;
    info.name = rpz::name_to_text(apex);
    info.id = get_u32(p + 1);
    info.order = get_u32(p + 5);
    info.serial = get_u32(p + 9);
    info.rule_count = get_u64(p + 13);
    info.soa_ttl = get_u32(p + 21);
    info.loaded_at = get_u64(p + 25);
    std::memcpy(info.max_wildcard_depth.data(), p + 33, 8);
    const std::size_t rdlen = get_u16(p + 41);
    if (kZoneRecordFixed + rdlen > value.size()) return std::nullopt;
    info.soa_rdata.assign(p + kZoneRecordFixed, p + kZoneRecordFixed + rdlen);
    // Extensions: validate their framing so corruption is noticed; unknown
    // tags are skipped.
    unsigned seen = 0;
    std::size_t i = kZoneRecordFixed + rdlen;
    while (i < value.size()) {
        if (i + 4 > value.size()) return std::nullopt;
        const std::uint16_t tag = get_u16(p + i);
        const std::size_t len = get_u16(p + i + 2);
        if (i + 4 + len > value.size()) return std::nullopt;
        const std::span<const std::uint8_t> body(p + i + 4, len);
        i += 4 + len;
        if (v1) continue;
        if (tag == kTagCounts) {
            if (len != 64) return std::nullopt;
            for (std::size_t t = 0; t < 8; ++t) info.trigger_rules[t] = get_u64(body.data() + 8 * t);
            seen |= 1;
        } else if (tag == kTagPrefixes) {
            if (len % 18 != 0) return std::nullopt;
            for (std::size_t k = 0; k < len; k += 18) {
                const std::size_t t = body[k];
                if (t >= 8) return std::nullopt;
                for (std::size_t l = 0; l < 129; ++l)
                    if (body[k + 1 + l / 8] & (0x80u >> (l % 8))) info.prefix_lengths[t].set(l);
            }
            seen |= 2;
        } else if (tag == kTagPolicy) {
            auto pol = decode_policy(body);
            if (!pol) return std::nullopt;
            info.policy = std::move(*pol);
            seen |= 4;
        }
    }
    if (v1) {
        // Format 1 stored QNAME rules only, with no zone settings.
        info.trigger_rules[static_cast<std::size_t>(rpz::Trigger::Qname)] = info.rule_count;
    } else if (seen != 7) {
        return std::nullopt;
    }
    if (info.id == 0) return std::nullopt;
    return info;
}

}  // namespace dnsfw::store::codec
