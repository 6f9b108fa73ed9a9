// dnsfw::xfrd internal — NOTIFY-out (RFC 1996): tells a zone's secondaries
// that its serial changed. UDP, TSIG when the target has a key; each target
// is retried every 2 s, 5 times in all, until it acknowledges (NOERROR).
#pragma once

#include "tools/xfrd/context.hpp"
#include "tools/xfrd/net.hpp"
#include "tools/xfrd/tsig.hpp"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace dnsfw::xfrd {

class Notifier {
public:
    explicit Notifier(Context& ctx) : ctx_(ctx) {}
    Notifier(const Notifier&) = delete;
    Notifier& operator=(const Notifier&) = delete;

    /// NOTIFYs every target of `zone` about `info` (its current serial and
    /// SOA), replacing NOTIFYs still in flight for the zone. Returns the
    /// number of targets.
    std::size_t notify(const ZoneConfig& zone, const store::ZoneInfo& info);
    /// Drops the NOTIFYs in flight for `zone`.
    void forget(const std::string& zone) { jobs_.erase(zone); }
    /// Targets not yet acknowledged, per zone.
    std::size_t in_flight(const std::string& zone) const;

    static constexpr unsigned kTimeoutMs = 2000;
    static constexpr unsigned kTries = 5;

private:
    struct Job {
        std::string target;
        std::uint32_t serial = 0;
        std::uint16_t id = 0;
        std::unique_ptr<TsigSession> tsig;
        std::unique_ptr<UdpQuery> query;
        bool complained = false;
    };
    void finished(const std::string& zone, Job* job, bool acked, const std::string& error);

    Context& ctx_;
    std::map<std::string, std::vector<std::unique_ptr<Job>>> jobs_;
};

}  // namespace dnsfw::xfrd
