// `dnsfw explain`: evaluate one query against the store exactly as the
// resolver module does (rpz::evaluate over a store::Snapshot, with a
// TraceSink attached) and print every trigger checked, in precedence order,
// and why the winner won.
#include "common.hpp"

#include "rpz/rpz.hpp"
#include "store/store.hpp"

#include <ldns/ldns.h>

#include <iomanip>
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

/// Collects the evaluator's steps as printable rows.
class Printer final : public rpz::TraceSink {
public:
    explicit Printer(const store::Snapshot& snap) : snap_(snap) {}
    void step(const rpz::TraceStep& s) noexcept override {
        try {
            std::ostringstream row;
            row << "  " << std::left << std::setw(4) << (s.zone + 1) << std::setw(name_w())
                << snap_.zone_info(s.zone).name << std::setw(13) << rpz::to_string(s.trigger);
            std::string probe = "-";
            if (!s.key.empty()) probe = rpz::rule_key_to_text(s.trigger, s.key);
            if (s.has_ip && s.outcome != rpz::TraceStep::Outcome::Skipped)
                probe += " (for " + rpz::to_string(s.ip) + ")";
            if (!s.subject.empty() && s.trigger == rpz::Trigger::NsDname)
                probe += " (NS " + rpz::name_to_text(s.subject) + ")";
            row << std::setw(44) << probe << std::setw(20) << outcome_text(s.outcome) << s.why;
            rows.push_back(row.str());
        } catch (...) {
            // Out of memory while explaining: drop the row.
        }
    }
    std::vector<std::string> rows;

private:
    int name_w() const {
        std::size_t w = 8;
        for (std::size_t i = 0; i < snap_.zone_count(); ++i)
            w = std::max(w, snap_.zone_info(i).name.size() + 2);
        return static_cast<int>(w);
    }
    const store::Snapshot& snap_;
};

std::string describe_match(const store::Snapshot& snap, const rpz::Match& m) {
    const std::string zone = snap.zone_info(m.zone).name;
    return "zone " + std::to_string(m.zone + 1) + " " + zone + " " +
           std::string(rpz::to_string(m.trigger)) + " rule " +
           rpz::rule_key_to_text(m.trigger, m.key.view()) + " (owner " +
           rpz::rule_owner_text(m.trigger, m.key.view()) + "." + zone + ")";
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
                  << (z.policy.break_dnssec ? ", break-dnssec yes" : "") << ")\n";
    }
    std::cout << "checks:\n";
    for (const auto& row : printer.rows) std::cout << row << "\n";
    if (printer.rows.empty()) std::cout << "  (nothing to check)\n";

    for (std::size_t i = 0; i < d.n_disabled; ++i)
        std::cout << "disabled zone match (logged, not applied): " << describe_match(*snap, d.disabled[i])
                  << " would be " << rpz::to_string(d.disabled[i].rule->action()) << "\n";

    if (!d.matched) {
        std::cout << "decision: no match";
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
    if (d.trigger == rpz::Trigger::NsDname && ns_names.size() > 1)
        std::cout << "  - NS names (rule 5): of the matching NS names the canonically smallest, "
                  << rpz::name_to_text(ns_names.at(d.ns_index)) << "\n";
    if (d.prefix)
        std::cout << "  - longest prefix (rule 6): " << rpz::to_string(*d.prefix)
                  << " is the longest prefix with a rule covering " << rpz::to_string(d.ip)
                  << (answer.size() + ns_ips.size() > 1
                          ? "; on equal prefixes the smaller address wins (rule 7)"
                          : "")
                  << "\n";
    if (d.action() == rpz::Action::Passthru)
        std::cout << "  - passthru: the query is answered normally and no later rule applies\n";
    if (d.needs_response_stage)
        std::cout << "note: an earlier zone has Response-IP/NSDNAME/NSIP rules: the resolver "
                     "resolves first and checks again with the answer before applying this\n";
    return kExitOk;
}

}  // namespace dnsfw::cli
