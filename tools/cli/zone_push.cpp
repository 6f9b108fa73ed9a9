// `dnsfw zone push`: apply an edited zone file to a stored zone as ONE
// incremental change (Store::apply_delta), so the zone keeps its journal and
// dnsfw-xfrd's downstream secondaries get an IXFR of just the difference.
#include "common.hpp"
#include "zone_input.hpp"

#include "rpz/rpz.hpp"
#include "store/store.hpp"

#include <algorithm>
#include <ctime>
#include <span>
#include <utility>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace dnsfw::cli {

namespace {

/// Orders rules and rule keys by (trigger, key), as the store and parsers sort them.
struct KeyLess {
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const noexcept {
        if (a.trigger != b.trigger) return a.trigger < b.trigger;
        return std::lexicographical_compare(a.key.begin(), a.key.end(), b.key.begin(),
                                            b.key.end());
    }
};

/// A stored rule's (trigger, key) as KeyLess takes it, without a copy.
struct KeyRef {
    rpz::Trigger trigger;
    std::span<const std::uint8_t> key;
};

/// Whether the stored rule value `v` equals `r`'s (what RuleView::to_rule()
/// == r would say for the value, without decoding into a Rule).
bool same_value(const rpz::RuleView& v, const rpz::Rule& r) noexcept {
    if (v.action() != r.action || v.flags() != r.flags || v.ttl() != r.ttl ||
        v.record_count() != r.records.size())
        return false;
    bool same = true;
    std::size_t i = 0;
    v.for_each_record([&](const rpz::RuleView::RecordView& rec) {
        const rpz::LocalRecord& l = r.records[i++];
        if (rec.type != l.type || rec.ttl != l.ttl ||
            !std::equal(rec.rdata.begin(), rec.rdata.end(), l.rdata.begin(), l.rdata.end()))
            same = false;
    });
    return same;
}

/// How the stored zone differs from the file's rules, as of one snapshot (so
/// the serial and the rules agree). Only the differing part is copied out of
/// the store: a push of a few changes to a big zone does not decode every
/// stored rule.
struct StoredChanges {
    store::ZoneInfo info;
    /// Stored rules that the file lacks or has with another value, in the
    /// store's (trigger, key) order.
    std::vector<rpz::Rule> old_rules;
    /// The file's rules that the store lacks or has with another value.
    std::vector<rpz::Rule> new_rules;
};

/// Compares zone `name` of the store with `rules` (sorted by (trigger, key),
/// as the parser returns them). nullopt if the zone is not in the store. The
/// snapshot is closed before returning: a live read transaction would stop
/// this process from growing the map in apply_delta.
/// rpz::diff_rules(old_rules, new_rules) then gives the same delta as
/// diff_rules of the whole stored zone and `rules`: the rules left out are
/// equal on both sides, which diff_rules skips.
std::optional<StoredChanges> read_stored_changes(const store::Store& st, const std::string& name,
                                                 const std::vector<rpz::Rule>& rules) {
    auto snap = st.snapshot({name});
    if (snap->zone_count() == 0) return std::nullopt;
    StoredChanges out;
    out.info = snap->zone_info(0);
    std::vector<bool> unchanged(rules.size(), false);
    std::size_t next = 0;  // where the next stored key is expected in `rules`
    snap->for_each_rule(0, [&](rpz::Trigger t, std::span<const std::uint8_t> key,
                               const rpz::RuleView& view) {
        const KeyRef k{t, key};
        // Both walks are in key order, so the match is usually at `next`.
        std::size_t at = next;
        if (at >= rules.size() || KeyLess{}(rules[at], k)) {
            at = static_cast<std::size_t>(
                std::lower_bound(rules.begin(), rules.end(), k, KeyLess{}) - rules.begin());
        }
        if (at < rules.size() && !KeyLess{}(rules[at], k) && !KeyLess{}(k, rules[at])) {
            next = at + 1;
            if (same_value(view, rules[at])) {
                unchanged[at] = true;
                return;
            }
        }
        rpz::Rule r = view.to_rule();
        r.trigger = t;
        r.key.assign(key.begin(), key.end());
        out.old_rules.push_back(std::move(r));
    });
    snap.reset();
    for (std::size_t i = 0; i < rules.size(); ++i)
        if (!unchanged[i]) out.new_rules.push_back(rules[i]);
    return out;
}

/// The serial a push gives: `wanted` (the file's SOA serial or --serial) if it
/// is newer than the stored one (RFC 1982), else stored + 1.
std::uint32_t new_serial(std::uint32_t stored, std::optional<std::uint32_t> wanted) {
    if (wanted && serial_newer(*wanted, stored)) return *wanted;
    return next_serial(stored);
}

std::string count_text(std::size_t n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

/// Records a push in the zone's status (best effort: the change itself is
/// committed already, or failed for a reason reported anyway).
void record_status(store::Store& st, const std::string& name, const std::string& source,
                   const std::string* error) {
    try {
        auto status = st.status(name).value_or(store::ZoneStatus{});
        const auto now = static_cast<std::uint64_t>(std::time(nullptr));
        status.last_attempt = now;
        if (error != nullptr) {
            status.last_failure = now;
            status.last_error = source + ": " + *error;
        } else {
            status.last_success = now;
            status.last_source = source;
            status.updates += 1;
        }
        st.put_status(name, status);
    } catch (const std::exception& e) {
        std::cerr << "dnsfw zone push: warning: zone " << name
                  << ": status not recorded: " << e.what() << "\n";
    }
}

}  // namespace

const CommandSpec& zone_push_spec() {
    static const CommandSpec spec = [] {
        CommandSpec c{
            "dnsfw zone push",
            "apply an edited zone file to a stored zone as one incremental change",
            "FILE",
            "Parse FILE like 'zone load' does, compare it with the zone in the store and\n"
            "apply only the difference, as ONE change (one LMDB transaction: resolvers\n"
            "see the zone before or after it, never between; the running resolver\n"
            "enforces it at its next query). The change is kept in the zone's journal,\n"
            "so dnsfw-xfrd serves it to its secondaries as an IXFR and NOTIFYs them.\n"
            "New serial: the file's SOA serial (or --serial) if it is newer than the\n"
            "stored one (RFC 1982), else the stored serial + 1 (a note on stderr says so\n"
            "when the file's SOA serial is the older one). A file whose rules equal the\n"
            "stored ones changes nothing ('no change'). The zone keeps its settings and\n"
            "position (change them with 'zone set').\n"
            "Bad lines are reported as 'file:line: error: message' on stderr and skipped;\n"
            "the rest of the file is applied. The zone must already be in the store (load\n"
            "it first with 'zone load'). FILE '-' reads standard input.",
            {
                {"store", "DIR", std::string("store directory (default ") + kDefaultStorePath +
                                     ")"},
                {"zone", "NAME", "policy zone name, e.g. threat-intel.rpz", false, true},
            },
            1,
            1,
            "examples:\n"
            "  dnsfw zone push --store var/store --zone threat-intel.rpz threat-intel.rpz\n"
            "  dnsfw zone push --store var/store --zone phishing.rpz --format list feed.txt\n"
            "output:\n"
            "  zone threat-intel.rpz.: serial 41 -> 42: 3 added, 1 removed, 0 changed\n"
            "  zone threat-intel.rpz.: no change (serial 42)\n"
            "\nexit: 0 applied or no change (possibly with skipped lines), 1 unreadable file,\n"
            "no such zone, no rules (store unchanged) or store error, 2 bad command line.\n",
        };
        for (auto& o : zone_input_options()) c.options.push_back(o);
        c.options.push_back({"serial", "N",
                             "serial to give the zone; must be newer than the stored one "
                             "(default: the file's SOA serial if newer, else stored + 1)"});
        c.options.push_back({"allow-empty", "",
                             "apply the file even if it has no rules (removes every rule)"});
        c.options.push_back({"force", "",
                             "change a zone dnsfw-xfrd transfers from a primary anyway"});
        return c;
    }();
    return spec;
}

int zone_push(const Args& args) {
    const std::string store_path = args.value("store").value_or(kDefaultStorePath);
    const rpz::Name zone_name = parse_zone_name(*args.value("zone"));
    const std::string name = rpz::name_to_text(zone_name);
    const std::string file = args.positional().at(0);
    const ZoneInputOptions input_options = parse_zone_input_options(args);
    const auto serial_opt = args.number("serial", 1, 0xffffffffu);

    // Fail on a missing store or zone before parsing a big file.
    auto st = open_existing_store(store_path, true);
    try {
        if (!st.zone(name)) {
            throw CommandError("zone " + name + " is not in store " + st.path() +
                               " (zone push changes an existing zone; create it with: dnsfw "
                               "zone load --store " + st.path() + " --zone " + name + " FILE)");
        }
    } catch (const store::StoreError& e) {
        throw CommandError(std::string("store: ") + e.what());
    }
    refuse_secondary_zone(st, name, args.flag("force"), "zone push");

    ZoneInput input = read_zone_input(file, zone_name, input_options);
    rpz::Zone& zone = input.zone;
    if (zone.rules.empty() && !args.flag("allow-empty")) {
        throw CommandError("zone " + name + ": no rules could be read from '" + file + "' (" +
                           std::to_string(input.errors) + " skipped); store left unchanged "
                           "(use --allow-empty to remove every rule)");
    }
    // An RPZ file with an SOA brings its own serial and SOA; a list, a hosts
    // file or an RPZ file without SOA keeps the stored SOA (new serial only).
    const bool file_has_soa =
        input_options.format == rpz::InputFormat::Rpz && zone.serial != 0 && !zone.soa_rdata.empty();
    std::optional<std::uint32_t> wanted;
    if (serial_opt) {
        wanted = static_cast<std::uint32_t>(*serial_opt);
    } else if (file_has_soa) {
        wanted = zone.serial;
    }

    const std::string source = "zone push " + (file == "-" ? std::string("<stdin>") : file);
    // Someone else (dnsfw-xfrd applying an UPDATE, another push) may change
    // the zone between our read and our write: apply_delta then refuses with
    // kSerialMismatch and we diff again against the new content, once.
    for (int attempt = 0;; ++attempt) {
        std::optional<StoredChanges> stored;
        try {
            stored = read_stored_changes(st, name, zone.rules);
        } catch (const store::StoreError& e) {
            throw CommandError(std::string("store: ") + e.what());
        }
        if (!stored) {
            throw CommandError("zone " + name + " was removed from store " + st.path() +
                               " while being pushed; nothing applied");
        }
        const std::uint32_t from = stored->info.serial;
        if (serial_opt && !serial_newer(*wanted, from)) {
            throw CommandError("--serial " + std::to_string(*wanted) +
                               " is not newer than the stored serial " + std::to_string(from) +
                               " of zone " + name + " (RFC 1982); nothing applied");
        }
        rpz::RuleDelta changes =
            rpz::diff_rules(zone_name, stored->old_rules, stored->new_rules);
        // Count against the stored rules: an upserted key that was stored is
        // "changed", else "added"; a removed key that is not upserted again
        // is "removed" (whether diff_rules also lists replaced keys in
        // `removed` or not). An upserted key that was stored had another
        // value, so it is among old_rules.
        std::sort(stored->old_rules.begin(), stored->old_rules.end(), KeyLess{});
        const auto stored_has = [&](const rpz::RuleKey& k) {
            return std::binary_search(stored->old_rules.begin(), stored->old_rules.end(), k,
                                      KeyLess{});
        };
        std::size_t added = 0, changed = 0, removed = 0;
        std::vector<rpz::RuleKey> upserted_keys;
        upserted_keys.reserve(changes.upserted.size());
        for (const rpz::Rule& r : changes.upserted) {
            rpz::RuleKey k{r.trigger, r.key};
            (stored_has(k) ? changed : added) += 1;
            upserted_keys.push_back(std::move(k));
        }
        std::sort(upserted_keys.begin(), upserted_keys.end());
        for (const rpz::RuleKey& k : changes.removed) {
            if (!std::binary_search(upserted_keys.begin(), upserted_keys.end(), k)) ++removed;
        }
        if (changes.empty()) {
            std::cout << "zone " << name << ": no change (serial " << from << ")";
            if (input.errors > 0) std::cout << ", " << count_text(input.errors, "line", "lines")
                                            << " skipped";
            std::cout << "\n";
            keep_until_exit(std::move(zone));
            keep_until_exit(std::move(*stored));
            return kExitOk;
        }

        store::ZoneDelta delta;
        delta.zone = name;
        delta.from_serial = from;
        delta.to_serial = new_serial(from, wanted);
        if (file_has_soa) {
            delta.soa_ttl = zone.soa_ttl;
            delta.soa_rdata = zone.soa_rdata;
        } else {
            delta.soa_ttl = stored->info.soa_ttl;
            delta.soa_rdata = stored->info.soa_rdata;
        }
        set_soa_serial(delta.soa_rdata, delta.to_serial);
        delta.changes = std::move(changes);

        store::ZoneInfo info;
        try {
            info = st.apply_delta(delta);
        } catch (const store::StoreError& e) {
            if (e.code() == store::kSerialMismatch && attempt == 0) {
                std::cerr << "dnsfw zone push: zone " << name
                          << " changed while being compared (serial " << from
                          << " is no longer current); comparing again\n";
                continue;
            }
            std::string why = e.what();
            if (e.code() == store::kSerialMismatch) {
                why = "zone changed by someone else twice while being compared: " + why;
            }
            record_status(st, name, source, &why);
            throw CommandError("store: " + why + " (zone " + name + " not changed)");
        }
        record_status(st, name, source, nullptr);
        if (file_has_soa && !serial_opt && !serial_newer(zone.serial, from)) {
            // Documented (stored + 1, the file's SOA timers), but say so: the
            // zone's serial is not the one the file states.
            std::cerr << "zone " << name << ": the file's serial " << zone.serial
                      << " is not newer than the stored serial " << from << ": using "
                      << info.serial << "\n";
        }
        std::cout << "zone " << info.name << ": serial " << from << " -> " << info.serial << ": "
                  << added << " added, " << removed << " removed, " << changed << " changed";
        if (input.errors > 0) {
            std::cout << " (" << count_text(input.errors, "line", "lines") << " skipped)";
        }
        std::cout << "\n";
        if (input.errors > 0) {
            std::cout << "note: the skipped lines are listed on stderr; the rest of the file was "
                         "applied\n";
        }
        keep_until_exit(std::move(zone));
        keep_until_exit(std::move(*stored));
        keep_until_exit(std::move(delta));
        return kExitOk;
    }
}

}  // namespace dnsfw::cli
