// dnsfw::xfrd internal — the control socket (unix stream): a client writes
// one command line, the daemon answers with lines ending in "ok" or
// "error: REASON", then closes the connection.
#pragma once

#include "tools/xfrd/log.hpp"
#include "tools/xfrd/uv.hpp"

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace dnsfw::xfrd {

class ControlServer {
public:
    class Conn;
    /// The answer to one command; may be completed later (a transfer). Lines
    /// written after the client went away are dropped.
    class Reply {
    public:
        explicit Reply(std::weak_ptr<Conn> conn) : conn_(std::move(conn)) {}
        /// One line of the answer (without the newline).
        void line(const std::string& text);
        /// Ends the answer with "ok" and closes the connection.
        void ok();
        /// Ends the answer with "error: REASON" and closes the connection.
        void error(const std::string& reason);
        bool finished() const noexcept { return finished_; }

    private:
        void send(const std::string& text, bool last);
        std::weak_ptr<Conn> conn_;
        bool finished_ = false;
    };

    /// Called with each command line (trimmed); must complete the Reply
    /// (now or later).
    using Handler = std::function<void(const std::string& command, std::shared_ptr<Reply> reply)>;

    ControlServer(uv_loop_t* loop, const Logger& log, Handler handler);
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;
    /// Closes the socket and its connections, and removes the socket file.
    ~ControlServer();

    /// Listens on `path` (a stale socket file is replaced; a live one, i.e.
    /// another daemon, is an error). Throws std::runtime_error.
    void bind(const std::string& path);
    const std::string& path() const noexcept { return path_; }
    /// Stops taking commands (shutdown): closes the listening socket and
    /// removes its file; connections whose command is being answered stay
    /// until their reply is written, idle ones are closed.
    void close_listener();
    /// Open client connections.
    std::size_t connections() const noexcept { return conns_.size(); }

private:
    friend class Conn;
    static void on_connection(uv_stream_t* s, int status);
    void remove(Conn* c);

    uv_loop_t* loop_;
    const Logger& log_;
    Handler handler_;
    Handle<uv_pipe_t> listener_;
    std::string path_;
    std::map<Conn*, std::shared_ptr<Conn>> conns_;
};

}  // namespace dnsfw::xfrd
