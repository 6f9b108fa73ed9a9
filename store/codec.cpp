// dnsfw::store internal — encoders/decoders of the store's keys and values
// (layouts documented in codec.hpp and at the top of store.cpp).
#include "store/codec.hpp"

#include <stdexcept>

namespace dnsfw::store::codec {

namespace {

constexpr std::uint8_t kZoneRecordVersion = 1;
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
    return out;
}

std::optional<ZoneInfo> decode_zone_record(std::span<const std::uint8_t> apex,
                                           std::span<const std::uint8_t> value) {
    if (value.size() < kZoneRecordFixed || value[0] != kZoneRecordVersion) return std::nullopt;
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
    // Extensions: validate their framing so corruption is noticed; no tag is
    // defined yet, so every one is skipped.
    std::size_t i = kZoneRecordFixed + rdlen;
    while (i < value.size()) {
        if (i + 4 > value.size()) return std::nullopt;
        const std::size_t len = get_u16(p + i + 2);
        if (i + 4 + len > value.size()) return std::nullopt;
        i += 4 + len;
    }
    if (info.id == 0) return std::nullopt;
    return info;
}

}  // namespace dnsfw::store::codec
