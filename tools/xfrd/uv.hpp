// dnsfw::xfrd — RAII owners of libuv handles and requests.
//
// Ownership rule of the daemon: a libuv handle belongs to exactly one C++
// object through a Handle<T>. The handle's `data` points to that object.
// Destroying the Handle (or reset()) clears `data` and calls uv_close(); the
// memory is freed in the close callback, once libuv is done with it. libuv
// may still call back for requests that were pending on the handle (writes,
// sends, connects: with UV_ECANCELED, or with 0 for a write that had already
// completed); every callback therefore fetches its owner from `data` and does
// nothing when it is null.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace dnsfw::xfrd {

/// A libuv failure: what() is "CONTEXT: uv error text".
class UvError : public std::runtime_error {
public:
    UvError(const std::string& context, int code)
        : std::runtime_error(context + ": " + uv_strerror(code)), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

namespace uvdetail {
inline int init(uv_loop_t* l, uv_timer_t* h) { return uv_timer_init(l, h); }
inline int init(uv_loop_t* l, uv_udp_t* h) { return uv_udp_init(l, h); }
inline int init(uv_loop_t* l, uv_tcp_t* h) { return uv_tcp_init(l, h); }
inline int init(uv_loop_t* l, uv_pipe_t* h) { return uv_pipe_init(l, h, 0); }
inline int init(uv_loop_t* l, uv_signal_t* h) { return uv_signal_init(l, h); }
}  // namespace uvdetail

/// Unique owner of one initialised libuv handle of type T (uv_timer_t,
/// uv_udp_t, uv_tcp_t, uv_pipe_t, uv_signal_t). Move-only. The handle is
/// closed (uv_close) when the owner goes away; its memory is freed by the
/// loop afterwards, so the loop must run until the close callbacks ran
/// (Daemon::run does).
template <typename T>
class Handle {
public:
    Handle() = default;
    /// Initialises a new handle on `loop` with `data` = `owner`. Throws UvError.
    Handle(uv_loop_t* loop, void* owner) {
        auto h = std::make_unique<T>();
        if (int rc = uvdetail::init(loop, h.get()); rc != 0) throw UvError("uv handle init", rc);
        h->data = owner;
        h_ = h.release();
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    Handle(Handle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
    Handle& operator=(Handle&& o) noexcept {
        if (this != &o) {
            reset();
            h_ = std::exchange(o.h_, nullptr);
        }
        return *this;
    }
    ~Handle() { reset(); }

    /// Closes the handle (no further callbacks reach the owner).
    void reset() noexcept {
        if (h_ == nullptr) return;
        h_->data = nullptr;
        uv_handle_t* h = reinterpret_cast<uv_handle_t*>(h_);
        h_ = nullptr;
        if (!uv_is_closing(h)) uv_close(h, [](uv_handle_t* c) { delete reinterpret_cast<T*>(c); });
    }
    /// Points the handle's callbacks at a new owner.
    void set_owner(void* owner) noexcept {
        if (h_ != nullptr) h_->data = owner;
    }

    T* get() const noexcept { return h_; }
    uv_handle_t* handle() const noexcept { return reinterpret_cast<uv_handle_t*>(h_); }
    uv_stream_t* stream() const noexcept { return reinterpret_cast<uv_stream_t*>(h_); }
    explicit operator bool() const noexcept { return h_ != nullptr; }

private:
    T* h_ = nullptr;
};

/// The owner stored in a handle's `data` (nullptr once its Handle was reset).
template <typename O, typename H>
O* owner_of(const H* handle) noexcept {
    return static_cast<O*>(handle->data);
}

/// A one-shot / repeating timer owned by an object.
class Timer {
public:
    using Callback = void (*)(void* owner);
    Timer() = default;
    Timer(uv_loop_t* loop, void* owner, Callback cb) : h_(loop, this), owner_(owner), cb_(cb) {}
    Timer(Timer&&) = delete;  // `this` is the handle's data
    /// Fires once after `ms` milliseconds (re-arming replaces the previous due time).
    void start(std::uint64_t ms) {
        uv_timer_start(h_.get(), &Timer::fire, ms, 0);
    }
    /// Fires every `ms` milliseconds.
    void start_repeating(std::uint64_t ms) {
        uv_timer_start(h_.get(), &Timer::fire, ms, ms);
    }
    void stop() noexcept {
        if (h_) uv_timer_stop(h_.get());
    }
    bool active() const noexcept { return h_ && uv_is_active(h_.handle()) != 0; }
    /// Milliseconds until it fires (0 if not armed).
    std::uint64_t due_in() const noexcept {
        if (!active()) return 0;
        return uv_timer_get_due_in(h_.get());
    }

private:
    static void fire(uv_timer_t* t) {
        if (auto* self = owner_of<Timer>(t)) self->cb_(self->owner_);
    }
    Handle<uv_timer_t> h_;
    void* owner_ = nullptr;
    Callback cb_ = nullptr;
};

/// Writes `bytes` to `stream`; `done(stream, status)` runs when libuv has
/// written them (status 0) or failed (< 0). The bytes are owned by the
/// request until then. `done` must look the owner up from stream->data.
/// Returns the uv error of uv_write (then `done` is not called).
int write_bytes(uv_stream_t* stream, std::vector<std::uint8_t> bytes,
                void (*done)(uv_stream_t* stream, int status));

/// Sends one datagram to `addr` on `udp` (fire and forget: the buffer is
/// owned until the send completes). Returns the uv error of uv_udp_send.
int send_datagram(uv_udp_t* udp, const sockaddr* addr, std::span<const std::uint8_t> bytes);

/// A length-prefixed (RFC 1035 4.2.2) copy of a DNS message for TCP.
std::vector<std::uint8_t> tcp_frame(std::span<const std::uint8_t> message);

}  // namespace dnsfw::xfrd
