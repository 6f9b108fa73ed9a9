// dnsfw::xfrd — RFC 2136 dynamic UPDATE of a policy zone.
//
// The request is checked as RFC 2136 section 3 orders it: zone section,
// access (a zone with primaries is a secondary: REFUSED; allow-update),
// prerequisites (against the zone as of one store snapshot), prescan of the
// update section, then the update RRs are applied in order to a working
// copy of the RRsets they touch (so "delete RRset, add RR" sequences behave
// as in BIND). The difference between the working copy and the stored
// records becomes one rpz::apply_records call (validated exactly like a
// zone file) and ONE Store::apply_delta with serial stored+1. A record the
// policy zone cannot hold (e.g. a CNAME beside other data at an owner, an
// IP owner that is not canonical) refuses the whole update: nothing partial
// is committed.
//
// Apex SOA and NS changes are ignored and logged (the serial is dnsfw's;
// the apex NS is synthesised from the SOA MNAME).
#include "tools/xfrd/serve_internal.hpp"

#include <ldns/ldns.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <map>
#include <set>

namespace dnsfw::xfrd::detail {

namespace {

struct RrFree {
    void operator()(ldns_rr* rr) const noexcept { ldns_rr_free(rr); }
};

/// One RR of the prerequisite or update section, decoded.
struct UpdateRr {
    rpz::Name owner;  ///< lower-case
    std::uint16_t type = 0;
    std::uint16_t cls = 0;
    std::uint32_t ttl = 0;
    std::uint16_t rdlength = 0;
    std::vector<std::uint8_t> rdata;  ///< uncompressed, canonical (empty if rdlength 0)
    std::string text;                 ///< owner and type, for logs
};

/// A request-level failure: the rcode and why.
struct Failure {
    std::uint8_t rcode;
    std::string reason;
};

bool in_zone(const rpz::Name& name, const rpz::Name& apex) {
    if (name.size() < apex.size()) return false;
    std::size_t p = 0;
    while (name.size() - p > apex.size()) {
        if (name[p] == 0) return false;
        p += 1 + name[p];
    }
    return name.size() - p == apex.size() &&
           std::equal(apex.begin(), apex.end(), name.begin() + static_cast<long>(p));
}

constexpr std::uint16_t kTypeDname = 39;
/// `*.`: the CNAME target of a NODATA rule.
const std::vector<std::uint8_t> kNodataTarget{1, '*', 0};

bool is_meta_type(std::uint16_t t) {
    return t == wire::kTypeOpt || (t >= 128 && t <= 255);
}

std::string type_text(std::uint16_t t) {
    char* s = ldns_rr_type2str(static_cast<ldns_rr_type>(t));
    std::string out = s ? s : "TYPE" + std::to_string(t);
    free(s);
    return out;
}

/// Reads `count` RRs at `pos`. Throws Failure(FORMERR) when malformed.
std::vector<UpdateRr> read_section(std::span<const std::uint8_t> msg, std::size_t& pos,
                                   unsigned count) {
    std::vector<UpdateRr> out;
    for (unsigned i = 0; i < count; ++i) {
        wire::RawRr raw;
        if (!wire::read_rr(msg, pos, raw)) throw Failure{wire::kRcodeFormErr, "malformed record"};
        UpdateRr rr;
        rr.owner = raw.owner;
        wire::lower_name(rr.owner);
        rr.type = raw.type;
        rr.cls = raw.cls;
        rr.ttl = raw.ttl;
        rr.rdlength = raw.rdlength;
        rr.text = rpz::name_to_text(rr.owner) + " " + type_text(rr.type);
        if (raw.rdlength > 0) {
            // ldns decompresses and canonicalises the rdata.
            ldns_rr* parsed = nullptr;
            std::size_t p = raw.start;
            if (ldns_wire2rr(&parsed, msg.data(), msg.size(), &p, LDNS_SECTION_ANSWER) !=
                    LDNS_STATUS_OK ||
                p != raw.end) {
                if (parsed) ldns_rr_free(parsed);
                throw Failure{wire::kRcodeFormErr, "malformed rdata of " + rr.text};
            }
            std::unique_ptr<ldns_rr, RrFree> owned(parsed);
            auto rec = wire::zone_record_from_ldns(owned.get());
            if (!rec) throw Failure{wire::kRcodeFormErr, "malformed rdata of " + rr.text};
            rr.rdata = std::move(rec->rdata);
        }
        out.push_back(std::move(rr));
    }
    return out;
}

/// The zone as one snapshot shows it, by owner name.
class ZoneView {
  public:
    ZoneView(const store::Snapshot& snap, const rpz::Name& apex)
        : snap_(snap), apex_(apex), info_(snap.zone_info(0)) {}

    const store::ZoneInfo& info() const { return info_; }

    /// The stored rule of `key`, if any.
    std::optional<rpz::Rule> rule(const rpz::RuleKey& key) const {
        auto view = snap_.find(0, key.trigger, key.key);
        if (!view) return std::nullopt;
        rpz::Rule r = view->to_rule();
        r.trigger = key.trigger;
        r.key = key.key;
        return r;
    }

    /// Every record owned by `name` (the apex: SOA and the synthesised NS).
    std::vector<rpz::ZoneRecord> at(const rpz::Name& name) const {
        std::vector<rpz::ZoneRecord> out;
        if (name == apex_) {
            out.push_back(soa_record(apex_, info_.soa_ttl, info_.soa_rdata));
            if (auto ns = apex_ns(apex_, info_)) out.push_back(std::move(*ns));
            return out;
        }
        std::optional<rpz::RuleKey> key;
        try {
            key = rpz::classify_owner(apex_, name);
        } catch (const std::exception&) {
        }
        if (!key) return out;
        auto r = rule(*key);
        if (!r) return out;
        for (auto& rec : rpz::rule_records(apex_, *r))
            if (rec.owner == name) out.push_back(std::move(rec));
        return out;
    }

  private:
    const store::Snapshot& snap_;
    rpz::Name apex_;
    store::ZoneInfo info_;
};

/// RFC 2136 section 3.2: returns the failure of the first prerequisite
/// that does not hold.
std::optional<Failure> check_prerequisites(const std::vector<UpdateRr>& pre, const ZoneView& zone,
                                           const rpz::Name& apex, std::uint16_t zclass) {
    // Value-dependent "RRset exists" prerequisites, gathered by (name, type).
    std::map<std::pair<rpz::Name, std::uint16_t>, std::set<std::vector<std::uint8_t>>> temp;
    std::map<std::pair<rpz::Name, std::uint16_t>, std::string> temp_text;
    for (const UpdateRr& rr : pre) {
        if (rr.ttl != 0)
            return Failure{wire::kRcodeFormErr, "prerequisite " + rr.text + " has a TTL"};
        if (!in_zone(rr.owner, apex))
            return Failure{wire::kRcodeNotZone, "prerequisite " + rr.text + " is outside the zone"};
        if (rr.cls == wire::kClassAny || rr.cls == wire::kClassNone) {
            if (rr.rdlength != 0)
                return Failure{wire::kRcodeFormErr, "prerequisite " + rr.text + " has rdata"};
            const auto records = zone.at(rr.owner);
            const bool any_type = rr.type == wire::kTypeAny;
            const bool exists =
                any_type ? !records.empty()
                         : std::any_of(records.begin(), records.end(),
                                       [&](const rpz::ZoneRecord& r) { return r.type == rr.type; });
            if (rr.cls == wire::kClassAny && !exists)
                return Failure{any_type ? wire::kRcodeNxDomain : wire::kRcodeNxRrset,
                               "prerequisite failed: " + rr.text +
                                   (any_type ? " (name not in use)" : " (RRset does not exist)")};
            if (rr.cls == wire::kClassNone && exists)
                return Failure{any_type ? wire::kRcodeYxDomain : wire::kRcodeYxRrset,
                               "prerequisite failed: " + rr.text +
                                   (any_type ? " (name in use)" : " (RRset exists)")};
        } else if (rr.cls == zclass) {
            if (rr.type == wire::kTypeAny || is_meta_type(rr.type))
                return Failure{wire::kRcodeFormErr, "prerequisite " + rr.text + ": meta type"};
            temp[{rr.owner, rr.type}].insert(rr.rdata);
            temp_text[{rr.owner, rr.type}] = rr.text;
        } else {
            return Failure{wire::kRcodeFormErr,
                           "prerequisite " + rr.text + ": bad class " + std::to_string(rr.cls)};
        }
    }
    for (const auto& [key, want] : temp) {
        std::set<std::vector<std::uint8_t>> have;
        for (const auto& r : zone.at(key.first))
            if (r.type == key.second) have.insert(r.rdata);
        if (have != want)
            return Failure{wire::kRcodeNxRrset,
                           "prerequisite failed: " + temp_text[key] + " (RRset differs)"};
    }
    return std::nullopt;
}

/// RFC 2136 section 3.4.1.
std::optional<Failure> prescan(const std::vector<UpdateRr>& updates, const rpz::Name& apex,
                               std::uint16_t zclass) {
    for (const UpdateRr& rr : updates) {
        if (!in_zone(rr.owner, apex))
            return Failure{wire::kRcodeNotZone, "update " + rr.text + " is outside the zone"};
        if (rr.cls == zclass) {
            if (is_meta_type(rr.type))
                return Failure{wire::kRcodeFormErr, "update adds meta type " + rr.text};
        } else if (rr.cls == wire::kClassAny) {
            if (rr.ttl != 0 || rr.rdlength != 0 ||
                (is_meta_type(rr.type) && rr.type != wire::kTypeAny))
                return Failure{wire::kRcodeFormErr, "malformed delete of " + rr.text};
        } else if (rr.cls == wire::kClassNone) {
            if (rr.ttl != 0 || is_meta_type(rr.type))
                return Failure{wire::kRcodeFormErr, "malformed delete of " + rr.text};
        } else {
            return Failure{wire::kRcodeFormErr,
                           "update " + rr.text + ": bad class " + std::to_string(rr.cls)};
        }
    }
    return std::nullopt;
}

/// The RNAME-free form the store keeps `rr` in: the record read through the
/// zone loader and written back (`CNAME <trigger name>` becomes
/// `CNAME rpz-passthru.`, a DNAME `CNAME *.`), so deleting what was added
/// matches what is stored. A record that loads as no rule is returned as
/// sent (apply_records reports it).
rpz::ZoneRecord canonical_rr(const rpz::Name& apex, const rpz::ZoneRecord& rr) {
    try {
        rpz::Zone one = rpz::zone_from_records(apex, std::span(&rr, 1), "canonical");
        if (one.rules.size() == 1) {
            auto rrs = rpz::rule_records(apex, one.rules.front());
            if (rrs.size() == 1 && rrs.front().owner == rr.owner) {
                rrs.front().ttl = rr.ttl;
                return std::move(rrs.front());
            }
        }
    } catch (const std::exception&) {
    }
    return rr;
}

/// The records `key` holds once `delta` is applied over `view`'s zone.
template <class View>
std::vector<rpz::ZoneRecord> records_after(const View& view, const rpz::Name& apex,
                                           const rpz::RuleDelta& delta, const rpz::RuleKey& key) {
    for (const auto& r : delta.upserted)
        if (r.trigger == key.trigger && r.key == key.key) return rpz::rule_records(apex, r);
    for (const auto& k : delta.removed)
        if (k == key) return {};
    auto r = view.rule(key);
    return r ? rpz::rule_records(apex, *r) : std::vector<rpz::ZoneRecord>{};
}

/// The outcome of one attempt at computing the change.
struct Computed {
    std::optional<Failure> failure;
    rpz::RuleDelta delta;
    std::uint32_t from_serial = 0;
    std::uint32_t soa_ttl = 0;
    std::vector<std::uint8_t> soa_rdata;
    std::size_t added = 0, removed = 0, changed = 0;
    std::vector<std::string> notes;  ///< ignored apex changes, diagnostics
};

Computed compute(const std::vector<UpdateRr>& pre, const std::vector<UpdateRr>& updates,
                 store::Store& store, const ZoneConfig& zone, std::uint16_t zclass,
                 const std::string& label) {
    Computed c;
    auto snap = store.snapshot({zone.name});
    if (snap->zone_count() != 1) {
        c.failure = Failure{wire::kRcodeNotAuth,
                            "zone not in the store (load it first with dnsfw zone load)"};
        return c;
    }
    ZoneView view(*snap, zone.apex);
    c.from_serial = view.info().serial;
    c.soa_ttl = view.info().soa_ttl;
    c.soa_rdata = view.info().soa_rdata;
    if ((c.failure = check_prerequisites(pre, view, zone.apex, zclass))) return c;
    if ((c.failure = prescan(updates, zone.apex, zclass))) return c;

    // Apply the updates in order to working copies of the touched owners.
    std::map<rpz::Name, std::vector<rpz::ZoneRecord>> original, work;
    auto owner_set = [&](const rpz::Name& name) -> std::vector<rpz::ZoneRecord>& {
        auto it = work.find(name);
        if (it != work.end()) return it->second;
        auto records = view.at(name);
        original[name] = records;
        return work[name] = std::move(records);
    };
    auto apex_soa_ns = [&](const UpdateRr& rr) {
        return rr.owner == zone.apex && (rr.type == wire::kTypeSoa || rr.type == wire::kTypeNs);
    };
    for (const UpdateRr& rr : updates) {
        if (apex_soa_ns(rr)) {
            c.notes.push_back("ignored " + rr.text + " change at the apex (managed by dnsfw)");
            continue;
        }
        auto& set = owner_set(rr.owner);
        if (rr.cls == zclass) {
            const bool has_cname = std::any_of(
                set.begin(), set.end(), [](const auto& r) { return r.type == wire::kTypeCname; });
            const bool has_other = std::any_of(
                set.begin(), set.end(), [](const auto& r) { return r.type != wire::kTypeCname; });
            rpz::ZoneRecord add = canonical_rr(zone.apex, {rr.owner, rr.type, rr.ttl, rr.rdata});
            if (add.type == wire::kTypeCname) {
                if (has_other) {
                    c.notes.push_back("ignored CNAME add at " + rpz::name_to_text(rr.owner) +
                                      " (other data there)");
                    continue;
                }
                // RFC 2136 3.4.2.2: a CNAME replaces the CNAME (the rule's action).
                std::erase_if(set, [](const auto& r) { return r.type == wire::kTypeCname; });
                set.push_back(std::move(add));
                continue;
            }
            if (has_cname) {
                c.notes.push_back("ignored " + rr.text + " add (a CNAME is there)");
                continue;
            }
            // RFC 2181 5.2: one TTL per RRset; the RRset takes the new one.
            for (auto& r : set)
                if (r.type == add.type) r.ttl = add.ttl;
            auto same =
                std::find_if(set.begin(), set.end(), [&](const auto& r) { return r.same_rr(add); });
            if (same == set.end()) set.push_back(std::move(add));
        } else if (rr.cls == wire::kClassAny) {
            if (rr.type == wire::kTypeAny) {
                set.clear();
            } else if (rr.type == kTypeDname) {
                // A DNAME is stored as its meaning, NODATA (`CNAME *.`).
                std::erase_if(set, [](const auto& r) {
                    return r.type == wire::kTypeCname && r.rdata == kNodataTarget;
                });
            } else {
                std::erase_if(set, [&](const auto& r) { return r.type == rr.type; });
            }
        } else {  // NONE: delete one RR, compared in the form the store keeps
            const rpz::ZoneRecord del =
                canonical_rr(zone.apex, {rr.owner, rr.type, rr.ttl, rr.rdata});
            std::erase_if(set, [&](const auto& r) { return r.same_rr(del); });
        }
    }

    // The RR-level difference, owner by owner.
    std::vector<rpz::ZoneRecord> removed, added;
    for (const auto& [name, final_set] : work) {
        const auto& before = original[name];
        for (const auto& r : before) {
            auto it = std::find_if(final_set.begin(), final_set.end(),
                                   [&](const auto& f) { return f.same_rr(r); });
            if (it == final_set.end() || it->ttl != r.ttl) removed.push_back(r);
        }
        for (const auto& f : final_set) {
            auto it = std::find_if(before.begin(), before.end(),
                                   [&](const auto& r) { return r.same_rr(f); });
            if (it == before.end() || it->ttl != f.ttl) added.push_back(f);
        }
    }
    if (removed.empty() && added.empty()) return c;

    std::vector<rpz::Diagnostic> diags;
    c.delta = rpz::apply_records(
        zone.apex, removed, added, [&](const rpz::RuleKey& k) { return view.rule(k); }, label,
        diags);
    bool error = false;
    for (const auto& d : diags) {
        c.notes.push_back(d.to_string());
        if (d.severity == rpz::Diagnostic::Severity::Error) error = true;
    }
    if (error) {
        c.failure = Failure{wire::kRcodeRefused, "the policy zone cannot hold these records"};
        return c;
    }
    // A record skipped with only a warning (e.g. an unknown rpz-* CNAME
    // target, a DNSSEC type) must not be answered with success either:
    // every added RR has to be in the result.
    for (std::size_t j = 0; j < added.size(); ++j) {
        const rpz::ZoneRecord& rr = added[j];
        std::optional<rpz::RuleKey> key;
        try {
            key = rpz::classify_owner(zone.apex, rr.owner);
        } catch (const std::exception&) {
        }
        bool stored = false;
        if (key) {
            const auto after = records_after(view, zone.apex, c.delta, *key);
            stored = std::any_of(after.begin(), after.end(),
                                 [&](const rpz::ZoneRecord& r) { return r.same_rr(rr); });
        }
        if (!stored) {
            std::string why;
            const std::size_t line = removed.size() + j + 1;
            for (const auto& d : diags)
                if (d.line == line) why += (why.empty() ? "" : "; ") + d.message;
            c.failure = Failure{wire::kRcodeRefused,
                                "record " + rpz::name_to_text(rr.owner) + " " + type_text(rr.type) +
                                    " would not be enforced" + (why.empty() ? "" : ": " + why)};
            return c;
        }
    }
    c.removed = c.delta.removed.size();
    for (const auto& rule : c.delta.upserted) {
        if (view.rule(rpz::RuleKey{rule.trigger, rule.key}))
            ++c.changed;
        else
            ++c.added;
    }
    // A replaced rule is listed in `removed` and `upserted` by some producers:
    // count it once, as changed.
    for (const auto& k : c.delta.removed) {
        if (std::any_of(c.delta.upserted.begin(), c.delta.upserted.end(), [&](const rpz::Rule& r) {
                return r.trigger == k.trigger && r.key == k.key;
            }))
            --c.removed;
    }
    return c;  // the snapshot is released here, before any write
}

}  // namespace

Outcome handle_update(Request& req, const ZoneConfig& zone, store::Store& store, const LogFn& log) {
    Outcome out;
    const std::string who = "UPDATE from " + req.peer_text +
                            (req.key_name.empty() ? " (unsigned)" : " (key " + req.key_name + ")");
    auto answer = [&](std::uint8_t rcode) {
        out.messages.push_back(error_message(req, rcode));
        return std::move(out);
    };
    if (req.qtype != wire::kTypeSoa) {
        log_zone(log, "warning", zone.name, who + ": zone section type is not SOA: FORMERR");
        return answer(wire::kRcodeFormErr);
    }
    if (req.qclass != wire::kClassIn) {
        log_zone(log, "warning", zone.name,
                 who + ": zone class " + std::to_string(req.qclass) + ": NOTAUTH");
        return answer(wire::kRcodeNotAuth);
    }
    if (!zone.primaries.empty()) {
        log_zone(log, "warning", zone.name,
                 who + " refused: the zone is a secondary (its primaries are the source)");
        return answer(wire::kRcodeRefused);
    }
    if (!acl_match(zone.allow_update, *req.peer, req.key_name)) {
        log_zone(log, "warning", zone.name, who + " refused: not allowed by allow-update");
        return answer(wire::kRcodeRefused);
    }

    std::vector<UpdateRr> pre, updates;
    try {
        std::size_t pos = req.after_question;
        pre = read_section(req.bytes, pos, req.header.ancount);
        updates = read_section(req.bytes, pos, req.header.nscount);
    } catch (const Failure& f) {
        log_zone(log, "warning", zone.name, who + ": " + f.reason + ": FORMERR");
        return answer(f.rcode);
    }

    const std::string label = "UPDATE from " + req.peer_text;
    for (int attempt = 1;; ++attempt) {
        Computed c = compute(pre, updates, store, zone, req.qclass, label);
        for (const auto& note : c.notes) log_zone(log, "info", zone.name, who + ": " + note);
        if (c.failure) {
            log_zone(log, c.failure->rcode == wire::kRcodeRefused ? "warning" : "info", zone.name,
                     who + ": " + c.failure->reason + ": " + wire::rcode_name(c.failure->rcode));
            return answer(c.failure->rcode);
        }
        if (c.delta.empty()) {
            log_zone(log, "info", zone.name,
                     who + ": no change (serial stays " + std::to_string(c.from_serial) + ")");
            return answer(wire::kRcodeNoError);
        }
        store::ZoneDelta delta;
        delta.zone = zone.name;
        delta.from_serial = c.from_serial;
        delta.to_serial = c.from_serial + 1;  // RFC 1982: wraps modulo 2^32
        delta.soa_ttl = c.soa_ttl;
        delta.soa_rdata = wire::with_soa_serial(c.soa_rdata, delta.to_serial);
        delta.changes = std::move(c.delta);
        try {
            store.apply_delta(delta);
        } catch (const store::StoreError& e) {
            if (e.code() == store::kSerialMismatch && attempt < 3) continue;  // changed under us
            log_zone(log, "error", zone.name,
                     who + ": cannot store the change: " + e.what() + ": SERVFAIL");
            try {
                auto st = store.status(zone.name).value_or(store::ZoneStatus{});
                const auto now = static_cast<std::uint64_t>(std::time(nullptr));
                st.last_attempt = st.last_failure = now;
                st.last_error = std::string("UPDATE: ") + e.what();
                store.put_status(zone.name, st);
            } catch (const std::exception&) {
            }
            return answer(wire::kRcodeServFail);
        }
        log_zone(log, "info", zone.name,
                 who + ": serial " + std::to_string(delta.from_serial) + " -> " +
                     std::to_string(delta.to_serial) + ": " + std::to_string(c.added) +
                     " rules added, " + std::to_string(c.removed) + " removed, " +
                     std::to_string(c.changed) + " changed");
        try {
            auto st = store.status(zone.name).value_or(store::ZoneStatus{});
            const auto now = static_cast<std::uint64_t>(std::time(nullptr));
            st.last_attempt = st.last_success = now;
            ++st.updates;
            st.last_source = "UPDATE from " + req.peer_address +
                             (req.key_name.empty() ? "" : " key " + req.key_name);
            store.put_status(zone.name, st);
        } catch (const std::exception& e) {
            log_zone(log, "warning", zone.name, std::string("cannot record status: ") + e.what());
        }
        out.changed_zone = zone.name;
        return answer(wire::kRcodeNoError);
    }
}

}  // namespace dnsfw::xfrd::detail
