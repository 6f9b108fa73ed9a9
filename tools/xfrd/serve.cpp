// dnsfw::xfrd — the Responder: parses a request, applies TSIG and the
// zone's ACLs, and answers SOA queries and NOTIFY here; AXFR/IXFR streams
// are built in serve_xfr.cpp and UPDATE in serve_update.cpp.
//
// Order of checks (RFC 8945 first, then access control):
//   1. header: a response or fewer than 12 octets -> no answer;
//      no single question -> FORMERR; unknown opcode -> NOTIMP;
//   2. TSIG: malformed -> FORMERR; unknown key -> NOTAUTH/BADKEY; bad MAC
//      -> NOTAUTH/BADSIG; clock skew -> NOTAUTH/BADTIME (signed);
//   3. zone: not configured -> REFUSED (query) / NOTAUTH (NOTIFY, UPDATE,
//      AXFR/IXFR);
//   4. ACL (allow-transfer for SOA/AXFR/IXFR, primaries + allow-notify for
//      NOTIFY, allow-update for UPDATE) -> REFUSED;
//   5. the answer, signed when the request was.
// Every refusal is logged as "warning zone NAME: ... from PEER ...: reason".
#include "tools/xfrd/serve.hpp"

#include "tools/xfrd/serve_internal.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <exception>

namespace dnsfw::xfrd {

namespace detail {

void log_zone(const LogFn& log, std::string_view level, std::string_view zone,
              const std::string& text) {
    if (!log) return;
    std::string line = "zone ";
    line += zone;
    line += ": ";
    line += text;
    log(level, line);
}

wire::MessageBuilder response_builder(const Request& req, std::uint8_t rcode, bool aa) {
    std::uint16_t flags = static_cast<std::uint16_t>(wire::kFlagQr | (req.header.flags & 0x7800) |
                                                     (req.header.flags & wire::kFlagRd) | rcode);
    if (aa) flags |= wire::kFlagAa;
    wire::MessageBuilder mb(req.header.id, flags);
    if (!req.qname.empty()) mb.question(req.qname, req.qtype, req.qclass);
    return mb;
}

std::vector<std::uint8_t> finish(Request& req, wire::MessageBuilder& mb) {
    std::vector<std::uint8_t> msg = mb.finish();
    if (req.tsig) return req.tsig->sign_response(msg);
    return msg;
}

std::vector<std::uint8_t> error_message(Request& req, std::uint8_t rcode) {
    auto mb = response_builder(req, rcode, false);
    return finish(req, mb);
}

rpz::ZoneRecord soa_record(const rpz::Name& apex, std::uint32_t ttl,
                           std::span<const std::uint8_t> rdata) {
    return rpz::ZoneRecord{apex, wire::kTypeSoa, ttl, {rdata.begin(), rdata.end()}};
}

std::optional<rpz::ZoneRecord> apex_ns(const rpz::Name& apex, const store::ZoneInfo& info) {
    auto mname = wire::soa_mname(info.soa_rdata);
    if (!mname) return std::nullopt;
    wire::lower_name(*mname);
    return rpz::ZoneRecord{apex, wire::kTypeNs, info.soa_ttl, std::move(*mname)};
}

}  // namespace detail

namespace {

using detail::Request;

std::string address_text(const sockaddr_storage& peer) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (peer.ss_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&peer)->sin_addr, buf, sizeof buf);
    else if (peer.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&peer)->sin6_addr, buf,
                  sizeof buf);
    return buf;
}

std::optional<rpz::IpAddress> ip_of(const sockaddr_storage& a) {
    if (a.ss_family == AF_INET)
        return rpz::IpAddress::from_v4(reinterpret_cast<const std::uint8_t*>(
            &reinterpret_cast<const sockaddr_in*>(&a)->sin_addr));
    if (a.ss_family == AF_INET6)
        return rpz::IpAddress::from_v6(reinterpret_cast<const std::uint8_t*>(
            &reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr));
    return std::nullopt;
}

bool same_key(std::string_view a, std::string_view b) {
    auto strip = [](std::string_view s) {
        if (!s.empty() && s.back() == '.') s.remove_suffix(1);
        return s;
    };
    a = strip(a);
    b = strip(b);
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        auto l = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
        if (l(a[i]) != l(b[i])) return false;
    }
    return true;
}

/// Whether a NOTIFY from `peer` signed with `key` comes from one of the
/// zone's primaries (any source port; the primary's key if it has one).
bool from_primary(const ZoneConfig& zone, const sockaddr_storage& peer, std::string_view key) {
    const auto ip = ip_of(peer);
    if (!ip) return false;
    for (const Endpoint& p : zone.primaries) {
        if (ip_of(p.addr) != ip) continue;
        if (p.key.empty() || same_key(p.key, key)) return true;
    }
    return false;
}

std::string_view opcode_name(std::uint8_t op) {
    switch (op) {
        case wire::kOpcodeQuery:
            return "QUERY";
        case wire::kOpcodeNotify:
            return "NOTIFY";
        case wire::kOpcodeUpdate:
            return "UPDATE";
        default:
            return "opcode";
    }
}

std::string_view qtype_name(std::uint16_t t) {
    switch (t) {
        case wire::kTypeSoa:
            return "SOA query";
        case wire::kTypeAxfr:
            return "AXFR";
        case wire::kTypeIxfr:
            return "IXFR";
        default:
            return "query";
    }
}

/// What a request is called in logs: "AXFR", "IXFR", "SOA query", "NOTIFY", "UPDATE".
std::string request_name(const Request& req) {
    if (req.header.opcode() == wire::kOpcodeQuery) return std::string(qtype_name(req.qtype));
    return std::string(opcode_name(req.header.opcode()));
}

}  // namespace

Responder::Responder(store::Store& store, const Config& config, LogFn log)
    : store_(&store), config_(&config), log_(std::move(log)) {}

void Responder::set_config(const Config& config) {
    config_ = &config;
}

namespace {

class Handler {
  public:
    Handler(store::Store& store, const Config& config, const LogFn& log)
        : store_(store), config_(config), log_(log) {}

    Outcome run(Request& req);

  private:
    Outcome reply(Request& req, std::uint8_t rcode) {
        Outcome o;
        o.messages.push_back(detail::error_message(req, rcode));
        return o;
    }
    void warn(const std::string& zone, const std::string& text) {
        detail::log_zone(log_, "warning", zone, text);
    }
    Outcome query(Request& req, const std::string& zone_text);
    Outcome notify(Request& req, const std::string& zone_text);
    Outcome soa_answer(Request& req, const rpz::Name& apex, const store::ZoneInfo& info);
    std::optional<std::uint32_t> ixfr_client_serial(const Request& req, const rpz::Name& apex);

    store::Store& store_;
    const Config& config_;
    const LogFn& log_;
};

Outcome Handler::run(Request& req) {
    const std::uint8_t op = req.header.opcode();
    const auto bytes = req.bytes;
    std::size_t pos = wire::kHeaderSize;
    const bool question_ok = req.header.qdcount == 1 &&
                             wire::read_question(bytes, pos, req.qname, req.qtype, req.qclass);
    if (!question_ok) {
        req.qname.clear();
        detail::log_zone(log_, "debug", ".",
                         std::string(opcode_name(op)) + " from " + req.peer_text +
                             ": no single question: FORMERR");
        return reply(req, op <= wire::kOpcodeUpdate ? wire::kRcodeFormErr : wire::kRcodeNotImp);
    }
    req.after_question = pos;
    req.qname_lower = req.qname;
    wire::lower_name(req.qname_lower);
    const std::string zone_text = rpz::name_to_text(req.qname_lower);

    if (op != wire::kOpcodeQuery && op != wire::kOpcodeNotify && op != wire::kOpcodeUpdate) {
        detail::log_zone(log_, "debug", zone_text,
                         "opcode " + std::to_string(op) + " from " + req.peer_text + ": NOTIMP");
        return reply(req, wire::kRcodeNotImp);
    }

    // TSIG before anything else (RFC 8945 section 5.2).
    const auto loc = wire::locate_tsig(bytes);
    if (loc.malformed) {
        warn(zone_text,
             request_name(req) + " from " + req.peer_text + ": malformed message: FORMERR");
        return reply(req, wire::kRcodeFormErr);
    }
    if (loc.found) {
        auto rec = parse_tsig(bytes);
        if (!rec) {
            warn(zone_text,
                 request_name(req) + " from " + req.peer_text + ": malformed TSIG: FORMERR");
            return reply(req, wire::kRcodeFormErr);
        }
        const TsigKey* key = config_.key(rec->key_name);
        TsigResult r = TsigResult::BadKey;
        std::optional<TsigSession> session;
        if (key) {
            session.emplace(*key);
            r = session->verify_request(bytes);
        } else {
            session.emplace(TsigKey{rec->key_name, rec->algorithm, {}, {}});
        }
        if (r == TsigResult::Ok) {
            req.tsig = std::move(session);
            req.key_name = key->name;
        } else if (r == TsigResult::Malformed) {
            warn(zone_text,
                 request_name(req) + " from " + req.peer_text + ": malformed TSIG: FORMERR");
            return reply(req, wire::kRcodeFormErr);
        } else {
            const std::uint16_t code = r == TsigResult::BadKey    ? 17
                                       : r == TsigResult::BadTime ? 18
                                                                  : 16;
            // BADKEY names the key and algorithm the request used (RFC 8945 5.2.1).
            if (r == TsigResult::BadKey)
                session.emplace(TsigKey{rec->key_name, rec->algorithm, {}, {}});
            warn(zone_text, "TSIG " + std::string(to_string(r)) + " from " + req.peer_text +
                                " (key " + rec->key_name + "): refused");
            auto mb = detail::response_builder(req, wire::kRcodeNotAuth, false);
            Outcome o;
            o.messages.push_back(session->error_response(mb.finish(), code));
            return o;
        }
    }

    try {
        if (op == wire::kOpcodeQuery) return query(req, zone_text);
        if (op == wire::kOpcodeNotify) return notify(req, zone_text);
        const ZoneConfig* zone = config_.zone(zone_text);
        if (!zone) {
            warn(zone_text, "UPDATE from " + req.peer_text + req.key_note() +
                                " refused: zone not configured: NOTAUTH");
            return reply(req, wire::kRcodeNotAuth);
        }
        return detail::handle_update(req, *zone, store_, log_);
    } catch (const std::exception& e) {
        detail::log_zone(
            log_, "error", zone_text,
            request_name(req) + " from " + req.peer_text + " failed: " + e.what() + ": SERVFAIL");
        return reply(req, wire::kRcodeServFail);
    }
}

Outcome Handler::soa_answer(Request& req, const rpz::Name& apex, const store::ZoneInfo& info) {
    auto mb = detail::response_builder(req, wire::kRcodeNoError, true);
    mb.add(wire::MessageBuilder::Section::Answer, apex, wire::kTypeSoa, wire::kClassIn,
           info.soa_ttl, info.soa_rdata);
    Outcome o;
    o.messages.push_back(detail::finish(req, mb));
    return o;
}

std::optional<std::uint32_t> Handler::ixfr_client_serial(const Request& req,
                                                         const rpz::Name& apex) {
    // RFC 1995 section 3: the client's SOA is in the authority section.
    std::size_t pos = req.after_question;
    wire::RawRr rr;
    for (unsigned i = 0; i < req.header.ancount; ++i)
        if (!wire::read_rr(req.bytes, pos, rr)) return std::nullopt;
    for (unsigned i = 0; i < req.header.nscount; ++i) {
        if (!wire::read_rr(req.bytes, pos, rr)) return std::nullopt;
        wire::lower_name(rr.owner);
        if (rr.type != wire::kTypeSoa || rr.owner != apex) continue;
        // The SOA rdata may use compression in its names: walk them.
        std::size_t p = rr.rdata;
        rpz::Name skip;
        const auto msg = req.bytes.first(rr.end);
        if (!wire::read_name(msg, p, skip) || !wire::read_name(msg, p, skip) || p + 20 != rr.end)
            return std::nullopt;
        return wire::get32(req.bytes.data() + p);
    }
    return std::nullopt;
}

Outcome Handler::query(Request& req, const std::string& zone_text) {
    const bool xfr = req.qtype == wire::kTypeAxfr || req.qtype == wire::kTypeIxfr;
    const std::string what = request_name(req);
    if (!xfr && req.qtype != wire::kTypeSoa) {
        detail::log_zone(log_, "debug", zone_text,
                         "query type " + std::to_string(req.qtype) + " from " + req.peer_text +
                             ": REFUSED (only SOA, AXFR and IXFR are served)");
        return reply(req, wire::kRcodeRefused);
    }
    const ZoneConfig* zone = config_.zone(zone_text);
    if (!zone) {
        warn(zone_text,
             what + " from " + req.peer_text + req.key_note() + " refused: zone not configured");
        return reply(req, xfr ? wire::kRcodeNotAuth : wire::kRcodeRefused);
    }
    if (req.qclass != wire::kClassIn && !(req.qclass == wire::kClassAny && !xfr)) {
        warn(zone->name,
             what + " from " + req.peer_text + " refused: class " + std::to_string(req.qclass));
        return reply(req, wire::kRcodeRefused);
    }
    if (!acl_match(zone->allow_transfer, *req.peer, req.key_name)) {
        warn(zone->name,
             what + " from " + req.peer_text +
                 (req.key_name.empty() ? " (unsigned)" : " (key " + req.key_name + ")") +
                 " refused: not allowed by allow-transfer");
        return reply(req, wire::kRcodeRefused);
    }
    if (req.qtype == wire::kTypeAxfr && !req.tcp) {
        warn(zone->name, "AXFR from " + req.peer_text + " over UDP refused (use TCP)");
        return reply(req, wire::kRcodeRefused);
    }

    std::optional<std::uint32_t> client_serial;
    if (req.qtype == wire::kTypeIxfr) {
        client_serial = ixfr_client_serial(req, zone->apex);
        if (!client_serial) {
            warn(zone->name, "IXFR from " + req.peer_text + " without the client's SOA: FORMERR");
            return reply(req, wire::kRcodeFormErr);
        }
    }

    const auto info = store_.zone(zone->name);
    if (!info) {
        warn(zone->name, what + " from " + req.peer_text + ": zone not in the store yet: SERVFAIL");
        return reply(req, wire::kRcodeServFail);
    }

    if (req.qtype == wire::kTypeSoa) {
        detail::log_zone(log_, "debug", zone->name,
                         "SOA query from " + req.peer_text + req.key_note() + ": serial " +
                             std::to_string(info->serial));
        return soa_answer(req, zone->apex, *info);
    }

    if (req.qtype == wire::kTypeIxfr) {
        const std::uint32_t cs = *client_serial;
        if (cs == info->serial || wire::serial_newer(cs, info->serial)) {
            detail::log_zone(log_, "info", zone->name,
                             "IXFR to " + req.peer_text + req.key_note() + ": serial " +
                                 std::to_string(cs) + " is current (" +
                                 std::to_string(info->serial) + ")");
            return soa_answer(req, zone->apex, *info);
        }
        if (!req.tcp) {
            // RFC 1995 section 2: over UDP, the current SOA tells the client
            // to come back over TCP.
            detail::log_zone(log_, "debug", zone->name,
                             "IXFR over UDP from " + req.peer_text + ": serial " +
                                 std::to_string(cs) + " -> " + std::to_string(info->serial) +
                                 ": SOA only (retry over TCP)");
            return soa_answer(req, zone->apex, *info);
        }
        auto journal = store_.journal_since(zone->name, cs);
        if (journal && journal->empty()) {
            // Changed back to the client's serial between our two reads.
            auto now_info = store_.zone(zone->name);
            return soa_answer(req, zone->apex, now_info ? *now_info : *info);
        }
        if (journal) {
            detail::log_zone(log_, "info", zone->name,
                             "IXFR to " + req.peer_text + req.key_note() + ": serial " +
                                 std::to_string(cs) + " -> " +
                                 std::to_string(journal->back().to_serial) + " from the journal (" +
                                 std::to_string(journal->size()) + " change" +
                                 (journal->size() == 1 ? "" : "s") + ")");
            Outcome o;
            o.stream = detail::make_journal_stream(req, zone->apex, std::move(*journal));
            return o;
        }
        detail::log_zone(log_, "info", zone->name,
                         "IXFR to " + req.peer_text + req.key_note() +
                             ": the journal does not reach serial " + std::to_string(cs) +
                             ": sending the whole zone");
    }

    auto snap = store_.snapshot({zone->name});
    if (snap->zone_count() != 1) {
        warn(zone->name, what + " from " + req.peer_text + ": zone vanished: SERVFAIL");
        return reply(req, wire::kRcodeServFail);
    }
    const store::ZoneInfo& zi = snap->zone_info(0);
    detail::log_zone(log_, "info", zone->name,
                     what + " to " + req.peer_text + req.key_note() + ": serial " +
                         std::to_string(zi.serial) + ", " + std::to_string(zi.rule_count) +
                         " rules");
    Outcome o;
    o.stream = detail::make_full_stream(req, zone->apex, std::move(snap));
    return o;
}

Outcome Handler::notify(Request& req, const std::string& zone_text) {
    const ZoneConfig* zone = config_.zone(zone_text);
    if (!zone) {
        warn(zone_text, "NOTIFY from " + req.peer_text + req.key_note() +
                            " refused: zone not configured: NOTAUTH");
        return reply(req, wire::kRcodeNotAuth);
    }
    if (!from_primary(*zone, *req.peer, req.key_name) &&
        !acl_match(zone->allow_notify, *req.peer, req.key_name)) {
        warn(zone->name,
             "NOTIFY from " + req.peer_text +
                 (req.key_name.empty() ? " (unsigned)" : " (key " + req.key_name + ")") +
                 " refused: not a primary and not allowed by allow-notify");
        return reply(req, wire::kRcodeRefused);
    }
    // The serial, if the NOTIFY carries the new SOA (RFC 1996 section 3.7).
    std::string serial_note;
    std::size_t pos = req.after_question;
    wire::RawRr rr;
    if (req.header.ancount >= 1 && wire::read_rr(req.bytes, pos, rr) && rr.type == wire::kTypeSoa) {
        std::size_t p = rr.rdata;
        rpz::Name skip;
        const auto msg = req.bytes.first(rr.end);
        if (wire::read_name(msg, p, skip) && wire::read_name(msg, p, skip) && p + 20 == rr.end)
            serial_note = " serial " + std::to_string(wire::get32(req.bytes.data() + p));
    }
    detail::log_zone(log_, "info", zone->name,
                     "NOTIFY from " + req.peer_text + req.key_note() + serial_note);
    auto mb = detail::response_builder(req, wire::kRcodeNoError, true);
    Outcome o;
    o.messages.push_back(detail::finish(req, mb));
    o.notified_zone = zone->name;
    return o;
}

}  // namespace

Outcome Responder::handle(std::span<const std::uint8_t> request, const sockaddr_storage& peer,
                          bool tcp) {
    const auto header = wire::read_header(request);
    if (!header || header->qr()) return {};  // junk, or a response: never answer
    Request req;
    req.bytes = request;
    req.header = *header;
    req.peer = &peer;
    req.peer_text = wire::peer_text(peer);
    req.peer_address = address_text(peer);
    req.tcp = tcp;
    try {
        Handler h(*store_, *config_, log_);
        return h.run(req);
    } catch (const std::exception& e) {
        // Last resort (e.g. allocation failure): log and stay silent.
        if (log_)
            log_("error",
                 std::string("zone .: request from ") + req.peer_text + " failed: " + e.what());
        return {};
    }
}

}  // namespace dnsfw::xfrd
