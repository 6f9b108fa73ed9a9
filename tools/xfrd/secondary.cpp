// dnsfw::xfrd — the secondary role of one zone.
//
// Store writes (commit_ixfr / commit_axfr) run on the loop thread: while a
// huge zone is committed the daemon answers nothing else for that long. The
// resolver is not affected (it reads the store on its own); inbound
// transfers of other zones wait. A worker thread would lift this later;
// what matters now is that nothing partial is ever committed.
#include "tools/xfrd/secondary.hpp"

#include "tools/xfrd/serve_wire.hpp"

#include <ldns/ldns.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace dnsfw::xfrd {

namespace {

struct SoaTimers {
    std::uint32_t serial = 0, refresh = 0, retry = 0, expire = 0, minimum = 0;
};

std::optional<SoaTimers> soa_timers(std::span<const std::uint8_t> rdata) {
    std::size_t m = rpz::name_wire_length(rdata);
    if (m == 0) return std::nullopt;
    std::size_t r = rpz::name_wire_length(rdata.subspan(m));
    if (r == 0 || rdata.size() < m + r + 20) return std::nullopt;
    const std::uint8_t* p = rdata.data() + m + r;
    return SoaTimers{wire::get32(p), wire::get32(p + 4), wire::get32(p + 8), wire::get32(p + 12),
                     wire::get32(p + 16)};
}

std::string tsig_error_name(std::uint16_t e) {
    switch (e) {
        case 0: return "NOERROR";
        case 16: return "BADSIG";
        case 17: return "BADKEY";
        case 18: return "BADTIME";
        case 22: return "BADTRUNC";
        default: return "TSIG error " + std::to_string(e);
    }
}

/// The TSIG error field of a message's TSIG record, if it has one.
std::optional<std::uint16_t> tsig_error(std::span<const std::uint8_t> msg) {
    wire::TsigLocation loc = wire::locate_tsig(msg);
    if (!loc.found || loc.malformed) return std::nullopt;
    std::size_t pos = loc.rr.rdata;
    const std::size_t end = loc.rr.rdata + loc.rr.rdlength;
    rpz::Name alg;
    if (!wire::read_name(msg, pos, alg)) return std::nullopt;
    pos += 6 + 2;  // time signed, fudge
    if (pos + 2 > end) return std::nullopt;
    std::size_t mac = wire::get16(msg.data() + pos);
    pos += 2 + mac + 2;  // MAC, original ID
    if (pos + 2 > end) return std::nullopt;
    return wire::get16(msg.data() + pos);
}

/// "NOTAUTH" or "NOTAUTH (TSIG BADSIG)".
std::string refusal_text(std::span<const std::uint8_t> msg, unsigned rcode) {
    std::string out = wire::rcode_name(rcode);
    if (auto e = tsig_error(msg); e && *e != 0) out += " (TSIG " + tsig_error_name(*e) + ")";
    return out;
}

std::vector<std::uint8_t> build_query(std::uint16_t id, const rpz::Name& apex,
                                      std::uint16_t qtype, const store::ZoneInfo* ixfr_from) {
    wire::MessageBuilder b(id, 0);
    b.question(apex, qtype, wire::kClassIn);
    if (ixfr_from != nullptr)
        b.add(wire::MessageBuilder::Section::Authority, apex, wire::kTypeSoa, wire::kClassIn,
              ixfr_from->soa_ttl, wire::with_soa_serial(ixfr_from->soa_rdata, ixfr_from->serial));
    return b.finish();
}

double seconds_since(std::uint64_t start_ms) {
    auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
                   .count();
    return static_cast<double>(now - static_cast<std::int64_t>(start_ms) * 1000) / 1e6;
}

std::uint64_t steady_ms() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}

std::string fmt_seconds(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f s", s);
    return buf;
}

std::string rules_text(const CommitResult& r) {
    return std::to_string(r.added) + (r.added == 1 ? " rule" : " rules") + " added, " +
           std::to_string(r.removed) + " removed, " + std::to_string(r.changed_rules) + " changed";
}

/// The peer as logs show it: "127.0.0.1:5301" (without the key).
std::string addr_text(const Endpoint& ep) { return wire::peer_text(ep.addr); }

/// "transfer from 127.0.0.1:5301, record 200002: MESSAGE" (the record's
/// position in the transfer; the message with control bytes escaped).
std::string diagnostic_text(const rpz::Diagnostic& d) {
    std::string where = d.file;
    if (d.line != 0) where += ", record " + std::to_string(d.line);
    return where.empty() ? d.escaped_message() : where + ": " + d.escaped_message();
}

/// Records the diagnostics of a commit stand for (Diagnostic::count: a
/// "N further problems not shown" summary counts N).
std::uint64_t skipped_count(const std::vector<rpz::Diagnostic>& diags) {
    std::uint64_t n = 0;
    for (const rpz::Diagnostic& d : diags) n += d.count;
    return n;
}

/// Clears the stored mark of a transfer under way.
void unmark_transfer(store::ZoneStatus& st) {
    st.transfer_started = 0;
    st.transfer_kind.clear();
}

constexpr unsigned kSoaTimeoutMs = 2000;
constexpr unsigned kSoaTries = 3;
constexpr std::size_t kMaxDiagnosticsLogged = 20;

}  // namespace

ZoneSecondary::ZoneSecondary(Context& ctx, ZoneConfig config)
    : ctx_(ctx), cfg_(std::move(config)), timer_(ctx.loop, this, &ZoneSecondary::on_timer) {
    if (auto info = stored()) {
        if (auto t = soa_timers(info->soa_rdata)) {
            soa_refresh_ = t->refresh;
            soa_retry_ = t->retry;
            soa_expire_ = t->expire;
        }
    }
    try {
        if (auto st = ctx_.store->status(cfg_.name)) {
            last_success_ = st->last_success;
            if (st->last_failure > st->last_success && !st->last_error.empty())
                failing_since_ = st->last_error;
            if (st->transfer_started != 0 && !(st->daemon == ctx_.self)) {
                // A transfer of an earlier run that never ended: that process
                // was killed (or stopped) while it was under way.
                auto info = stored();
                ctx_.log.zone(
                    LogLevel::Warning, cfg_.name,
                    (st->transfer_kind.empty() ? std::string("a transfer") : st->transfer_kind) +
                        " started at " + iso_utc(st->transfer_started) +
                        (st->daemon.pid != 0
                             ? " by dnsfw-xfrd pid " + std::to_string(st->daemon.pid)
                             : std::string()) +
                        " did not finish (interrupted: that process stopped or was killed); "
                        "nothing of it was committed, the zone is at " +
                        (info ? "serial " + std::to_string(info->serial)
                              : std::string("no serial yet")));
                update_status(ctx_, cfg_.name, unmark_transfer);
            }
        }
    } catch (const std::exception&) {
    }
}

ZoneSecondary::~ZoneSecondary() {
    if (phase_ == Phase::Transfer) {
        auto info = stored();
        ctx_.log.zone(
            LogLevel::Info, cfg_.name,
            std::string(mode_ == Mode::Ixfr ? "IXFR" : "AXFR") + " from " +
                addr_text(cfg_.primaries[primary_]) + " cancelled; the zone stays at " +
                (info ? "serial " + std::to_string(info->serial) : std::string("no serial")));
    }
    cancel();
    complete_waiters(false, "zone " + cfg_.name + " is no longer managed (reload or stop)");
    auto pending = std::move(pending_waiters_);
    for (Done& d : pending)
        if (d) d(false, "zone " + cfg_.name + " is no longer managed (reload or stop)");
}

void ZoneSecondary::start() { timer_.start(0); }

void ZoneSecondary::set_config(ZoneConfig config) {
    bool primaries_changed = config.primaries.size() != cfg_.primaries.size();
    for (std::size_t i = 0; !primaries_changed && i < config.primaries.size(); ++i)
        primaries_changed = config.primaries[i].text != cfg_.primaries[i].text;
    bool ixfr_changed = config.ixfr != cfg_.ixfr;
    cfg_ = std::move(config);
    if (!primaries_changed && !ixfr_changed && failures_ > 0 && phase_ == Phase::Idle) {
        // The last attempts failed: the new settings (a corrected key?) may help at once.
        timer_.start(0);
        return;
    }
    if (primaries_changed || ixfr_changed) {
        if (phase_ != Phase::Idle) {
            ctx_.log.zone(LogLevel::Info, cfg_.name,
                          "primaries changed: operation in flight cancelled");
            cancel();
            clear_transfer_mark();
            complete_waiters(false, "cancelled: the zone's primaries changed");
            phase_ = Phase::Idle;
        }
        failures_ = 0;
        timer_.start(0);
    }
}

void ZoneSecondary::on_timer(void* p) { static_cast<ZoneSecondary*>(p)->begin_check(); }

void ZoneSecondary::refresh(const std::string& why) {
    ctx_.log.zone(LogLevel::Debug, cfg_.name, "refresh: " + why);
    if (phase_ != Phase::Idle) {
        pending_refresh_ = true;
        return;
    }
    begin_check();
}

void ZoneSecondary::transfer_now(bool full, Done done) {
    if (cfg_.primaries.empty()) {
        if (done) done(false, "zone " + cfg_.name + " has no primaries");
        return;
    }
    if (phase_ != Phase::Idle) {
        pending_forced_ = full || pending_forced_.value_or(false);
        pending_waiters_.push_back(std::move(done));
        return;
    }
    waiters_.push_back(std::move(done));
    auto info = stored();
    begin_transfer(0, full || !cfg_.ixfr || !info ? Mode::Axfr : Mode::Ixfr, true, full);
}

const TsigKey* ZoneSecondary::key_of(const Endpoint& ep) const {
    if (ep.key.empty()) return nullptr;
    return ctx_.config != nullptr ? ctx_.config->key(ep.key) : nullptr;
}

std::optional<store::ZoneInfo> ZoneSecondary::stored() const {
    try {
        return ctx_.store->zone(cfg_.name);
    } catch (const std::exception& e) {
        ctx_.log.zone(LogLevel::Error, cfg_.name, std::string("cannot read the store: ") + e.what());
        return std::nullopt;
    }
}

std::uint32_t ZoneSecondary::refresh_interval() const {
    std::uint32_t base = soa_refresh_ != 0 ? soa_refresh_ : 3600;
    return std::clamp(base, cfg_.refresh_min, cfg_.refresh_max);
}

std::uint32_t ZoneSecondary::retry_interval() const {
    std::uint64_t base = std::clamp(soa_retry_ != 0 ? soa_retry_ : cfg_.retry_min, cfg_.retry_min,
                                    cfg_.retry_max);
    unsigned shift = failures_ == 0 ? 0 : std::min(failures_ - 1, 30u);
    std::uint64_t v = base << shift;
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(v, cfg_.retry_max));
}

void ZoneSecondary::check_expired() {
    if (last_success_ == 0 || soa_expire_ == 0) return;
    std::uint64_t now = unix_now();
    if (now > last_success_ + soa_expire_) {
        expired_ = true;
        auto info = stored();
        ctx_.log.zone(LogLevel::Error, cfg_.name,
                      "expired: no successful refresh from the primaries for " +
                          std::to_string(now - last_success_) + " s (SOA expire " +
                          std::to_string(soa_expire_) + " s); still enforcing serial " +
                          (info ? std::to_string(info->serial) : std::string("none")) +
                          " (a firewall keeps its last policy)");
    } else {
        expired_ = false;
    }
}

void ZoneSecondary::begin_check() {
    if (phase_ != Phase::Idle) {
        pending_refresh_ = true;
        return;
    }
    if (cfg_.primaries.empty()) return;
    check_expired();
    phase_ = Phase::SoaQuery;
    op_started_ms_ = steady_ms();
    const std::uint64_t now = unix_now();
    update_status(ctx_, cfg_.name, [&](store::ZoneStatus& st) { st.last_attempt = now; });
    soa_query(0);
}

void ZoneSecondary::soa_query(std::size_t primary) {
    primary_ = primary;
    const Endpoint& ep = cfg_.primaries[primary];
    query_id_ = random_id();
    std::vector<std::uint8_t> msg = build_query(query_id_, cfg_.apex, wire::kTypeSoa, nullptr);
    tsig_.reset();
    if (const TsigKey* key = key_of(ep)) {
        tsig_ = std::make_unique<TsigSession>(*key);
        msg = tsig_->sign_request(msg);
    }
    response_.clear();
    udp_ = std::make_unique<UdpQuery>(
        ctx_.loop, ep.addr, std::move(msg), kSoaTimeoutMs, kSoaTries,
        [this](std::span<const std::uint8_t> r) {
            auto h = wire::read_header(r);
            if (!h || h->id != query_id_ || !h->qr()) return false;
            response_.assign(r.begin(), r.end());
            return true;
        },
        [this, primary](bool answered, const std::string& error) {
            auto done = std::move(udp_);  // destroyed when this callback returns
            if (!answered) {
                soa_failed(primary, error);
                return;
            }
            std::vector<std::uint8_t> resp = std::move(response_);
            soa_answer(primary, resp);
        });
    udp_->fail_on_unreachable(true);
    try {
        udp_->start();
    } catch (const std::exception& e) {
        udp_.reset();
        soa_failed(primary, e.what());
    }
}

void ZoneSecondary::soa_tcp(std::size_t primary) {
    const Endpoint& ep = cfg_.primaries[primary];
    query_id_ = random_id();
    std::vector<std::uint8_t> msg = build_query(query_id_, cfg_.apex, wire::kTypeSoa, nullptr);
    tsig_.reset();
    if (const TsigKey* key = key_of(ep)) {
        tsig_ = std::make_unique<TsigSession>(*key);
        msg = tsig_->sign_request(msg);
    }
    response_.clear();
    tcp_ = std::make_unique<TcpExchange>(
        ctx_.loop, ep.addr, tcp_frame(msg), 10000, 10000,
        [this](std::span<const std::uint8_t> m) {
            response_.assign(m.begin(), m.end());
            return false;
        },
        [this, primary](const std::string& error) {
            auto done = std::move(tcp_);
            if (!error.empty() || response_.empty()) {
                soa_failed(primary, "over TCP: " + (error.empty() ? "no answer" : error));
                return;
            }
            std::vector<std::uint8_t> resp = std::move(response_);
            auto h = wire::read_header(resp);
            if (h && (h->flags & wire::kFlagTc) != 0) {
                soa_failed(primary, "truncated answer over TCP");
                return;
            }
            soa_answer(primary, resp);
        });
    try {
        tcp_->start();
    } catch (const std::exception& e) {
        tcp_.reset();
        soa_failed(primary, e.what());
    }
}

void ZoneSecondary::soa_answer(std::size_t primary, std::span<const std::uint8_t> resp) {
    const Endpoint& ep = cfg_.primaries[primary];
    auto h = wire::read_header(resp);
    if (!h || h->id != query_id_) {
        soa_failed(primary, "answer with a wrong ID");
        return;
    }
    if (h->rcode() != wire::kRcodeNoError) {
        soa_failed(primary, "primary answered " + refusal_text(resp, h->rcode()));
        return;
    }
    if (tsig_) {
        TsigResult r = tsig_->verify_response(resp);
        if (r != TsigResult::Ok) {
            soa_failed(primary, "TSIG " + std::string(to_string(r)) + " on the answer (key " +
                                    tsig_->key().name + ")");
            return;
        }
    }
    if ((h->flags & wire::kFlagTc) != 0) {
        ctx_.log.zone(LogLevel::Debug, cfg_.name, "SOA answer from " + addr_text(ep) + " truncated: TCP");
        soa_tcp(primary);
        return;
    }
    ldns_pkt* raw = nullptr;
    ldns_status st = ldns_wire2pkt(&raw, resp.data(), resp.size());
    std::unique_ptr<ldns_pkt, void (*)(ldns_pkt*)> pkt(raw, ldns_pkt_free);
    if (st != LDNS_STATUS_OK) {
        soa_failed(primary, std::string("malformed answer: ") + ldns_get_errorstr_by_id(st));
        return;
    }
    std::optional<rpz::ZoneRecord> soa;
    ldns_rr_list* answer = ldns_pkt_answer(pkt.get());
    for (std::size_t i = 0; answer != nullptr && i < ldns_rr_list_rr_count(answer); ++i) {
        auto rr = wire::zone_record_from_ldns(ldns_rr_list_rr(answer, i));
        if (rr && rr->type == wire::kTypeSoa && rr->owner == cfg_.apex) {
            soa = std::move(rr);
            break;
        }
    }
    auto timers = soa ? soa_timers(soa->rdata) : std::nullopt;
    if (!timers) {
        soa_failed(primary, "the answer holds no SOA record of the zone");
        return;
    }
    pkt.reset();
    soa_refresh_ = timers->refresh;
    soa_retry_ = timers->retry;
    soa_expire_ = timers->expire;
    primary_serial_ = timers->serial;
    have_primary_serial_ = true;
    auto info = stored();
    if (!info) {
        begin_transfer(primary, Mode::Axfr, false);
        return;
    }
    if (wire::serial_newer(timers->serial, info->serial)) {
        ctx_.log.zone(LogLevel::Debug, cfg_.name,
                      "serial " + std::to_string(timers->serial) + " at " + addr_text(ep) +
                          ", stored " + std::to_string(info->serial) + ": transfer");
        begin_transfer(primary, cfg_.ixfr ? Mode::Ixfr : Mode::Axfr, false);
        return;
    }
    if (timers->serial == info->serial) {
        up_to_date(timers->serial);
        return;
    }
    failed("SOA query to " + addr_text(ep),
           "the primary's serial " + std::to_string(timers->serial) +
               " is older than the stored serial " + std::to_string(info->serial) +
               ": serial went backwards, refused");
}

void ZoneSecondary::soa_failed(std::size_t primary, const std::string& why) {
    const Endpoint& ep = cfg_.primaries[primary];
    if (primary + 1 < cfg_.primaries.size()) {
        ctx_.log.zone(LogLevel::Warning, cfg_.name,
                      "SOA query to " + addr_text(ep) + " failed: " + why + "; trying " +
                          addr_text(cfg_.primaries[primary + 1]));
        soa_query(primary + 1);
        return;
    }
    failed("SOA query to " + addr_text(ep), why);
}

void ZoneSecondary::begin_transfer(std::size_t primary, Mode mode, bool forced,
                                   bool explicit_full) {
    explicit_full_ = explicit_full && mode == Mode::Axfr;
    op_started_ms_ = steady_ms();  // the log shows the transfer's own time
    const bool first = phase_ == Phase::Idle;
    phase_ = Phase::Transfer;
    primary_ = primary;
    mode_ = mode;
    forced_ = forced;
    xfer_error_.clear();
    const Endpoint& ep = cfg_.primaries[primary];
    auto info = mode == Mode::Ixfr ? stored() : std::nullopt;
    if (mode == Mode::Ixfr && !info) mode_ = mode = Mode::Axfr;
    // Mark the transfer as under way in the stored status (one small write):
    // if this process dies before it ends, `dnsfw status` can tell.
    {
        const std::uint64_t now = unix_now();
        const std::string kind =
            std::string(mode == Mode::Ixfr ? "IXFR" : "AXFR") + " from " + addr_text(ep);
        update_status(ctx_, cfg_.name, [&](store::ZoneStatus& st) {
            if (first) st.last_attempt = now;
            st.transfer_started = now;
            st.transfer_kind = kind;
        });
        transfer_marked_ = true;
    }
    query_id_ = random_id();
    std::vector<std::uint8_t> msg =
        build_query(query_id_, cfg_.apex, mode == Mode::Ixfr ? wire::kTypeIxfr : wire::kTypeAxfr,
                    info ? &*info : nullptr);
    tsig_.reset();
    if (const TsigKey* key = key_of(ep)) {
        tsig_ = std::make_unique<TsigSession>(*key);
        msg = tsig_->sign_request(msg);
    }
    parser_ = std::make_unique<TransferParser>(
        cfg_.apex, mode == Mode::Ixfr ? TransferParser::Mode::Ixfr : TransferParser::Mode::Axfr,
        query_id_, info ? info->serial : 0, cfg_.max_transfer_size);
    const std::uint64_t timeout_ms = std::uint64_t{cfg_.transfer_timeout} * 1000;
    tcp_ = std::make_unique<TcpExchange>(
        ctx_.loop, ep.addr, tcp_frame(msg), timeout_ms, std::min<std::uint64_t>(timeout_ms, 30000),
        [this](std::span<const std::uint8_t> m) { return transfer_message(m); },
        [this](const std::string& error) {
            auto done = std::move(tcp_);
            transfer_end(error);
        });
    ctx_.log.zone(LogLevel::Debug, cfg_.name,
                  std::string(mode == Mode::Ixfr ? "IXFR" : "AXFR") + " request to " + addr_text(ep) +
                      (info ? " from serial " + std::to_string(info->serial) : std::string()));
    try {
        tcp_->start();
    } catch (const std::exception& e) {
        tcp_.reset();
        transfer_end(e.what());
    }
}

bool ZoneSecondary::transfer_message(std::span<const std::uint8_t> m) {
    try {
        auto h = wire::read_header(m);
        const bool error_rcode = h && h->rcode() != wire::kRcodeNoError;
        if (tsig_ && !error_rcode) {
            TsigResult r = tsig_->verify_response(m);
            if (r != TsigResult::Ok && !(r == TsigResult::Unsigned && parser_->messages() > 0)) {
                xfer_error_ = "TSIG " + std::string(to_string(r)) + " on message " +
                              std::to_string(parser_->messages() + 1) + " (key " +
                              tsig_->key().name + ")";
                return false;
            }
        }
        TransferParser::Step step = parser_->feed(m);
        switch (step) {
            case TransferParser::Step::More: return true;
            case TransferParser::Step::Done:
                if (tsig_ && !tsig_->last_signed()) {
                    xfer_error_ = "the last message is not TSIG-signed";
                    return false;
                }
                return false;
            case TransferParser::Step::Fallback: {
                // A TSIG error (the primary does not accept our key, or our
                // clock): an AXFR signed with the same key fails the same way.
                const auto te = tsig_error(m);
                if ((te && *te != 0) || (tsig_ && parser_->rcode() == wire::kRcodeNotAuth)) {
                    xfer_error_ = "primary answered " + refusal_text(m, parser_->rcode()) +
                                  " to the IXFR" +
                                  (tsig_ ? " (key " + tsig_->key().name + ")" : std::string()) +
                                  "; a TSIG error: not asking AXFR with the same key";
                    return false;
                }
                xfer_error_ = "fallback: " + refusal_text(m, parser_->rcode());
                return false;
            }
            case TransferParser::Step::Error:
                xfer_error_ = parser_->error();
                if (error_rcode) xfer_error_ = "primary answered " + refusal_text(m, h->rcode());
                return false;
        }
    } catch (const std::exception& e) {
        xfer_error_ = std::string("cannot read the transfer: ") + e.what();
    }
    return false;
}

void ZoneSecondary::transfer_end(const std::string& error) {
    const Endpoint& ep = cfg_.primaries[primary_];
    if (xfer_error_.rfind("fallback: ", 0) == 0) {
        ctx_.log.zone(LogLevel::Info, cfg_.name,
                      "IXFR from " + addr_text(ep) + " refused (" + xfer_error_.substr(10) +
                          "): asking AXFR");
        fell_back_ = true;
        begin_transfer(primary_, Mode::Axfr, forced_);
        return;
    }
    if (!xfer_error_.empty()) {
        failed("transfer from " + addr_text(ep), xfer_error_);
        return;
    }
    if (!error.empty() && mode_ == Mode::Ixfr && parser_ != nullptr && parser_->messages() == 1 &&
        parser_->record_count() == 1) {
        // A newer SOA alone, then the end: the primary cannot send the
        // difference over this connection (RFC 1995 section 4 style).
        ctx_.log.zone(LogLevel::Info, cfg_.name,
                      "IXFR from " + addr_text(ep) + " answered with its SOA only: asking AXFR");
        fell_back_ = true;
        begin_transfer(primary_, Mode::Axfr, forced_);
        return;
    }
    if (!error.empty() || parser_ == nullptr || parser_->kind() == TransferParser::Kind::None) {
        failed("transfer from " + addr_text(ep), error.empty() ? "incomplete response" : error);
        return;
    }
    commit();
}

void ZoneSecondary::commit() {
    const Endpoint& ep = cfg_.primaries[primary_];
    TransferParser& p = *parser_;
    const std::string label = "transfer from " + addr_text(ep);
    if (p.kind() == TransferParser::Kind::UpToDate) {
        up_to_date(p.new_serial());
        return;
    }
    CommitResult result;
    const bool incremental = p.kind() == TransferParser::Kind::Incremental;
    const bool axfr_style = mode_ == Mode::Ixfr && !incremental;
    try {
        if (incremental)
            commit_ixfr(*ctx_.store, cfg_, p.sequences(), label, result);
        else
            result = commit_axfr(*ctx_.store, cfg_, p.records(), label, explicit_full_);
    } catch (const std::exception& e) {
        std::string why = e.what();
        if (incremental && result.sequences > 0)
            why += " (after " + std::to_string(result.sequences) + " of " +
                   std::to_string(p.sequences().size()) + " IXFR sequences were committed)";
        parser_.reset();
        // Sequences committed before the failure are a change like any other.
        if (result.sequences > 0 && ctx_.committed) ctx_.committed(cfg_.name);
        failed("transfer from " + addr_text(ep), why);
        return;
    }
    if (!incremental && !result.new_zone && wire::serial_newer(result.from_serial, result.to_serial))
        ctx_.log.zone(LogLevel::Warning, cfg_.name,
                      "serial went backwards: the primary's serial " +
                          std::to_string(result.to_serial) + " is older than ours (" +
                          std::to_string(result.from_serial) +
                          "); accepted because a full transfer was requested (`transfer " +
                          cfg_.name + " full`); the journal was reset");
    std::size_t shown = 0;
    for (const rpz::Diagnostic& d : result.diagnostics) {
        if (shown++ == kMaxDiagnosticsLogged) break;
        ctx_.log.zone(LogLevel::Warning, cfg_.name, "record skipped: " + diagnostic_text(d));
    }
    if (result.diagnostics.size() > kMaxDiagnosticsLogged)
        ctx_.log.zone(LogLevel::Warning, cfg_.name,
                      std::to_string(result.diagnostics.size() - kMaxDiagnosticsLogged) +
                          " more record problems not shown");
    skipped_ = skipped_count(result.diagnostics);
    const double secs = seconds_since(op_started_ms_);
    std::string line = std::string(incremental ? "IXFR" : "AXFR") + " from " + addr_text(ep) + " serial ";
    line += result.new_zone ? std::string("none") : std::to_string(result.from_serial);
    line += " -> " + std::to_string(result.to_serial) + ": ";
    if (result.changed)
        line += rules_text(result);
    else
        line += "no change";
    line += " (" + fmt_seconds(secs) + ")";
    if (incremental && result.sequences > 1)
        line += "; " + std::to_string(result.sequences) + " IXFR sequences";
    if (axfr_style) line += "; IXFR answered with the full zone";
    else if (fell_back_) line += "; IXFR was refused";
    if (skipped_ > 0)
        line += "; " + std::to_string(skipped_) + (skipped_ == 1 ? " record" : " records") +
                " skipped";
    parser_.reset();
    succeeded(line,
              "serial " + std::to_string(result.to_serial) + " transferred by " +
                  (incremental ? "IXFR" : "AXFR") + " from " + addr_text(ep),
              !incremental, incremental, result.changed);
}

void ZoneSecondary::up_to_date(std::uint32_t serial) {
    const Endpoint& ep = cfg_.primaries[primary_];
    parser_.reset();
    succeeded("serial " + std::to_string(serial) + " at " + addr_text(ep) + ": up to date",
              "serial " + std::to_string(serial) + " up to date at " + addr_text(ep), false, false,
              false);
}

void ZoneSecondary::succeeded(const std::string& line, const std::string& summary, bool full,
                              bool incremental, bool changed) {
    const Endpoint& ep = cfg_.primaries[primary_];
    if (!failing_since_.empty()) {
        ctx_.log.zone(
            LogLevel::Info, cfg_.name,
            "recovered (" + summary + ") after " +
                (failures_ > 0 ? std::to_string(failures_) +
                                     (failures_ == 1 ? " failed attempt" : " failed attempts") +
                                     ", the last: "
                               : std::string("an earlier failure: ")) +
                failing_since_);
        failing_since_.clear();
    }
    failures_ = 0;
    expired_ = false;
    last_success_ = unix_now();
    if (auto info = stored()) {
        if (auto t = soa_timers(info->soa_rdata); t && !have_primary_serial_) {
            soa_refresh_ = t->refresh;
            soa_retry_ = t->retry;
            soa_expire_ = t->expire;
        }
        if (full || incremental) {
            primary_serial_ = info->serial;
            have_primary_serial_ = true;
        }
    }
    const std::uint32_t wait = refresh_interval();
    next_check_ = last_success_ + wait;
    ctx_.log.zone(full || incremental ? LogLevel::Info : LogLevel::Debug, cfg_.name,
                  line + (full || incremental ? "" : "; next check in " + std::to_string(wait) + " s"));
    const std::uint64_t now = last_success_;
    const std::string source = std::string(full ? "AXFR" : "IXFR") + " from " + addr_text(ep);
    update_status(ctx_, cfg_.name, [&](store::ZoneStatus& st) {
        st.last_attempt = std::max(st.last_attempt, now);
        st.last_success = now;
        if (full) ++st.transfers_full;
        if (incremental) ++st.transfers_incremental;
        if (full || incremental) st.last_source = source;
        if (have_primary_serial_) st.primary_serial = primary_serial_;
        st.next_check = next_check_;
        if (full || incremental) st.last_transfer_skipped = skipped_;
        unmark_transfer(st);
    });
    transfer_marked_ = false;
    skipped_ = 0;
    timer_.start(std::uint64_t{wait} * 1000);
    if (changed && ctx_.committed) ctx_.committed(cfg_.name);
    complete_waiters(true, line);
    end_operation();
}

void ZoneSecondary::failed(const std::string& what, const std::string& reason) {
    ++failures_;
    const std::uint32_t wait = retry_interval();
    const std::uint64_t now = unix_now();
    next_check_ = now + wait;
    auto info = stored();
    const std::string stays =
        info ? "zone stays at serial " + std::to_string(info->serial) : "zone not loaded yet";
    ctx_.log.zone(LogLevel::Error, cfg_.name,
                  what + " failed: " + reason + "; " + stays + "; retry in " +
                      std::to_string(wait) + " s");
    update_status(ctx_, cfg_.name, [&](store::ZoneStatus& st) {
        st.last_attempt = std::max(st.last_attempt, now);
        st.last_failure = now;
        st.last_error = what + " failed: " + reason;
        ++st.transfers_failed;
        if (have_primary_serial_) st.primary_serial = primary_serial_;
        st.next_check = next_check_;
        unmark_transfer(st);
    });
    transfer_marked_ = false;
    skipped_ = 0;
    failing_since_ = what + " failed: " + reason;
    timer_.start(std::uint64_t{wait} * 1000);
    parser_.reset();
    complete_waiters(false, what + " failed: " + reason);
    end_operation();
}

void ZoneSecondary::end_operation() {
    phase_ = Phase::Idle;
    tsig_.reset();
    fell_back_ = false;
    forced_ = false;
    if (pending_forced_) {
        bool full = *pending_forced_;
        pending_forced_.reset();
        waiters_ = std::move(pending_waiters_);
        pending_waiters_.clear();
        pending_refresh_ = false;
        auto info = stored();
        begin_transfer(0, full || !cfg_.ixfr || !info ? Mode::Axfr : Mode::Ixfr, true, full);
        return;
    }
    if (pending_refresh_) {
        pending_refresh_ = false;
        timer_.start(0);
    }
}

void ZoneSecondary::cancel() {
    udp_.reset();
    tcp_.reset();
    parser_.reset();
    tsig_.reset();
}

void ZoneSecondary::clear_transfer_mark() {
    if (!transfer_marked_) return;
    transfer_marked_ = false;
    update_status(ctx_, cfg_.name, unmark_transfer);
}

void ZoneSecondary::retire() {
    transfer_marked_ = false;
    update_status(ctx_, cfg_.name, [](store::ZoneStatus& st) {
        st.next_check = 0;
        unmark_transfer(st);
    });
}

void ZoneSecondary::complete_waiters(bool ok, const std::string& message) {
    auto waiters = std::move(waiters_);
    waiters_.clear();
    for (Done& d : waiters)
        if (d) d(ok, message);
}

nlohmann::json ZoneSecondary::live_status() const {
    nlohmann::json j;
    j["phase"] = phase_ == Phase::Idle       ? "idle"
                 : phase_ == Phase::SoaQuery ? "soa-query"
                                             : "transfer";
    j["consecutive_failures"] = failures_;
    j["expired"] = expired_;
    j["next_check_in"] = timer_.active() ? timer_.due_in() / 1000 : 0;
    if (have_primary_serial_) j["primary_serial_seen"] = primary_serial_;
    nlohmann::json prim = nlohmann::json::array();
    for (const Endpoint& ep : cfg_.primaries) prim.push_back(ep.text);
    j["primaries"] = prim;
    return j;
}

}  // namespace dnsfw::xfrd
