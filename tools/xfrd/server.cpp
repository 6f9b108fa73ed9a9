// dnsfw::xfrd — UDP and TCP listeners.
#include "tools/xfrd/server.hpp"

#include "tools/xfrd/serve_wire.hpp"

#include <cstring>

namespace dnsfw::xfrd {

namespace {

sockaddr_storage to_storage(const sockaddr* sa) {
    sockaddr_storage ss{};
    if (sa->sa_family == AF_INET)
        std::memcpy(&ss, sa, sizeof(sockaddr_in));
    else if (sa->sa_family == AF_INET6)
        std::memcpy(&ss, sa, sizeof(sockaddr_in6));
    return ss;
}

std::uint16_t port_of(const sockaddr_storage& ss) {
    if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
}

void set_port(sockaddr_storage& ss, std::uint16_t port) {
    if (ss.ss_family == AF_INET)
        reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(port);
    else
        reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(port);
}

/// Same IP address (the port is ignored).
bool same_address(const sockaddr_storage& a, const sockaddr_storage& b) {
    if (a.ss_family != b.ss_family) return false;
    if (a.ss_family == AF_INET)
        return reinterpret_cast<const sockaddr_in*>(&a)->sin_addr.s_addr ==
               reinterpret_cast<const sockaddr_in*>(&b)->sin_addr.s_addr;
    if (a.ss_family == AF_INET6)
        return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr,
                           &reinterpret_cast<const sockaddr_in6*>(&b)->sin6_addr,
                           sizeof(in6_addr)) == 0;
    return false;
}

}  // namespace

// ---------------------------------------------------------------------------
// One TCP connection.

class Server::Conn {
public:
    Conn(Server* server, uv_loop_t* loop)
        : server_(server), h_(loop, this), timer_(loop, this, &Conn::on_timer) {}

    bool accept(uv_stream_t* listener) {
        if (uv_accept(listener, h_.stream()) != 0) return false;
        int len = sizeof peer_;
        if (uv_tcp_getpeername(h_.get(), reinterpret_cast<sockaddr*>(&peer_), &len) != 0)
            return false;
        peer_text_ = wire::peer_text(peer_);
        uv_tcp_nodelay(h_.get(), 1);
        if (uv_read_start(h_.stream(), &Conn::on_alloc, &Conn::on_read) != 0) return false;
        reading_ = true;
        timer_.start(kIdleTimeoutMs);
        return true;
    }

    const std::string& peer() const noexcept { return peer_text_; }
    const sockaddr_storage& peer_addr() const noexcept { return peer_; }

private:
    static constexpr std::size_t kMaxQueued = 16;

    static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
        auto* self = owner_of<Conn>(h);
        if (self == nullptr) {
            *buf = uv_buf_init(nullptr, 0);
            return;
        }
        *buf = uv_buf_init(self->buf_.data(), static_cast<unsigned>(self->buf_.size()));
    }

    static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* self = owner_of<Conn>(s);
        if (self == nullptr) return;
        if (n < 0) {
            self->eof_ = true;
            uv_read_stop(s);
            self->reading_ = false;
            if (n != UV_EOF) {
                self->close();  // reset: nobody to answer
                return;
            }
            self->pump();
            return;
        }
        if (n == 0) return;
        self->in_.insert(self->in_.end(), buf->base, buf->base + n);
        std::size_t pos = 0;
        while (self->in_.size() - pos >= 2) {
            std::size_t len = (std::size_t{self->in_[pos]} << 8) | self->in_[pos + 1];
            if (self->in_.size() - pos - 2 < len) break;
            if (len > 0)
                self->requests_.emplace_back(self->in_.begin() + static_cast<std::ptrdiff_t>(pos + 2),
                                             self->in_.begin() +
                                                 static_cast<std::ptrdiff_t>(pos + 2 + len));
            pos += 2 + len;
        }
        self->in_.erase(self->in_.begin(), self->in_.begin() + static_cast<std::ptrdiff_t>(pos));
        if (self->requests_.size() >= kMaxQueued && self->reading_) {
            uv_read_stop(s);  // answer what we have first
            self->reading_ = false;
        }
        self->pump();
    }

    static void on_written(uv_stream_t* s, int status) {
        auto* self = owner_of<Conn>(s);
        if (self == nullptr) return;
        self->writing_ = false;
        self->progressed_ = true;
        if (status < 0) {
            self->server_->log_.log(LogLevel::Debug, "dnsfw-xfrd",
                                    "TCP connection from " + self->peer_text_ + ": write failed: " +
                                        uv_strerror(status));
            self->close();
            return;
        }
        self->pump();
    }

    static void on_timer(void* p) {
        auto* self = static_cast<Conn*>(p);
        self->server_->log_.log(LogLevel::Debug, "dnsfw-xfrd",
                                "TCP connection from " + self->peer_text_ +
                                    (self->writing_ ? " stopped reading: closed" : " idle: closed"));
        self->close();
    }

    /// Sends what is due, one message per completed write. May destroy *this.
    void pump() {
        while (!writing_) {
            if (!out_.empty()) {
                std::vector<std::uint8_t> msg = std::move(out_.front());
                out_.pop_front();
                if (msg.size() > 0xffff) {
                    server_->log_.log(LogLevel::Error, "dnsfw-xfrd",
                                      "dropping a response of " + std::to_string(msg.size()) +
                                          " octets to " + peer_text_ + " (over 65535)");
                    close();
                    return;
                }
                if (write_bytes(h_.stream(), tcp_frame(msg), &Conn::on_written) != 0) {
                    close();
                    return;
                }
                writing_ = true;
                timer_.start(kWriteTimeoutMs);
                return;
            }
            if (stream_) {
                std::vector<std::uint8_t> msg;
                bool more = false;
                try {
                    more = stream_->next(msg);
                } catch (const std::exception& e) {
                    server_->log_.log(LogLevel::Error, "dnsfw-xfrd",
                                      "transfer to " + peer_text_ + " aborted: " + e.what());
                    close();
                    return;
                }
                if (!more) {
                    stream_.reset();  // releases its store snapshot
                    continue;
                }
                out_.push_back(std::move(msg));
                continue;
            }
            if (!requests_.empty()) {
                std::vector<std::uint8_t> req = std::move(requests_.front());
                requests_.pop_front();
                progressed_ = true;
                Outcome o = server_->call(req, peer_, true);
                for (auto& m : o.messages) out_.push_back(std::move(m));
                stream_ = std::move(o.stream);
                continue;
            }
            // Nothing to send.
            if (eof_) {
                close();
                return;
            }
            if (!reading_) {
                if (uv_read_start(h_.stream(), &Conn::on_alloc, &Conn::on_read) != 0) {
                    close();
                    return;
                }
                reading_ = true;
            }
            // Bytes that arrive do not extend the deadline (slowloris: one
            // byte every few seconds would hold the connection forever);
            // only an answered request or a completed write does.
            if (progressed_ || !timer_.active()) timer_.start(kIdleTimeoutMs);
            progressed_ = false;
            return;
        }
    }

    void close() { server_->remove(this); }  // destroys *this

    Server* server_;
    Handle<uv_tcp_t> h_;
    Timer timer_;
    sockaddr_storage peer_{};
    std::string peer_text_;
    std::vector<std::uint8_t> in_;
    std::deque<std::vector<std::uint8_t>> requests_;
    std::deque<std::vector<std::uint8_t>> out_;
    std::unique_ptr<ResponseStream> stream_;
    bool writing_ = false;
    bool reading_ = false;
    bool eof_ = false;
    bool progressed_ = false;  ///< a request answered or a write completed since the timer started
    std::array<char, 65536> buf_{};
};

// ---------------------------------------------------------------------------

Server::Server(uv_loop_t* loop, const Logger& log, Handler handler)
    : loop_(loop), log_(log), handler_(std::move(handler)) {}

Server::~Server() {
    conns_.clear();
    tcp_.clear();
    udp_.clear();
}

void Server::bind(const std::vector<Endpoint>& listen) {
    for (const Endpoint& ep : listen) {
        sockaddr_storage addr = ep.addr;
        const bool v6 = addr.ss_family == AF_INET6;
        auto fail = [&](const char* what, int rc) {
            throw std::runtime_error("cannot listen on " + ep.text + " (" + what +
                                     "): " + uv_strerror(rc));
        };
        auto l = std::make_unique<Listener>();
        l->server = this;
        l->h = Handle<uv_tcp_t>(loop_, l.get());
        if (int rc = uv_tcp_bind(l->h.get(), reinterpret_cast<const sockaddr*>(&addr),
                                 v6 ? UV_TCP_IPV6ONLY : 0);
            rc != 0)
            fail("tcp", rc);
        if (int rc = uv_listen(l->h.stream(), 128, &Server::on_connection); rc != 0)
            fail("tcp", rc);
        if (port_of(addr) == 0) {
            sockaddr_storage got{};
            int len = sizeof got;
            uv_tcp_getsockname(l->h.get(), reinterpret_cast<sockaddr*>(&got), &len);
            set_port(addr, port_of(got));
        }
        auto u = std::make_unique<Udp>();
        u->server = this;
        u->h = Handle<uv_udp_t>(loop_, u.get());
        if (int rc = uv_udp_bind(u->h.get(), reinterpret_cast<const sockaddr*>(&addr),
                                 v6 ? UV_UDP_IPV6ONLY : 0);
            rc != 0)
            fail("udp", rc);
        if (int rc = uv_udp_recv_start(u->h.get(), &Server::on_udp_alloc, &Server::on_udp_recv);
            rc != 0)
            fail("udp", rc);
        l->addr = wire::peer_text(addr);
        bound_.push_back(l->addr);
        tcp_.push_back(std::move(l));
        udp_.push_back(std::move(u));
    }
}

Outcome Server::call(std::span<const std::uint8_t> req, const sockaddr_storage& peer, bool tcp) {
    try {
        return handler_(req, peer, tcp);
    } catch (const std::exception& e) {
        log_.log(LogLevel::Error, "dnsfw-xfrd",
                 "request from " + wire::peer_text(peer) + " failed: " + e.what());
    }
    return {};
}

void Server::on_udp_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
    auto* u = owner_of<Udp>(h);
    if (u == nullptr) {
        *buf = uv_buf_init(nullptr, 0);
        return;
    }
    *buf = uv_buf_init(u->buf.data(), static_cast<unsigned>(u->buf.size()));
}

void Server::on_udp_recv(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* addr,
                         unsigned flags) {
    auto* u = owner_of<Udp>(h);
    if (u == nullptr || n <= 0 || addr == nullptr || (flags & UV_UDP_PARTIAL) != 0) return;
    sockaddr_storage peer = to_storage(addr);
    Outcome o = u->server->call(
        std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(buf->base),
                                      static_cast<std::size_t>(n)),
        peer, false);
    for (const auto& m : o.messages) {
        if (m.size() > 0xffff) continue;
        send_datagram(h, addr, m);
    }
    // A stream never comes for UDP; if it did, dropping it releases its snapshot.
}

void Server::on_connection(uv_stream_t* s, int status) {
    auto* l = owner_of<Listener>(s);
    if (l == nullptr || status < 0) return;
    Server* self = l->server;
    auto conn = std::make_unique<Conn>(self, self->loop_);
    if (!conn->accept(s)) return;  // conn's destructor closes the handle
    if (self->conns_.size() >= kMaxConnections) {
        self->log_.limited(LogLevel::Warning, "dnsfw-xfrd: TCP connection refused (cap)",
                           "dnsfw-xfrd: TCP connection from " + conn->peer() + " refused: " +
                               std::to_string(kMaxConnections) + " connections open");
        return;
    }
    std::size_t same = 0;
    for (const auto& c : self->conns_)
        if (same_address(c->peer_addr(), conn->peer_addr())) ++same;
    if (same >= kMaxConnectionsPerClient) {
        self->log_.limited(LogLevel::Warning, "dnsfw-xfrd: TCP connection refused (per client)",
                           "dnsfw-xfrd: TCP connection from " + conn->peer() + " refused: " +
                               std::to_string(kMaxConnectionsPerClient) +
                               " connections open from this address");
        return;
    }
    self->conns_.push_back(std::move(conn));
}

void Server::remove(Conn* c) {
    for (auto it = conns_.begin(); it != conns_.end(); ++it) {
        if (it->get() == c) {
            conns_.erase(it);
            return;
        }
    }
}

}  // namespace dnsfw::xfrd
