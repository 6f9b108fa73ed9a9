// The hit log: lock-free queue + writer thread. No Unbound includes.
#include "module/hitlog.hpp"

#include "module/text.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace dnsfw::module {

namespace {

/// How long the writer sleeps when the queue is empty. Bounds the delay
/// between a query and its line in the file.
constexpr std::chrono::milliseconds kIdleWait{10};
/// The path's inode is compared with the open file's at most this often.
constexpr std::int64_t kReopenCheckMs = 1000;
/// Drops and write failures are reported at most this often.
constexpr std::int64_t kDropReportMs = 10'000;
/// Records formatted per write(2).
constexpr std::size_t kBatch = 256;

std::int64_t monotonic_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::size_t round_up_pow2(std::size_t n) {
    std::size_t p = 2;
    while (p < n) p <<= 1;
    return p;
}

}  // namespace

std::string_view to_string(HitTransport t) noexcept {
    switch (t) {
    case HitTransport::Udp: return "udp";
    case HitTransport::Tcp: return "tcp";
    case HitTransport::Tls: return "tls";
    case HitTransport::Https: return "https";
    case HitTransport::Other: return "other";
    }
    return "other";
}

void append_hit_json(std::string& out, const HitRecord& r) {
    char storage[4096];
    TextBuffer b(storage, sizeof storage);
    // Names are printed in presentation format with \-escapes, which are
    // printable ASCII; append_json_escaped makes the backslashes JSON-safe.
    char scratch[1100];

    b.append("{\"time\":\"");
    append_iso_time(b, r.time_ns);
    b.append("\",\"client\":");
    if (r.family == 4 || r.family == 6) {
        char addr[INET6_ADDRSTRLEN] = {};
        if (inet_ntop(r.family == 4 ? AF_INET : AF_INET6, r.address.data(), addr, sizeof addr) !=
            nullptr) {
            b.append('"');
            b.append(addr);
            b.append("\",\"port\":");
            b.append_uint(r.port);
        } else {
            b.append("null,\"port\":null");
        }
    } else {
        b.append("null,\"port\":null");
    }
    b.append(",\"transport\":\"");
    b.append(to_string(r.transport));
    b.append("\",\"qname\":\"");
    {
        TextBuffer t(scratch, sizeof scratch);
        append_name(t, {r.qname.data(), std::min<std::size_t>(r.qname_len, r.qname.size())});
        append_json_escaped(b, t.view());
    }
    b.append("\",\"match\":\"");
    {
        TextBuffer t(scratch, sizeof scratch);
        if (r.match_len != 0)
            append_name(t, {r.match.data(), std::min<std::size_t>(r.match_len, r.match.size())});
        else
            append_name(t, {r.qname.data(), std::min<std::size_t>(r.qname_len, r.qname.size())});
        append_json_escaped(b, t.view());
    }
    b.append("\",\"qtype\":\"");
    append_rr_type(b, r.qtype);
    b.append("\",\"zone\":\"");
    append_json_escaped(b, std::string_view(r.zone.data(),
                                            std::min<std::size_t>(r.zone_len, r.zone.size())));
    b.append("\",\"trigger\":\"");
    b.append(rpz::to_string(r.trigger));
    b.append("\",\"rule\":\"");
    {
        const std::size_t n = rpz::format_rule_key(
            r.trigger, {r.key.data(), std::min<std::size_t>(r.key_len, r.key.size())},
            {scratch, sizeof scratch});
        append_json_escaped(b, n != 0 ? std::string_view(scratch, n) : std::string_view("<invalid>"));
    }
    b.append("\",\"action\":\"");
    if (r.disabled) b.append("disabled:");
    b.append(rpz::to_string(r.action));
    b.append("\"}\n");
    out.append(b.view());
}

// ---------------------------------------------------------------------------
// HitQueue

HitQueue::HitQueue(std::size_t capacity)
    : cells_(std::make_unique<Cell[]>(round_up_pow2(capacity))),
      mask_(round_up_pow2(capacity) - 1) {
    for (std::size_t i = 0; i <= mask_; ++i) cells_[i].sequence.store(i, std::memory_order_relaxed);
}

bool HitQueue::try_push(const HitRecord& r) noexcept {
    std::size_t pos = enqueue_pos_.load(std::memory_order_relaxed);
    Cell* cell = nullptr;
    for (;;) {
        cell = &cells_[pos & mask_];
        const std::size_t seq = cell->sequence.load(std::memory_order_acquire);
        const auto diff = static_cast<std::intptr_t>(seq) - static_cast<std::intptr_t>(pos);
        if (diff == 0) {
            if (enqueue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
        } else if (diff < 0) {
            dropped_.fetch_add(1, std::memory_order_relaxed);
            return false;  // full
        } else {
            pos = enqueue_pos_.load(std::memory_order_relaxed);
        }
    }
    cell->record = r;
    cell->sequence.store(pos + 1, std::memory_order_release);
    return true;
}

bool HitQueue::try_pop(HitRecord& out) noexcept {
    const std::size_t pos = dequeue_pos_.load(std::memory_order_relaxed);
    Cell& cell = cells_[pos & mask_];
    const std::size_t seq = cell.sequence.load(std::memory_order_acquire);
    if (seq != pos + 1) return false;  // empty, or the producer is still copying
    out = cell.record;
    cell.sequence.store(pos + mask_ + 1, std::memory_order_release);
    dequeue_pos_.store(pos + 1, std::memory_order_relaxed);
    return true;
}

// ---------------------------------------------------------------------------
// HitLog

HitLog::HitLog(std::string path, LogSink sink, std::size_t capacity)
    : path_(std::move(path)), sink_(std::move(sink)), queue_(capacity) {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        const int err = errno;
        throw std::runtime_error("hit-log " + path_ + ": cannot open for appending: " +
                                 std::strerror(err));
    }
    fd_ = fd;
    struct stat st {};
    if (::fstat(fd_, &st) == 0) {
        inode_ = st.st_ino;
        device_ = st.st_dev;
    }
    last_reopen_check_ms_ = monotonic_ms();
    last_drop_report_ms_ = last_reopen_check_ms_;
    thread_ = std::thread([this] { run(); });
}

HitLog::~HitLog() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
}

bool HitLog::open_file(bool report) {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        if (report && sink_) {
            const int err = errno;
            sink_(LogLevel::Error, "hit-log " + path_ + ": cannot reopen: " + std::strerror(err));
        }
        return false;
    }
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
    struct stat st {};
    if (::fstat(fd_, &st) == 0) {
        inode_ = st.st_ino;
        device_ = st.st_dev;
    }
    write_error_reported_ = false;
    return true;
}

void HitLog::maybe_reopen(std::int64_t now_ms) {
    if (now_ms - last_reopen_check_ms_ < kReopenCheckMs) return;
    last_reopen_check_ms_ = now_ms;
    struct stat st {};
    const bool exists = ::stat(path_.c_str(), &st) == 0;
    if (fd_ >= 0 && exists && st.st_ino == inode_ && st.st_dev == device_) return;
    // Rotated away (renamed or removed), or not open after a failed reopen:
    // (re)create it. A failure is reported once until a reopen succeeds.
    if (open_file(!reopen_failure_reported_)) {
        reopen_failure_reported_ = false;
    } else {
        reopen_failure_reported_ = true;
    }
}

void HitLog::write_batch(const std::string& data, std::uint64_t lines) {
    if (fd_ < 0) {
        lost_.fetch_add(lines, std::memory_order_relaxed);
        return;
    }
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            if (!write_error_reported_ && sink_) {
                sink_(LogLevel::Error, "hit-log " + path_ + ": write failed: " + std::strerror(err));
            }
            write_error_reported_ = true;
            lost_.fetch_add(lines, std::memory_order_relaxed);
            return;
        }
        done += static_cast<std::size_t>(n);
    }
    written_.fetch_add(lines, std::memory_order_relaxed);
}

void HitLog::report_drops(bool final_report) {
    const std::uint64_t dropped = queue_.dropped();
    const std::uint64_t lost = lost_.load(std::memory_order_relaxed);
    if (dropped == reported_dropped_ && lost == reported_lost_) return;
    if (sink_) {
        sink_(LogLevel::Warning,
              "hit-log " + path_ + ": " + std::to_string(dropped - reported_dropped_) +
                  " records dropped (queue of " + std::to_string(queue_.capacity()) +
                  " full), " + std::to_string(lost - reported_lost_) +
                  " lost (write failed) since the last report; totals " +
                  std::to_string(dropped) + " dropped, " + std::to_string(lost) + " lost" +
                  (final_report ? " (at shutdown)" : ""));
    }
    reported_dropped_ = dropped;
    reported_lost_ = lost;
}

std::uint64_t HitLog::format_batch(std::string& batch) {
    HitRecord record;
    std::uint64_t lines = 0;
    batch.clear();
    while (lines < kBatch && queue_.try_pop(record)) {
        try {
            append_hit_json(batch, record);
            ++lines;
        } catch (const std::exception&) {
            lost_.fetch_add(1, std::memory_order_relaxed);  // out of memory
        }
    }
    return lines;
}

void HitLog::run() {
    std::string batch;
    batch.reserve(kBatch * 320);
    for (;;) {
        const std::uint64_t lines = format_batch(batch);
        if (lines > 0) write_batch(batch, lines);

        const std::int64_t now = monotonic_ms();
        maybe_reopen(now);
        if (now - last_drop_report_ms_ >= kDropReportMs) {
            last_drop_report_ms_ = now;
            report_drops(false);
        }
        if (lines == kBatch) continue;  // more may be waiting

        std::unique_lock<std::mutex> lock(mutex_);
        bool stopping = stop_;
        if (!stopping) {
            wake_.wait_for(lock, kIdleWait, [this] { return stop_; });
            stopping = stop_;
        }
        if (stopping) break;
    }
    // Final drain: everything pushed before the destructor ran.
    for (;;) {
        const std::uint64_t lines = format_batch(batch);
        if (lines == 0) break;
        write_batch(batch, lines);
    }
    report_drops(true);
}

}  // namespace dnsfw::module
