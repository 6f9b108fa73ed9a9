// dnsfw::xfrd — the control socket.
#include "tools/xfrd/control.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace dnsfw::xfrd {

class ControlServer::Conn {
public:
    Conn(ControlServer* server, uv_loop_t* loop)
        : server_(server), h_(loop, this), timer_(loop, this, &Conn::on_timer) {}

    bool accept(uv_stream_t* listener) {
        if (uv_accept(listener, h_.stream()) != 0) return false;
        if (uv_read_start(h_.stream(), &Conn::on_alloc, &Conn::on_read) != 0) return false;
        timer_.start(kReadTimeoutMs);
        return true;
    }

    /// Whether its command line arrived (and is being answered).
    bool dispatched() const noexcept { return dispatched_; }

    /// Queues `text`; with `last`, closes once everything is written.
    void send(const std::string& text, bool last) {
        if (closing_) return;
        std::vector<std::uint8_t> bytes(text.begin(), text.end());
        ++pending_writes_;
        if (write_bytes(h_.stream(), std::move(bytes), &Conn::on_written) != 0) {
            --pending_writes_;
            close();
            return;
        }
        if (last) {
            closing_ = true;
            if (pending_writes_ == 0) close();
        }
    }

private:
    static constexpr std::uint64_t kReadTimeoutMs = 10000;
    static constexpr std::size_t kMaxLine = 4096;

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
        if (self == nullptr || self->dispatched_) return;
        if (n < 0) {
            if (self->in_.empty()) {
                self->close();
                return;
            }
            self->dispatch();  // a last line without newline
            return;
        }
        self->in_.append(buf->base, static_cast<std::size_t>(n));
        if (self->in_.find('\n') != std::string::npos) {
            self->in_.resize(self->in_.find('\n'));
            self->dispatch();
            return;
        }
        if (self->in_.size() > kMaxLine) {
            self->send("error: command line too long\n", true);
        }
    }

    static void on_written(uv_stream_t* s, int status) {
        auto* self = owner_of<Conn>(s);
        if (self == nullptr) return;
        --self->pending_writes_;
        if (status < 0 || (self->closing_ && self->pending_writes_ == 0)) self->close();
    }

    static void on_timer(void* p) {
        auto* self = static_cast<Conn*>(p);
        if (!self->dispatched_) self->send("error: no command received\n", true);
    }

    void dispatch() {
        dispatched_ = true;
        timer_.stop();
        uv_read_stop(h_.stream());
        std::string line = in_;
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
            line.pop_back();
        std::size_t start = line.find_first_not_of(" \t");
        line = start == std::string::npos ? "" : line.substr(start);
        auto reply = std::make_shared<Reply>(server_->conns_.at(this));
        server_->handler_(line, reply);  // may complete the reply (and close us) at once
    }

    void close() { server_->remove(this); }

    ControlServer* server_;
    Handle<uv_pipe_t> h_;
    Timer timer_;
    std::string in_;
    bool dispatched_ = false;
    bool closing_ = false;
    int pending_writes_ = 0;
    std::array<char, 1024> buf_{};
};

void ControlServer::Reply::send(const std::string& text, bool last) {
    if (finished_) return;
    if (last) finished_ = true;
    if (auto c = conn_.lock()) c->send(text, last);
}

void ControlServer::Reply::line(const std::string& text) { send(text + "\n", false); }
void ControlServer::Reply::ok() { send("ok\n", true); }
void ControlServer::Reply::error(const std::string& reason) { send("error: " + reason + "\n", true); }

ControlServer::ControlServer(uv_loop_t* loop, const Logger& log, Handler handler)
    : loop_(loop), log_(log), handler_(std::move(handler)) {}

ControlServer::~ControlServer() {
    conns_.clear();
    if (listener_) {
        listener_.reset();
        if (!path_.empty()) ::unlink(path_.c_str());
    }
}

void ControlServer::close_listener() {
    if (listener_) {
        listener_.reset();
        if (!path_.empty()) ::unlink(path_.c_str());
    }
    for (auto it = conns_.begin(); it != conns_.end();) {
        if (it->first->dispatched())
            ++it;
        else
            it = conns_.erase(it);
    }
}

void ControlServer::bind(const std::string& path) {
    if (path.size() >= sizeof(sockaddr_un{}.sun_path))
        throw std::runtime_error("control socket path too long: " + path);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw std::runtime_error("control socket " + path + ": exists and is not a socket");
        // Is another daemon listening there?
        int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd >= 0) {
            sockaddr_un sa{};
            sa.sun_family = AF_UNIX;
            std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
            int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
            ::close(fd);
            if (rc == 0)
                throw std::runtime_error("control socket " + path +
                                         ": another process is listening on it");
        }
        ::unlink(path.c_str());
    }
    listener_ = Handle<uv_pipe_t>(loop_, this);
    if (int rc = uv_pipe_bind(listener_.get(), path.c_str()); rc != 0) {
        listener_.reset();
        throw std::runtime_error("control socket " + path + ": " + uv_strerror(rc));
    }
    path_ = path;
    ::chmod(path.c_str(), 0660);
    if (int rc = uv_listen(listener_.stream(), 16, &ControlServer::on_connection); rc != 0)
        throw std::runtime_error("control socket " + path + ": " + uv_strerror(rc));
}

void ControlServer::on_connection(uv_stream_t* s, int status) {
    auto* self = owner_of<ControlServer>(s);
    if (self == nullptr || status < 0) return;
    auto conn = std::make_shared<Conn>(self, self->loop_);
    Conn* raw = conn.get();
    self->conns_.emplace(raw, std::move(conn));
    if (!raw->accept(s)) self->remove(raw);
}

void ControlServer::remove(Conn* c) { conns_.erase(c); }

}  // namespace dnsfw::xfrd
