// dnsfw::rpz — the rule collector shared by the zone parsers.
#include "rpz/zone_builder.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <stdexcept>

namespace dnsfw::rpz::detail {
namespace {

constexpr std::uint16_t kTypeCname = 5;

/// Size of the chunks that hold the candidates' owner texts.
constexpr std::size_t kTextChunk = std::size_t{1} << 20;

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

ZoneBuilder::ZoneBuilder(Zone& zone, std::string label)
    : zone_(zone), label_(std::move(label)), first_diag_(zone.diagnostics.size()) {}

void ZoneBuilder::report(Diagnostic::Severity severity, std::size_t line, std::string message) {
    // Conflicts found in finish() may still go before this one and push it
    // past the cap: it is then counted there.
    if (zone_.diagnostics.size() >= kMaxDiagnostics) {
        ++suppressed_;
        return;
    }
    zone_.diagnostics.push_back(Diagnostic{severity, label_, line, std::move(message)});
    diag_adds_.push_back(entries_.size());
}

void ZoneBuilder::error(std::size_t line, std::string message) {
    report(Diagnostic::Severity::Error, line, std::move(message));
}

void ZoneBuilder::warning(std::size_t line, std::string message) {
    report(Diagnostic::Severity::Warning, line, std::move(message));
}

void ZoneBuilder::reserve(std::size_t n) { entries_.reserve(n); }

void ZoneBuilder::add(Trigger trigger, std::vector<std::uint8_t> key, Rule candidate,
                      std::size_t line, std::string_view owner_text) {
    candidate.trigger = trigger;
    candidate.key = std::move(key);
    const bool mergeable = candidate.action == Action::LocalData && !candidate.records.empty() &&
                           candidate.records.front().type != kTypeCname;
    if (owner_texts_.empty() ||
        owner_texts_.back().capacity() - owner_texts_.back().size() < owner_text.size()) {
        owner_texts_.emplace_back();
        owner_texts_.back().reserve(std::max(kTextChunk, owner_text.size()));
    }
    std::string& chunk = owner_texts_.back();
    const auto at = static_cast<std::uint32_t>(chunk.size());
    chunk.append(owner_text);
    entries_.push_back(Entry{std::move(candidate), line,
                             static_cast<std::uint32_t>(owner_texts_.size() - 1), at,
                             static_cast<std::uint32_t>(owner_text.size()), mergeable});
}

void ZoneBuilder::merge(Entry& e, Entry& c, std::size_t c_index,
                        std::vector<Conflict>& conflicts) {
    Rule& candidate = c.rule;
    if (e.mergeable && c.mergeable) {
        LocalRecord& rec = candidate.records.front();
        auto same = std::find_if(e.rule.records.begin(), e.rule.records.end(),
                                 [&rec](const LocalRecord& r) {
                                     return r.type == rec.type && r.rdata == rec.rdata;
                                 });
        if (same != e.rule.records.end()) {
            same->ttl = std::min(same->ttl, rec.ttl);  // identical record: tolerated
        } else {
            e.rule.records.push_back(std::move(rec));
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
    // `e` keeps its action and first record whatever joined it, so this is
    // the text add() would have written when `c` arrived.
    // Line 0: the rule was already stored (apply_records feeds it first).
    const std::string_view owner(owner_texts_[c.text_chunk].data() + c.text_at, c.text_size);
    conflicts.push_back(Conflict{
        c_index,
        Diagnostic{Diagnostic::Severity::Error, label_, c.line,
                   "conflicting policy for " + std::string(owner) + ": " + describe(candidate) +
                       " ignored, " + describe(e.rule) +
                       (e.line == 0 ? std::string(" (stored) kept")
                                    : " from line " + std::to_string(e.line) + " kept")}});
}

void ZoneBuilder::place_conflicts(std::vector<Conflict> conflicts) {
    if (conflicts.empty()) return;
    std::sort(conflicts.begin(), conflicts.end(),
              [](const Conflict& a, const Conflict& b) { return a.add_index < b.add_index; });
    const auto first = zone_.diagnostics.begin() + static_cast<std::ptrdiff_t>(first_diag_);
    std::vector<Diagnostic> reported(std::make_move_iterator(first),
                                     std::make_move_iterator(zone_.diagnostics.end()));
    zone_.diagnostics.resize(first_diag_);
    const auto keep = [this](Diagnostic&& d) {
        if (zone_.diagnostics.size() >= kMaxDiagnostics) {
            ++suppressed_;
        } else {
            zone_.diagnostics.push_back(std::move(d));
        }
    };
    // A diagnostic reported before add() call k goes before k's conflict.
    std::size_t i = 0;
    for (Conflict& c : conflicts) {
        while (i < reported.size() && diag_adds_[i] <= c.add_index) keep(std::move(reported[i++]));
        keep(std::move(c.diagnostic));
    }
    while (i < reported.size()) keep(std::move(reported[i++]));
}

void ZoneBuilder::finish() {
    // The sort reads the keys through these (one pointer chase, not two).
    struct Slot {
        const std::uint8_t* key;
        std::size_t index;  ///< into entries_
        std::uint32_t size;
        Trigger trigger;
    };
    const auto key_less = [](const Slot& a, const Slot& b) {
        if (a.trigger != b.trigger) return a.trigger < b.trigger;
        const std::uint32_t n = std::min(a.size, b.size);
        const int c = n == 0 ? 0 : std::memcmp(a.key, b.key, n);
        return c != 0 ? c < 0 : a.size < b.size;
    };
    std::vector<Slot> order;
    order.reserve(entries_.size());
    for (std::size_t i = 0; i < entries_.size(); ++i) {
        const Rule& r = entries_[i].rule;
        order.push_back(
            Slot{r.key.data(), i, static_cast<std::uint32_t>(r.key.size()), r.trigger});
    }
    // By (trigger, key), each key's candidates in add() order.
    if (!std::is_sorted(order.begin(), order.end(), key_less))
        std::stable_sort(order.begin(), order.end(), key_less);

    zone_.rules.clear();
    std::vector<Conflict> conflicts;
    zone_.rules.reserve(order.size());  // one rule per key: at most one per candidate
    for (std::size_t i = 0; i < order.size();) {
        Entry& kept = entries_[order[i].index];
        std::size_t j = i + 1;
        for (; j < order.size() && !key_less(order[i], order[j]); ++j)
            merge(kept, entries_[order[j].index], order[j].index, conflicts);
        zone_.rules.push_back(std::move(kept.rule));
        i = j;
    }
    order = {};
    entries_.clear();
    entries_.shrink_to_fit();
    owner_texts_.clear();
    owner_texts_.shrink_to_fit();
    place_conflicts(std::move(conflicts));
    if (suppressed_ > 0) {
        zone_.diagnostics.push_back(Diagnostic{Diagnostic::Severity::Warning, label_, 0,
                                               std::to_string(suppressed_) +
                                                   " further problems not shown",
                                               suppressed_});
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
