// dnsfw::rpz — the rule collector shared by the zone parsers.
#include "rpz/zone_builder.hpp"

#include <algorithm>
#include <stdexcept>

namespace dnsfw::rpz::detail {
namespace {

constexpr std::uint16_t kTypeCname = 5;

/// Same policy, ignoring TTLs (a duplicate line with another TTL is still a
/// duplicate).
bool same_policy(const Rule& a, const Rule& b) {
    if (a.action != b.action || a.flags != b.flags || a.records.size() != b.records.size())
        return false;
    for (std::size_t i = 0; i < a.records.size(); ++i) {
        if (a.records[i].type != b.records[i].type || a.records[i].rdata != b.records[i].rdata)
            return false;
    }
    return true;
}

std::string describe(const Rule& r) {
    if (r.action != Action::LocalData) return std::string(to_string(r.action));
    if (!r.records.empty() && r.records.front().type == kTypeCname) return "local-data CNAME";
    return "local-data";
}

void put16(std::vector<std::uint8_t>& out, std::uint32_t v) {
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}

void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    put16(out, v >> 16);
    put16(out, v & 0xffffu);
}

}  // namespace

ZoneBuilder::ZoneBuilder(Zone& zone, std::string label) : zone_(zone), label_(std::move(label)) {}

void ZoneBuilder::report(Diagnostic::Severity severity, std::size_t line, std::string message) {
    if (zone_.diagnostics.size() >= kMaxDiagnostics) {
        ++suppressed_;
        return;
    }
    zone_.diagnostics.push_back(Diagnostic{severity, label_, line, std::move(message)});
}

void ZoneBuilder::error(std::size_t line, std::string message) {
    report(Diagnostic::Severity::Error, line, std::move(message));
}

void ZoneBuilder::warning(std::size_t line, std::string message) {
    report(Diagnostic::Severity::Warning, line, std::move(message));
}

void ZoneBuilder::add(Trigger trigger, std::vector<std::uint8_t> key, Rule candidate,
                      std::size_t line, const std::string& owner_text) {
    candidate.trigger = trigger;
    candidate.key = key;
    const bool mergeable = candidate.action == Action::LocalData && !candidate.records.empty() &&
                           candidate.records.front().type != kTypeCname;
    auto [it, inserted] =
        rules_.try_emplace({trigger, std::move(key)}, Entry{candidate, line, mergeable});
    if (inserted) return;

    Entry& e = it->second;
    if (e.mergeable && mergeable) {
        const LocalRecord& rec = candidate.records.front();
        auto same = std::find_if(e.rule.records.begin(), e.rule.records.end(),
                                 [&rec](const LocalRecord& r) {
                                     return r.type == rec.type && r.rdata == rec.rdata;
                                 });
        if (same != e.rule.records.end()) {
            same->ttl = std::min(same->ttl, rec.ttl);  // identical record: tolerated
        } else {
            e.rule.records.push_back(rec);
        }
        e.rule.ttl = std::min(e.rule.ttl, candidate.ttl);
        return;
    }
    if (same_policy(e.rule, candidate)) {
        e.rule.ttl = std::min(e.rule.ttl, candidate.ttl);
        for (std::size_t i = 0; i < e.rule.records.size(); ++i)
            e.rule.records[i].ttl = std::min(e.rule.records[i].ttl, candidate.records[i].ttl);
        return;
    }
    // Line 0: the rule was already stored (apply_records feeds it first).
    error(line, "conflicting policy for " + owner_text + ": " + describe(candidate) +
                    " ignored, " + describe(e.rule) +
                    (e.line == 0 ? std::string(" (stored) kept")
                                 : " from line " + std::to_string(e.line) + " kept"));
}

void ZoneBuilder::finish() {
    zone_.rules.clear();
    zone_.rules.reserve(rules_.size());
    for (auto& [k, e] : rules_) zone_.rules.push_back(std::move(e.rule));  // map order = sorted
    rules_.clear();
    if (suppressed_ > 0) {
        zone_.diagnostics.push_back(Diagnostic{Diagnostic::Severity::Warning, label_, 0,
                                               std::to_string(suppressed_) +
                                                   " further problems not shown"});
    }
}

std::vector<std::uint8_t> wildcard_key(std::span<const std::uint8_t> key) {
    std::vector<std::uint8_t> out(key.begin(), key.end());
    out.push_back(1);
    out.push_back('*');
    return out;
}

std::vector<std::uint8_t> key_of(std::span<const std::uint8_t> wire) {
    NameKey k;
    if (!make_name_key(wire, k)) throw std::invalid_argument("malformed name");
    auto v = k.view();
    return {v.begin(), v.end()};
}

Name checked_zone_name(const Name& zone_name) {
    if (zone_name.empty() || name_wire_length(zone_name) != zone_name.size())
        throw std::invalid_argument("malformed zone name");
    Name out = zone_name;
    for (std::uint8_t& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<std::uint8_t>(c + ('a' - 'A'));
    }
    // Lower-casing must not touch length octets: they are <= 63 < 'A'.
    return out;
}

std::vector<std::uint8_t> synthesised_soa_rdata(const Name& apex, std::uint32_t serial,
                                                std::uint32_t ttl) {
    std::vector<std::uint8_t> out(apex.begin(), apex.end());  // mname
    static constexpr std::uint8_t kHostmaster[] = {10, 'h', 'o', 's', 't', 'm',
                                                   'a', 's', 't', 'e', 'r'};
    if (apex.size() + sizeof kHostmaster <= kMaxNameWire) {
        out.insert(out.end(), std::begin(kHostmaster), std::end(kHostmaster));
        out.insert(out.end(), apex.begin(), apex.end());
    } else {
        out.push_back(0);  // no room: root as rname
    }
    put32(out, serial);
    put32(out, 3600);    // refresh
    put32(out, 600);     // retry
    put32(out, 604800);  // expire
    put32(out, ttl);     // minimum (negative caching TTL)
    return out;
}

}  // namespace dnsfw::rpz::detail
