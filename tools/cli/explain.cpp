// `dnsfw explain`: evaluate one query against the store exactly as the
// resolver module does (rpz::evaluate over a store::Snapshot, with a
// TraceSink attached) and print every trigger checked, in precedence order,
// and why the winner won.
#include "common.hpp"

#include "rpz/rpz.hpp"
#include "store/store.hpp"

#include <ldns/ldns.h>

#include <algorithm>
#include <array>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace dnsfw::cli {

const CommandSpec& explain_spec();
int explain(const Args& args);

namespace {

std::uint16_t parse_qtype(const std::string& text) {
    ldns_rr_type t = ldns_get_rr_type_by_name(text.c_str());
    if (t == 0) throw UsageError("--type: unknown RR type '" + text + "'");
    return static_cast<std::uint16_t>(t);
}

rpz::IpAddress parse_ip(const std::string& option, const std::string& text) {
    auto ip = rpz::ip_from_text(text);
    if (!ip) throw UsageError("--" + option + ": '" + text + "' is not an IP address");
    return *ip;
}

const char* outcome_text(rpz::TraceStep::Outcome o) {
    switch (o) {
    case rpz::TraceStep::Outcome::Hit: return "HIT";
    case rpz::TraceStep::Outcome::Miss: return "miss";
    case rpz::TraceStep::Outcome::Skipped: return "skipped";
    case rpz::TraceStep::Outcome::Disabled: return "HIT (disabled zone)";
    case rpz::TraceStep::Outcome::Ignored: return "HIT (not applied)";
    }
    return "?";
}

/// Collects the evaluator's steps as table rows; render() lays them out
/// with column widths computed from the rows, so a long probe (an IPv6
/// prefix with its address) never runs into the next column.
class Printer final : public rpz::TraceSink {
public:
    explicit Printer(const store::Snapshot& snap) : snap_(snap) {}
    void step(const rpz::TraceStep& s) noexcept override {
        try {
            Row row;
            row.cells[0] = std::to_string(s.zone + 1);
            row.cells[1] = snap_.zone_info(s.zone).name;
            row.cells[2] = std::string(rpz::to_string(s.trigger));
            std::string probe = "-";
            if (!s.key.empty()) probe = rpz::rule_key_to_text(s.trigger, s.key);
            if (s.has_ip && s.outcome != rpz::TraceStep::Outcome::Skipped)
                probe += " (for " + rpz::to_string(s.ip) + ")";
            if (!s.subject.empty() && s.trigger == rpz::Trigger::NsDname)
                probe += " (NS " + rpz::name_to_text(s.subject) + ")";
            row.cells[3] = std::move(probe);
            row.cells[4] = outcome_text(s.outcome);
            row.cells[5] = s.why;
            rows_.push_back(std::move(row));
            if (s.outcome == rpz::TraceStep::Outcome::Ignored) ++ignored;
        } catch (...) {
            // Out of memory while explaining: drop the row.
        }
    }
    /// The rows as lines: "  " then each column padded to its widest cell
    /// plus two spaces (the last column unpadded).
    std::vector<std::string> render() const {
        std::array<std::size_t, kColumns> width{};
        for (const Row& r : rows_)
            for (std::size_t c = 0; c + 1 < kColumns; ++c)
                width[c] = std::max(width[c], r.cells[c].size());
        std::vector<std::string> out;
        out.reserve(rows_.size());
        for (const Row& r : rows_) {
            std::string line = "  ";
            for (std::size_t c = 0; c + 1 < kColumns; ++c) {
                line += r.cells[c];
                line.append(width[c] - r.cells[c].size() + 2, ' ');
            }
            line += r.cells[kColumns - 1];
            while (!line.empty() && line.back() == ' ') line.pop_back();
            out.push_back(std::move(line));
        }
        return out;
    }
    bool empty() const noexcept { return rows_.empty(); }
    std::size_t ignored = 0;  ///< matches not applied (break-dnssec)

private:
    static constexpr std::size_t kColumns = 6;  ///< zone#, zone, trigger, probe, outcome, why
    struct Row {
        std::array<std::string, kColumns> cells;
    };
    std::vector<Row> rows_;
    const store::Snapshot& snap_;
};

std::string describe_match(const store::Snapshot& snap, const rpz::Match& m) {
    const std::string zone = snap.zone_info(m.zone).name;
    return "zone " + std::to_string(m.zone + 1) + " " + zone + " " +
           std::string(rpz::to_string(m.trigger)) + " rule " +
           rpz::rule_key_to_text(m.trigger, m.key.view()) + " (owner " +
           rpz::rule_owner_text(m.trigger, m.key.view()) + "." + zone + ")";
}

/// One zone of a rule source seen on its own, with some rules hidden: lets
/// explain ask the evaluator itself what else would have matched at lower
/// precedence (so the "why" agrees with the evaluator by construction).
class ZoneView final : public rpz::RuleSource {
public:
    ZoneView(const rpz::RuleSource& src, std::size_t zone) : src_(src), zone_(zone) {}
    /// Hides every rule of trigger `t`.
    void hide_trigger(rpz::Trigger t) { hidden_triggers_.push_back(t); }
    /// Hides the one rule (t, key).
    void hide_rule(rpz::Trigger t, std::span<const std::uint8_t> key) {
        hidden_rules_.emplace_back(t, std::vector<std::uint8_t>(key.begin(), key.end()));
    }
    std::size_t zone_count() const noexcept override { return 1; }
    std::size_t max_wildcard_depth(std::size_t, rpz::Trigger t) const noexcept override {
        return src_.max_wildcard_depth(zone_, t);
    }
    std::optional<rpz::RuleView> find(std::size_t, rpz::Trigger t,
                                      std::span<const std::uint8_t> key) const noexcept override {
        if (trigger_hidden(t)) return std::nullopt;
        for (const auto& [ht, hk] : hidden_rules_)
            if (ht == t && std::equal(hk.begin(), hk.end(), key.begin(), key.end()))
                return std::nullopt;
        return src_.find(zone_, t, key);
    }
    const rpz::ZonePolicy& policy(std::size_t) const noexcept override {
        return src_.policy(zone_);
    }
    std::uint64_t trigger_rule_count(std::size_t, rpz::Trigger t) const noexcept override {
        return trigger_hidden(t) ? 0 : src_.trigger_rule_count(zone_, t);
    }
    const std::bitset<129>& prefix_lengths(std::size_t, rpz::Trigger t) const noexcept override {
        return src_.prefix_lengths(zone_, t);
    }

private:
    bool trigger_hidden(rpz::Trigger t) const noexcept {
        return std::find(hidden_triggers_.begin(), hidden_triggers_.end(), t) !=
               hidden_triggers_.end();
    }
    const rpz::RuleSource& src_;
    std::size_t zone_;
    std::vector<rpz::Trigger> hidden_triggers_;
    std::vector<std::pair<rpz::Trigger, std::vector<std::uint8_t>>> hidden_rules_;
};

/// Number of labels of a name key (a wildcard's "*" included).
std::size_t key_labels(std::span<const std::uint8_t> key) {
    std::size_t n = 0;
    for (std::size_t pos = 0; pos < key.size(); pos += 1u + key[pos]) ++n;
    return n;
}

/// A lower-precedence match and the precedence rule it lost by.
struct Loser {
    rpz::Decision d;
    std::string why;
};

/// Every other rule that matched this query at lower precedence than the
/// winner `w` (same stage and facts): later zones (rule 2), later triggers
/// of the winner's zone (rule 4), and less specific rules of the winning
/// trigger (rules 3, 5, 6, 7).
std::vector<Loser> lower_precedence(const store::Snapshot& snap, const rpz::Query& q,
                                    const rpz::ResponseFacts* facts, const rpz::Decision& w) {
    std::vector<Loser> out;
    constexpr std::size_t kMaxPerTrigger = 8;
    // Less specific rules of the same trigger in the winner's zone.
    {
        ZoneView view(snap, w.zone);
        for (rpz::Trigger t : rpz::kTriggerOrder)
            if (t != w.trigger) view.hide_trigger(t);
        view.hide_rule(w.trigger, w.key.view());
        for (std::size_t i = 0; i < kMaxPerTrigger; ++i) {
            rpz::Decision d = rpz::evaluate(view, q, facts, nullptr);
            if (!d.matched) break;
            d.zone = w.zone;
            std::string why;
            if (rpz::is_ip_trigger(w.trigger) && d.prefix && w.prefix) {
                why = d.prefix->length < w.prefix->length
                          ? "longest prefix (rule 6): " + rpz::to_string(*w.prefix) +
                                " is longer than " + rpz::to_string(*d.prefix)
                          : "smaller address (rule 7): equal prefix length, " +
                                rpz::to_string(w.ip) + " < " + rpz::to_string(d.ip);
            } else if (!w.wildcard && d.wildcard) {
                why = "exact before wildcard (rule 3)";
            } else if (w.trigger == rpz::Trigger::NsDname && w.wildcard == d.wildcard &&
                       w.ns_index != d.ns_index && facts != nullptr) {
                why = d.wildcard && key_labels(d.key.view()) < key_labels(w.key.view())
                          ? "more labels before fewer (rule 3)"
                          : "NS names (rule 5): " +
                                rpz::name_to_text(facts->ns_names[w.ns_index]) +
                                " is canonically smaller than " +
                                rpz::name_to_text(facts->ns_names[d.ns_index]);
            } else {
                why = "more labels before fewer (rule 3): the wildcard of a longer ancestor wins";
            }
            if (w.trigger == rpz::Trigger::NsDname && facts != nullptr && d.ns_index < facts->ns_names.size())
                why += " [NS " + rpz::name_to_text(facts->ns_names[d.ns_index]) + "]";
            out.push_back({d, why});
            view.hide_rule(d.trigger, d.key.view());
        }
    }
    // Later triggers of the winner's zone.
    {
        ZoneView view(snap, w.zone);
        for (rpz::Trigger t : rpz::kTriggerOrder) {
            view.hide_trigger(t);
            if (t == w.trigger) break;
        }
        rpz::Decision d = rpz::evaluate(view, q, facts, nullptr);
        if (d.matched) {
            d.zone = w.zone;
            out.push_back({d, "trigger order (rule 4): " + std::string(rpz::to_string(w.trigger)) +
                                  " comes before " + std::string(rpz::to_string(d.trigger))});
        }
    }
    // Later zones.
    for (std::size_t z = w.zone + 1; z < snap.zone_count(); ++z) {
        ZoneView view(snap, z);
        rpz::Decision d = rpz::evaluate(view, q, facts, nullptr);
        if (!d.matched) continue;
        d.zone = z;
        out.push_back({d, "zone order (rule 2): zone " + std::to_string(w.zone + 1) + " " +
                              snap.zone_info(w.zone).name + " comes first"});
    }
    return out;
}

}  // namespace

const CommandSpec& explain_spec() {
    static const CommandSpec spec{
        "dnsfw explain",
        "show how the policy decision for one query is reached",
        "NAME",
        "Evaluate one query against the store's policy zones as the resolver module\n"
        "does and print every trigger checked, in precedence order (zone, trigger,\n"
        "key or prefix probed, hit / miss / skipped and why), then the decision and\n"
        "the precedence rule that made the winner win. Without --answer-ip, --ns,\n"
        "--ns-ip, --signed or --response this is the query stage (Client-IP and QNAME\n"
        "only); with them, the response stage (every trigger).",
        {
            {"store", "DIR", "store directory", false, true},
            {"zones", "A,B", "zones to check, in precedence order (default: every zone)"},
            {"type", "TYPE", "query type (default A)"},
            {"client", "IP", "client address (Client-IP triggers)"},
            {"answer-ip", "IP", "an A/AAAA address of the answer (Response-IP)", true},
            {"ns", "NAME", "an NS name on the delegation path (NSDNAME)", true},
            {"ns-ip", "IP", "a name-server address (NSIP)", true},
            {"rd0", "", "the query has RD=0 (recursive-only zones are skipped)"},
            {"do", "", "the query has DO=1"},
            {"signed", "", "the answer is DNSSEC-signed (with --do: break-dnssec)"},
            {"response", "", "evaluate the response stage even without facts"},
        },
        1,
        1,
        "example:\n"
        "  dnsfw explain --store var/store www.bad.example --client 192.0.2.7 \\\n"
        "      --answer-ip 198.51.100.1 --ns ns1.bad-host.example\n"
        "\nexit: 0 whether or not the name matched, 1 store error, 2 bad command line.\n",
    };
    return spec;
}

int explain(const Args& args) {
    auto qname = rpz::name_from_text(args.positional().at(0));
    if (!qname) throw UsageError("'" + args.positional().at(0) + "' is not a valid domain name");
    rpz::Query q;
    q.qname = *qname;
    q.qtype = args.value("type") ? parse_qtype(*args.value("type")) : 1;
    if (auto c = args.value("client")) q.client = parse_ip("client", *c);
    q.rd = !args.flag("rd0");
    q.do_bit = args.flag("do");

    std::vector<rpz::IpAddress> answer, ns_ips;
    for (const auto& s : args.values("answer-ip")) answer.push_back(parse_ip("answer-ip", s));
    for (const auto& s : args.values("ns-ip")) ns_ips.push_back(parse_ip("ns-ip", s));
    std::vector<rpz::Name> ns_names;
    for (const auto& s : args.values("ns")) {
        auto n = rpz::name_from_text(s);
        if (!n) throw UsageError("--ns: '" + s + "' is not a valid domain name");
        ns_names.push_back(std::move(*n));
    }
    std::vector<std::span<const std::uint8_t>> ns_views(ns_names.begin(), ns_names.end());
    rpz::ResponseFacts facts;
    facts.answer_ips = answer;
    facts.ns_names = ns_views;
    facts.ns_ips = ns_ips;
    facts.answer_signed = args.flag("signed");
    const bool response = !answer.empty() || !ns_ips.empty() || !ns_names.empty() ||
                          args.flag("signed") || args.flag("response");

    std::vector<std::string> zones;
    if (auto z = args.value("zones")) zones = split_list(*z);
    auto st = open_existing_store(*args.value("store"), false);
    std::unique_ptr<store::Snapshot> snap;
    try {
        snap = st.snapshot(zones);
    } catch (const store::StoreError& e) {
        throw CommandError(std::string("store: ") + e.what());
    }
    for (const auto& missing : snap->missing_zones())
        std::cerr << "dnsfw explain: warning: zone " << missing << " is not in store "
                  << st.path() << "; skipped\n";

    Printer printer(*snap);
    const rpz::Decision d = rpz::evaluate(*snap, q, response ? &facts : nullptr, &printer);

    std::cout << "query " << rpz::name_to_text(*qname) << " type " << args.value("type").value_or("A")
              << ", client " << (q.client ? rpz::to_string(*q.client) : "-") << ", RD="
              << (q.rd ? 1 : 0) << " DO=" << (q.do_bit ? 1 : 0) << "; "
              << (response ? "response stage" : "query stage (Client-IP and QNAME only)") << "\n";
    std::cout << "zones in precedence order:\n";
    for (std::size_t i = 0; i < snap->zone_count(); ++i) {
        const auto& z = snap->zone_info(i);
        std::cout << "  " << (i + 1) << ". " << z.name << " (" << z.rule_count << " rules, policy "
                  << rpz::to_string(z.policy.override)
                  << (z.policy.recursive_only ? "" : ", recursive-only no")
                  << (z.policy.break_dnssec ? ", break-dnssec yes" : "")
                  << (z.policy.override_local_data ? "" : ", override-local-data no");
        if (!z.policy.clients.empty()) {
            std::cout << ", clients ";
            for (std::size_t c = 0; c < z.policy.clients.size(); ++c)
                std::cout << (c ? "," : "") << rpz::to_string(z.policy.clients[c]);
            std::cout << (z.policy.applies_to(q.client) ? "" : " (not this client)");
        }
        std::cout << ")\n";
    }
    std::cout << "checks:\n";
    for (const auto& row : printer.render()) std::cout << row << "\n";
    if (printer.empty()) std::cout << "  (nothing to check)\n";

    for (std::size_t i = 0; i < d.n_disabled; ++i)
        std::cout << "disabled zone match (logged, not applied): " << describe_match(*snap, d.disabled[i])
                  << " would be " << rpz::to_string(d.disabled[i].rule->action()) << "\n";

    if (!d.matched) {
        std::cout << "decision: no match";
        if (printer.ignored != 0)
            std::cout << " applied — " << printer.ignored
                      << " matching rule(s) not applied: DO=1 and a DNSSEC-signed answer in "
                         "zone(s) with break-dnssec no (HIT (not applied) above)";
        else if (d.n_disabled != 0)
            std::cout << " applied — only DISABLED zones matched (logged, not applied)";
        if (d.needs_response_stage)
            std::cout << " yet — the resolver resolves first and checks again with the answer "
                         "(a response-stage trigger of an earlier zone, or a DO=1 match waiting "
                         "for the answer's DNSSEC status)";
        std::cout << "\n";
        return kExitOk;
    }
    std::cout << "decision: " << rpz::to_string(d.action());
    if (d.action() != d.rule_action())
        std::cout << " (rule says " << rpz::to_string(d.rule_action()) << "; zone policy "
                  << rpz::to_string(d.policy->override) << " overrides it)";
    else if (!d.overridden() && d.policy->override != rpz::PolicyOverride::Given &&
             d.policy->override != rpz::PolicyOverride::Disabled)
        std::cout << " (the rule's own local data: zone policy "
                  << rpz::to_string(d.policy->override)
                  << " does not apply, override-local-data no)";
    if (d.cname_override())
        std::cout << " CNAME " << (d.policy->override_cname_wildcard ? "*." : "")
                  << rpz::name_to_text(d.policy->override_cname);
    std::cout << " — " << describe_match(*snap, d) << "\n";
    std::cout << "why:\n";
    std::cout << "  - zone order (rule 2): zone " << (d.zone + 1)
              << (d.zone == 0 ? " is the first zone"
                              : " is the first zone with an applicable match (earlier zones: no "
                                "match, disabled, or skipped as shown above)")
              << "\n";
    std::cout << "  - trigger order (rule 4): " << rpz::to_string(d.trigger)
              << " is the first trigger of that zone with a match (order: client-ip, qname, "
                 "response-ip, nsdname, nsip)\n";
    if (d.trigger == rpz::Trigger::Qname || d.trigger == rpz::Trigger::NsDname)
        std::cout << "  - specificity (rule 3): "
                  << (d.wildcard ? "no exact rule; the wildcard of the longest matching ancestor"
                                 : "an exact rule (beats every wildcard)")
                  << "\n";
    const std::vector<Loser> losers = lower_precedence(*snap, q, response ? &facts : nullptr, d);
    const auto lost_by = [&](const char* rule) {
        return std::any_of(losers.begin(), losers.end(), [&](const Loser& l) {
            return l.why.find(rule) != std::string::npos;
        });
    };
    if (d.trigger == rpz::Trigger::NsDname && d.ns_index < ns_names.size())
        std::cout << "  - NS names (rule 5): the rule of NS " << rpz::name_to_text(ns_names[d.ns_index])
                  << (lost_by("rule 5") ? " wins: of the NS names with equally specific rules it is "
                                          "the smallest in canonical order"
                                        : " is the most specific of the NS names' rules")
                  << "\n";
    if (d.prefix) {
        std::cout << "  - longest prefix (rule 6): " << rpz::to_string(*d.prefix)
                  << " is the longest prefix with a rule covering " << rpz::to_string(d.ip)
                  << (lost_by("rule 6") ? " (shorter prefixes also match, see below)" : "") << "\n";
        if (lost_by("rule 7"))
            std::cout << "  - smaller address (rule 7): other addresses have rules of the same "
                         "prefix length; the smallest address, "
                      << rpz::to_string(d.ip) << ", decides\n";
    }
    if (d.action() == rpz::Action::Passthru)
        std::cout << "  - passthru: the query is answered normally and no later rule applies\n";
    if (!losers.empty()) {
        std::cout << "also matching, not applied (lower precedence):\n";
        for (const Loser& l : losers)
            std::cout << "  - " << describe_match(*snap, l.d) << ": "
                      << rpz::to_string(l.d.action()) << " — lost by " << l.why << "\n";
    }
    if (d.needs_response_stage)
        std::cout << "note: an earlier zone has Response-IP/NSDNAME/NSIP rules: the resolver "
                     "resolves first and checks again with the answer before applying this\n";
    return kExitOk;
}

}  // namespace dnsfw::cli
