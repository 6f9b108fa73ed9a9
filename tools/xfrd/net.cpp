// dnsfw::xfrd — client-side UDP and TCP exchanges.
#include "tools/xfrd/net.hpp"

#include <memory>

namespace dnsfw::xfrd {

// ---------------------------------------------------------------------------
// UdpQuery

UdpQuery::UdpQuery(uv_loop_t* loop, const sockaddr_storage& peer,
                   std::vector<std::uint8_t> message, unsigned timeout_ms, unsigned tries,
                   Accept accept, Done done)
    : loop_(loop),
      peer_(peer),
      message_(std::move(message)),
      timeout_ms_(timeout_ms),
      tries_(tries == 0 ? 1 : tries),
      accept_(std::move(accept)),
      done_(std::move(done)),
      timer_(loop, this, &UdpQuery::on_timer) {}

UdpQuery::~UdpQuery() = default;

void UdpQuery::start() {
    udp_ = Handle<uv_udp_t>(loop_, this);
    // A connected socket only hears from the peer, and learns of an
    // unreachable port (ECONNREFUSED) at once.
    if (int rc = uv_udp_connect(udp_.get(), reinterpret_cast<const sockaddr*>(&peer_)); rc != 0)
        throw UvError("udp connect", rc);
    if (int rc = uv_udp_recv_start(udp_.get(), &UdpQuery::on_alloc, &UdpQuery::on_recv); rc != 0)
        throw UvError("udp receive", rc);
    send_try();
}

void UdpQuery::send_try() {
    ++sent_;
    if (int rc = send_datagram(udp_.get(), nullptr, message_); rc != 0) {
        last_error_ = std::string("send: ") + uv_strerror(rc);
        if (rc == UV_ECONNREFUSED && fail_on_unreachable_) {
            refused_ = true;
            timer_.start(0);  // finish from the loop, not inside start()
            return;
        }
    }
    timer_.start(timeout_ms_);
}

void UdpQuery::on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
    auto* self = owner_of<UdpQuery>(h);
    if (self == nullptr) {
        *buf = uv_buf_init(nullptr, 0);
        return;
    }
    *buf = uv_buf_init(self->buf_.data(), static_cast<unsigned>(self->buf_.size()));
}

void UdpQuery::on_recv(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr*,
                       unsigned flags) {
    auto* self = owner_of<UdpQuery>(h);
    if (self == nullptr) return;
    if (n < 0) {
        // e.g. ECONNREFUSED: nobody listens there; the next try may succeed
        // (a restarting peer), so keep the timer running.
        self->last_error_ = uv_strerror(static_cast<int>(n));
        if (n == UV_ECONNREFUSED && self->fail_on_unreachable_) {
            self->refused_ = true;
            self->timer_.start(0);
        }
        return;
    }
    if (n == 0 || (flags & UV_UDP_PARTIAL) != 0) return;
    std::span<const std::uint8_t> msg(reinterpret_cast<const std::uint8_t*>(buf->base),
                                      static_cast<std::size_t>(n));
    if (self->accept_(msg)) self->finish(true, "");
}

void UdpQuery::on_timer(void* p) {
    auto* self = static_cast<UdpQuery*>(p);
    if (self->refused_) {
        self->finish(false, "port unreachable (" + self->last_error_ + ") after " +
                                std::to_string(self->sent_) +
                                (self->sent_ == 1 ? " try" : " tries"));
        return;
    }
    if (self->sent_ < self->tries_) {
        self->send_try();
        return;
    }
    std::string why = "no answer after " + std::to_string(self->sent_) +
                      (self->sent_ == 1 ? " try" : " tries") + " of " +
                      std::to_string(self->timeout_ms_ / 1000.0).substr(0, 3) + " s";
    if (!self->last_error_.empty()) why += " (" + self->last_error_ + ")";
    self->finish(false, why);
}

void UdpQuery::finish(bool answered, const std::string& error) {
    timer_.stop();
    udp_.reset();
    Done done = std::move(done_);
    done_ = nullptr;
    if (done) done(answered, error);  // may destroy *this: nothing after it
}

// ---------------------------------------------------------------------------
// TcpExchange

TcpExchange::TcpExchange(uv_loop_t* loop, const sockaddr_storage& peer,
                         std::vector<std::uint8_t> request, std::uint64_t timeout_ms,
                         std::uint64_t idle_ms, OnMessage on_message, OnEnd on_end)
    : loop_(loop),
      peer_(peer),
      request_(std::move(request)),
      timeout_ms_(timeout_ms),
      idle_ms_(idle_ms),
      on_message_(std::move(on_message)),
      on_end_(std::move(on_end)),
      deadline_(loop, this, &TcpExchange::on_deadline),
      idle_(loop, this, &TcpExchange::on_idle) {}

TcpExchange::~TcpExchange() = default;

void TcpExchange::start() {
    tcp_ = Handle<uv_tcp_t>(loop_, this);
    auto req = std::make_unique<uv_connect_t>();
    if (int rc = uv_tcp_connect(req.get(), tcp_.get(), reinterpret_cast<const sockaddr*>(&peer_),
                                &TcpExchange::on_connect);
        rc != 0)
        throw UvError("tcp connect", rc);
    req.release();  // freed in on_connect
    deadline_.start(timeout_ms_);
    idle_.start(idle_ms_);
}

void TcpExchange::on_connect(uv_connect_t* req, int status) {
    std::unique_ptr<uv_connect_t> owned(req);
    auto* self = owner_of<TcpExchange>(req->handle);
    if (self == nullptr) return;
    if (status != 0) {
        self->finish(std::string("connect: ") + uv_strerror(status));
        return;
    }
    self->connected_ = true;
    uv_tcp_nodelay(self->tcp_.get(), 1);
    int rc = write_bytes(self->tcp_.stream(), std::move(self->request_), [](uv_stream_t* s, int st) {
        auto* me = owner_of<TcpExchange>(s);
        if (me != nullptr && st < 0) me->finish(std::string("write: ") + uv_strerror(st));
    });
    if (rc != 0) {
        self->finish(std::string("write: ") + uv_strerror(rc));
        return;
    }
    rc = uv_read_start(self->tcp_.stream(), &TcpExchange::on_alloc, &TcpExchange::on_read);
    if (rc != 0) self->finish(std::string("read: ") + uv_strerror(rc));
}

void TcpExchange::on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
    auto* self = owner_of<TcpExchange>(h);
    if (self == nullptr) {
        *buf = uv_buf_init(nullptr, 0);
        return;
    }
    *buf = uv_buf_init(self->buf_.data(), static_cast<unsigned>(self->buf_.size()));
}

void TcpExchange::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* self = owner_of<TcpExchange>(s);
    if (self == nullptr || self->finished_) return;
    if (n < 0) {
        std::string why;
        if (n == UV_EOF)
            why = "connection closed";
        else
            why = std::string("connection error (") + uv_strerror(static_cast<int>(n)) + ")";
        why += " after " + std::to_string(self->messages_) +
               (self->messages_ == 1 ? " message" : " messages");
        if (self->messages_ > 0 || !self->in_.empty()) why += " (mid-transfer)";
        self->finish(why);
        return;
    }
    if (n == 0) return;
    self->idle_.start(self->idle_ms_);
    self->bytes_ += static_cast<std::uint64_t>(n);
    self->in_.insert(self->in_.end(), reinterpret_cast<const std::uint8_t*>(buf->base),
                     reinterpret_cast<const std::uint8_t*>(buf->base) + n);
    std::size_t pos = 0;
    bool keep = true;
    while (keep && self->in_.size() - pos >= 2) {
        std::size_t len = (std::size_t{self->in_[pos]} << 8) | self->in_[pos + 1];
        if (self->in_.size() - pos - 2 < len) break;
        ++self->messages_;
        keep = self->on_message_(std::span<const std::uint8_t>(self->in_.data() + pos + 2, len));
        pos += 2 + len;
    }
    if (!keep) {
        self->finish("");
        return;
    }
    self->in_.erase(self->in_.begin(), self->in_.begin() + static_cast<std::ptrdiff_t>(pos));
}

void TcpExchange::on_deadline(void* p) {
    auto* self = static_cast<TcpExchange*>(p);
    self->finish("timed out after " + std::to_string(self->timeout_ms_ / 1000) + " s (" +
                 std::to_string(self->messages_) + " messages received)");
}

void TcpExchange::on_idle(void* p) {
    auto* self = static_cast<TcpExchange*>(p);
    self->finish(std::string(self->connected_ ? "no data" : "no connection") + " for " +
                 std::to_string(self->idle_ms_ / 1000) + " s (" +
                 std::to_string(self->messages_) + " messages received)");
}

void TcpExchange::finish(const std::string& error) {
    if (finished_) return;
    finished_ = true;
    deadline_.stop();
    idle_.stop();
    tcp_.reset();
    OnEnd cb = std::move(on_end_);
    on_end_ = nullptr;
    if (cb) cb(error);  // may destroy *this
}

}  // namespace dnsfw::xfrd
