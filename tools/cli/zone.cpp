// `dnsfw zone load|set|list|remove`: manage the policy zones of a store and
// their settings (rpz::ZonePolicy).
#include "common.hpp"
#include "zone_input.hpp"

#include "rpz/rpz.hpp"
#include "store/store.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace dnsfw::cli {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string format_seconds(double s) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(s < 10 ? 2 : 1) << s << " s";
    return os.str();
}

/// The zone-setting options shared by `zone load` and `zone set`.
std::vector<OptionSpec> policy_options() {
    return {
        {"policy", "P",
         "action override: given (default), disabled (log only), nxdomain, nodata, passthru "
         "(or no-op), drop, tcp-only, cname (with --policy-cname)"},
        {"policy-cname", "NAME", "target of --policy cname; '*.suffix' prepends the query name"},
        {"max-policy-ttl", "N|none", "cap the TTL of synthesised answers (default none)"},
        {"recursive-only", "yes|no", "rewrite only queries with RD=1 (default yes)"},
        {"break-dnssec", "yes|no",
         "rewrite DO=1 queries whose answer is DNSSEC-signed (default no)"},
        {"ede", "CODE|none", "EDE code on rewritten answers: 15 (default), 16, 17, 18, 4, none"},
        {"ede-text", "TEXT", "EDE extra text (default empty)"},
        {"log", "yes|no", "log this zone's hits (default yes)"},
        {"add-soa", "yes|no", "add the policy zone's SOA to rewritten answers (default yes)"},
        {"override-local-data", "yes|no",
         "the --policy override also replaces local-data rules (default yes); no: rules "
         "with local data keep their records, the override applies to the others"},
        {"clients", "PREFIX[,PREFIX...]|all",
         "apply this zone only to clients in these prefixes, e.g. 192.0.0.0/8,2001:db8::/32 "
         "(default all: every client); queries without a client address are not rewritten "
         "by a zone with a list"},
    };
}

bool parse_yes_no(const std::string& option, const std::string& v) {
    if (v == "yes") return true;
    if (v == "no") return false;
    throw UsageError("--" + option + ": expected yes or no, got '" + v + "'");
}

/// Parses --clients: "all" (empty list) or comma-separated prefixes
/// ("192.0.0.0/8", "2001:db8::/32", a bare address = /32 or /128).
/// Rejects host bits beyond the length; drops duplicates.
std::vector<rpz::IpPrefix> parse_clients(const std::string& v) {
    std::vector<rpz::IpPrefix> out;
    if (v == "all") return out;
    std::string_view rest = v;
    while (true) {
        const std::size_t comma = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        const std::string text(item);
        auto p = rpz::prefix_from_text(item);
        if (!p) {
            throw UsageError("--clients: '" + text + "' is not an IP address or prefix "
                             "(expected e.g. 192.0.0.0/8 or 2001:db8::/32, or all)");
        }
        const std::size_t slash = item.find('/');
        auto addr = rpz::ip_from_text(item.substr(0, slash));
        if (!addr || addr->bytes != p->addr.bytes) {
            throw UsageError("--clients: '" + text + "' has address bits set beyond the "
                             "prefix length (did you mean " + rpz::to_string(*p) + "?)");
        }
        if (std::find(out.begin(), out.end(), *p) == out.end()) out.push_back(*p);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
    }
    if (out.size() > rpz::kMaxZoneClients)
        throw UsageError("--clients: at most " + std::to_string(rpz::kMaxZoneClients) +
                         " prefixes");
    return out;
}

/// "all" or "192.0.0.0/8,2001:db8::/32".
std::string clients_text(const rpz::ZonePolicy& p) {
    if (p.clients.empty()) return "all";
    std::string out;
    for (const rpz::IpPrefix& c : p.clients) {
        if (!out.empty()) out += ',';
        out += rpz::to_string(c);
    }
    return out;
}

/// Applies the zone-setting options given on the command line to `p`.
/// Returns true if any was given.
bool apply_policy_options(const Args& args, rpz::ZonePolicy& p) {
    bool any = false;
    if (auto v = args.value("policy")) {
        auto o = rpz::policy_override_from_string(*v);
        if (!o) {
            throw UsageError("--policy: expected given, disabled, nxdomain, nodata, passthru, "
                             "no-op, drop, tcp-only or cname, got '" + *v + "'");
        }
        p.override = *o;
        if (*o != rpz::PolicyOverride::Cname) {
            p.override_cname.clear();
            p.override_cname_wildcard = false;
        }
        any = true;
    }
    if (auto v = args.value("policy-cname")) {
        if (p.override != rpz::PolicyOverride::Cname)
            throw UsageError("--policy-cname needs --policy cname");
        std::string_view text = *v;
        const bool wildcard = text.starts_with("*.");
        if (wildcard) text.remove_prefix(2);
        auto n = rpz::name_from_text(text);
        if (!n || rpz::name_label_count(*n) == 0)
            throw UsageError("--policy-cname: '" + *v + "' is not a valid target name");
        p.override_cname = *n;
        p.override_cname_wildcard = wildcard;
        any = true;
    }
    if (p.override == rpz::PolicyOverride::Cname && p.override_cname.empty())
        throw UsageError("--policy cname needs --policy-cname NAME");
    if (auto v = args.value("max-policy-ttl")) {
        if (*v == "none") {
            p.max_policy_ttl.reset();
        } else {
            p.max_policy_ttl = static_cast<std::uint32_t>(*args.number("max-policy-ttl", 0, 0x7fffffffu));
        }
        any = true;
    }
    if (auto v = args.value("recursive-only")) {
        p.recursive_only = parse_yes_no("recursive-only", *v);
        any = true;
    }
    if (auto v = args.value("break-dnssec")) {
        p.break_dnssec = parse_yes_no("break-dnssec", *v);
        any = true;
    }
    if (auto v = args.value("ede")) {
        if (*v == "none") {
            p.ede.reset();
        } else {
            auto code = args.number("ede", 0, 0xffff);
            if (!rpz::is_allowed_ede(static_cast<std::uint16_t>(*code)))
                throw UsageError("--ede: expected 15, 16, 17, 18, 4 or none, got '" + *v + "'");
            p.ede = static_cast<std::uint16_t>(*code);
        }
        any = true;
    }
    if (auto v = args.value("ede-text")) {
        if (v->size() > 1024) throw UsageError("--ede-text: longer than 1024 bytes");
        p.ede_text = *v;
        any = true;
    }
    if (auto v = args.value("log")) {
        p.log = parse_yes_no("log", *v);
        any = true;
    }
    if (auto v = args.value("add-soa")) {
        p.add_soa = parse_yes_no("add-soa", *v);
        any = true;
    }
    if (auto v = args.value("override-local-data")) {
        p.override_local_data = parse_yes_no("override-local-data", *v);
        any = true;
    }
    if (auto v = args.value("clients")) {
        p.clients = parse_clients(*v);
        any = true;
    }
    return any;
}

std::string policy_text(const rpz::ZonePolicy& p) {
    std::string out(rpz::to_string(p.override));
    if (p.override == rpz::PolicyOverride::Cname)
        out += " " + std::string(p.override_cname_wildcard ? "*." : "") +
               rpz::name_to_text(p.override_cname);
    return out;
}

/// "max-ttl=none recursive-only=yes break-dnssec=no ede=15 log=yes add-soa=yes
/// override-local-data=yes clients=all"
std::string settings_text(const rpz::ZonePolicy& p) {
    std::string out = "max-ttl=" + (p.max_policy_ttl ? std::to_string(*p.max_policy_ttl) : "none");
    out += std::string(" recursive-only=") + (p.recursive_only ? "yes" : "no");
    out += std::string(" break-dnssec=") + (p.break_dnssec ? "yes" : "no");
    out += " ede=" + (p.ede ? std::to_string(*p.ede) : "none");
    if (!p.ede_text.empty()) out += " ede-text=\"" + p.ede_text + "\"";
    out += std::string(" log=") + (p.log ? "yes" : "no");
    out += std::string(" add-soa=") + (p.add_soa ? "yes" : "no");
    out += std::string(" override-local-data=") + (p.override_local_data ? "yes" : "no");
    out += " clients=" + clients_text(p);
    return out;
}

nlohmann::json policy_json(const rpz::ZonePolicy& p) {
    nlohmann::json j = {{"policy", std::string(rpz::to_string(p.override))},
                        {"recursive_only", p.recursive_only},
                        {"break_dnssec", p.break_dnssec},
                        {"ede_text", p.ede_text},
                        {"log", p.log},
                        {"add_soa", p.add_soa},
                        {"override_local_data", p.override_local_data}};
    j["policy_cname"] = p.override == rpz::PolicyOverride::Cname
                            ? nlohmann::json((p.override_cname_wildcard ? "*." : "") +
                                             rpz::name_to_text(p.override_cname))
                            : nlohmann::json(nullptr);
    j["max_policy_ttl"] = p.max_policy_ttl ? nlohmann::json(*p.max_policy_ttl) : nlohmann::json(nullptr);
    j["ede"] = p.ede ? nlohmann::json(*p.ede) : nlohmann::json(nullptr);
    nlohmann::json clients = nlohmann::json::array();  // [] = every client
    for (const rpz::IpPrefix& c : p.clients) clients.push_back(rpz::to_string(c));
    j["clients"] = clients;
    return j;
}

}  // namespace

const CommandSpec& zone_load_spec_base();
const CommandSpec& zone_set_spec();
int zone_set(const Args& args);

const CommandSpec& zone_load_spec() {
    static const CommandSpec spec = [] {
        CommandSpec c = zone_load_spec_base();
        // The input options (shared with `zone push`) go after --zone.
        auto inputs = zone_input_options();
        c.options.insert(c.options.begin() + 2, inputs.begin(), inputs.end());
        for (auto& o : policy_options()) c.options.push_back(o);
        c.summary += "\nZone settings (--policy ... --clients): a reload keeps the zone's current\n"
                     "settings except those given; a new zone starts from the defaults.";
        return c;
    }();
    return spec;
}

const CommandSpec& zone_load_spec_base() {
    static const CommandSpec spec{
        "dnsfw zone load",
        "load a policy zone (RPZ, list or hosts file) into a store",
        "FILE",
        "Parse a policy zone (RPZ master file, domain list or hosts file) and store it,\n"
        "replacing any zone of the same name atomically (resolvers see the old zone or\n"
        "the new one, never a mix). The store is created if it does not exist.\n"
        "Bad lines are reported as 'file:line: error: message' on stderr and skipped;\n"
        "the rest of the file is still loaded (exit 0). FILE '-' reads standard input.",
        {
            {"store", "DIR", "store directory (created if missing)", false, true},
            {"zone", "NAME", "policy zone name, e.g. threat-intel.rpz", false, true},
            {"order", "N", "precedence position (1 = checked first); default: last for a new "
                           "zone, unchanged on reload"},
            {"serial", "N", "serial to record (default: the SOA's for rpz, the current unix "
                            "time for list/hosts)"},
            {"allow-empty", "", "store the zone even if it has no rules"},
            {"force", "", "replace a zone dnsfw-xfrd transfers from a primary anyway"},
        },
        1,
        1,
        "examples:\n"
        "  dnsfw zone load --store var/store --zone threat-intel.rpz feeds/tif.rpz\n"
        "  dnsfw zone load --store var/store --zone phishing.rpz --format list feed.txt\n"
        "  dnsfw zone load --store var/store --zone ads.rpz --format hosts --subdomains hosts\n"
        "\nexit: 0 loaded (possibly with skipped lines), 1 unreadable file, store error or\n"
        "no rules (store unchanged), 2 bad command line.\n",
    };
    return spec;
}

int zone_load(const Args& args) {
    const std::string store_path = *args.value("store");
    const std::string zone_text = *args.value("zone");
    const std::string file = args.positional().at(0);
    const rpz::Name zone_name = parse_zone_name(zone_text);

    const ZoneInputOptions input_options = parse_zone_input_options(args);
    const rpz::InputFormat format = input_options.format;
    auto order = args.number("order", 1, 0xffffffffu);
    auto serial_opt = args.number("serial", 0, 0xffffffffu);
    // Zone settings: validated now (a usage error must not wait for the parse).
    rpz::ZonePolicy flags_check;
    const bool policy_given = apply_policy_options(args, flags_check);

    ZoneInput input = read_zone_input(file, zone_name, input_options);
    rpz::Zone& zone = input.zone;
    const double parse_s = input.parse_seconds;
    const std::size_t errors = input.errors;
    const std::size_t warnings = input.warnings;

    const std::string name = rpz::name_to_text(zone.name.empty() ? zone_name : zone.name);
    if (zone.rules.empty() && !args.flag("allow-empty")) {
        throw CommandError("zone " + name + ": no rules could be read from '" + file + "' (" +
                           std::to_string(errors) + " skipped); store left unchanged "
                           "(use --allow-empty to store an empty zone)");
    }

    const auto t1 = Clock::now();
    store::ZoneInfo info;
    std::string serial_note;
    try {
        store::OpenOptions options;
        options.read_only = false;
        options.create = true;
        auto st = store::Store::open(store_path, options);
        refuse_secondary_zone(st, name, args.flag("force"), "zone load");
        if (serial_opt) {
            zone.serial = static_cast<std::uint32_t>(*serial_opt);
            serial_note = ", from --serial";
        } else if (format != rpz::InputFormat::Rpz || zone.serial == 0) {
            // No SOA serial: use the load time, and at least the stored
            // serial + 1, so that every reload is a new serial.
            auto now = static_cast<std::uint32_t>(std::time(nullptr));
            auto previous = st.zone(name);
            // Serial arithmetic (RFC 1982): past 2^32-1 the next serial is 1;
            // 0 is kept for "no serial".
            zone.serial =
                previous && previous->serial >= now ? next_serial(previous->serial) : now;
            serial_note = format == rpz::InputFormat::Rpz ? ", no SOA: load time" : "";
        }
        set_soa_serial(zone.soa_rdata, zone.serial);
        std::optional<rpz::ZonePolicy> policy;
        if (policy_given) {
            // Start from the stored settings: a reload changes only what is given.
            auto previous = st.zone(name);
            policy = previous ? previous->policy : rpz::ZonePolicy{};
            apply_policy_options(args, *policy);
        }
        info = st.replace_zone(zone,
                               order ? std::optional<std::uint32_t>(
                                           static_cast<std::uint32_t>(*order))
                                     : std::nullopt,
                               policy);
    } catch (const store::StoreError& e) {
        throw CommandError(std::string("store: ") + e.what() + " (zone " + name +
                           " not changed)");
    }
    const double store_s = seconds_since(t1);

    std::cout << "zone " << info.name << ": " << info.rule_count << " rules loaded (serial "
              << info.serial << serial_note << "), " << errors
              << (errors == 1 ? " line skipped" : " lines skipped");
    if (warnings > 0) std::cout << ", " << warnings << (warnings == 1 ? " warning" : " warnings");
    std::cout << " [order " << info.order << "; parse " << format_seconds(parse_s) << ", store "
              << format_seconds(store_s) << "]\n";
    std::cout << "settings: policy " << policy_text(info.policy) << ", "
              << settings_text(info.policy) << "\n";
    if (errors > 0) {
        std::cout << "note: the skipped lines are listed on stderr; the rest of the zone was "
                     "loaded\n";
    }
    keep_until_exit(std::move(zone));  // the store is closed already
    return kExitOk;
}

const CommandSpec& zone_set_spec() {
    static const CommandSpec spec = [] {
        CommandSpec c{
            "dnsfw zone set",
            "change the settings of a zone (policy override, TTL cap, journal size, ...)",
            "[NAME]",
            "Change the settings of a zone already in the store, in one transaction\n"
            "(rules untouched; running resolvers apply the change at their next query).\n"
            "Settings not given keep their current value. The zone is named by --zone\n"
            "or by the operand NAME.\n"
            "--journal-size bounds the zone's history of changes (what IXFR clients of\n"
            "dnsfw-xfrd are served from); the oldest entries are dropped past it, at once\n"
            "if the journal is already bigger. 0 keeps no history.",
            {
                {"store", "DIR", "store directory", false, true},
                {"zone", "NAME", "zone to change (or give NAME as the operand)"},
                {"journal-size", "BYTES",
                 "bytes of change history kept for IXFR (suffix K, M, G = KiB, MiB, GiB; "
                 "default of a new zone 64M; 0 = none)"},
            },
            0,
            1,
            "examples:\n"
            "  dnsfw zone set --store var/store --zone test.rpz --policy disabled\n"
            "  dnsfw zone set --store var/store --zone ads.rpz --policy cname "
            "--policy-cname walled.example.net\n"
            "  dnsfw zone set --store var/store --zone tif.rpz --max-policy-ttl 60 --ede 17\n"
            "  dnsfw zone set --store var/store --zone internal.rpz --clients 192.0.0.0/8,10.1.0.0/16\n"
            "  dnsfw zone set --store var/store threat.rpz --journal-size 256M\n"
            "\nexit: 0 changed, 1 no such zone or store error, 2 bad command line.\n",
        };
        for (auto& o : policy_options()) c.options.push_back(o);
        return c;
    }();
    return spec;
}

int zone_set(const Args& args) {
    const auto zone_opt = args.value("zone");
    if (zone_opt && !args.positional().empty())
        throw UsageError("name the zone once: --zone NAME or the operand NAME, not both");
    if (!zone_opt && args.positional().empty())
        throw UsageError("missing zone: give --zone NAME or the operand NAME");
    const std::string name = rpz::name_to_text(
        zone_opt ? parse_zone_name(*zone_opt) : parse_zone_name(args.positional()[0], "NAME"));
    rpz::ZonePolicy check;
    const bool policy_given = apply_policy_options(args, check);
    std::optional<std::uint64_t> journal_size;
    if (auto v = args.value("journal-size")) journal_size = parse_byte_size("journal-size", *v);
    if (!policy_given && !journal_size)
        throw UsageError("nothing to set: give at least one of --policy, --policy-cname, "
                         "--max-policy-ttl, --recursive-only, --break-dnssec, --ede, --ede-text, "
                         "--log, --add-soa, --override-local-data, --clients, --journal-size");
    auto st = open_existing_store(*args.value("store"), true);
    store::ZoneInfo info;
    try {
        auto current = st.zone(name);
        if (!current) throw CommandError("zone " + name + " is not in store " + st.path());
        info = *current;
        if (policy_given) {
            rpz::ZonePolicy p = current->policy;
            apply_policy_options(args, p);
            info = st.set_zone_policy(name, p);
        }
        if (journal_size) info = st.set_journal_limit(name, *journal_size);
    } catch (const store::StoreError& e) {
        throw CommandError(std::string("store: ") + e.what() + " (zone " + name + " not changed)");
    }
    if (policy_given) {
        std::cout << "zone " << info.name << ": policy " << policy_text(info.policy) << ", "
                  << settings_text(info.policy) << "\n";
    }
    if (journal_size) {
        std::cout << "zone " << info.name << ": journal size " << format_bytes(info.journal_max_bytes)
                  << (info.journal_max_bytes == 0 ? " (no history kept: IXFR clients get the whole zone)"
                                                  : "")
                  << "\n";
    }
    return kExitOk;
}

const CommandSpec& zone_list_spec() {
    static const CommandSpec spec{
        "dnsfw zone list",
        "list the zones of a store",
        "",
        "List the zones of a store in precedence order (the order the resolver checks\n"
        "them in when no explicit zone list is configured).",
        {
            {"store", "DIR", "store directory", false, true},
            {"json", "", "print a JSON array instead of a table"},
        },
        0,
        0,
        "",
    };
    return spec;
}

int zone_list(const Args& args) {
    auto st = open_existing_store(*args.value("store"), false);
    std::vector<store::ZoneInfo> zones;
    try {
        zones = st.list_zones();
    } catch (const store::StoreError& e) {
        throw CommandError(std::string("store: ") + e.what());
    }

    if (args.flag("json")) {
        auto out = nlohmann::json::array();
        for (const auto& z : zones) {
            out.push_back({{"order", z.order},
                           {"name", z.name},
                           {"serial", z.serial},
                           {"rules", z.rule_count},
                           {"loaded_at", z.loaded_at},
                           {"loaded_at_utc", format_utc(z.loaded_at)},
                           {"settings", policy_json(z.policy)}});
        }
        std::cout << out.dump(2) << "\n";
        return kExitOk;
    }

    if (zones.empty()) {
        std::cout << "no zones in store " << st.path() << "\n";
        return kExitOk;
    }
    // NAME and POLICY widths come from the rows ("disabled", "cname
    // walled.example.net" are wider than the header), so SETTINGS lines up.
    std::size_t name_w = 4;
    std::size_t policy_w = 6;
    for (const auto& z : zones) {
        name_w = std::max(name_w, z.name.size());
        policy_w = std::max(policy_w, policy_text(z.policy).size());
    }
    std::cout << std::left << std::setw(6) << "ORDER" << std::setw(static_cast<int>(name_w) + 2)
              << "NAME" << std::right << std::setw(11) << "SERIAL" << std::setw(11) << "RULES"
              << "  " << std::left << std::setw(23) << "LOADED-AT (UTC)"
              << std::setw(static_cast<int>(policy_w) + 2) << "POLICY"
              << "SETTINGS\n";
    for (const auto& z : zones) {
        std::cout << std::left << std::setw(6) << z.order << std::setw(static_cast<int>(name_w) + 2)
                  << z.name << std::right << std::setw(11) << z.serial << std::setw(11)
                  << z.rule_count << "  " << std::left << std::setw(23) << format_utc(z.loaded_at)
                  << std::setw(static_cast<int>(policy_w) + 2) << policy_text(z.policy)
                  << settings_text(z.policy) << "\n"
                  << std::right;
    }
    return kExitOk;
}

const CommandSpec& zone_remove_spec() {
    static const CommandSpec spec{
        "dnsfw zone remove",
        "remove a zone from a store",
        "",
        "Remove a zone and all its rules from a store (one transaction; running\n"
        "resolvers stop applying it at their next query).",
        {
            {"store", "DIR", "store directory", false, true},
            {"zone", "NAME", "zone to remove", false, true},
        },
        0,
        0,
        "exit: 0 removed, 1 no such zone or store error, 2 bad command line.\n",
    };
    return spec;
}

int zone_remove(const Args& args) {
    const std::string zone_text = *args.value("zone");
    const std::string name = rpz::name_to_text(parse_zone_name(zone_text));
    auto st = open_existing_store(*args.value("store"), true);
    bool removed = false;
    try {
        removed = st.remove_zone(name);
    } catch (const store::StoreError& e) {
        throw CommandError(std::string("store: ") + e.what());
    }
    if (!removed) throw CommandError("zone " + name + " is not in store " + st.path());
    std::cout << "zone " << name << " removed\n";
    return kExitOk;
}

}  // namespace dnsfw::cli
