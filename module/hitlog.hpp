// dnsfw::module — the hit log: one JSON line per applied policy.
//
// Resolver threads never touch the file: they copy a fixed-size HitRecord
// into a bounded lock-free queue (HitQueue::try_push, wait-free in the
// common case, no allocation). When the queue is full the record is dropped
// and counted. A writer thread owned by HitLog drains the queue every few
// milliseconds, formats the lines and appends them to the file with one
// write(2) per batch, so a line is in the file within ~10 ms of the query.
// Log rotation: the writer reopens the path when its inode changes (or the
// file disappears), checked at most once a second.
//
// No Unbound includes: unit-tested on its own.
#pragma once

#include "module/config.hpp"
#include "rpz/rpz.hpp"

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>

namespace dnsfw::module {

/// How the client reached the resolver.
enum class HitTransport : std::uint8_t { Udp = 0, Tcp = 1, Tls = 2, Https = 3, Other = 4 };

/// "udp", "tcp", "tls", "https", "other".
std::string_view to_string(HitTransport t) noexcept;

/// One applied policy, as copied by a resolver thread. Trivially copyable,
/// fixed size (no pointers into memory that may go away).
struct HitRecord {
    std::int64_t time_ns = 0;           ///< CLOCK_REALTIME, ns since the epoch
    std::uint16_t qtype = 0;
    std::uint16_t port = 0;             ///< client port (host order)
    std::uint8_t family = 0;            ///< 4, 6, or 0 if unknown
    HitTransport transport = HitTransport::Other;
    rpz::Trigger trigger = rpz::Trigger::Qname;
    rpz::Action action = rpz::Action::Passthru;
    /// The match was in a DISABLED zone: logged as "disabled:<action>" (what
    /// the zone would have done), nothing was changed.
    bool disabled = false;
    std::uint16_t qname_len = 0;
    std::uint16_t match_len = 0;
    std::uint16_t key_len = 0;
    std::uint16_t zone_len = 0;
    std::array<std::uint8_t, 16> address{};             ///< network order
    std::array<std::uint8_t, rpz::kMaxNameWire + 1> qname{};  ///< wire format
    /// The name the rule was evaluated for (wire format): the query name,
    /// or the CNAME chain link (a target) whose name, answer or delegation
    /// matched. Logged as "match"; qname when match_len is 0.
    std::array<std::uint8_t, rpz::kMaxNameWire + 1> match{};
    /// Rule owner key relative to the zone: a name key (QNAME, NSDNAME) or
    /// an IP key (CLIENT-IP, Response-IP, NSIP), printed as the prefix.
    std::array<std::uint8_t, rpz::kMaxNameKey + 2> key{};
    std::array<char, 256> zone{};                       ///< zone name, presentation (cut at 256)
};
static_assert(std::is_trivially_copyable_v<HitRecord>);

/// Appends the JSON line of `r` (terminated by '\n') to `out`. Allocates
/// (the writer thread uses it; tests too).
void append_hit_json(std::string& out, const HitRecord& r);

/// A bounded multi-producer single-consumer queue of HitRecords (Vyukov's
/// bounded queue: one CAS per push, no locks). Thread-safe for any number of
/// producers and ONE consumer.
class HitQueue {
public:
    /// `capacity` is rounded up to a power of two (at least 2).
    explicit HitQueue(std::size_t capacity);
    HitQueue(const HitQueue&) = delete;
    HitQueue& operator=(const HitQueue&) = delete;

    /// Copies `r` in. False (and counts a drop) if the queue is full.
    bool try_push(const HitRecord& r) noexcept;
    /// Single consumer: moves the oldest record out. False if empty.
    bool try_pop(HitRecord& out) noexcept;
    /// Records dropped because the queue was full, since construction.
    std::uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }
    std::size_t capacity() const noexcept { return mask_ + 1; }

private:
    struct Cell {
        std::atomic<std::size_t> sequence{0};
        HitRecord record;
    };
    std::unique_ptr<Cell[]> cells_;
    std::size_t mask_;
    alignas(64) std::atomic<std::size_t> enqueue_pos_{0};
    alignas(64) std::atomic<std::size_t> dequeue_pos_{0};
    alignas(64) std::atomic<std::uint64_t> dropped_{0};
};

/// Receives the hit log's own diagnostics (the module routes them to
/// Unbound's log). Called from the writer thread and from the constructor.
using LogSink = std::function<void(LogLevel, const std::string&)>;

/// The hit-log file and its writer thread. Not copyable or movable.
class HitLog {
public:
    /// Default queue capacity (records; about 1.1 KB each).
    static constexpr std::size_t kDefaultCapacity = 16384;

    /// Opens (creates, appends to) `path` and starts the writer thread.
    /// Throws std::runtime_error naming the path if it cannot be opened.
    HitLog(std::string path, LogSink sink, std::size_t capacity = kDefaultCapacity);
    /// Writes what is queued, stops and joins the writer, closes the file.
    ~HitLog();
    HitLog(const HitLog&) = delete;
    HitLog& operator=(const HitLog&) = delete;

    /// Queues a record. Any thread; noexcept, no allocation, never blocks.
    /// False if the record was dropped (queue full).
    bool push(const HitRecord& r) noexcept { return queue_.try_push(r); }

    const std::string& path() const noexcept { return path_; }
    /// Lines written to the file so far.
    std::uint64_t written() const noexcept { return written_.load(std::memory_order_relaxed); }
    /// Records dropped because the queue was full.
    std::uint64_t dropped() const noexcept { return queue_.dropped(); }
    /// Records the queue holds.
    std::size_t capacity() const noexcept { return queue_.capacity(); }
    /// Records lost because the file could not be written.
    std::uint64_t lost() const noexcept { return lost_.load(std::memory_order_relaxed); }

private:
    void run();
    /// Pops up to kBatch records and formats them into `batch` (cleared first);
    /// returns how many lines it holds. Writer thread only.
    std::uint64_t format_batch(std::string& batch);
    bool open_file(bool report);
    void maybe_reopen(std::int64_t now_ms);
    void write_batch(const std::string& data, std::uint64_t lines);
    void report_drops(bool final_report);

    std::string path_;
    LogSink sink_;
    HitQueue queue_;
    int fd_ = -1;
    std::uint64_t inode_ = 0;
    std::uint64_t device_ = 0;
    std::int64_t last_reopen_check_ms_ = 0;
    std::int64_t last_drop_report_ms_ = 0;
    std::uint64_t reported_dropped_ = 0;
    std::uint64_t reported_lost_ = 0;
    bool write_error_reported_ = false;
    bool reopen_failure_reported_ = false;
    std::atomic<std::uint64_t> written_{0};
    std::atomic<std::uint64_t> lost_{0};
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;  // guarded by mutex_
    std::thread thread_;  // last: started after everything above exists
};

}  // namespace dnsfw::module
