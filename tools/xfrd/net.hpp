// dnsfw::xfrd internal — client-side DNS exchanges over libuv: one UDP query
// with retries (SOA checks, NOTIFY), and one TCP exchange reading a stream
// of length-prefixed messages (SOA over TCP, AXFR, IXFR).
//
// Callback rule: the final callback (`done` / `on_end`) is the last thing an
// exchange does; the owner may destroy the exchange inside it. Per-message
// callbacks (`accept`, `on_message`) must not destroy it.
#pragma once

#include "tools/xfrd/uv.hpp"

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace dnsfw::xfrd {

/// One UDP request to one peer: sends `message`, waits `timeout_ms` for an
/// answer that `accept` takes, resends up to `tries` times in all.
class UdpQuery {
public:
    /// Called for each datagram from the peer; true = this is the answer.
    using Accept = std::function<bool(std::span<const std::uint8_t> response)>;
    /// answered = an answer was accepted; else `error` says why not.
    using Done = std::function<void(bool answered, const std::string& error)>;

    UdpQuery(uv_loop_t* loop, const sockaddr_storage& peer, std::vector<std::uint8_t> message,
             unsigned timeout_ms, unsigned tries, Accept accept, Done done);
    UdpQuery(const UdpQuery&) = delete;
    UdpQuery& operator=(const UdpQuery&) = delete;
    ~UdpQuery();

    /// Sends the first try. Throws UvError (socket, connect, send).
    void start();
    /// Attempts made so far.
    unsigned attempts() const noexcept { return sent_; }
    /// With true, an ICMP port unreachable (ECONNREFUSED on the connected
    /// socket) ends the query at once instead of waiting for the remaining
    /// tries (SOA checks: the next primary, or the retry timer, takes over).
    void fail_on_unreachable(bool on) noexcept { fail_on_unreachable_ = on; }

private:
    static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf);
    static void on_recv(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* addr,
                        unsigned flags);
    static void on_timer(void* self);
    void send_try();
    void finish(bool answered, const std::string& error);

    uv_loop_t* loop_;
    sockaddr_storage peer_;
    std::vector<std::uint8_t> message_;
    unsigned timeout_ms_, tries_;
    Accept accept_;
    Done done_;
    Handle<uv_udp_t> udp_;
    Timer timer_;
    unsigned sent_ = 0;
    std::string last_error_;
    bool fail_on_unreachable_ = false;
    bool refused_ = false;
    std::array<char, 65536> buf_{};
};

/// One TCP exchange: connects, writes `request` (already framed), reads
/// length-prefixed messages and hands each to `on_message` until it
/// returns false. `on_end("")` then follows; on any failure before that
/// (connect, reset, close, timeout) `on_end(reason)`.
class TcpExchange {
public:
    using OnMessage = std::function<bool(std::span<const std::uint8_t> message)>;
    using OnEnd = std::function<void(const std::string& error)>;

    /// `timeout_ms`: the whole exchange; `idle_ms`: the longest silence.
    TcpExchange(uv_loop_t* loop, const sockaddr_storage& peer, std::vector<std::uint8_t> request,
                std::uint64_t timeout_ms, std::uint64_t idle_ms, OnMessage on_message,
                OnEnd on_end);
    TcpExchange(const TcpExchange&) = delete;
    TcpExchange& operator=(const TcpExchange&) = delete;
    ~TcpExchange();

    /// Starts connecting. Throws UvError.
    void start();
    std::size_t messages() const noexcept { return messages_; }
    std::uint64_t bytes() const noexcept { return bytes_; }

private:
    static void on_connect(uv_connect_t* req, int status);
    static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf);
    static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
    static void on_deadline(void* self);
    static void on_idle(void* self);
    void finish(const std::string& error);

    uv_loop_t* loop_;
    sockaddr_storage peer_;
    std::vector<std::uint8_t> request_;
    std::uint64_t timeout_ms_, idle_ms_;
    OnMessage on_message_;
    OnEnd on_end_;
    Handle<uv_tcp_t> tcp_;
    Timer deadline_;
    Timer idle_;
    bool connected_ = false;
    bool finished_ = false;
    std::vector<std::uint8_t> in_;
    std::size_t messages_ = 0;
    std::uint64_t bytes_ = 0;
    std::array<char, 65536> buf_{};
};

}  // namespace dnsfw::xfrd
