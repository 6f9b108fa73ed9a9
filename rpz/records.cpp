// dnsfw::rpz — zone records: rules in resource-record form.
//
// A policy zone is stored as rules but travels as RRs (AXFR, IXFR, UPDATE).
// rule_owner/rule_records write a rule as the RRs a master file would hold;
// zone_from_records and apply_records read RRs back through the SAME
// validation path as the master-file parser (detail::RecordLoader), so every
// record is checked and classified identically whatever its source.
//
// apply_records works owner by owner: the stored rule of each touched
// (trigger, key) is expanded into its RRs, each removal and addition is
// first canonicalised (one record -> one candidate -> its canonical RR, so
// `CNAME <self>` and `CNAME rpz-passthru.` are the same RR), applied to that
// set, and the set is rebuilt into a rule by a ZoneBuilder — stored records
// first, so a contradicting addition is the one reported and skipped.
#include "rpz/zone_builder.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <tuple>

namespace dnsfw::rpz {
namespace {

using detail::Candidate;
using detail::OwnerClass;
using detail::RecordLoader;
using detail::ZoneBuilder;

constexpr std::uint16_t kTypeNs = 2;
constexpr std::uint16_t kTypeCname = 5;
constexpr std::uint16_t kTypeSoa = 6;

/// Appends the labels of a name key, root side last (i.e. reversed into
/// owner order). Throws std::invalid_argument if the key is malformed.
void append_key_labels(Name& out, std::span<const std::uint8_t> key) {
    std::vector<std::pair<std::size_t, std::size_t>> labels;  // (offset, length)
    for (std::size_t i = 0; i < key.size();) {
        const std::size_t len = key[i];
        if (len == 0 || len > 63 || i + 1 + len > key.size())
            throw std::invalid_argument("malformed name key");
        labels.emplace_back(i + 1, len);
        i += 1 + len;
    }
    for (auto it = labels.rbegin(); it != labels.rend(); ++it) {
        out.push_back(static_cast<std::uint8_t>(it->second));
        out.insert(out.end(), key.begin() + static_cast<long>(it->first),
                   key.begin() + static_cast<long>(it->first + it->second));
    }
}

void append_label(Name& out, std::string_view label) {
    out.push_back(static_cast<std::uint8_t>(label.size()));
    out.insert(out.end(), label.begin(), label.end());
}

/// The CNAME target of a policy action (absolute wire name).
Name action_target(Action a) {
    Name out;
    switch (a) {
    case Action::Nxdomain: break;                               // .
    case Action::Nodata: append_label(out, "*"); break;         // *.
    case Action::Passthru: append_label(out, "rpz-passthru"); break;
    case Action::Drop: append_label(out, "rpz-drop"); break;
    case Action::TcpOnly: append_label(out, "rpz-tcp-only"); break;
    case Action::LocalData: throw std::invalid_argument("local data has no action target");
    }
    out.push_back(0);
    return out;
}

bool rule_key_less(const Rule& a, const Rule& b) {
    if (a.trigger != b.trigger) return a.trigger < b.trigger;
    return std::lexicographical_compare(a.key.begin(), a.key.end(), b.key.begin(), b.key.end());
}

/// `rules` if sorted by (trigger, key), else a sorted copy in `storage`.
std::span<const Rule> sorted_view(std::span<const Rule> rules, std::vector<Rule>& storage) {
    if (std::is_sorted(rules.begin(), rules.end(), rule_key_less)) return rules;
    storage.assign(rules.begin(), rules.end());
    std::stable_sort(storage.begin(), storage.end(), rule_key_less);
    return storage;
}

/// RR-level difference of one owner's records: what `before` has that
/// `after` lacks goes to `removed`, the reverse to `added`. A TTL change
/// is a removal plus an addition (as IXFR carries it).
void diff_rrs(const std::vector<ZoneRecord>& before, const std::vector<ZoneRecord>& after,
              std::vector<ZoneRecord>& removed, std::vector<ZoneRecord>& added) {
    for (const ZoneRecord& r : before)
        if (std::find(after.begin(), after.end(), r) == after.end()) removed.push_back(r);
    for (const ZoneRecord& r : after)
        if (std::find(before.begin(), before.end(), r) == before.end()) added.push_back(r);
}

/// Records the change of one owner from `before` to `after` (either may be
/// absent) in `delta`.
void record_change(const Name& apex, const RuleKey& key, const std::optional<Rule>& before,
                   const std::optional<Rule>& after, RuleDelta& delta) {
    if (!before && !after) return;
    if (before && after && *before == *after) return;
    if (!after) {
        delta.removed.push_back(key);
        auto rrs = rule_records(apex, *before);
        delta.removed_records.insert(delta.removed_records.end(), rrs.begin(), rrs.end());
        return;
    }
    delta.upserted.push_back(*after);
    if (!before) {
        auto rrs = rule_records(apex, *after);
        delta.added_records.insert(delta.added_records.end(), rrs.begin(), rrs.end());
        return;
    }
    diff_rrs(rule_records(apex, *before), rule_records(apex, *after), delta.removed_records,
             delta.added_records);
}

/// One RR of an owner while apply_records edits it: its canonical form and
/// the single-record candidate it loads as.
struct Item {
    ZoneRecord rr;
    Rule candidate;  // trigger/key default; ZoneBuilder::add sets them
    std::size_t line = 0;
};

/// The stored rule split into the candidates the parser would have made
/// from its records, paired with those records.
std::vector<Item> split_rule(const Name& apex, const Rule& rule) {
    std::vector<ZoneRecord> rrs = rule_records(apex, rule);
    std::vector<Item> out;
    out.reserve(rrs.size());
    for (std::size_t i = 0; i < rrs.size(); ++i) {
        Item it;
        it.rr = std::move(rrs[i]);
        it.candidate.action = rule.action;
        if (rule.action == Action::LocalData) {
            it.candidate.flags = rule.flags;
            it.candidate.ttl = rule.records[i].ttl;
            it.candidate.records.push_back(rule.records[i]);
        } else {
            it.candidate.ttl = rule.ttl;
        }
        out.push_back(std::move(it));
    }
    return out;
}

Name lower(std::span<const std::uint8_t> wire) {
    Name out(wire.begin(), wire.end());
    for (std::size_t i = 0; i < out.size() && out[i] != 0; i += 1u + out[i])
        for (std::size_t j = i + 1; j <= i + out[i] && j < out.size(); ++j)
            if (out[j] >= 'A' && out[j] <= 'Z') out[j] = static_cast<std::uint8_t>(out[j] + 32);
    return out;
}

}  // namespace

Name rule_owner(const Name& apex_in, Trigger trigger, std::span<const std::uint8_t> key) {
    const Name apex = detail::checked_zone_name(apex_in);
    Name out;
    if (is_ip_trigger(trigger)) {
        auto prefix = prefix_from_ip_key(key);
        if (!prefix) throw std::invalid_argument("malformed IP rule key");
        const std::string labels = rpz_ip_labels(*prefix);
        std::size_t start = 0;
        while (start <= labels.size()) {
            std::size_t dot = labels.find('.', start);
            if (dot == std::string::npos) dot = labels.size();
            append_label(out, std::string_view(labels).substr(start, dot - start));
            start = dot + 1;
        }
        append_label(out, trigger_label(trigger));
    } else if (trigger == Trigger::Qname || trigger == Trigger::NsDname) {
        if (key.empty()) throw std::invalid_argument("empty name key (the apex is not a rule)");
        append_key_labels(out, key);
        if (trigger == Trigger::NsDname) append_label(out, trigger_label(trigger));
    } else {
        throw std::invalid_argument("unknown trigger");
    }
    out.insert(out.end(), apex.begin(), apex.end());
    if (out.size() > kMaxNameWire)
        throw std::invalid_argument("owner name of rule " + rule_key_to_text(trigger, key) +
                                    " would be longer than 255 octets");
    return out;
}

std::optional<RuleKey> classify_owner(const Name& apex_in, std::span<const std::uint8_t> owner,
                                      std::string* why) {
    auto fail = [&](std::string reason) -> std::optional<RuleKey> {
        if (why != nullptr) *why = std::move(reason);
        return std::nullopt;
    };
    if (apex_in.empty() || name_wire_length(apex_in) != apex_in.size())
        return fail("malformed zone name");
    if (owner.empty() || name_wire_length(owner) != owner.size())
        return fail("malformed owner name");
    const Name apex = detail::checked_zone_name(apex_in);
    const Name low = lower(owner);
    OwnerClass c = detail::classify_owner_name(apex, low, 0);
    if (c.kind == OwnerClass::Kind::Apex) return fail("owner is the zone apex");
    if (c.kind == OwnerClass::Kind::Problem) return fail(std::move(c.reason));
    return RuleKey{c.trigger, std::move(c.key)};
}

std::vector<ZoneRecord> rule_records(const Name& apex, const Rule& rule) {
    const Name owner = rule_owner(apex, rule.trigger, rule.key);
    std::vector<ZoneRecord> out;
    if (rule.action != Action::LocalData) {
        out.push_back(ZoneRecord{owner, kTypeCname, rule.ttl, action_target(rule.action)});
        return out;
    }
    out.reserve(rule.records.size());
    for (const LocalRecord& r : rule.records) {
        ZoneRecord rr{owner, r.type, r.ttl, {}};
        if (r.type == kTypeCname && (rule.flags & kCnameWildcardTarget) != 0) {
            rr.rdata = {1, '*'};  // written `*.suffix`
            rr.rdata.insert(rr.rdata.end(), r.rdata.begin(), r.rdata.end());
        } else {
            rr.rdata = r.rdata;
        }
        out.push_back(std::move(rr));
    }
    return out;
}

Zone zone_from_records(const Name& apex, std::span<const ZoneRecord> records,
                       const std::string& label) {
    Zone zone;
    zone.name = detail::checked_zone_name(apex);
    ZoneBuilder builder(zone, label);
    RecordLoader loader(builder, zone);
    for (std::size_t i = 0; i < records.size(); ++i) loader.load(records[i], i + 1, false);
    builder.finish();
    return zone;
}

RuleDelta diff_rules(const Name& apex, std::span<const Rule> old_in,
                     std::span<const Rule> new_in) {
    std::vector<Rule> old_sorted;
    std::vector<Rule> new_sorted;
    const auto olds = sorted_view(old_in, old_sorted);
    const auto news = sorted_view(new_in, new_sorted);
    RuleDelta delta;
    std::size_t i = 0;
    std::size_t j = 0;
    while (i < olds.size() || j < news.size()) {
        if (j == news.size() || (i < olds.size() && rule_key_less(olds[i], news[j]))) {
            record_change(apex, RuleKey{olds[i].trigger, olds[i].key}, olds[i], std::nullopt,
                          delta);
            ++i;
        } else if (i == olds.size() || rule_key_less(news[j], olds[i])) {
            record_change(apex, RuleKey{news[j].trigger, news[j].key}, std::nullopt, news[j],
                          delta);
            ++j;
        } else {
            if (!(olds[i] == news[j]))
                record_change(apex, RuleKey{news[j].trigger, news[j].key}, olds[i], news[j],
                              delta);
            ++i;
            ++j;
        }
    }
    return delta;
}

RuleDelta apply_records(const Name& apex_in, std::span<const ZoneRecord> removed,
                        std::span<const ZoneRecord> added,
                        const std::function<std::optional<Rule>(const RuleKey&)>& current,
                        const std::string& label, std::vector<Diagnostic>& diagnostics) {
    const Name apex = detail::checked_zone_name(apex_in);

    // Per-record validation reports into `checked`; the rebuild of each
    // owner's RRset (conflicts) into `rebuilt`.
    Zone checked;
    checked.name = apex;
    ZoneBuilder check_builder(checked, label);
    RecordLoader loader(check_builder, checked);

    struct Owner {
        std::optional<Rule> before;
        std::vector<Item> items;
        std::string owner_text;
        bool changed = false;
    };
    std::map<RuleKey, Owner> owners;  // (trigger, key) order = the store's order

    auto touch = [&](const RuleKey& key) -> Owner& {
        auto [it, inserted] = owners.try_emplace(key);
        if (inserted) {
            Owner& o = it->second;
            o.before = current(key);
            if (o.before) {
                o.before->trigger = key.trigger;
                o.before->key = key.key;
                o.items = split_rule(apex, *o.before);
            }
        }
        return it->second;
    };
    // One input RR -> its key and canonical item; nullopt if it makes no
    // rule (reported by the loader) or is apex SOA/NS (the caller's).
    auto canonical = [&](const ZoneRecord& rr,
                         std::size_t line) -> std::optional<std::pair<RuleKey, Item>> {
        if ((rr.type == kTypeSoa || rr.type == kTypeNs) && lower(rr.owner) == apex)
            return std::nullopt;
        std::optional<Candidate> c = loader.candidate(rr, line, false);
        if (!c) return std::nullopt;
        Rule r = c->rule;
        r.trigger = c->trigger;
        r.key = c->key;
        Item item;
        item.rr = std::move(rule_records(apex, r).front());
        item.candidate = std::move(c->rule);
        item.line = line;
        return std::make_pair(RuleKey{c->trigger, std::move(c->key)}, std::move(item));
    };

    for (std::size_t i = 0; i < removed.size(); ++i) {
        const std::size_t line = i + 1;
        auto x = canonical(removed[i], line);
        if (!x) continue;
        Owner& o = touch(x->first);
        auto it = std::find_if(o.items.begin(), o.items.end(),
                               [&](const Item& e) { return e.rr.same_rr(x->second.rr); });
        if (it == o.items.end()) {
            check_builder.warning(line, "cannot delete " + detail::type_name(x->second.rr.type) +
                                            " record at " + name_to_text(x->second.rr.owner) +
                                            ": not in the zone; ignored");
            continue;
        }
        o.items.erase(it);
        o.changed = true;
    }
    for (std::size_t j = 0; j < added.size(); ++j) {
        const std::size_t line = removed.size() + j + 1;
        auto x = canonical(added[j], line);
        if (!x) continue;
        Owner& o = touch(x->first);
        o.owner_text = name_to_text(x->second.rr.owner);
        auto it = std::find_if(o.items.begin(), o.items.end(),
                               [&](const Item& e) { return e.rr.same_rr(x->second.rr); });
        const std::uint16_t type = x->second.rr.type;
        const std::uint32_t ttl = x->second.rr.ttl;
        if (it != o.items.end())
            *it = std::move(x->second);  // the same RR again: its new TTL applies
        else
            o.items.push_back(std::move(x->second));
        // RFC 2181 5.2: one TTL per RRset. As BIND does, the RRset the
        // addition joins takes the added RR's TTL.
        for (Item& e : o.items) {
            if (e.rr.type != type) continue;
            e.rr.ttl = ttl;
            e.candidate.ttl = ttl;
            for (LocalRecord& rec : e.candidate.records) rec.ttl = ttl;
        }
        o.changed = true;
    }

    // Rebuild every changed owner as the parser would load its RRset.
    Zone rebuilt;
    rebuilt.name = apex;
    ZoneBuilder rebuild_builder(rebuilt, label);
    for (auto& [key, o] : owners) {
        if (!o.changed) continue;
        if (o.owner_text.empty()) o.owner_text = name_to_text(rule_owner(apex, key.trigger, key.key));
        for (Item& item : o.items)
            rebuild_builder.add(key.trigger, key.key, std::move(item.candidate), item.line,
                                o.owner_text);
    }
    check_builder.finish();
    rebuild_builder.finish();

    RuleDelta delta;
    auto next = rebuilt.rules.begin();
    for (auto& [key, o] : owners) {
        if (!o.changed) continue;
        std::optional<Rule> after;
        // Both walks are in (trigger, key) order; rebuilt has a subset of the keys.
        while (next != rebuilt.rules.end() &&
               std::tie(next->trigger, next->key) < std::tie(key.trigger, key.key))
            ++next;
        if (next != rebuilt.rules.end() && next->trigger == key.trigger && next->key == key.key)
            after = std::move(*next++);
        record_change(apex, key, o.before, after, delta);
    }

    std::vector<Diagnostic> diags = std::move(checked.diagnostics);
    diags.insert(diags.end(), std::make_move_iterator(rebuilt.diagnostics.begin()),
                 std::make_move_iterator(rebuilt.diagnostics.end()));
    std::stable_sort(diags.begin(), diags.end(),
                     [](const Diagnostic& a, const Diagnostic& b) { return a.line < b.line; });
    diagnostics.insert(diagnostics.end(), std::make_move_iterator(diags.begin()),
                       std::make_move_iterator(diags.end()));
    return delta;
}

}  // namespace dnsfw::rpz
