// dnsfw::rpz — the one validation path of policy-zone records.
//
// Master files (parse.cpp), zone transfers and UPDATEs (records.cpp) all
// hand their records here as ZoneRecords, so a record received over the
// wire is checked, classified and turned into a rule exactly like the same
// record read from a file. ldns is used for type names and to check and
// canonicalise the rdata of records that did not come through its parser.
#include "rpz/zone_builder.hpp"

#include <ldns/ldns.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

namespace dnsfw::rpz::detail {
namespace {

struct CFree {
    void operator()(char* p) const noexcept { std::free(p); }
};
struct RrFree {
    void operator()(ldns_rr* rr) const noexcept { ldns_rr_free(rr); }
};
struct BufferFree {
    void operator()(ldns_buffer* b) const noexcept { ldns_buffer_free(b); }
};

constexpr std::uint16_t kTypeA = 1;
constexpr std::uint16_t kTypeNs = 2;
constexpr std::uint16_t kTypeCname = 5;
constexpr std::uint16_t kTypeSoa = 6;
constexpr std::uint16_t kTypePtr = 12;
constexpr std::uint16_t kTypeTxt = 16;
constexpr std::uint16_t kTypeAaaa = 28;
constexpr std::uint16_t kTypeDname = 39;

/// The trigger's name in diagnostics.
std::string_view trigger_title(Trigger t) noexcept {
    switch (t) {
    case Trigger::ClientIp: return "Client-IP";
    case Trigger::Qname: return "QNAME";
    case Trigger::ResponseIp: return "Response-IP";
    case Trigger::NsDname: return "NSDNAME";
    case Trigger::NsIp: return "NSIP";
    }
    return "?";
}

bool ignored_dnssec_type(std::uint16_t t) noexcept {
    switch (t) {
    case 43:  // DS
    case 46:  // RRSIG
    case 47:  // NSEC
    case 48:  // DNSKEY
    case 50:  // NSEC3
    case 51:  // NSEC3PARAM
    case 59:  // CDS
    case 60:  // CDNSKEY
    case 63:  // ZONEMD
        return true;
    default:
        return false;
    }
}

/// Label offsets of a valid wire name (excluding the root label).
std::vector<std::size_t> label_offsets(std::span<const std::uint8_t> wire) {
    std::vector<std::size_t> out;
    for (std::size_t pos = 0; wire[pos] != 0; pos += 1u + wire[pos]) out.push_back(pos);
    return out;
}

bool label_is(std::span<const std::uint8_t> wire, std::size_t off, std::string_view text) {
    if (wire[off] != text.size()) return false;
    return std::equal(text.begin(), text.end(), wire.begin() + static_cast<long>(off) + 1);
}

bool label_starts_with(std::span<const std::uint8_t> wire, std::size_t off,
                       std::string_view prefix) {
    if (wire[off] < prefix.size()) return false;
    return std::equal(prefix.begin(), prefix.end(), wire.begin() + static_cast<long>(off) + 1);
}

/// A single-label absolute name equal to `text` (e.g. "rpz-drop.").
bool is_single_label(std::span<const std::uint8_t> wire, std::string_view text) {
    return wire.size() == text.size() + 2 && label_is(wire, 0, text) && wire.back() == 0;
}

/// Whether `owner` (with label offsets `offs`) is `apex` or below it.
bool in_zone(std::span<const std::uint8_t> owner, const std::vector<std::size_t>& offs,
             const Name& apex) {
    if (owner.size() < apex.size()) return false;
    const std::size_t at = owner.size() - apex.size();
    if (!std::equal(owner.begin() + static_cast<long>(at), owner.end(), apex.begin()))
        return false;
    // The match must start at a label boundary ("xexample.com" is not in "example.com").
    return at == owner.size() - 1 || std::find(offs.begin(), offs.end(), at) != offs.end();
}

void lower_name_in_place(std::span<std::uint8_t> wire) noexcept {
    for (std::size_t i = 0; i < wire.size() && wire[i] != 0; i += 1u + wire[i])
        for (std::size_t j = i + 1; j <= i + wire[i] && j < wire.size(); ++j)
            if (wire[j] >= 'A' && wire[j] <= 'Z') wire[j] = static_cast<std::uint8_t>(wire[j] + 32);
}

OwnerClass problem(Diagnostic::Severity severity, std::string reason, std::string suffix) {
    OwnerClass c;
    c.kind = OwnerClass::Kind::Problem;
    c.severity = severity;
    c.reason = std::move(reason);
    c.suffix = std::move(suffix);
    return c;
}

std::uint32_t get32(const std::uint8_t* p) noexcept {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           std::uint32_t{p[3]};
}

}  // namespace

std::string type_name(std::uint16_t t) {
    std::unique_ptr<char, CFree> s(ldns_rr_type2str(static_cast<ldns_rr_type>(t)));
    return s ? std::string(s.get()) : "TYPE" + std::to_string(t);
}

OwnerClass classify_owner_name(const Name& apex, std::span<const std::uint8_t> owner,
                               std::uint16_t type) {
    using Sev = Diagnostic::Severity;
    // Only problems name the owner: no text for the (many) good ones.
    const auto owner_text = [owner] { return name_to_text(owner); };
    auto offs = label_offsets(owner);
    if (!in_zone(owner, offs, apex))
        return problem(Sev::Error,
                       "owner " + owner_text() + " is outside zone " + name_to_text(apex),
                       "; record ignored");
    if (owner.size() == apex.size()) {
        OwnerClass c;
        c.kind = OwnerClass::Kind::Apex;
        return c;
    }
    OwnerClass c;
    c.kind = OwnerClass::Kind::Rule;
    // The trigger's own name: the owner without the apex, as an absolute name.
    c.rel.assign(owner.begin(), owner.end() - static_cast<long>(apex.size()));
    c.rel.push_back(0);
    offs.resize(offs.size() - name_label_count(apex));
    const std::size_t last = offs.back();
    for (Trigger t : {Trigger::ClientIp, Trigger::ResponseIp, Trigger::NsDname, Trigger::NsIp})
        if (label_is(c.rel, last, trigger_label(t))) c.trigger = t;
    if (c.trigger == Trigger::Qname && label_starts_with(c.rel, last, "rpz-"))
        return problem(Sev::Warning, "unknown rpz- trigger label in " + owner_text(), "; skipped");
    for (std::size_t i = 1; i < offs.size(); ++i) {
        if (label_is(c.rel, offs[i], "*"))
            return problem(Sev::Error, "'*' is only allowed as the leftmost label: " + owner_text(),
                           " skipped");
    }
    if (type == kTypeSoa || type == kTypeNs)
        return problem(Sev::Error, type_name(type) + " below the apex is not policy data: " +
                                       owner_text(), " skipped");
    // `base`: the name the trigger is about — the owner without the apex
    // and, for the other triggers, without their rpz-* label.
    if (c.trigger == Trigger::Qname) {
        c.base = c.rel;
    } else {
        c.base.assign(c.rel.begin(), c.rel.begin() + static_cast<long>(last));
        c.base.push_back(0);
    }
    const std::string what(trigger_title(c.trigger));
    if (c.base.size() == 1)
        return problem(Sev::Error,
                       what + " owner " + owner_text() + " has no " +
                           (is_ip_trigger(c.trigger) ? "address" : "name") + " before " +
                           std::string(trigger_label(c.trigger)),
                       "; skipped");
    if (is_ip_trigger(c.trigger)) {
        std::string why;
        auto prefix = parse_rpz_ip_labels(c.base, &why);
        if (!prefix)
            return problem(Sev::Error, "invalid " + what + " owner " + owner_text() + ": " + why,
                           "; record skipped");
        c.key = ip_key(*prefix);
    } else {
        const bool wildcard = label_is(c.base, 0, "*");
        if (wildcard && c.base.size() == 3) {
            if (c.trigger == Trigger::Qname)
                return problem(Sev::Error,
                               "wildcard at the zone apex would match every name: " + owner_text(),
                               " skipped");
            return problem(Sev::Error,
                           "wildcard " + owner_text() + " would match every name server",
                           "; skipped");
        }
        std::span<const std::uint8_t> name(c.base);
        if (wildcard) name = name.subspan(2);
        c.key = key_of(name);
        if (wildcard) c.key = wildcard_key(c.key);
    }
    return c;
}

std::optional<ZoneRecord> canonical_record(const ZoneRecord& rr, std::string& why) {
    ZoneRecord out = rr;
    lower_name_in_place(out.owner);
    auto& rd = out.rdata;
    switch (rr.type) {
    case kTypeA:
    case kTypeAaaa:
        if (rd.size() != (rr.type == kTypeA ? 4u : 16u)) {
            why = "malformed " + type_name(rr.type) + " rdata (" + std::to_string(rd.size()) +
                  " octets)";
            return std::nullopt;
        }
        return out;
    case kTypeCname:
    case kTypeDname:
    case kTypeNs:
    case kTypePtr:
        // The whole rdata is one uncompressed name.
        if (rd.empty() || name_wire_length(rd) != rd.size()) {
            why = "malformed " + type_name(rr.type) + " target name";
            return std::nullopt;
        }
        lower_name_in_place(rd);
        return out;
    case kTypeTxt: {
        std::size_t i = 0;
        while (i < rd.size()) i += 1u + rd[i];
        if (rd.empty() || i != rd.size()) {
            why = "malformed TXT rdata (character-strings do not fill it)";
            return std::nullopt;
        }
        return out;
    }
    default:
        break;
    }
    // Every other type: let ldns decode it by its descriptor, lower-case the
    // names RFC 4034 6.2 lists, and write it back uncompressed.
    if (rd.size() > 0xFFFF) {
        why = "rdata longer than 65535 octets";
        return std::nullopt;
    }
    std::vector<std::uint8_t> wire(out.owner.begin(), out.owner.end());
    const std::uint8_t fixed[10] = {static_cast<std::uint8_t>(rr.type >> 8),
                                    static_cast<std::uint8_t>(rr.type),
                                    0,
                                    1,  // class IN
                                    static_cast<std::uint8_t>(rr.ttl >> 24),
                                    static_cast<std::uint8_t>(rr.ttl >> 16),
                                    static_cast<std::uint8_t>(rr.ttl >> 8),
                                    static_cast<std::uint8_t>(rr.ttl),
                                    static_cast<std::uint8_t>(rd.size() >> 8),
                                    static_cast<std::uint8_t>(rd.size())};
    wire.insert(wire.end(), std::begin(fixed), std::end(fixed));
    wire.insert(wire.end(), rd.begin(), rd.end());
    ldns_rr* raw = nullptr;
    std::size_t pos = 0;
    const ldns_status s = ldns_wire2rr(&raw, wire.data(), wire.size(), &pos, LDNS_SECTION_ANSWER);
    std::unique_ptr<ldns_rr, RrFree> parsed(raw);
    const ldns_rr_descriptor* desc = ldns_rr_descript(rr.type);
    if (s != LDNS_STATUS_OK || !parsed || pos != wire.size() ||
        (desc != nullptr && ldns_rr_rd_count(parsed.get()) < ldns_rr_descriptor_minimum(desc))) {
        why = "malformed " + type_name(rr.type) + " rdata" +
              (s != LDNS_STATUS_OK ? std::string(" (") + ldns_get_errorstr_by_id(s) + ")" : "");
        return std::nullopt;
    }
    ldns_rr2canonical(parsed.get());
    std::unique_ptr<ldns_buffer, BufferFree> buf(ldns_buffer_new(rd.size() + 16));
    if (!buf || ldns_rr_rdata2buffer_wire(buf.get(), parsed.get()) != LDNS_STATUS_OK)
        throw std::bad_alloc();
    const std::uint8_t* p = ldns_buffer_begin(buf.get());
    rd.assign(p, p + ldns_buffer_position(buf.get()));
    return out;
}

std::optional<Candidate> RecordLoader::candidate(const ZoneRecord& in, std::size_t line,
                                                 bool canonical) {
    const std::uint16_t type = in.type;
    if (type == 0) {
        b_.error(line, "cannot parse record: unknown directive or RR type");
        return std::nullopt;
    }
    if (ignored_dnssec_type(type)) {
        if (warned_types_.insert(type).second)
            b_.warning(line,
                       type_name(type) + " records are ignored in policy zones (reported once)");
        return std::nullopt;
    }
    if (in.owner.empty() || name_wire_length(in.owner) != in.owner.size()) {
        b_.error(line, "malformed owner name");
        return std::nullopt;
    }
    std::optional<ZoneRecord> copy;
    if (!canonical) {
        std::string why;
        copy = canonical_record(in, why);
        if (!copy) {
            b_.error(line, why + " at " + name_to_text(in.owner) + "; record skipped");
            return std::nullopt;
        }
    }
    const ZoneRecord& rr = copy ? *copy : in;
    OwnerClass oc = classify_owner_name(zone_.name, rr.owner, type);
    if (oc.kind == OwnerClass::Kind::Apex) {
        apex(rr, line);
        return std::nullopt;
    }
    if (oc.kind == OwnerClass::Kind::Problem) {
        if (oc.severity == Diagnostic::Severity::Error)
            b_.error(line, oc.reason + oc.suffix);
        else
            b_.warning(line, oc.reason + oc.suffix);
        return std::nullopt;
    }

    std::string owner_text = name_to_text(rr.owner);
    Candidate c;
    c.trigger = oc.trigger;
    c.key = std::move(oc.key);
    Rule& cand = c.rule;
    cand.ttl = rr.ttl;
    if (type == kTypeCname) {
        if (!cname_action(rr.rdata, oc.rel, oc.base, cand, line, owner_text)) return std::nullopt;
    } else if (type == kTypeDname) {
        // BIND's reading: a DNAME in a policy zone is NODATA at its owner
        // and rewrites nothing below it.
        if (!warned_dname_) {
            warned_dname_ = true;
            b_.warning(line, "DNAME at " + owner_text +
                                 " acts as NODATA at its owner only, not for the names below "
                                 "it (reported once)");
        }
        cand.action = Action::Nodata;
    } else {
        cand.action = Action::LocalData;
        cand.records.push_back(LocalRecord{type, cand.ttl, rr.rdata});
    }
    c.owner_text = std::move(owner_text);
    return c;
}

/// Classifies a CNAME per the draft's special targets.
/// The obsolete passthru form is a CNAME to the trigger's own name: the
/// owner without the apex (`trigger_name`), or for IP and NSDNAME triggers
/// also without the rpz-* label (`base`, e.g. `32.1.2.0.192.` as BIND writes it).
bool RecordLoader::cname_action(std::span<const std::uint8_t> target,
                                std::span<const std::uint8_t> trigger_name,
                                std::span<const std::uint8_t> base, Rule& cand, std::size_t line,
                                const std::string& owner_text) {
    if (name_wire_length(target) != target.size() || target.empty()) {
        b_.error(line, "malformed CNAME target at " + owner_text);
        return false;
    }
    if (target.size() == 1) {
        cand.action = Action::Nxdomain;  // CNAME .
    } else if (is_single_label(target, "*")) {
        cand.action = Action::Nodata;  // CNAME *.
    } else if (is_single_label(target, "rpz-passthru") ||
               std::equal(target.begin(), target.end(), trigger_name.begin(),
                          trigger_name.end()) ||
               std::equal(target.begin(), target.end(), base.begin(), base.end())) {
        cand.action = Action::Passthru;  // also the obsolete CNAME-to-self form
    } else if (is_single_label(target, "rpz-drop")) {
        cand.action = Action::Drop;
    } else if (is_single_label(target, "rpz-tcp-only")) {
        cand.action = Action::TcpOnly;
    } else if (target.size() > 2 && target[0] > 0 && label_starts_with(target, 0, "rpz-") &&
               target[1u + target[0]] == 0) {
        b_.warning(line, "unknown special CNAME target " + name_to_text(target) + " at " +
                             owner_text + "; skipped");
        return false;
    } else if (label_is(target, 0, "*")) {
        cand.action = Action::LocalData;  // CNAME *.suffix: qname prepended to suffix
        cand.flags = kCnameWildcardTarget;
        cand.records.push_back(
            LocalRecord{kTypeCname, cand.ttl, {target.begin() + 2, target.end()}});
    } else {
        cand.action = Action::LocalData;  // redirect
        cand.records.push_back(LocalRecord{kTypeCname, cand.ttl, {target.begin(), target.end()}});
    }
    return true;
}

void RecordLoader::apex(const ZoneRecord& rr, std::size_t line) {
    if (rr.type == kTypeNs) return;
    if (rr.type != kTypeSoa) {
        b_.warning(line,
                   type_name(rr.type) + " record at the zone apex is not a policy rule; ignored");
        return;
    }
    if (have_soa_) {
        // An AXFR ends with the SOA it began with: that copy is no news.
        if (rr.rdata != zone_.soa_rdata || rr.ttl != zone_.soa_ttl)
            b_.warning(line, "second SOA record at the apex ignored");
        return;
    }
    // mname, rname, then serial and four more 32-bit fields.
    const std::span<const std::uint8_t> rd(rr.rdata);
    const std::size_t m = name_wire_length(rd);
    const std::size_t r = m == 0 ? 0 : name_wire_length(rd.subspan(m));
    if (m == 0 || r == 0 || rd.size() != m + r + 20) {
        b_.error(line, "malformed SOA rdata at the apex; ignored");
        return;
    }
    have_soa_ = true;
    zone_.soa_ttl = rr.ttl;
    zone_.soa_rdata = rr.rdata;
    zone_.serial = get32(rd.data() + m + r);
}

}  // namespace dnsfw::rpz::detail
