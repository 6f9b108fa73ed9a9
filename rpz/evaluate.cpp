// dnsfw::rpz — the pure policy evaluator and the in-memory rule source.
#include "rpz/rpz.hpp"

#include <algorithm>

namespace dnsfw::rpz {

Decision evaluate(const RuleSource& source, const Query& query) noexcept {
    Decision d;
    NameKey key;
    if (!make_name_key(query.qname, key) || key.size == 0) return d;  // malformed or root

    // ends[k-1] = length of the key prefix that is the ancestor with k labels.
    std::array<std::size_t, kMaxNameWire / 2 + 1> ends{};
    std::size_t labels = 0;
    for (std::size_t pos = 0; pos < key.size; pos += 1u + key.bytes[pos])
        ends[labels++] = pos + 1u + key.bytes[pos];

    const std::size_t zones = source.zone_count();
    for (std::size_t z = 0; z < zones; ++z) {
        if (auto r = source.find(z, Trigger::Qname, key.view())) {
            d.matched = true;
            d.zone = z;
            d.key = key;
            d.rule = r;
            return d;
        }
        // Wildcards: the longest ancestor first; never the qname itself (a
        // wildcard does not match its parent) and never the root.
        const std::size_t depth = source.max_wildcard_depth(z, Trigger::Qname);
        NameKey probe = key;
        for (std::size_t k = std::min(labels - 1, depth); k >= 1; --k) {
            const std::size_t len = ends[k - 1];
            probe.bytes[len] = 1;
            probe.bytes[len + 1] = '*';
            probe.size = len + 2;
            if (auto r = source.find(z, Trigger::Qname, probe.view())) {
                d.matched = true;
                d.zone = z;
                d.key = probe;
                d.wildcard = true;
                d.rule = r;
                return d;
            }
        }
    }
    return d;
}

namespace {

/// Orders stored entries (trigger byte + key) against a probe without
/// building a probe vector.
int compare_entry(const std::vector<std::uint8_t>& entry, std::uint8_t trigger,
                  std::span<const std::uint8_t> key) noexcept {
    if (entry.empty()) return -1;
    if (entry[0] != trigger) return entry[0] < trigger ? -1 : 1;
    auto rest = std::span<const std::uint8_t>(entry).subspan(1);
    auto [a, b] = std::mismatch(rest.begin(), rest.end(), key.begin(), key.end());
    if (a == rest.end()) return b == key.end() ? 0 : -1;
    if (b == key.end()) return 1;
    return *a < *b ? -1 : 1;
}

}  // namespace

MemoryRuleSource::MemoryRuleSource(const std::vector<Zone>& zones) {
    zones_.reserve(zones.size());
    for (const Zone& zone : zones) {
        auto& entries = zones_.emplace_back();
        entries.reserve(zone.rules.size());
        for (const Rule& rule : zone.rules) {
            std::vector<std::uint8_t> k;
            k.reserve(rule.key.size() + 1);
            k.push_back(static_cast<std::uint8_t>(rule.trigger));
            k.insert(k.end(), rule.key.begin(), rule.key.end());
            entries.emplace_back(std::move(k), encode_rule_value(rule));
        }
        std::sort(entries.begin(), entries.end(),
                  [](const auto& a, const auto& b) { return a.first < b.first; });
    }
}

std::size_t MemoryRuleSource::zone_count() const noexcept { return zones_.size(); }

std::optional<RuleView> MemoryRuleSource::find(std::size_t zone, Trigger trigger,
                                               std::span<const std::uint8_t> key) const noexcept {
    if (zone >= zones_.size()) return std::nullopt;
    const auto& entries = zones_[zone];
    const auto t = static_cast<std::uint8_t>(trigger);
    auto it = std::lower_bound(entries.begin(), entries.end(), key,
                               [t](const auto& entry, std::span<const std::uint8_t> k) {
                                   return compare_entry(entry.first, t, k) < 0;
                               });
    if (it == entries.end() || compare_entry(it->first, t, key) != 0) return std::nullopt;
    return RuleView::parse(it->second);
}

}  // namespace dnsfw::rpz
