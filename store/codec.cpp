// dnsfw::store internal — encoders/decoders of the store's keys and values
// (layouts documented in codec.hpp and at the top of store.cpp).
#include "store/codec.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace dnsfw::store::codec {

namespace {

constexpr std::uint8_t kZoneRecordVersion = 2;
constexpr std::uint8_t kZoneRecordV1 = 1;
constexpr std::uint16_t kTagCounts = 1;
constexpr std::uint16_t kTagPrefixes = 2;
constexpr std::uint16_t kTagPolicy = 3;
constexpr std::uint16_t kTagJournalBytes = 4;
constexpr std::uint8_t kJournalVersion = 1;
constexpr std::uint8_t kStatusVersion = 1;
constexpr std::uint16_t kStatusTagTransferStarted = 1;
constexpr std::uint16_t kStatusTagTransferKind = 2;
constexpr std::uint16_t kStatusTagSkipped = 3;
constexpr std::uint16_t kStatusTagDaemon = 4;
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
    std::vector<std::uint8_t> bound(8);
    put_u64(bound.data(), info.journal_max_bytes);
    append_tlv(out, kTagJournalBytes, bound);
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
    info.journal_max_bytes = kDefaultJournalBytes;
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
        } else if (tag == kTagJournalBytes) {
            if (len != 8) return std::nullopt;
            info.journal_max_bytes = get_u64(body.data());
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

// ---------------------------------------------------------------------------
// Journal entries and status records

namespace {

void append_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
    append_u32(out, static_cast<std::uint32_t>(v >> 32));
    append_u32(out, static_cast<std::uint32_t>(v));
}

void append_bytes16(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> b,
                    const char* what) {
    if (b.size() > 0xFFFF) throw std::length_error(std::string(what) + " longer than 65535 octets");
    append_u16(out, static_cast<std::uint16_t>(b.size()));
    out.insert(out.end(), b.begin(), b.end());
}

void append_rrs(std::vector<std::uint8_t>& out, const std::vector<rpz::ZoneRecord>& rrs) {
    if (rrs.size() > 0xFFFFFFFFu) throw std::length_error("too many journal records");
    append_u32(out, static_cast<std::uint32_t>(rrs.size()));
    for (const rpz::ZoneRecord& rr : rrs) {
        if (rr.owner.size() > 255) throw std::length_error("journal record owner too long");
        out.push_back(static_cast<std::uint8_t>(rr.owner.size()));
        out.insert(out.end(), rr.owner.begin(), rr.owner.end());
        append_u16(out, rr.type);
        append_u32(out, rr.ttl);
        append_bytes16(out, rr.rdata, "journal record rdata");
    }
}

/// Bounds-checked big-endian reader over a byte span.
class Reader {
public:
    explicit Reader(std::span<const std::uint8_t> b) noexcept : b_(b) {}
    bool ok() const noexcept { return ok_; }
    bool at_end() const noexcept { return i_ == b_.size(); }
    std::size_t left() const noexcept { return b_.size() - i_; }
    std::uint8_t u8() noexcept { return need(1) ? b_[i_++] : 0; }
    std::uint16_t u16() noexcept { return need(2) ? adv(get_u16(b_.data() + i_), 2) : 0; }
    std::uint32_t u32() noexcept { return need(4) ? adv(get_u32(b_.data() + i_), 4) : 0; }
    std::uint64_t u64() noexcept { return need(8) ? adv(get_u64(b_.data() + i_), 8) : 0; }
    std::span<const std::uint8_t> bytes(std::size_t n) noexcept {
        if (!need(n)) return {};
        auto out = b_.subspan(i_, n);
        i_ += n;
        return out;
    }
    /// Skips TLV extensions to the end; false if their framing is broken.
    bool skip_extensions() noexcept {
        while (ok_ && !at_end()) {
            u16();
            bytes(u16());
        }
        return ok_;
    }

private:
    bool need(std::size_t n) noexcept {
        if (!ok_ || b_.size() - i_ < n) ok_ = false;
        return ok_;
    }
    template <typename T>
    T adv(T v, std::size_t n) noexcept {
        i_ += n;
        return v;
    }
    std::span<const std::uint8_t> b_;
    std::size_t i_ = 0;
    bool ok_ = true;
};

bool read_rrs(Reader& r, std::vector<rpz::ZoneRecord>& out) {
    const std::uint32_t n = r.u32();
    // Each RR takes at least 10 octets: refuse counts the value cannot hold.
    if (!r.ok() || n > r.left() / 10) return false;
    out.reserve(n);
    for (std::uint32_t i = 0; i < n; ++i) {
        rpz::ZoneRecord rr;
        auto owner = r.bytes(r.u8());
        rr.owner.assign(owner.begin(), owner.end());
        rr.type = r.u16();
        rr.ttl = r.u32();
        auto rd = r.bytes(r.u16());
        rr.rdata.assign(rd.begin(), rd.end());
        if (!r.ok() || rpz::name_wire_length(rr.owner) != rr.owner.size() || rr.owner.empty())
            return false;
        out.push_back(std::move(rr));
    }
    return true;
}

}  // namespace

std::vector<std::uint8_t> encode_journal_entry(const JournalEntry& e) {
    std::vector<std::uint8_t> out;
    out.reserve(64 + e.from_soa_rdata.size() + e.to_soa_rdata.size() +
                (e.removed.size() + e.added.size()) * 48);
    out.push_back(kJournalVersion);
    append_u32(out, e.from_serial);
    append_u32(out, e.to_serial);
    append_u64(out, e.time);
    append_u32(out, e.from_soa_ttl);
    append_bytes16(out, e.from_soa_rdata, "SOA rdata");
    append_u32(out, e.to_soa_ttl);
    append_bytes16(out, e.to_soa_rdata, "SOA rdata");
    append_rrs(out, e.removed);
    append_rrs(out, e.added);
    return out;
}

bool journal_head(std::span<const std::uint8_t> value, std::uint32_t& from,
                  std::uint32_t& to) noexcept {
    if (value.size() < kJournalHeadSize || value[0] != kJournalVersion) return false;
    from = get_u32(value.data() + 1);
    to = get_u32(value.data() + 5);
    return true;
}

std::optional<JournalEntry> decode_journal_entry(std::span<const std::uint8_t> value) {
    Reader r(value);
    if (r.u8() != kJournalVersion) return std::nullopt;
    JournalEntry e;
    e.from_serial = r.u32();
    e.to_serial = r.u32();
    e.time = r.u64();
    e.from_soa_ttl = r.u32();
    auto from_soa = r.bytes(r.u16());
    e.from_soa_rdata.assign(from_soa.begin(), from_soa.end());
    e.to_soa_ttl = r.u32();
    auto to_soa = r.bytes(r.u16());
    e.to_soa_rdata.assign(to_soa.begin(), to_soa.end());
    if (!r.ok() || !read_rrs(r, e.removed) || !read_rrs(r, e.added) || !r.skip_extensions())
        return std::nullopt;
    return e;
}

std::vector<std::uint8_t> encode_status(const ZoneStatus& st) {
    std::vector<std::uint8_t> out;
    out.push_back(kStatusVersion);
    append_u64(out, st.last_attempt);
    append_u64(out, st.last_success);
    append_u64(out, st.last_failure);
    append_u64(out, st.transfers_full);
    append_u64(out, st.transfers_incremental);
    append_u64(out, st.transfers_failed);
    append_u64(out, st.updates);
    append_u32(out, st.primary_serial);
    append_u64(out, st.next_check);
    const auto append_string = [](std::vector<std::uint8_t>& to, const std::string& s,
                                  std::size_t max) {
        const std::size_t n = std::min<std::size_t>(s.size(), max);
        append_u16(to, static_cast<std::uint16_t>(n));
        to.insert(to.end(), s.begin(), s.begin() + static_cast<long>(n));
    };
    for (const std::string* s : {&st.last_error, &st.last_source}) append_string(out, *s, 0xFFFF);
    // Extensions, only when set: a record without them reads the same in
    // code that predates them.
    if (st.transfer_started != 0) {
        std::vector<std::uint8_t> b;
        append_u64(b, st.transfer_started);
        append_tlv(out, kStatusTagTransferStarted, b);
    }
    if (!st.transfer_kind.empty()) {
        const std::size_t n = std::min<std::size_t>(st.transfer_kind.size(), 1024);
        append_tlv(out, kStatusTagTransferKind,
                   std::vector<std::uint8_t>(st.transfer_kind.begin(),
                                             st.transfer_kind.begin() + static_cast<long>(n)));
    }
    if (st.last_transfer_skipped != 0) {
        std::vector<std::uint8_t> b;
        append_u64(b, st.last_transfer_skipped);
        append_tlv(out, kStatusTagSkipped, b);
    }
    if (st.daemon.pid != 0) {
        std::vector<std::uint8_t> b;
        append_u32(b, st.daemon.pid);
        append_u64(b, st.daemon.start_ticks);
        append_string(b, st.daemon.boot_id, 255);
        append_string(b, st.daemon.pid_ns, 255);
        append_tlv(out, kStatusTagDaemon, b);
    }
    return out;
}

std::optional<ZoneStatus> decode_status(std::span<const std::uint8_t> value) {
    Reader r(value);
    if (r.u8() != kStatusVersion) return std::nullopt;
    ZoneStatus st;
    st.last_attempt = r.u64();
    st.last_success = r.u64();
    st.last_failure = r.u64();
    st.transfers_full = r.u64();
    st.transfers_incremental = r.u64();
    st.transfers_failed = r.u64();
    st.updates = r.u64();
    st.primary_serial = r.u32();
    st.next_check = r.u64();
    for (std::string* s : {&st.last_error, &st.last_source}) {
        auto b = r.bytes(r.u16());
        s->assign(b.begin(), b.end());
    }
    while (r.ok() && !r.at_end()) {
        const std::uint16_t tag = r.u16();
        const auto body = r.bytes(r.u16());
        if (!r.ok()) break;
        Reader t(body);
        if (tag == kStatusTagTransferStarted && body.size() == 8) {
            st.transfer_started = t.u64();
        } else if (tag == kStatusTagTransferKind) {
            st.transfer_kind.assign(body.begin(), body.end());
        } else if (tag == kStatusTagSkipped && body.size() == 8) {
            st.last_transfer_skipped = t.u64();
        } else if (tag == kStatusTagDaemon) {
            ProcessId d;
            d.pid = t.u32();
            d.start_ticks = t.u64();
            auto boot = t.bytes(t.u16());
            d.boot_id.assign(boot.begin(), boot.end());
            auto ns = t.bytes(t.u16());
            d.pid_ns.assign(ns.begin(), ns.end());
            if (t.ok() && t.at_end()) st.daemon = std::move(d);
        }
    }
    if (!r.ok()) return std::nullopt;
    return st;
}

}  // namespace dnsfw::store::codec
