// Store-change notification and refresh queries. No Unbound includes.
#include "module/watch.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>

namespace dnsfw::module {

bool is_refresh_name(std::span<const std::uint8_t> wire) noexcept {
    constexpr std::size_t n = sizeof kRefreshSuffix;
    std::size_t pos = 0;
    while (pos < wire.size()) {
        if (wire.size() - pos == n) {
            bool same = true;
            for (std::size_t i = 0; i < n && same; ++i) {
                std::uint8_t c = wire[pos + i];
                if (c >= 'A' && c <= 'Z') c = static_cast<std::uint8_t>(c + ('a' - 'A'));
                same = c == kRefreshSuffix[i];
            }
            return same;
        }
        const std::size_t len = wire[pos];
        if (len == 0 || len > 63) return false;
        pos += 1 + len;
    }
    return false;
}

bool send_refresh_query(const RefreshTarget& target, std::uint64_t generation) noexcept {
    if (target.len == 0) return false;
    static std::atomic<std::uint32_t> counter{0};
    const std::uint32_t n = counter.fetch_add(1, std::memory_order_relaxed);

    std::array<std::uint8_t, 128> packet{};
    std::size_t p = 0;
    const auto put16 = [&](unsigned v) {
        packet[p++] = static_cast<std::uint8_t>(v >> 8);
        packet[p++] = static_cast<std::uint8_t>(v & 0xff);
    };
    put16(static_cast<unsigned>((n * 2654435761u) >> 16));  // id
    put16(0x0100);                                          // RD
    put16(1);                                               // QDCOUNT
    put16(0);
    put16(0);
    put16(0);
    // First label "g<generation>-<n>": unique, so it always misses the cache.
    char label[48];
    std::size_t l = 0;
    const auto put_num = [&](std::uint64_t v) {
        char digits[24];
        std::size_t d = 0;
        do {
            digits[d++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (d > 0) label[l++] = digits[--d];
    };
    label[l++] = 'g';
    put_num(generation);
    label[l++] = '-';
    put_num(n);
    packet[p++] = static_cast<std::uint8_t>(l);
    std::memcpy(packet.data() + p, label, l);
    p += l;
    std::memcpy(packet.data() + p, kRefreshSuffix, sizeof kRefreshSuffix);
    p += sizeof kRefreshSuffix;
    put16(1);  // A
    put16(1);  // IN

    const int fd = ::socket(target.addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    const ssize_t sent = ::sendto(fd, packet.data(), p, 0,
                                  reinterpret_cast<const sockaddr*>(&target.addr), target.len);
    ::close(fd);
    return sent == static_cast<ssize_t>(p);
}

DirWatch::DirWatch() {
    inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    stop_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

DirWatch::~DirWatch() {
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
    if (stop_fd_ >= 0) ::close(stop_fd_);
}

bool DirWatch::watch(const std::string& dir) noexcept {
    if (inotify_fd_ < 0) return false;
    if (watch_fd_ >= 0) {
        ::inotify_rm_watch(inotify_fd_, watch_fd_);
        watch_fd_ = -1;
    }
    watch_fd_ = ::inotify_add_watch(inotify_fd_, dir.c_str(),
                                    IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO);
    return watch_fd_ >= 0;
}

bool DirWatch::wait(int timeout_ms, int extra_fd) noexcept {
    if (stop_fd_ < 0) {
        ::usleep(static_cast<useconds_t>(timeout_ms) * 1000);
        return true;
    }
    pollfd fds[3] = {{stop_fd_, POLLIN, 0}, {inotify_fd_, POLLIN, 0}, {extra_fd, POLLIN, 0}};
    // Negative descriptors are ignored by poll().
    const int rc = ::poll(fds, 3, timeout_ms);
    if (rc > 0 && (fds[0].revents & POLLIN) != 0) return false;
    if (rc > 0 && inotify_fd_ >= 0 && (fds[1].revents & POLLIN) != 0) {
        // Drain the events; which file changed does not matter.
        alignas(inotify_event) char buf[4096];
        while (::read(inotify_fd_, buf, sizeof buf) > 0) {
        }
    }
    return true;
}

void DirWatch::stop() noexcept {
    if (stop_fd_ < 0) return;
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t rc = ::write(stop_fd_, &one, sizeof one);
}

}  // namespace dnsfw::module
