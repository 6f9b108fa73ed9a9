// dnsfw::rpz — policy zone master files (via ldns) and the parse entry points.
//
// ldns reads the file record by record, so $ORIGIN, $TTL, '@', relative
// names and owner-less continuation lines work as in any master file; a
// record ldns cannot parse is reported with its line and skipped. Every
// record it can parse is then classified (apex SOA/NS, out of zone, DNSSEC,
// unsupported trigger, QNAME trigger) and turned into a rule candidate.
#include "rpz/zone_builder.hpp"

#include <ldns/ldns.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <stdexcept>

namespace dnsfw::rpz {
namespace {

using detail::ZoneBuilder;

struct FileCloser {
    void operator()(FILE* f) const noexcept { std::fclose(f); }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

struct RrFree {
    void operator()(ldns_rr* rr) const noexcept { ldns_rr_free(rr); }
};
using RrPtr = std::unique_ptr<ldns_rr, RrFree>;

struct BufferFree {
    void operator()(ldns_buffer* b) const noexcept { ldns_buffer_free(b); }
};
using BufferPtr = std::unique_ptr<ldns_buffer, BufferFree>;

struct CFree {
    void operator()(char* p) const noexcept { std::free(p); }
};

/// Owns an ldns_rdf* that ldns itself replaces in place ($ORIGIN, previous
/// owner), hence the raw slot rather than a unique_ptr.
class RdfSlot {
public:
    explicit RdfSlot(ldns_rdf* p = nullptr) noexcept : p_(p) {}
    ~RdfSlot() { ldns_rdf_deep_free(p_); }
    RdfSlot(const RdfSlot&) = delete;
    RdfSlot& operator=(const RdfSlot&) = delete;
    ldns_rdf** slot() noexcept { return &p_; }

private:
    ldns_rdf* p_;
};

constexpr std::uint16_t kTypeNs = 2;
constexpr std::uint16_t kTypeCname = 5;
constexpr std::uint16_t kTypeSoa = 6;
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

std::string type_name(std::uint16_t t) {
    std::unique_ptr<char, CFree> s(ldns_rr_type2str(static_cast<ldns_rr_type>(t)));
    return s ? std::string(s.get()) : "TYPE" + std::to_string(t);
}

std::span<const std::uint8_t> rdf_bytes(const ldns_rdf* rdf) noexcept {
    if (rdf == nullptr) return {};
    return {ldns_rdf_data(rdf), ldns_rdf_size(rdf)};
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
bool in_zone(const Name& owner, const std::vector<std::size_t>& offs, const Name& apex) {
    if (owner.size() < apex.size()) return false;
    const std::size_t at = owner.size() - apex.size();
    if (!std::equal(owner.begin() + static_cast<long>(at), owner.end(), apex.begin()))
        return false;
    // The match must start at a label boundary ("xexample.com" is not in "example.com").
    return at == owner.size() - 1 || std::find(offs.begin(), offs.end(), at) != offs.end();
}

class RpzParser {
public:
    RpzParser(ZoneBuilder& builder, Zone& zone) : b_(builder), zone_(zone) {}

    void run(FILE* fp) {
        uint32_t default_ttl = 0;
        RdfSlot origin(ldns_rdf_new_frm_data(LDNS_RDF_TYPE_DNAME, zone_.name.size(),
                                             zone_.name.data()));
        RdfSlot prev;
        if (*origin.slot() == nullptr) throw std::bad_alloc();
        int line_nr = 0;
        while (!std::feof(fp)) {
            const int before = line_nr;
            const long start = std::ftell(fp);
            ldns_rr* raw = nullptr;
            ldns_status s =
                ldns_rr_new_frm_fp_l(&raw, fp, &default_ttl, origin.slot(), prev.slot(), &line_nr);
            RrPtr rr(raw);
            if (std::ferror(fp)) throw std::runtime_error(b_.label() + ": read error");
            // ldns counts the newlines it consumed: that is the record's last
            // line, except for a final line without a newline.
            const std::size_t line = static_cast<std::size_t>(std::max(line_nr, before + 1));
            switch (s) {
            case LDNS_STATUS_OK:
                if (rr) record(rr.get(), line);
                break;
            case LDNS_STATUS_SYNTAX_EMPTY:
            case LDNS_STATUS_SYNTAX_TTL:
            case LDNS_STATUS_SYNTAX_ORIGIN:
                break;
            case LDNS_STATUS_SYNTAX_INCLUDE:
                b_.error(line, "$INCLUDE is not supported; directive ignored");
                break;
            default: {
                // ldns may have read past blank lines after the bad record:
                // name the line the record itself is on.
                std::size_t offset = 0;
                std::string why = describe_bad_record(fp, start, s, offset);
                b_.error(std::min(line, static_cast<std::size_t>(before) + 1 + offset), why);
                break;
            }
            }
        }
    }

private:
    /// Re-reads the text ldns rejected (from `start` to the current
    /// position) to name it and, when the owner is at fault, say why.
    /// `line_offset` receives the number of lines between `start` and the
    /// record's first line.
    static std::string describe_bad_record(FILE* fp, long start, ldns_status s,
                                           std::size_t& line_offset) {
        std::string msg = std::string("cannot parse record (") + ldns_get_errorstr_by_id(s) + ")";
        const long end = std::ftell(fp);
        if (start < 0 || end <= start || end - start > 65536) return msg;
        std::string text(static_cast<std::size_t>(end - start), '\0');
        if (std::fseek(fp, start, SEEK_SET) != 0) return msg;
        text.resize(std::fread(text.data(), 1, text.size(), fp));
        std::fseek(fp, end, SEEK_SET);
        // The record is the last non-blank, non-comment line read.
        std::string_view rec;
        std::size_t pos = 0;
        std::size_t lines_before = 0;
        while (pos < text.size()) {
            std::size_t nl = text.find('\n', pos);
            if (nl == std::string::npos) nl = text.size();
            std::string_view l(text.data() + pos, nl - pos);
            std::size_t first = l.find_first_not_of(" \t\r");
            if (first != std::string_view::npos && l[first] != ';' && rec.empty()) {
                rec = l;
                line_offset = lines_before;
            }
            if (rec.empty()) ++lines_before;
            pos = nl + 1;
        }
        while (!rec.empty() && (rec.back() == '\r' || rec.back() == ' ')) rec.remove_suffix(1);
        if (rec.empty()) return msg;
        if (rec.front() != ' ' && rec.front() != '\t' && rec.front() != '$') {
            std::string_view owner = rec.substr(0, rec.find_first_of(" \t"));
            if (owner != "@" && !name_from_text(owner))
                msg = "invalid owner name (empty label, label longer than 63 or name longer than "
                      "255 octets)";
        }
        if (rec.size() > 100) return msg + ": \"" + std::string(rec.substr(0, 100)) + "...\"";
        return msg + ": \"" + std::string(rec) + "\"";
    }

    void record(ldns_rr* rr, std::size_t line) {
        const std::uint16_t type = static_cast<std::uint16_t>(ldns_rr_get_type(rr));
        if (type == 0) {
            b_.error(line, "cannot parse record: unknown directive or RR type");
            return;
        }
        if (ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN) {
            std::unique_ptr<char, CFree> cls(ldns_rr_class2str(ldns_rr_get_class(rr)));
            b_.error(line, std::string("class ") + (cls ? cls.get() : "?") +
                               " is not supported (only IN); record ignored");
            return;
        }
        if (ignored_dnssec_type(type)) {
            if (warned_types_.insert(type).second)
                b_.warning(line, type_name(type) +
                                     " records are ignored in policy zones (reported once)");
            return;
        }
        ldns_rr2canonical(rr);  // lower-cases the owner and case-insensitive rdata names
        Name owner(rdf_bytes(ldns_rr_owner(rr)).begin(), rdf_bytes(ldns_rr_owner(rr)).end());
        if (name_wire_length(owner) != owner.size() || owner.empty()) {
            b_.error(line, "malformed owner name");
            return;
        }
        const std::string owner_text = name_to_text(owner);
        auto offs = label_offsets(owner);
        const std::size_t apex_labels = name_label_count(zone_.name);
        if (!in_zone(owner, offs, zone_.name)) {
            b_.error(line, "owner " + owner_text + " is outside zone " +
                               name_to_text(zone_.name) + "; record ignored");
            return;
        }
        if (owner.size() == zone_.name.size()) {
            apex(rr, type, line);
            return;
        }
        // The trigger's own name: the owner without the apex, as an absolute name.
        Name rel(owner.begin(), owner.end() - static_cast<long>(zone_.name.size()));
        rel.push_back(0);
        offs.resize(offs.size() - apex_labels);
        const std::size_t last = offs.back();
        Trigger trigger = Trigger::Qname;
        for (Trigger t : {Trigger::ClientIp, Trigger::ResponseIp, Trigger::NsDname, Trigger::NsIp})
            if (label_is(rel, last, trigger_label(t))) trigger = t;
        if (trigger == Trigger::Qname && label_starts_with(rel, last, "rpz-")) {
            b_.warning(line, "unknown rpz- trigger label in " + owner_text + "; skipped");
            return;
        }
        for (std::size_t i = 1; i < offs.size(); ++i) {
            if (label_is(rel, offs[i], "*")) {
                b_.error(line, "'*' is only allowed as the leftmost label: " + owner_text +
                                   " skipped");
                return;
            }
        }
        if (type == kTypeSoa || type == kTypeNs) {
            b_.error(line, type_name(type) + " below the apex is not policy data: " + owner_text +
                               " skipped");
            return;
        }
        // `base`: the name the trigger is about — the owner without the apex
        // and, for the other triggers, without their rpz-* label.
        Name base(rel.begin(), rel.begin() + static_cast<long>(last));
        base.push_back(0);
        if (trigger == Trigger::Qname) base = rel;
        const std::string what(trigger_title(trigger));
        if (base.size() == 1) {
            b_.error(line, what + " owner " + owner_text + " has no " +
                               (is_ip_trigger(trigger) ? "address" : "name") + " before " +
                               std::string(trigger_label(trigger)) + "; skipped");
            return;
        }
        std::vector<std::uint8_t> key;
        if (is_ip_trigger(trigger)) {
            std::string why;
            auto prefix = parse_rpz_ip_labels(base, &why);
            if (!prefix) {
                b_.error(line, "invalid " + what + " owner " + owner_text + ": " + why +
                                   "; record skipped");
                return;
            }
            key = ip_key(*prefix);
        } else {
            const bool wildcard = label_is(base, 0, "*");
            if (wildcard && base.size() == 3) {
                b_.error(line, trigger == Trigger::Qname
                                   ? "wildcard at the zone apex would match every name: " +
                                         owner_text + " skipped"
                                   : "wildcard " + owner_text +
                                         " would match every name server; skipped");
                return;
            }
            std::span<const std::uint8_t> name(base);
            if (wildcard) name = name.subspan(2);
            key = detail::key_of(name);
            if (wildcard) key = detail::wildcard_key(key);
        }

        Rule cand;
        cand.ttl = ldns_rr_ttl(rr);
        if (type == kTypeCname) {
            if (!cname_action(rr, rel, base, cand, line, owner_text)) return;
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
            cand.records.push_back(LocalRecord{type, cand.ttl, rdata_wire(rr)});
        }
        b_.add(trigger, std::move(key), std::move(cand), line, owner_text);
    }

    /// Classifies a CNAME per the draft's special targets.
    /// The obsolete passthru form is a CNAME to the trigger's own name: the
    /// owner without the apex (`trigger_name`), or for IP and NSDNAME triggers
    /// also without the rpz-* label (`base`, e.g. `32.1.2.0.192.` as BIND writes it).
    bool cname_action(ldns_rr* rr, std::span<const std::uint8_t> trigger_name,
                      std::span<const std::uint8_t> base, Rule& cand, std::size_t line,
                      const std::string& owner_text) {
        auto target = rdf_bytes(ldns_rr_rdf(rr, 0));
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

    void apex(ldns_rr* rr, std::uint16_t type, std::size_t line) {
        if (type == kTypeNs) return;
        if (type != kTypeSoa) {
            b_.warning(line, type_name(type) + " record at the zone apex is not a policy rule; ignored");
            return;
        }
        if (have_soa_) {
            b_.warning(line, "second SOA record at the apex ignored");
            return;
        }
        have_soa_ = true;
        zone_.soa_ttl = ldns_rr_ttl(rr);
        zone_.soa_rdata = rdata_wire(rr);
        zone_.serial = ldns_rdf2native_int32(ldns_rr_rdf(rr, 2));
    }

    std::vector<std::uint8_t> rdata_wire(const ldns_rr* rr) {
        if (!buf_) {
            buf_.reset(ldns_buffer_new(512));
            if (!buf_) throw std::bad_alloc();
        }
        ldns_buffer_clear(buf_.get());
        if (ldns_rr_rdata2buffer_wire(buf_.get(), rr) != LDNS_STATUS_OK)
            throw std::bad_alloc();  // only fails when the buffer cannot grow
        const std::uint8_t* p = ldns_buffer_begin(buf_.get());
        return {p, p + ldns_buffer_position(buf_.get())};
    }

    ZoneBuilder& b_;
    Zone& zone_;
    BufferPtr buf_;
    std::set<std::uint16_t> warned_types_;
    bool have_soa_ = false;
    bool warned_dname_ = false;
};

void validate_list_options(InputFormat format, const ListOptions& options) {
    if (format != InputFormat::Rpz && options.action == Action::LocalData)
        throw std::invalid_argument("lists cannot carry local data: choose another action");
}

void finish_list_zone(Zone& zone, const ListOptions& options) {
    zone.serial = 1;
    zone.soa_ttl = options.ttl;
    zone.soa_rdata = detail::synthesised_soa_rdata(zone.name, zone.serial, options.ttl);
}

}  // namespace

Zone parse_zone_file(const std::string& path, const Name& zone_name, InputFormat format,
                     const ListOptions& list_options) {
    validate_list_options(format, list_options);
    if (format != InputFormat::Rpz) {
        FilePtr fp(std::fopen(path.c_str(), "rb"));
        if (!fp) throw std::runtime_error(path + ": cannot open file");
        std::string text;
        std::array<char, 65536> chunk;
        std::size_t n = 0;
        while ((n = std::fread(chunk.data(), 1, chunk.size(), fp.get())) > 0)
            text.append(chunk.data(), n);
        if (std::ferror(fp.get())) throw std::runtime_error(path + ": read error");
        return parse_zone_text(text, path, zone_name, format, list_options);
    }
    Zone zone;
    zone.name = detail::checked_zone_name(zone_name);
    FilePtr fp(std::fopen(path.c_str(), "r"));
    if (!fp) throw std::runtime_error(path + ": cannot open file");
    ZoneBuilder builder(zone, path);
    RpzParser(builder, zone).run(fp.get());
    builder.finish();
    return zone;
}

Zone parse_zone_text(std::string_view text, const std::string& label, const Name& zone_name,
                     InputFormat format, const ListOptions& list_options) {
    validate_list_options(format, list_options);
    Zone zone;
    zone.name = detail::checked_zone_name(zone_name);
    ZoneBuilder builder(zone, label);
    if (format == InputFormat::Rpz) {
        if (!text.empty()) {
            // ldns reads from a FILE*; fmemopen reads the caller's buffer in place.
            FilePtr fp(fmemopen(const_cast<char*>(text.data()), text.size(), "r"));
            if (!fp) throw std::runtime_error(label + ": cannot read text");
            RpzParser(builder, zone).run(fp.get());
        }
    } else {
        detail::parse_list_text(text, builder, format, list_options);
        finish_list_zone(zone, list_options);
    }
    builder.finish();
    return zone;
}

}  // namespace dnsfw::rpz
