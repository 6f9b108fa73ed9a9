// dnsfw::rpz — policy zone master files (via ldns) and the parse entry points.
//
// ldns reads the file record by record, so $ORIGIN, $TTL, '@', relative
// names and owner-less continuation lines work as in any master file; a
// record ldns cannot parse is reported with its line and skipped. Every
// record it can parse goes, as a ZoneRecord, through the validation path
// shared with zone transfers (detail::RecordLoader, record_loader.cpp):
// classified (apex SOA/NS, out of zone, DNSSEC, unsupported trigger, QNAME
// trigger) and turned into a rule candidate.
#include "rpz/zone_builder.hpp"

#include <ldns/ldns.h>
#include <stdio_ext.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>
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

std::span<const std::uint8_t> rdf_bytes(const ldns_rdf* rdf) noexcept {
    if (rdf == nullptr) return {};
    return {ldns_rdf_data(rdf), ldns_rdf_size(rdf)};
}

class RpzParser {
public:
    RpzParser(ZoneBuilder& builder, Zone& zone) : b_(builder), zone_(zone), loader_(builder, zone) {}

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

    /// Hands one parsed record to the shared validation path
    /// (detail::RecordLoader) as a canonical ZoneRecord.
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
        ldns_rr2canonical(rr);  // lower-cases the owner and case-insensitive rdata names
        const auto owner = rdf_bytes(ldns_rr_owner(rr));
        rec_.owner.assign(owner.begin(), owner.end());
        rec_.type = type;
        rec_.ttl = ldns_rr_ttl(rr);
        rdata_wire(rr, rec_.rdata);
        loader_.load(rec_, line, true);
    }

    /// Writes the rdata of `rr` in wire form into `out` (reusing its capacity).
    void rdata_wire(const ldns_rr* rr, std::vector<std::uint8_t>& out) {
        if (!buf_) {
            buf_.reset(ldns_buffer_new(512));
            if (!buf_) throw std::bad_alloc();
        }
        ldns_buffer_clear(buf_.get());
        if (ldns_rr_rdata2buffer_wire(buf_.get(), rr) != LDNS_STATUS_OK)
            throw std::bad_alloc();  // only fails when the buffer cannot grow
        const std::uint8_t* p = ldns_buffer_begin(buf_.get());
        out.assign(p, p + ldns_buffer_position(buf_.get()));
    }

    ZoneBuilder& b_;
    Zone& zone_;
    detail::RecordLoader loader_;
    ZoneRecord rec_;  // reused: keeps its buffers' capacity between records
    BufferPtr buf_;
};

void validate_list_options(InputFormat format, const ListOptions& options) {
    if (format != InputFormat::Rpz && options.action == Action::LocalData)
        throw std::invalid_argument("lists cannot carry local data: choose another action");
}

/// About how many records a master file holds (its lines, but not more
/// than one per 8 octets): a capacity hint for the builder.
std::size_t record_estimate(std::string_view text) noexcept {
    const auto lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
    return std::min(lines, text.size() / 8 + 1);
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
    // Read whole, then parsed from memory like parse_zone_text: for master
    // files this also spares a lseek(2) per record (the parser asks for the
    // position of each record, and ftell on a file stream is a system call).
    FilePtr fp(std::fopen(path.c_str(), "rb"));
    if (!fp) throw std::runtime_error(path + ": cannot open file");
    std::string text;
    struct stat st {};
    if (::fstat(::fileno(fp.get()), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        text.reserve(static_cast<std::size_t>(st.st_size));
    std::array<char, 65536> chunk;
    std::size_t n = 0;
    while ((n = std::fread(chunk.data(), 1, chunk.size(), fp.get())) > 0)
        text.append(chunk.data(), n);
    if (std::ferror(fp.get())) throw std::runtime_error(path + ": read error");
    fp.reset();
    return parse_zone_text(text, path, zone_name, format, list_options);
}

Zone parse_zone_text(std::string_view text, const std::string& label, const Name& zone_name,
                     InputFormat format, const ListOptions& list_options) {
    validate_list_options(format, list_options);
    Zone zone;
    zone.name = detail::checked_zone_name(zone_name);
    ZoneBuilder builder(zone, label);
    if (format == InputFormat::Rpz) {
        if (!text.empty()) {
            builder.reserve(record_estimate(text));
            // ldns reads from a FILE*; fmemopen reads the caller's buffer in place.
            FilePtr fp(fmemopen(const_cast<char*>(text.data()), text.size(), "r"));
            if (!fp) throw std::runtime_error(label + ": cannot read text");
            // Only this thread reads the stream: without this glibc takes the
            // stream's lock for each character ldns reads (5x slower).
            __fsetlocking(fp.get(), FSETLOCKING_BYCALLER);
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
