// dnsfw::rpz — the pure policy evaluator and the in-memory rule source.
//
// evaluate() is the ONE place where RPZ precedence lives (see rpz.hpp for
// the seven rules). Structure: zones in order; in each zone the triggers in
// draft order (Client-IP, QNAME, Response-IP, NSDNAME, NSIP); the first
// trigger with a match is the zone's candidate (rules 3, 5, 6, 7 pick the
// best rule within that trigger); the first zone whose candidate applies
// (not DISABLED, not skipped for its clients list / RD=0 / DNSSEC) wins.
#include "rpz/rpz.hpp"

#include <algorithm>
#include <cstring>

namespace dnsfw::rpz {
namespace {

/// Emits trace steps when a sink is attached; free otherwise.
class Tracer {
public:
    explicit Tracer(TraceSink* sink) noexcept : sink_(sink) {}
    bool on() const noexcept { return sink_ != nullptr; }
    void skip(std::size_t zone, Trigger t, const char* why) const noexcept {
        if (!sink_) return;
        sink_->step(step(zone, t, TraceStep::Outcome::Skipped, why));
    }
    void name_probe(std::size_t zone, Trigger t, std::span<const std::uint8_t> subject,
                    std::span<const std::uint8_t> key, bool hit, const char* why) const noexcept {
        if (!sink_) return;
        TraceStep s = step(zone, t, hit ? TraceStep::Outcome::Hit : TraceStep::Outcome::Miss, why);
        s.key = key;
        s.subject = subject;
        sink_->step(s);
    }
    void ip_probe(std::size_t zone, Trigger t, const IpAddress& ip,
                  std::span<const std::uint8_t> key, bool hit, const char* why) const noexcept {
        if (!sink_) return;
        TraceStep s = step(zone, t, hit ? TraceStep::Outcome::Hit : TraceStep::Outcome::Miss, why);
        s.key = key;
        s.ip = ip;
        s.has_ip = true;
        sink_->step(s);
    }
    void verdict(const Match& m, TraceStep::Outcome o, const char* why) const noexcept {
        if (!sink_) return;
        TraceStep s = step(m.zone, m.trigger, o, why);
        s.key = m.key.view();
        s.ip = m.ip;
        s.has_ip = m.prefix.has_value();
        sink_->step(s);
    }

private:
    static TraceStep step(std::size_t zone, Trigger t, TraceStep::Outcome o,
                          const char* why) noexcept {
        TraceStep s;
        s.zone = zone;
        s.trigger = t;
        s.outcome = o;
        s.why = why;
        return s;
    }
    TraceSink* sink_;
};

/// A name trigger's best rule for one name: exact, else the wildcard of the
/// longest ancestor (rule 3). `labels` ranks it: exact = 256, wildcard =
/// label count of the wildcard's parent.
struct NameHit {
    bool found = false;
    std::size_t labels = 0;
};

/// Probes `key` (a valid name key of a name with `n_labels` labels, whose
/// k-label ancestor key ends at ends[k-1]) in zone `z` for trigger `t`.
NameHit probe_name(const RuleSource& src, std::size_t z, Trigger t,
                   std::span<const std::uint8_t> subject, const NameKey& key,
                   const std::size_t* ends, std::size_t n_labels, Match& out,
                   const Tracer& tr) noexcept {
    NameHit h;
    if (auto r = src.find(z, t, key.view())) {
        tr.name_probe(z, t, subject, key.view(), true, "exact match");
        out.zone = z;
        out.trigger = t;
        out.key = key;
        out.wildcard = false;
        out.rule = r;
        h.found = true;
        h.labels = 256;
        return h;
    }
    tr.name_probe(z, t, subject, key.view(), false, "exact name");
    // Wildcards: the longest ancestor first; never the name itself (a
    // wildcard does not match its parent) and never the root.
    const std::size_t depth = src.max_wildcard_depth(z, t);
    if (n_labels < 2) return h;
    if (tr.on() && depth < n_labels - 1)
        tr.skip(z, t, "wildcards deeper than the zone's deepest wildcard not probed");
    NameKey probe = key;
    for (std::size_t k = std::min(n_labels - 1, depth); k >= 1; --k) {
        const std::size_t len = ends[k - 1];
        probe.bytes[len] = 1;
        probe.bytes[len + 1] = '*';
        probe.size = len + 2;
        if (auto r = src.find(z, t, probe.view())) {
            tr.name_probe(z, t, subject, probe.view(), true,
                          "wildcard match (longest matching ancestor)");
            out.zone = z;
            out.trigger = t;
            out.key = probe;
            out.wildcard = true;
            out.rule = r;
            h.found = true;
            h.labels = k;
            return h;
        }
        tr.name_probe(z, t, subject, probe.view(), false, "wildcard");
    }
    return h;
}

/// Label-end offsets of a name key: ends[k-1] = length of the k-label prefix.
std::size_t key_label_ends(const NameKey& key, std::size_t* ends) noexcept {
    std::size_t labels = 0;
    for (std::size_t pos = 0; pos < key.size; pos += 1u + key.bytes[pos])
        ends[labels++] = pos + 1u + key.bytes[pos];
    return labels;
}

using Ends = std::array<std::size_t, kMaxNameWire / 2 + 1>;

/// RFC 4034 §6.1 canonical order of two names given as name keys (labels
/// root side first): label by label, octets compared as unsigned, a label
/// that is a prefix of the other sorts first, fewer labels first.
int canonical_compare(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept {
    std::size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        const std::size_t la = a[i], lb = b[j];
        const int c = std::memcmp(a.data() + i + 1, b.data() + j + 1, std::min(la, lb));
        if (c != 0) return c < 0 ? -1 : 1;
        if (la != lb) return la < lb ? -1 : 1;
        i += 1 + la;
        j += 1 + lb;
    }
    if (i < a.size()) return 1;
    if (j < b.size()) return -1;
    return 0;
}

/// QNAME in zone z.
bool match_qname(const RuleSource& src, std::size_t z, const Query& q, const NameKey& key,
                 const Ends& ends, std::size_t labels, Match& out, const Tracer& tr) noexcept {
    return probe_name(src, z, Trigger::Qname, q.qname, key, ends.data(), labels, out, tr).found;
}

/// NSDNAME in zone z: each NS name's best rule (rule 3), then across names
/// exact > longer wildcard > shorter, and on a tie the canonically smallest
/// NS name (rule 5).
bool match_nsdname(const RuleSource& src, std::size_t z, const ResponseFacts& f, Match& out,
                   const Tracer& tr) noexcept {
    bool found = false;
    std::size_t best_labels = 0;
    NameKey best_name;  // name key of the winning NS name (for rule 5)
    for (std::size_t i = 0; i < f.ns_names.size(); ++i) {
        NameKey key;
        if (!make_name_key(f.ns_names[i], key) || key.size == 0) continue;
        Ends ends{};
        const std::size_t labels = key_label_ends(key, ends.data());
        Match m;
        const NameHit h = probe_name(src, z, Trigger::NsDname, f.ns_names[i], key, ends.data(),
                                     labels, m, tr);
        if (!h.found) continue;
        const bool better =
            !found || h.labels > best_labels ||
            (h.labels == best_labels && canonical_compare(key.view(), best_name.view()) < 0);
        if (better) {
            found = true;
            best_labels = h.labels;
            best_name = key;
            m.ns_index = i;
            out = m;
        }
    }
    return found;
}

/// An IP trigger in zone z over `ips`: the longest prefix present (rule 6),
/// probing only the lengths the zone has; on equal length the smaller
/// address (rule 7).
bool match_ip(const RuleSource& src, std::size_t z, Trigger t, std::span<const IpAddress> ips,
              Match& out, const Tracer& tr) noexcept {
    if (ips.empty()) {
        tr.skip(z, t, t == Trigger::ClientIp ? "no client address" : "no addresses to check");
        return false;
    }
    const std::bitset<129>& lengths = src.prefix_lengths(z, t);
    bool v4_short_skipped = false;
    for (std::size_t l = 129; l-- > 0;) {
        if (!lengths.test(l)) continue;
        const auto len = static_cast<std::uint8_t>(l);
        bool found = false;
        for (const IpAddress& ip : ips) {
            if (found && !(ip < out.ip)) continue;  // cannot beat the smaller address found
            // An IPv4 address is matched as v4-mapped at IPv4 /n = /n+96; a
            // prefix of 96 bits or fewer covering it would cover every IPv4
            // address and is refused at load: nothing to probe.
            if (l <= 96 && ip.is_v4()) {
                if (!v4_short_skipped && tr.on())
                    tr.skip(z, t, "IPv4 address: IPv6-only prefix lengths (96 bits or fewer) "
                                  "not probed");
                v4_short_skipped = true;
                continue;
            }
            IpKey key;
            make_ip_key(ip, len, key);
            auto r = src.find(z, t, key.view());
            tr.ip_probe(z, t, ip, key.view(), r.has_value(),
                        r ? "longest prefix present for this address" : "prefix");
            if (!r) continue;
            found = true;
            out.zone = z;
            out.trigger = t;
            std::memcpy(out.key.bytes.data(), key.bytes.data(), kIpKeySize);
            out.key.size = kIpKeySize;
            out.wildcard = false;
            out.rule = r;
            out.prefix = prefix_from_ip_key(key.view());
            out.ip = ip;
        }
        if (found) return true;
    }
    return false;
}

Action effective_action(PolicyOverride o, Action given) noexcept {
    switch (o) {
    case PolicyOverride::Given:
    case PolicyOverride::Disabled: return given;
    case PolicyOverride::Nxdomain: return Action::Nxdomain;
    case PolicyOverride::Nodata: return Action::Nodata;
    case PolicyOverride::Passthru: return Action::Passthru;
    case PolicyOverride::Drop: return Action::Drop;
    case PolicyOverride::TcpOnly: return Action::TcpOnly;
    case PolicyOverride::Cname: return Action::LocalData;
    }
    return given;
}

bool has_response_rules(const RuleSource& src, std::size_t z) noexcept {
    for (Trigger t : {Trigger::ResponseIp, Trigger::NsDname, Trigger::NsIp})
        if (src.trigger_rule_count(z, t) != 0) return true;
    return false;
}

}  // namespace

Decision evaluate(const RuleSource& source, const Query& query, const ResponseFacts* facts,
                  TraceSink* trace) noexcept {
    const Tracer tr(trace);
    Decision d;
    NameKey qkey;
    const bool qname_ok = make_name_key(query.qname, qkey) && qkey.size != 0;
    Ends ends{};
    const std::size_t qlabels = qname_ok ? key_label_ends(qkey, ends.data()) : 0;
    const std::span<const IpAddress> client =
        query.client ? std::span<const IpAddress>(&*query.client, 1) : std::span<const IpAddress>();

    const std::size_t zones = source.zone_count();
    std::size_t stop = zones;  // the winner's zone (or the deferring one)
    for (std::size_t z = 0; z < zones && stop == zones; ++z) {
        const ZonePolicy& pol = source.policy(z);
        if (!query.rd && pol.recursive_only) {
            tr.skip(z, Trigger::Qname, "zone skipped: RD=0 and recursive-only yes");
            continue;
        }
        if (!pol.applies_to(query.client)) {
            tr.skip(z, Trigger::Qname, "zone not for this client");
            continue;
        }
        Match m;
        bool found = false;
        for (Trigger t : kTriggerOrder) {
            if (is_response_trigger(t) && facts == nullptr) {
                if (source.trigger_rule_count(z, t) != 0)
                    tr.skip(z, t, "query stage: checked after resolution");
                continue;
            }
            if (source.trigger_rule_count(z, t) == 0) {
                tr.skip(z, t, "no rules of this trigger in the zone");
                continue;
            }
            switch (t) {
            case Trigger::ClientIp: found = match_ip(source, z, t, client, m, tr); break;
            case Trigger::Qname:
                if (qname_ok)
                    found = match_qname(source, z, query, qkey, ends, qlabels, m, tr);
                else
                    tr.skip(z, t, "malformed or root query name");
                break;
            case Trigger::ResponseIp: found = match_ip(source, z, t, facts->answer_ips, m, tr); break;
            case Trigger::NsDname:
                if (facts->ns_names.empty())
                    tr.skip(z, t, "no NS names on the delegation path");
                else
                    found = match_nsdname(source, z, *facts, m, tr);
                break;
            case Trigger::NsIp: found = match_ip(source, z, t, facts->ns_ips, m, tr); break;
            }
            if (found) break;
        }
        if (!found) continue;
        if (pol.override == PolicyOverride::Disabled) {
            tr.verdict(m, TraceStep::Outcome::Disabled,
                       "zone policy disabled: logged only, evaluation continues");
            if (d.n_disabled < Decision::kMaxDisabled) d.disabled[d.n_disabled++] = m;
            ++d.disabled_total;
            continue;
        }
        if (query.do_bit && !pol.break_dnssec) {
            if (facts == nullptr) {
                tr.verdict(m, TraceStep::Outcome::Hit,
                           "deferred: DO=1 and break-dnssec no, the answer's DNSSEC status "
                           "decides (needs the response stage)");
                d.needs_response_stage = true;
                return d;
            }
            if (facts->answer_signed) {
                tr.verdict(m, TraceStep::Outcome::Ignored,
                           "zone not applied: DO=1, answer DNSSEC-signed, break-dnssec no");
                continue;
            }
        }
        static_cast<Match&>(d) = m;
        d.matched = true;
        d.policy = &pol;
        const Action written = m.rule->action();
        d.effective = pol.overrides(written) ? effective_action(pol.override, written) : written;
        stop = z;
    }
    if (facts == nullptr) {
        // Could a response-stage trigger of a zone before the winner still win?
        for (std::size_t z = 0; z < stop && !d.needs_response_stage; ++z) {
            const ZonePolicy& pol = source.policy(z);
            if ((!query.rd && pol.recursive_only) || pol.override == PolicyOverride::Disabled ||
                !pol.applies_to(query.client))
                continue;
            d.needs_response_stage = has_response_rules(source, z);
        }
    }
    return d;
}

Decision evaluate(const RuleSource& source, const Query& query) noexcept {
    return evaluate(source, query, nullptr, nullptr);
}

Decision evaluate_chain(const RuleSource& source, const Query& query,
                        std::span<const std::span<const std::uint8_t>> links,
                        const ResponseFacts* facts, TraceSink* trace) noexcept {
    if (links.empty()) return evaluate(source, query, facts, trace);
    Decision d;
    bool needs = false;
    for (std::size_t i = 0; i < links.size(); ++i) {
        Query q = query;
        q.qname = links[i];
        d = evaluate(source, q, facts, trace);
        d.link = i;
        needs = needs || d.needs_response_stage;
        if (d.matched) break;  // rule 1: the earliest link with a match wins
    }
    d.needs_response_stage = needs;
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

MemoryRuleSource::MemoryRuleSource(const std::vector<Zone>& zones,
                                   std::vector<ZonePolicy> policies) {
    zones_.reserve(zones.size());
    for (std::size_t zi = 0; zi < zones.size(); ++zi) {
        const Zone& zone = zones[zi];
        ZoneData& data = zones_.emplace_back();
        if (zi < policies.size()) data.policy = std::move(policies[zi]);
        const TriggerStats stats = compute_trigger_stats(zone.rules);
        data.counts = stats.counts;
        for (std::size_t t = 0; t < 8; ++t) data.depth[t] = stats.max_wildcard_depth[t];
        data.lengths = stats.prefix_lengths;
        auto& entries = data.entries;
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

std::size_t MemoryRuleSource::max_wildcard_depth(std::size_t zone, Trigger trigger) const noexcept {
    const auto t = static_cast<std::size_t>(trigger);
    if (zone >= zones_.size() || t >= 8) return kMaxNameWire;
    return zones_[zone].depth[t];
}

const ZonePolicy& MemoryRuleSource::policy(std::size_t zone) const noexcept {
    if (zone >= zones_.size()) return RuleSource::policy(zone);
    return zones_[zone].policy;
}

std::uint64_t MemoryRuleSource::trigger_rule_count(std::size_t zone,
                                                   Trigger trigger) const noexcept {
    const auto t = static_cast<std::size_t>(trigger);
    if (zone >= zones_.size() || t >= 8) return 0;
    return zones_[zone].counts[t];
}

const std::bitset<129>& MemoryRuleSource::prefix_lengths(std::size_t zone,
                                                         Trigger trigger) const noexcept {
    const auto t = static_cast<std::size_t>(trigger);
    if (zone >= zones_.size() || t >= 8) return RuleSource::prefix_lengths(zone, trigger);
    return zones_[zone].lengths[t];
}

std::optional<RuleView> MemoryRuleSource::find(std::size_t zone, Trigger trigger,
                                               std::span<const std::uint8_t> key) const noexcept {
    if (zone >= zones_.size()) return std::nullopt;
    const auto& entries = zones_[zone].entries;
    const auto t = static_cast<std::uint8_t>(trigger);
    auto it = std::lower_bound(entries.begin(), entries.end(), key,
                               [t](const auto& entry, std::span<const std::uint8_t> k) {
                                   return compare_entry(entry.first, t, k) < 0;
                               });
    if (it == entries.end() || compare_entry(it->first, t, key) != 0) return std::nullopt;
    return RuleView::parse(it->second);
}

}  // namespace dnsfw::rpz
