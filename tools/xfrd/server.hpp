// dnsfw::xfrd internal — the inbound side: UDP and TCP listeners on every
// `listen` endpoint. Each request goes to a handler (the daemon, which asks
// the Responder) and the Outcome's messages are sent back; over TCP an
// AXFR/IXFR stream follows, one message per completed write (backpressure:
// a slow reader never makes the daemon buffer a whole zone).
//
// TCP: RFC 1035 2-byte length framing, several requests per connection
// (answered in order), a deadline for each request that partial bytes do not
// extend, a cap on open connections and one per client address.
#pragma once

#include "tools/xfrd/config.hpp"
#include "tools/xfrd/log.hpp"
#include "tools/xfrd/serve.hpp"
#include "tools/xfrd/uv.hpp"

#include <array>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace dnsfw::xfrd {

class Server {
public:
    /// Answers one request (never throws: failures give an empty Outcome).
    using Handler =
        std::function<Outcome(std::span<const std::uint8_t>, const sockaddr_storage&, bool tcp)>;

    static constexpr std::size_t kMaxConnections = 64;
    /// Connections from one IP address: one client cannot take every slot.
    static constexpr std::size_t kMaxConnectionsPerClient = 8;
    /// From accept, or from the last answered request / completed write,
    /// until the next complete request: bytes trickling in do not extend it.
    static constexpr std::uint64_t kIdleTimeoutMs = 10000;
    /// A reader that takes nothing for this long is dropped.
    static constexpr std::uint64_t kWriteTimeoutMs = 60000;

    Server(uv_loop_t* loop, const Logger& log, Handler handler);
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;
    /// Closes the listeners and every connection.
    ~Server();

    /// Binds UDP and TCP on each endpoint (port 0: one free port, the same
    /// for both). Throws std::runtime_error naming the address on failure.
    void bind(const std::vector<Endpoint>& listen);
    /// The bound addresses ("127.0.0.1:5300", "[::1]:5300").
    const std::vector<std::string>& bound() const noexcept { return bound_; }
    std::size_t connections() const noexcept { return conns_.size(); }

private:
    struct Udp {
        Server* server = nullptr;
        Handle<uv_udp_t> h;
        std::array<char, 65536> buf{};
    };
    struct Listener {
        Server* server = nullptr;
        Handle<uv_tcp_t> h;
        std::string addr;
    };
    class Conn;

    static void on_udp_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf);
    static void on_udp_recv(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* addr,
                            unsigned flags);
    static void on_connection(uv_stream_t* s, int status);
    Outcome call(std::span<const std::uint8_t> req, const sockaddr_storage& peer, bool tcp);
    void remove(Conn* c);

    uv_loop_t* loop_;
    const Logger& log_;
    Handler handler_;
    std::vector<std::unique_ptr<Udp>> udp_;
    std::vector<std::unique_ptr<Listener>> tcp_;
    std::list<std::unique_ptr<Conn>> conns_;
    std::vector<std::string> bound_;
};

}  // namespace dnsfw::xfrd
