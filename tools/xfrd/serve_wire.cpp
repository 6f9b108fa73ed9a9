// dnsfw::xfrd internal — DNS wire-format helpers (see serve_wire.hpp).
#include "tools/xfrd/serve_wire.hpp"

#include <ldns/ldns.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <memory>

namespace dnsfw::xfrd::wire {

namespace {

struct RrFree {
    void operator()(ldns_rr* rr) const noexcept { ldns_rr_free(rr); }
};
struct BufferFree {
    void operator()(ldns_buffer* b) const noexcept { ldns_buffer_free(b); }
};
using RrPtr = std::unique_ptr<ldns_rr, RrFree>;
using BufferPtr = std::unique_ptr<ldns_buffer, BufferFree>;

/// Offset of the SOA serial in uncompressed rdata: after MNAME and RNAME.
std::optional<std::size_t> soa_serial_offset(std::span<const std::uint8_t> rdata) {
    const std::size_t m = rpz::name_wire_length(rdata);
    if (m == 0) return std::nullopt;
    const std::size_t r = rpz::name_wire_length(rdata.subspan(m));
    if (r == 0 || rdata.size() != m + r + 20) return std::nullopt;
    return m + r;
}

std::uint8_t lower(std::uint8_t c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<std::uint8_t>(c + 32) : c;
}

}  // namespace

std::string rcode_name(unsigned rcode) {
    static const char* const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                        "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
                                        "NXRRSET", "NOTAUTH", "NOTZONE"};
    if (rcode < std::size(names)) return names[rcode];
    return "RCODE" + std::to_string(rcode);
}

std::optional<Header> read_header(std::span<const std::uint8_t> msg) noexcept {
    if (msg.size() < kHeaderSize) return std::nullopt;
    const std::uint8_t* p = msg.data();
    return Header{get16(p), get16(p + 2), get16(p + 4), get16(p + 6), get16(p + 8), get16(p + 10)};
}

bool read_name(std::span<const std::uint8_t> msg, std::size_t& pos, rpz::Name& out) {
    out.clear();
    std::size_t p = pos;
    bool jumped = false;
    unsigned jumps = 0;
    while (true) {
        if (p >= msg.size()) return false;
        const std::uint8_t len = msg[p];
        if ((len & 0xc0) == 0xc0) {
            if (p + 1 >= msg.size()) return false;
            const std::size_t target = static_cast<std::size_t>(((len & 0x3f) << 8) | msg[p + 1]);
            if (!jumped) pos = p + 2;
            jumped = true;
            // Pointers must go backwards; a bound on jumps stops loops anyway.
            if (target >= p || ++jumps > 127) return false;
            p = target;
            continue;
        }
        if ((len & 0xc0) != 0) return false;  // extended label types are not supported
        if (p + 1 + len > msg.size()) return false;
        if (out.size() + 1 + len > rpz::kMaxNameWire) return false;
        out.insert(out.end(), msg.begin() + static_cast<long>(p),
                   msg.begin() + static_cast<long>(p + 1 + len));
        p += 1 + len;
        if (len == 0) break;
    }
    if (!jumped) pos = p;
    return true;
}

void lower_name(rpz::Name& name) noexcept {
    for (auto& c : name) c = lower(c);
}

bool read_question(std::span<const std::uint8_t> msg, std::size_t& pos, rpz::Name& qname,
                   std::uint16_t& qtype, std::uint16_t& qclass) {
    if (!read_name(msg, pos, qname)) return false;
    if (pos + 4 > msg.size()) return false;
    qtype = get16(msg.data() + pos);
    qclass = get16(msg.data() + pos + 2);
    pos += 4;
    return true;
}

bool read_rr(std::span<const std::uint8_t> msg, std::size_t& pos, RawRr& rr) {
    rr.start = pos;
    if (!read_name(msg, pos, rr.owner)) return false;
    if (pos + 10 > msg.size()) return false;
    const std::uint8_t* p = msg.data() + pos;
    rr.type = get16(p);
    rr.cls = get16(p + 2);
    rr.ttl = get32(p + 4);
    rr.rdlength = get16(p + 8);
    rr.rdata = pos + 10;
    if (rr.rdata + rr.rdlength > msg.size()) return false;
    pos = rr.end = rr.rdata + rr.rdlength;
    return true;
}

TsigLocation locate_tsig(std::span<const std::uint8_t> msg) {
    TsigLocation loc;
    const auto h = read_header(msg);
    if (!h) {
        loc.malformed = true;
        return loc;
    }
    std::size_t pos = kHeaderSize;
    rpz::Name qname;
    std::uint16_t qtype = 0, qclass = 0;
    for (unsigned i = 0; i < h->qdcount; ++i) {
        if (!read_question(msg, pos, qname, qtype, qclass)) {
            loc.malformed = true;
            return loc;
        }
    }
    const unsigned total = unsigned{h->ancount} + h->nscount + h->arcount;
    RawRr rr;
    for (unsigned i = 0; i < total; ++i) {
        if (!read_rr(msg, pos, rr)) {
            loc.malformed = true;
            return loc;
        }
        if (rr.type == kTypeTsig) {
            // Only the last record of the additional section may be a TSIG.
            if (i + 1 != total || h->arcount == 0 || loc.found) {
                loc.malformed = true;
                return loc;
            }
            loc.rr = rr;
            loc.found = true;
        }
    }
    if (pos != msg.size()) loc.malformed = true;  // trailing junk
    return loc;
}

// ---------------------------------------------------------------------------
// MessageBuilder

MessageBuilder::MessageBuilder(std::uint16_t id, std::uint16_t flags) {
    buf_.reserve(512);
    put16(buf_, id);
    put16(buf_, flags);
    for (int i = 0; i < 4; ++i) put16(buf_, 0);
}

void MessageBuilder::question(std::span<const std::uint8_t> qname, std::uint16_t qtype,
                              std::uint16_t qclass) {
    put_name(qname);
    put16(buf_, qtype);
    put16(buf_, qclass);
    ++counts_[0];
}

void MessageBuilder::add(Section section, std::span<const std::uint8_t> owner, std::uint16_t type,
                         std::uint16_t cls, std::uint32_t ttl,
                         std::span<const std::uint8_t> rdata) {
    const int s = static_cast<int>(section);
    if (s < section_) throw std::logic_error("MessageBuilder: sections out of order");
    section_ = s;
    put_name(owner);
    put16(buf_, type);
    put16(buf_, cls);
    put32(buf_, ttl);
    put16(buf_, static_cast<std::uint16_t>(rdata.size()));
    buf_.insert(buf_.end(), rdata.begin(), rdata.end());
    ++counts_[1 + s];
}

void MessageBuilder::set_rcode(std::uint8_t rcode) noexcept {
    buf_[3] = static_cast<std::uint8_t>((buf_[3] & 0xf0) | (rcode & 0x0f));
}

std::size_t MessageBuilder::record_count() const noexcept {
    return std::size_t{counts_[1]} + counts_[2] + counts_[3];
}

void MessageBuilder::put_name(std::span<const std::uint8_t> name) {
    // Find the longest suffix of `name` already written; write the labels
    // before it, then a pointer. Register every new suffix that lies within
    // pointer range.
    std::size_t p = 0;
    std::string key;
    while (p < name.size() && name[p] != 0) {
        key.assign(name.begin() + static_cast<long>(p), name.end());
        for (auto& c : key) c = static_cast<char>(lower(static_cast<std::uint8_t>(c)));
        const auto it = names_.find(key);
        if (it != names_.end()) {
            put16(buf_, static_cast<std::uint16_t>(0xc000 | it->second));
            return;
        }
        if (buf_.size() < 0x4000) names_.emplace(key, static_cast<std::uint16_t>(buf_.size()));
        const std::size_t len = name[p];
        buf_.insert(buf_.end(), name.begin() + static_cast<long>(p),
                    name.begin() + static_cast<long>(p + 1 + len));
        p += 1 + len;
    }
    buf_.push_back(0);
}

std::vector<std::uint8_t> MessageBuilder::finish() {
    for (int i = 0; i < 4; ++i) set16(buf_, 4 + 2 * static_cast<std::size_t>(i), counts_[i]);
    names_.clear();
    return std::move(buf_);
}

// ---------------------------------------------------------------------------
// Records

std::optional<rpz::ZoneRecord> zone_record_from_ldns(const ldns_rr* rr) {
    RrPtr copy(ldns_rr_clone(rr));
    if (!copy) return std::nullopt;
    ldns_rr2canonical(copy.get());
    rpz::ZoneRecord out;
    const ldns_rdf* owner = ldns_rr_owner(copy.get());
    if (!owner) return std::nullopt;
    out.owner.assign(ldns_rdf_data(owner), ldns_rdf_data(owner) + ldns_rdf_size(owner));
    out.type = static_cast<std::uint16_t>(ldns_rr_get_type(copy.get()));
    out.ttl = ldns_rr_ttl(copy.get());
    BufferPtr buf(ldns_buffer_new(256));
    if (!buf) return std::nullopt;
    if (ldns_rr_rdata2buffer_wire(buf.get(), copy.get()) != LDNS_STATUS_OK) return std::nullopt;
    const std::uint8_t* p = ldns_buffer_begin(buf.get());
    out.rdata.assign(p, p + ldns_buffer_position(buf.get()));
    return out;
}

std::vector<std::uint8_t> canonical_rdata(std::uint16_t type, std::span<const std::uint8_t> rdata) {
    std::vector<std::uint8_t> wire;
    wire.reserve(11 + rdata.size());
    wire.push_back(0);  // root owner
    put16(wire, type);
    put16(wire, kClassIn);
    put32(wire, 0);
    put16(wire, static_cast<std::uint16_t>(rdata.size()));
    wire.insert(wire.end(), rdata.begin(), rdata.end());
    ldns_rr* raw = nullptr;
    std::size_t pos = 0;
    if (ldns_wire2rr(&raw, wire.data(), wire.size(), &pos, LDNS_SECTION_ANSWER) != LDNS_STATUS_OK)
        return {rdata.begin(), rdata.end()};
    RrPtr rr(raw);
    auto rec = zone_record_from_ldns(rr.get());
    if (!rec) return {rdata.begin(), rdata.end()};
    return std::move(rec->rdata);
}

std::string peer_text(const sockaddr_storage& peer) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (peer.ss_family == AF_INET) {
        const auto* a = reinterpret_cast<const sockaddr_in*>(&peer);
        inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
        return std::string(buf) + ":" + std::to_string(ntohs(a->sin_port));
    }
    if (peer.ss_family == AF_INET6) {
        const auto* a = reinterpret_cast<const sockaddr_in6*>(&peer);
        inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
        return "[" + std::string(buf) + "]:" + std::to_string(ntohs(a->sin6_port));
    }
    return "<unknown peer>";
}

std::optional<std::uint32_t> soa_serial(std::span<const std::uint8_t> soa_rdata) {
    const auto at = soa_serial_offset(soa_rdata);
    if (!at) return std::nullopt;
    return get32(soa_rdata.data() + *at);
}

std::vector<std::uint8_t> with_soa_serial(std::span<const std::uint8_t> soa_rdata,
                                          std::uint32_t serial) {
    std::vector<std::uint8_t> out(soa_rdata.begin(), soa_rdata.end());
    if (const auto at = soa_serial_offset(soa_rdata)) {
        set16(out, *at, static_cast<std::uint16_t>(serial >> 16));
        set16(out, *at + 2, static_cast<std::uint16_t>(serial));
    }
    return out;
}

std::optional<rpz::Name> soa_mname(std::span<const std::uint8_t> soa_rdata) {
    if (!soa_serial_offset(soa_rdata)) return std::nullopt;
    const std::size_t m = rpz::name_wire_length(soa_rdata);
    return rpz::Name(soa_rdata.begin(), soa_rdata.begin() + static_cast<long>(m));
}

}  // namespace dnsfw::xfrd::wire
