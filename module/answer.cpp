// Building DNS messages in Unbound's structures (regions, packed RRsets).
#include "module/answer.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

namespace dnsfw::module {

namespace {

/// Size of packed_rrset_data with its arrays and `n` rdatas of total
/// `rdata_bytes` (each prefixed by its 2-byte length, as Unbound stores them).
std::size_t packed_size(std::size_t n, std::size_t rdata_bytes) noexcept {
    return sizeof(packed_rrset_data) + n * (sizeof(std::size_t) + sizeof(std::uint8_t*) +
                                            sizeof(time_t)) +
           rdata_bytes + 2 * n;
}

}  // namespace

ub_packed_rrset_key* make_rrset(regional* region, std::span<const std::uint8_t> owner,
                                std::uint16_t type, std::uint16_t rr_class,
                                std::span<const RrSpec> rrs) noexcept {
    if (region == nullptr || rrs.empty() || owner.empty()) return nullptr;
    std::size_t rdata_bytes = 0;
    for (const RrSpec& rr : rrs) {
        if (rr.rdata.size() > std::numeric_limits<std::uint16_t>::max()) return nullptr;
        rdata_bytes += rr.rdata.size();
    }

    auto* key = static_cast<ub_packed_rrset_key*>(
        regional_alloc_zero(region, sizeof(ub_packed_rrset_key)));
    if (key == nullptr) return nullptr;
    key->entry.key = key;
    key->rk.dname = static_cast<std::uint8_t*>(
        regional_alloc_init(region, owner.data(), owner.size()));
    if (key->rk.dname == nullptr) return nullptr;
    key->rk.dname_len = owner.size();
    key->rk.type = htons(type);
    key->rk.rrset_class = htons(rr_class);
    key->rk.flags = PACKED_RRSET_RPZ;

    const std::size_t total = packed_size(rrs.size(), rdata_bytes);
    auto* d = static_cast<packed_rrset_data*>(regional_alloc_zero(region, total));
    if (d == nullptr) return nullptr;
    d->count = rrs.size();
    d->rrsig_count = 0;
    d->trust = rrset_trust_prim_noglue;
    d->security = sec_status_insecure;
    // Lay out the arrays: lengths, data pointers, TTLs, then the rdata.
    d->rr_len = reinterpret_cast<std::size_t*>(reinterpret_cast<std::uint8_t*>(d) +
                                               sizeof(packed_rrset_data));
    for (std::size_t i = 0; i < rrs.size(); ++i) d->rr_len[i] = rrs[i].rdata.size() + 2;
    packed_rrset_ptr_fixup(d);
    time_t min_ttl = std::numeric_limits<time_t>::max();
    for (std::size_t i = 0; i < rrs.size(); ++i) {
        const auto len = static_cast<std::uint16_t>(rrs[i].rdata.size());
        d->rr_data[i][0] = static_cast<std::uint8_t>(len >> 8);
        d->rr_data[i][1] = static_cast<std::uint8_t>(len & 0xff);
        if (len != 0) std::memcpy(d->rr_data[i] + 2, rrs[i].rdata.data(), len);
        d->rr_ttl[i] = static_cast<time_t>(rrs[i].ttl);
        min_ttl = std::min(min_ttl, d->rr_ttl[i]);
    }
    d->ttl = min_ttl;
    key->entry.data = d;
    key->entry.hash = rrset_key_hash(&key->rk);
    return key;
}

dns_msg* make_reply(module_qstate* qstate, int rcode, bool truncated,
                    const ReplySections& sections) noexcept {
    auto count = [](std::span<ub_packed_rrset_key* const> s) {
        return static_cast<std::size_t>(
            std::count_if(s.begin(), s.end(), [](const auto* k) { return k != nullptr; }));
    };
    const std::size_t an = count(sections.answer);
    const std::size_t ns = count(sections.authority);
    const std::size_t ar = count(sections.additional);

    auto* msg = static_cast<dns_msg*>(regional_alloc_zero(qstate->region, sizeof(dns_msg)));
    if (msg == nullptr) return nullptr;
    msg->qinfo = qstate->qinfo;
    auto flags = static_cast<std::uint16_t>(BIT_QR | BIT_RA | (rcode & 0xf));
    if (truncated) flags = static_cast<std::uint16_t>(flags | BIT_TC);
    msg->rep = construct_reply_info_base(qstate->region, flags, 1, 0, 0, 0, an, ns, ar,
                                         an + ns + ar, sec_status_insecure);
    if (msg->rep == nullptr) return nullptr;
    msg->rep->authoritative = 0;

    std::size_t i = 0;
    time_t ttl = std::numeric_limits<time_t>::max();
    for (auto section : {sections.answer, sections.authority, sections.additional}) {
        for (ub_packed_rrset_key* k : section) {
            if (k == nullptr) continue;
            msg->rep->rrsets[i++] = k;
            ttl = std::min(ttl, static_cast<packed_rrset_data*>(k->entry.data)->ttl);
        }
    }
    if (i == 0) ttl = 0;
    msg->rep->ttl = ttl;
    msg->rep->prefetch_ttl = PREFETCH_TTL_CALC(ttl);
    msg->rep->serve_expired_ttl = ttl;
    return msg;
}

bool add_ede(module_qstate* qstate, std::uint16_t info_code, std::string_view text) noexcept {
    // Option data: 16-bit info-code, then UTF-8 extra text (no terminator).
    std::array<std::uint8_t, 2 + 1024> data{};
    const std::size_t text_len = std::min(text.size(), data.size() - 2);
    data[0] = static_cast<std::uint8_t>(info_code >> 8);
    data[1] = static_cast<std::uint8_t>(info_code & 0xff);
    std::memcpy(data.data() + 2, text.data(), text_len);
    return edns_opt_list_append(&qstate->edns_opts_front_out, LDNS_EDNS_EDE, 2 + text_len,
                                data.data(), qstate->region) != 0;
}

bool mark_tcp_only(module_qstate* qstate) noexcept {
    if (qstate->respip_action_info == nullptr) {
        qstate->respip_action_info = static_cast<respip_action_info*>(
            regional_alloc_zero(qstate->region, sizeof(respip_action_info)));
        if (qstate->respip_action_info == nullptr) return false;
    }
    // services/mesh.c sets TC for UDP replies of states with this action.
    qstate->respip_action_info->action = respip_truncate;
    qstate->respip_action_info->rpz_used = 1;
    qstate->respip_action_info->rpz_disabled = 0;
    return true;
}

}  // namespace dnsfw::module
