// dnsfw::rpz — zone settings (ZonePolicy), RuleSource defaults and the
// per-trigger statistics the store keeps for the evaluator.
#include "rpz/rpz.hpp"

#include <algorithm>

namespace dnsfw::rpz {

std::string_view trigger_label(Trigger t) noexcept {
    switch (t) {
    case Trigger::ClientIp: return "rpz-client-ip";
    case Trigger::Qname: return "";
    case Trigger::ResponseIp: return "rpz-ip";
    case Trigger::NsDname: return "rpz-nsdname";
    case Trigger::NsIp: return "rpz-nsip";
    }
    return "";
}

std::string_view to_string(PolicyOverride o) noexcept {
    switch (o) {
    case PolicyOverride::Given: return "given";
    case PolicyOverride::Disabled: return "disabled";
    case PolicyOverride::Nxdomain: return "nxdomain";
    case PolicyOverride::Nodata: return "nodata";
    case PolicyOverride::Passthru: return "passthru";
    case PolicyOverride::Drop: return "drop";
    case PolicyOverride::TcpOnly: return "tcp-only";
    case PolicyOverride::Cname: return "cname";
    }
    return "unknown";
}

std::optional<PolicyOverride> policy_override_from_string(std::string_view s) noexcept {
    for (auto o : {PolicyOverride::Given, PolicyOverride::Disabled, PolicyOverride::Nxdomain,
                   PolicyOverride::Nodata, PolicyOverride::Passthru, PolicyOverride::Drop,
                   PolicyOverride::TcpOnly, PolicyOverride::Cname}) {
        if (s == to_string(o)) return o;
    }
    if (s == "no-op") return PolicyOverride::Passthru;
    return std::nullopt;
}

bool is_allowed_ede(std::uint16_t code) noexcept {
    return code == 4 || code == 15 || code == 16 || code == 17 || code == 18;
}

const ZonePolicy& RuleSource::policy(std::size_t zone) const noexcept {
    (void)zone;
    static const ZonePolicy kDefault{};
    return kDefault;
}

const std::bitset<129>& RuleSource::prefix_lengths(std::size_t zone, Trigger trigger) const noexcept {
    (void)zone;
    (void)trigger;
    static const std::bitset<129> kAll = std::bitset<129>().set();
    return kAll;
}

TriggerStats compute_trigger_stats(std::span<const Rule> rules) noexcept {
    TriggerStats s;
    for (const Rule& r : rules) {
        const auto t = static_cast<std::size_t>(r.trigger);
        if (t >= s.counts.size()) continue;
        ++s.counts[t];
        if (is_ip_trigger(r.trigger)) {
            if (auto p = prefix_from_ip_key(r.key)) s.prefix_lengths[t].set(p->length);
            continue;
        }
        // Wildcard: the key ends with the label "\1*"; depth = labels of its parent.
        std::size_t labels = 0;
        std::size_t last = 0;
        std::size_t i = 0;
        while (i < r.key.size()) {
            last = i;
            i += 1u + r.key[i];
            ++labels;
        }
        if (i == r.key.size() && labels > 0 && r.key[last] == 1 && last + 1 < r.key.size() &&
            r.key[last + 1] == '*') {
            const auto depth = static_cast<std::uint8_t>(std::min<std::size_t>(labels - 1, 255));
            s.max_wildcard_depth[t] = std::max(s.max_wildcard_depth[t], depth);
        }
    }
    return s;
}

}  // namespace dnsfw::rpz
