// dnsfw::xfrd internal — the secondary role for one zone: SOA checks on the
// refresh/retry timers and on NOTIFY, IXFR/AXFR from the primaries, commits
// to the store, status bookkeeping.
#pragma once

#include "tools/xfrd/context.hpp"
#include "tools/xfrd/net.hpp"
#include "tools/xfrd/transfer.hpp"
#include "tools/xfrd/tsig.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace dnsfw::xfrd {

/// Follows one zone's primaries. Lives on the loop thread; destroying it
/// cancels whatever is in flight (nothing partial is ever committed).
class ZoneSecondary {
public:
    /// Result of a requested transfer (control socket): ok, and one line.
    using Done = std::function<void(bool ok, const std::string& message)>;

    ZoneSecondary(Context& ctx, ZoneConfig config);
    ZoneSecondary(const ZoneSecondary&) = delete;
    ZoneSecondary& operator=(const ZoneSecondary&) = delete;
    /// Cancels the operation in flight; pending Done callbacks get an error.
    ~ZoneSecondary();

    /// Schedules the first check (at once).
    void start();
    /// New settings after a reload. A change of primaries cancels the
    /// operation in flight and checks again at once.
    void set_config(ZoneConfig config);
    const ZoneConfig& config() const noexcept { return cfg_; }

    /// SOA check now (NOTIFY, timer); if an operation is in flight, one more
    /// check follows it.
    void refresh(const std::string& why);
    /// IXFR now without the SOA check (`full`: AXFR, which also accepts a
    /// serial older than the stored one: recovery after the primary's serial
    /// went backwards). `done` runs when it ended.
    void transfer_now(bool full, Done done);

    /// Live state for `status`: phase, failures, timers.
    nlohmann::json live_status() const;

    /// The zone is no longer followed (removed from the configuration, or
    /// no primaries any more): its stored status stops announcing a next
    /// check or a transfer under way. Call before destroying it on a reload.
    void retire();

private:
    enum class Phase : std::uint8_t { Idle, SoaQuery, Transfer };
    enum class Mode : std::uint8_t { Axfr, Ixfr };

    static void on_timer(void* self);
    void begin_check();
    void soa_query(std::size_t primary);
    void soa_tcp(std::size_t primary);
    void soa_answer(std::size_t primary, std::span<const std::uint8_t> response);
    void soa_failed(std::size_t primary, const std::string& why);
    /// `explicit_full`: `transfer ZONE full`, which accepts an older serial.
    void begin_transfer(std::size_t primary, Mode mode, bool forced, bool explicit_full = false);
    bool transfer_message(std::span<const std::uint8_t> message);
    void transfer_end(const std::string& error);
    void commit();
    void up_to_date(std::uint32_t serial);
    /// `summary`: what the recovery line says, "serial 9 up to date".
    void succeeded(const std::string& line, const std::string& summary, bool full,
                   bool incremental, bool changed);
    void failed(const std::string& what, const std::string& reason);
    void end_operation();
    void cancel();
    /// Clears the "transfer under way" mark of the stored status.
    void clear_transfer_mark();
    void complete_waiters(bool ok, const std::string& message);
    const TsigKey* key_of(const Endpoint& ep) const;
    std::optional<store::ZoneInfo> stored() const;
    void check_expired();
    std::uint32_t refresh_interval() const;
    std::uint32_t retry_interval() const;

    Context& ctx_;
    ZoneConfig cfg_;
    Timer timer_;
    Phase phase_ = Phase::Idle;

    // The operation in flight.
    std::unique_ptr<UdpQuery> udp_;
    std::unique_ptr<TcpExchange> tcp_;
    std::unique_ptr<TsigSession> tsig_;
    std::unique_ptr<TransferParser> parser_;
    std::vector<std::uint8_t> response_;  ///< the accepted UDP answer
    std::uint16_t query_id_ = 0;
    std::size_t primary_ = 0;
    Mode mode_ = Mode::Axfr;
    bool forced_ = false;
    bool explicit_full_ = false;  ///< an AXFR the operator asked for: an older serial is taken
    bool fell_back_ = false;   ///< IXFR refused or answered AXFR-style
    std::string xfer_error_;   ///< why transfer_message stopped, "" = complete
    std::uint64_t op_started_ms_ = 0;
    std::vector<Done> waiters_;

    // What follows the operation in flight.
    bool pending_refresh_ = false;
    std::optional<bool> pending_forced_;  ///< a queued transfer_now (value: full)
    std::vector<Done> pending_waiters_;

    // Timers from the last SOA seen (primary's, else the stored one).
    std::uint32_t soa_refresh_ = 0, soa_retry_ = 0, soa_expire_ = 0;
    std::uint32_t primary_serial_ = 0;
    bool have_primary_serial_ = false;
    unsigned failures_ = 0;
    std::uint64_t last_success_ = 0;
    std::uint64_t next_check_ = 0;
    bool expired_ = false;
    /// Why the zone is failing ("" = it is not): the last failure, logged
    /// again with the `recovered` line of the next success.
    std::string failing_since_;
    std::uint64_t skipped_ = 0;  ///< records the transfer being committed skipped
    bool transfer_marked_ = false;  ///< the stored status says a transfer is under way
};

}  // namespace dnsfw::xfrd
