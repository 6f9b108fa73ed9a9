// Sweep coordination: the anchor gate and the wake-up socket. No Unbound includes.
#include "module/sweep.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace dnsfw::module {

bool SweepGate::anchor(const void* token, CacheTables tables) noexcept {
    if (token == nullptr || tables.msg == nullptr) return false;
    std::lock_guard lock(mutex_);
    if (anchor_ != nullptr) return false;
    anchor_ = token;
    tables_ = tables;
    revoked_.store(false, std::memory_order_release);
    return true;
}

void SweepGate::release(const void* token) noexcept {
    std::unique_lock lock(mutex_);
    if (token == nullptr || anchor_ != token) return;
    anchor_ = nullptr;
    tables_ = {};
    revoked_.store(true, std::memory_order_release);
    left_.wait(lock, [this] { return !in_use_; });
}

bool SweepGate::anchored() const noexcept {
    std::lock_guard lock(mutex_);
    return anchor_ != nullptr;
}

std::optional<CacheTables> SweepGate::enter() noexcept {
    std::lock_guard lock(mutex_);
    if (anchor_ == nullptr || in_use_) return std::nullopt;
    in_use_ = true;
    return tables_;
}

void SweepGate::leave() noexcept {
    {
        std::lock_guard lock(mutex_);
        in_use_ = false;
    }
    left_.notify_all();
}

WakeSocket::~WakeSocket() {
    if (fd_ >= 0) ::close(fd_);
}

bool WakeSocket::open(int family) noexcept {
    if (fd_ >= 0) return true;
    if (family != AF_INET && family != AF_INET6) return false;
    const int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_storage addr{};
    socklen_t len = 0;
    if (family == AF_INET) {
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        std::memcpy(&addr, &sin, sizeof sin);
        len = sizeof sin;
    } else {
        sockaddr_in6 sin6{};
        sin6.sin6_family = AF_INET6;
        sin6.sin6_addr = in6addr_loopback;
        std::memcpy(&addr, &sin6, sizeof sin6);
        len = sizeof sin6;
    }
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        ::close(fd);
        return false;
    }
    fd_ = fd;
    address_.addr = addr;
    address_.len = len;
    return true;
}

void WakeSocket::drain() noexcept {
    if (fd_ < 0) return;
    for (;;) {
        std::uint8_t buf[sizeof query_];
        sockaddr_storage from{};
        socklen_t from_len = sizeof from;
        const ssize_t n = ::recvfrom(fd_, buf, sizeof buf, MSG_DONTWAIT,
                                     reinterpret_cast<sockaddr*>(&from), &from_len);
        if (n < 0) return;  // EAGAIN (or an error): nothing more now
        const auto len = static_cast<std::size_t>(n);
        // A query (QR clear), one question, a name below kRefreshSuffix.
        if (len < 12 || (buf[2] & 0x80) != 0 || buf[4] != 0 || buf[5] != 1) continue;
        std::size_t pos = 12;
        while (pos < len && buf[pos] != 0) {
            if (buf[pos] > 63) break;
            pos += 1 + buf[pos];
        }
        if (pos >= len || buf[pos] != 0 || pos + 1 + 4 > len) continue;
        const std::span<const std::uint8_t> name{buf + 12, pos + 1 - 12};
        if (!is_refresh_name(name)) continue;
        question_end_ = pos + 1 + 4;
        std::memcpy(query_, buf, question_end_);
        pending_len_ = question_end_;
        had_opt_ = buf[10] != 0 || buf[11] != 0;
        from_ = from;
        from_len_ = from_len;
        since_ = std::chrono::steady_clock::now();
    }
}

void WakeSocket::answer() noexcept {
    if (fd_ < 0 || pending_len_ == 0) return;
    std::uint8_t out[sizeof query_ + 11];
    std::memcpy(out, query_, question_end_);
    out[2] = static_cast<std::uint8_t>(0x80 | (query_[2] & 0x01));  // QR, opcode QUERY, RD copied
    out[3] = 0x80;                                                  // RA, NOERROR
    out[6] = out[7] = out[8] = out[9] = 0;                          // AN, NS
    out[10] = 0;
    out[11] = had_opt_ ? 1 : 0;
    std::size_t n = question_end_;
    if (had_opt_) {
        const std::uint8_t opt[11] = {0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0};  // ., OPT, 4096
        std::memcpy(out + n, opt, sizeof opt);
        n += sizeof opt;
    }
    [[maybe_unused]] const ssize_t sent =
        ::sendto(fd_, out, n, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&from_), from_len_);
    pending_len_ = 0;
}

}  // namespace dnsfw::module
