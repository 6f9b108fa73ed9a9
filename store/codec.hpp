// dnsfw::store internal — byte layouts of the store's keys and values.
//
// The key space itself is described at the top of store.cpp; this header
// holds the encoders/decoders so that store.cpp (writer) and snapshot.cpp
// (reader) cannot disagree. Not a public header.
#pragma once

#include "rpz/rpz.hpp"
#include "store/store.hpp"

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace dnsfw::store::codec {

/// Version of the on-disk layout, stored under meta "format". Version 2
/// added zone record version 2 (trigger counts, prefix lengths, ZonePolicy)
/// and IP rule keys. Version 1 stores are readable (their zone records
/// decode with defaults) and are upgraded when a writer opens them.
inline constexpr std::uint32_t kFormatVersion = 2;
/// Oldest layout this code reads.
inline constexpr std::uint32_t kOldestFormatVersion = 1;

/// Named databases (LMDB "DBI"s).
inline constexpr const char* kMetaDb = "meta";
inline constexpr const char* kZonesDb = "zones";
inline constexpr const char* kRulesDb = "rules";
/// Added after format 2 without a format bump (older code ignores them);
/// writers create them at open, readers open them when present.
inline constexpr const char* kJournalDb = "journal";
inline constexpr const char* kStatusDb = "status";
/// Named databases the environment is sized for (meta, zones, rules, and
/// room for journals and status tables of later formats).
inline constexpr unsigned kMaxDbs = 16;

/// Keys of the "meta" database.
inline constexpr std::string_view kMetaFormat = "format";
inline constexpr std::string_view kMetaGeneration = "generation";
inline constexpr std::string_view kMetaNextZoneId = "next_zone_id";

/// Zone ids start here; 0 is never used (so an all-zero prefix is never live).
inline constexpr std::uint32_t kFirstZoneId = 1;

/// Rules key: u32 zone id | u8 trigger | owner key (name key up to
/// kMaxNameKey + 2 bytes, or a 17-byte IP key).
inline constexpr std::size_t kRulePrefixSize = 5;
inline constexpr std::size_t kMaxRuleKeySuffix = rpz::kMaxNameKey + 2;
inline constexpr std::size_t kMaxRuleKey = kRulePrefixSize + kMaxRuleKeySuffix;

inline void put_u32(std::uint8_t* p, std::uint32_t v) noexcept {
    p[0] = static_cast<std::uint8_t>(v >> 24);
    p[1] = static_cast<std::uint8_t>(v >> 16);
    p[2] = static_cast<std::uint8_t>(v >> 8);
    p[3] = static_cast<std::uint8_t>(v);
}
inline void put_u64(std::uint8_t* p, std::uint64_t v) noexcept {
    put_u32(p, static_cast<std::uint32_t>(v >> 32));
    put_u32(p + 4, static_cast<std::uint32_t>(v));
}
inline std::uint16_t get_u16(const std::uint8_t* p) noexcept {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t get_u32(const std::uint8_t* p) noexcept {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           std::uint32_t{p[3]};
}
inline std::uint64_t get_u64(const std::uint8_t* p) noexcept {
    return (std::uint64_t{get_u32(p)} << 32) | get_u32(p + 4);
}

/// Writes the 5-byte rule key prefix (zone id, trigger) to `out`.
inline void put_rule_prefix(std::uint8_t* out, std::uint32_t zone_id,
                            rpz::Trigger trigger) noexcept {
    put_u32(out, zone_id);
    out[4] = static_cast<std::uint8_t>(trigger);
}

/// Builds a rules key into `buf` (at least kMaxRuleKey bytes). Returns its
/// length, or 0 if the name key is too long. noexcept, no allocation.
inline std::size_t make_rule_key(std::uint8_t* buf, std::uint32_t zone_id, rpz::Trigger trigger,
                                 std::span<const std::uint8_t> key) noexcept {
    if (key.size() > kMaxRuleKeySuffix) return 0;
    put_rule_prefix(buf, zone_id, trigger);
    if (!key.empty()) std::memcpy(buf + kRulePrefixSize, key.data(), key.size());
    return kRulePrefixSize + key.size();
}

/// Validates a name key: a sequence of [len 1..63][bytes] labels, at most
/// kMaxRuleKeySuffix bytes. Returns the label count, or nullopt if malformed.
std::optional<std::size_t> name_key_labels(std::span<const std::uint8_t> key) noexcept;

/// Validates the owner key of a rule of trigger `t`: an IP key
/// (rpz::prefix_from_ip_key) for IP triggers, a name key otherwise.
bool valid_rule_key(rpz::Trigger t, std::span<const std::uint8_t> key) noexcept;

/// Encodes / decodes a ZonePolicy (the tag-3 TLV body). decode: nullopt if malformed.
std::vector<std::uint8_t> encode_policy(const rpz::ZonePolicy& p);
std::optional<rpz::ZonePolicy> decode_policy(std::span<const std::uint8_t> b);

/// True if the key's last label is "*" (a wildcard owner).
bool is_wildcard_key(std::span<const std::uint8_t> key) noexcept;

/// Zone record (value of the "zones" database; the key is the apex wire name):
///   u8 version(=2) | u32 id | u32 order | u32 serial | u64 rule_count |
///   u32 soa_ttl | u64 loaded_at | u8[8] max_wildcard_depth |
///   u16 soa_rdlen | soa_rdata | extensions (TLV: u16 tag | u16 len | bytes;
///   readers skip unknown tags)
/// Version 2 TLVs (each required once in a version-2 record):
///   tag 1  trigger counts:  8 × u64 (index = rpz::Trigger value)
///   tag 2  prefix lengths:  3 × (u8 trigger | 17 bytes: bit L of the set =
///                           byte L/8, bit 7-(L%8)) for ClientIp, ResponseIp, NsIp
///   tag 3  zone policy:     u8 override | u8 flags (1 recursive_only,
///                           2 break_dnssec, 4 log, 8 add_soa, 16 has max TTL,
///                           32 has EDE, 64 cname wildcard) | u32 max_policy_ttl |
///                           u16 ede | u8 cname_len | cname wire | u16 text_len | ede_text
///                           [| u8 flags2 (1 = override_local_data false, 2 = clients
///                           list follows; other bits reserved, must be 0)
///                           [| u16 n (1..256) | n × 17-byte IP key (rpz::make_ip_key)
///                           = ZonePolicy::clients, present iff flags2 bit 2]] —
///                           flags2 is written only when non-zero; absent = 0
///                           (records written before it existed)
///   tag 4  journal bound:   u64 ZoneInfo::journal_max_bytes (optional; absent =
///                           kDefaultJournalBytes: records written before it existed)
/// A version-1 record has none of them: counts = all QNAME, no prefixes,
/// ZonePolicy{}.
/// All integers big-endian. `info.name` is not stored (it is the key).
std::vector<std::uint8_t> encode_zone_record(const ZoneInfo& info);

/// Decodes a zone record (version 1 or 2); `apex` is its key (sets
/// info.name). nullopt if malformed or of an unknown version.
std::optional<ZoneInfo> decode_zone_record(std::span<const std::uint8_t> apex,
                                           std::span<const std::uint8_t> value);

/// Journal key: u32 BE zone id | u64 BE sequence (1, 2, ... per zone id).
inline constexpr std::size_t kJournalKeySize = 12;
inline void make_journal_key(std::uint8_t* out, std::uint32_t zone_id, std::uint64_t seq) noexcept {
    put_u32(out, zone_id);
    put_u64(out + 4, seq);
}

/// Journal entry (value of the "journal" database):
///   u8 version(=1) | u32 from_serial | u32 to_serial | u64 time |
///   u32 from_soa_ttl | u16 len | from_soa_rdata | u32 to_soa_ttl | u16 len |
///   to_soa_rdata | u32 n_removed | n x RR | u32 n_added | n x RR |
///   extensions (TLV, readers skip unknown tags)
///   RR = u8 owner_len | owner (wire) | u16 type | u32 ttl | u16 rdlen | rdata
/// Throws std::length_error if an owner or rdata does not fit its length field.
std::vector<std::uint8_t> encode_journal_entry(const JournalEntry& e);
/// Decodes a journal entry; nullopt if malformed or of an unknown version.
std::optional<JournalEntry> decode_journal_entry(std::span<const std::uint8_t> value);
/// Size of the fixed head of a journal entry that journal_head() reads.
inline constexpr std::size_t kJournalHeadSize = 9;
/// from_serial and to_serial of an encoded entry without decoding it;
/// false if too short or of an unknown version.
bool journal_head(std::span<const std::uint8_t> value, std::uint32_t& from,
                  std::uint32_t& to) noexcept;

/// Status record (value of the "status" database; key = zone apex wire):
///   u8 version(=1) | u64 last_attempt | u64 last_success | u64 last_failure |
///   u64 transfers_full | u64 transfers_incremental | u64 transfers_failed |
///   u64 updates | u32 primary_serial | u64 next_check | u16 len | last_error |
///   u16 len | last_source | extensions (TLV u16 tag | u16 len | bytes;
///   readers skip unknown tags; each is written only when not 0 / empty):
///     tag 1  u64 transfer_started
///     tag 2  transfer_kind (bytes)
///     tag 3  u64 last_transfer_skipped
///     tag 4  daemon: u32 pid | u64 start_ticks | u16 len | boot_id |
///            u16 len | pid_ns
///   A known tag of the wrong length is ignored (as if absent).
/// Strings longer than 65535 octets are truncated.
std::vector<std::uint8_t> encode_status(const ZoneStatus& st);
/// nullopt if malformed or of an unknown version.
std::optional<ZoneStatus> decode_status(std::span<const std::uint8_t> value);

}  // namespace dnsfw::store::codec
