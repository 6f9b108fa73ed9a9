// dnsfw::xfrd — shared helpers of the daemon's parts.
#include "tools/xfrd/context.hpp"

#include <chrono>
#include <ctime>
#include <random>

namespace dnsfw::xfrd {

std::uint16_t random_id() {
    static std::mt19937 gen{std::random_device{}()};
    return static_cast<std::uint16_t>(gen() & 0xffff);
}

std::uint64_t unix_now() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count());
}

std::string iso_utc(std::uint64_t unix_seconds) {
    auto tt = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    if (gmtime_r(&tt, &tm) == nullptr) return std::to_string(unix_seconds);
    char buf[32];
    const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return std::string(buf, n);
}

void update_status(Context& ctx, const std::string& zone,
                   const std::function<void(store::ZoneStatus&)>& change) {
    try {
        store::ZoneStatus st = ctx.store->status(zone).value_or(store::ZoneStatus{});
        change(st);
        if (ctx.self.pid != 0) st.daemon = ctx.self;
        ctx.store->put_status(zone, st);
    } catch (const std::exception& e) {
        ctx.log.zone(LogLevel::Warning, zone, std::string("cannot record status: ") + e.what());
    }
}

}  // namespace dnsfw::xfrd
