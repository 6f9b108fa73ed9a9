// `dnsfw lookup`: evaluate names against the store exactly as the resolver
// module does (rpz::evaluate over a store::Snapshot) and print the decision.
#include "common.hpp"

#include "rpz/rpz.hpp"
#include "store/store.hpp"

#include <ldns/ldns.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace dnsfw::cli {

namespace {

struct LdnsRrFree {
    void operator()(ldns_rr* rr) const noexcept { ldns_rr_free(rr); }
};
using LdnsRr = std::unique_ptr<ldns_rr, LdnsRrFree>;

struct CFree {
    void operator()(char* p) const noexcept { std::free(p); }
};
using CString = std::unique_ptr<char, CFree>;

constexpr std::uint16_t kTypeCname = 5;
constexpr std::uint16_t kTypeAny = 255;

std::uint16_t parse_type(const std::string& text) {
    ldns_rr_type t = ldns_get_rr_type_by_name(text.c_str());
    if (t == 0) throw UsageError("--type: unknown RR type '" + text + "'");
    return static_cast<std::uint16_t>(t);
}

std::string type_to_text(std::uint16_t type) {
    CString s(ldns_rr_type2str(static_cast<ldns_rr_type>(type)));
    return s ? std::string(s.get()) : "TYPE" + std::to_string(type);
}

void put16(std::vector<std::uint8_t>& out, std::uint32_t v) {
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}

/// Presentation form of one synthesised record, owned by `owner` (wire).
std::string record_to_text(std::span<const std::uint8_t> owner, std::uint16_t type,
                           std::uint32_t ttl, std::span<const std::uint8_t> rdata) {
    std::vector<std::uint8_t> wire(owner.begin(), owner.end());
    put16(wire, type);
    put16(wire, 1);  // class IN
    put16(wire, ttl >> 16);
    put16(wire, ttl & 0xffff);
    put16(wire, static_cast<std::uint32_t>(rdata.size()));
    wire.insert(wire.end(), rdata.begin(), rdata.end());

    ldns_rr* raw = nullptr;
    std::size_t pos = 0;
    if (ldns_wire2rr(&raw, wire.data(), wire.size(), &pos, LDNS_SECTION_ANSWER) !=
        LDNS_STATUS_OK) {
        return rpz::name_to_text(owner) + " " + std::to_string(ttl) + " IN " +
               type_to_text(type) + " <" + std::to_string(rdata.size()) +
               " octets of undecodable rdata>";
    }
    LdnsRr rr(raw);
    CString text(ldns_rr2str(rr.get()));
    std::string out = text ? text.get() : "<unprintable record>";
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    for (auto& c : out) {
        if (c == '\t') c = ' ';
    }
    return out;
}

/// Prints the records a local-data rule synthesises for `qname`/`qtype`
/// (qtype 0 = every record of the rule).
void print_local_data(std::span<const std::uint8_t> qname, std::uint16_t qtype,
                      const rpz::RuleView& rule) {
    std::size_t qlen = rpz::name_wire_length(qname);
    bool has_cname = false;
    rule.for_each_record([&](const rpz::RuleView::RecordView& r) {
        has_cname = has_cname || r.type == kTypeCname;
    });
    std::size_t printed = 0;
    bool too_long = false;
    rule.for_each_record([&](const rpz::RuleView::RecordView& r) {
        bool wanted = qtype == 0 || qtype == kTypeAny || r.type == qtype ||
                      (has_cname && r.type == kTypeCname);
        if (!wanted) return;
        if (r.type == kTypeCname && (rule.flags() & rpz::kCnameWildcardTarget) != 0) {
            // `CNAME *.suffix`: the target is the query name followed by suffix.
            std::vector<std::uint8_t> target(qname.begin(), qname.begin() + (qlen - 1));
            target.insert(target.end(), r.rdata.begin(), r.rdata.end());
            if (rpz::name_wire_length(target) == 0) {
                std::cout << "  (CNAME *." << rpz::name_to_text(r.rdata)
                          << ": the target would be longer than 255 octets: the answer is "
                             "YXDOMAIN)\n";
                too_long = true;
                return;
            }
            std::cout << "  " << record_to_text(qname, r.type, r.ttl, target) << "\n";
        } else {
            std::cout << "  " << record_to_text(qname, r.type, r.ttl, r.rdata) << "\n";
        }
        ++printed;
    });
    if (too_long) {
        return;
    } else if (printed == 0 && qtype == 0) {
        std::cout << "  (no records)\n";
    } else if (printed == 0) {
        std::cout << "  (no " << type_to_text(qtype) << " records: the answer is NODATA)\n";
    }
}

/// The zones before `winner` whose response-stage rules (Response-IP,
/// NSDNAME, NSIP) the resolver still checks after resolution (the reason
/// for Decision::needs_response_stage): not DISABLED, not skipped for RD=0.
std::vector<std::string> response_stage_zones(const store::Snapshot& snap, std::size_t winner,
                                              const rpz::Query& q) {
    std::vector<std::string> out;
    for (std::size_t z = 0; z < winner && z < snap.zone_count(); ++z) {
        const rpz::ZonePolicy& pol = snap.policy(z);
        if ((!q.rd && pol.recursive_only) || pol.override == rpz::PolicyOverride::Disabled)
            continue;
        for (rpz::Trigger t : {rpz::Trigger::ResponseIp, rpz::Trigger::NsDname, rpz::Trigger::NsIp}) {
            if (snap.trigger_rule_count(z, t) != 0) {
                out.push_back(snap.zone_info(z).name);
                break;
            }
        }
    }
    return out;
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
    std::string out;
    for (const auto& p : parts) {
        if (!out.empty()) out += sep;
        out += p;
    }
    return out;
}

}  // namespace

const CommandSpec& lookup_spec() {
    static const CommandSpec spec{
        "dnsfw lookup",
        "show the policy decision for names",
        "NAME...",
        "Evaluate query names against the store's policy zones, as the resolver\n"
        "module does, and print the decision for each: the action, the zone and the\n"
        "rule that matched (and the records of local data), or 'no match'.",
        {
            {"store", "DIR", "store directory", false, true},
            {"zones", "A,B", "zones to check, in precedence order (default: every zone in "
                             "stored order)"},
            {"type", "TYPE", "query type, e.g. A, AAAA, TXT (default A; selects local-data "
                             "records)"},
        },
        1,
        1000,
        "output:\n"
        "  bad.example.: nxdomain (zone threat.rpz., qname rule *.bad.example)\n"
        "  www.example.org.: no match (checked 2 zones)\n"
        "  www.bad.example.: nxdomain (zone later.rpz., qname rule www.bad.example); note:\n"
        "    earlier zone(s) ip.rpz. have Response-IP/NSDNAME/NSIP rules: the resolver\n"
        "    resolves first and applies one of theirs instead if it matches the answer\n"
        "  (one line per name; the note is wrapped here)\n"
        "\nexit: 0 whether or not a name matched, 1 store error, 2 bad command line\n"
        "(including a malformed name).\n",
    };
    return spec;
}

int lookup(const Args& args) {
    std::uint16_t qtype = 1;  // A
    bool type_given = false;
    if (auto t = args.value("type")) {
        qtype = parse_type(*t);
        type_given = true;
    }
    std::vector<rpz::Name> names;
    for (const auto& text : args.positional()) {
        auto n = rpz::name_from_text(text);
        if (!n) throw UsageError("'" + text + "' is not a valid domain name");
        names.push_back(std::move(*n));
    }
    std::vector<std::string> zones;
    if (auto z = args.value("zones")) zones = split_list(*z);

    auto st = open_existing_store(*args.value("store"), false);
    std::unique_ptr<store::Snapshot> snap;
    try {
        snap = st.snapshot(zones);
    } catch (const store::StoreError& e) {
        throw CommandError(std::string("store: ") + e.what());
    }
    for (const auto& missing : snap->missing_zones()) {
        std::cerr << "dnsfw lookup: warning: zone " << missing << " is not in store " << st.path()
                  << "; skipped\n";
    }

    for (const auto& name : names) {
        rpz::Query q;
        q.qname = name;
        q.qtype = qtype;
        const rpz::Decision d = rpz::evaluate(*snap, q);
        const std::string shown = rpz::name_to_text(name);
        if (!d.matched) {
            std::cout << shown << ": no match (checked " << snap->zone_count()
                      << (snap->zone_count() == 1 ? " zone)" : " zones)") << "\n";
            continue;
        }
        std::cout << shown << ": " << rpz::to_string(d.action()) << " (zone "
                  << snap->zone_info(d.zone).name << ", " << rpz::to_string(d.trigger)
                  << " rule " << rpz::rule_key_to_text(d.trigger, d.key.view()) << ")";
        if (d.needs_response_stage) {
            // An earlier zone may still win once the answer is known (the
            // resolver resolves first and checks again): say which.
            std::cout << "; note: earlier zone(s) "
                      << join(response_stage_zones(*snap, d.zone, q), ", ")
                      << " have Response-IP/NSDNAME/NSIP rules: the resolver resolves first and "
                         "applies one of theirs instead if it matches the answer";
        }
        std::cout << "\n";
        if (d.action() == rpz::Action::LocalData && d.rule) {
            print_local_data(name, type_given ? qtype : 0, *d.rule);
        }
    }
    return kExitOk;
}

}  // namespace dnsfw::cli
