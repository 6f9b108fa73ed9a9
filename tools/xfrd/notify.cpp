// dnsfw::xfrd — NOTIFY-out.
#include "tools/xfrd/notify.hpp"

#include "tools/xfrd/serve_wire.hpp"

namespace dnsfw::xfrd {

std::size_t Notifier::notify(const ZoneConfig& zone, const store::ZoneInfo& info) {
    auto& jobs = jobs_[zone.name];
    jobs.clear();  // a newer serial supersedes NOTIFYs in flight
    std::vector<std::string> sent;
    for (const Endpoint& ep : zone.notify) {
        auto job = std::make_unique<Job>();
        Job* j = job.get();
        j->target = wire::peer_text(ep.addr);
        j->serial = info.serial;
        j->id = random_id();
        wire::MessageBuilder b(j->id, static_cast<std::uint16_t>(
                                          (std::uint16_t{wire::kOpcodeNotify} << 11) | wire::kFlagAa));
        b.question(zone.apex, wire::kTypeSoa, wire::kClassIn);
        b.add(wire::MessageBuilder::Section::Answer, zone.apex, wire::kTypeSoa, wire::kClassIn,
              info.soa_ttl, wire::with_soa_serial(info.soa_rdata, info.serial));
        std::vector<std::uint8_t> msg = b.finish();
        if (!ep.key.empty()) {
            const TsigKey* key = ctx_.config != nullptr ? ctx_.config->key(ep.key) : nullptr;
            if (key == nullptr) {
                ctx_.log.zone(LogLevel::Error, zone.name,
                              "NOTIFY to " + ep.text + ": unknown key " + ep.key);
                continue;
            }
            j->tsig = std::make_unique<TsigSession>(*key);
            msg = j->tsig->sign_request(msg);
        }
        const std::string zname = zone.name;
        j->query = std::make_unique<UdpQuery>(
            ctx_.loop, ep.addr, std::move(msg), kTimeoutMs, kTries,
            [this, j, zname](std::span<const std::uint8_t> r) {
                auto h = wire::read_header(r);
                if (!h || h->id != j->id || !h->qr() || h->opcode() != wire::kOpcodeNotify)
                    return false;
                if (h->rcode() != wire::kRcodeNoError) {
                    if (!j->complained)
                        ctx_.log.zone(LogLevel::Warning, zname,
                                      "NOTIFY to " + j->target + " answered " +
                                          wire::rcode_name(h->rcode()) + "; retrying");
                    j->complained = true;
                    return false;
                }
                if (j->tsig) {
                    TsigResult t = j->tsig->verify_response(r);
                    if (t != TsigResult::Ok) {
                        if (!j->complained)
                            ctx_.log.zone(LogLevel::Warning, zname,
                                          "NOTIFY ack from " + j->target + ": TSIG " +
                                              std::string(to_string(t)) + "; ignored");
                        j->complained = true;
                        return false;
                    }
                }
                return true;
            },
            [this, j, zname](bool acked, const std::string& error) {
                finished(zname, j, acked, error);
            });
        try {
            j->query->start();
        } catch (const std::exception& e) {
            ctx_.log.zone(LogLevel::Error, zone.name,
                          "NOTIFY to " + ep.text + " failed: " + e.what());
            continue;
        }
        sent.push_back(wire::peer_text(ep.addr));
        jobs.push_back(std::move(job));
    }
    if (!sent.empty()) {
        std::string list;
        for (const std::string& s : sent) list += (list.empty() ? "" : ", ") + s;
        ctx_.log.zone(LogLevel::Info, zone.name,
                      "serial " + std::to_string(info.serial) + ": NOTIFY sent to " + list);
    }
    return sent.size();
}

void Notifier::finished(const std::string& zone, Job* job, bool acked, const std::string& error) {
    if (acked)
        ctx_.log.zone(LogLevel::Debug, zone,
                      "NOTIFY to " + job->target + " (serial " + std::to_string(job->serial) +
                          ") acknowledged");
    else
        ctx_.log.zone(LogLevel::Warning, zone,
                      "NOTIFY to " + job->target + " (serial " + std::to_string(job->serial) +
                          ") not acknowledged: " + error);
    auto it = jobs_.find(zone);
    if (it == jobs_.end()) return;
    auto& v = it->second;
    for (auto j = v.begin(); j != v.end(); ++j) {
        if (j->get() == job) {
            std::unique_ptr<Job> gone = std::move(*j);  // destroyed on return (after the query's final callback)
            v.erase(j);
            if (v.empty()) jobs_.erase(it);
            return;
        }
    }
}

std::size_t Notifier::in_flight(const std::string& zone) const {
    auto it = jobs_.find(zone);
    return it == jobs_.end() ? 0 : it->second.size();
}

}  // namespace dnsfw::xfrd
