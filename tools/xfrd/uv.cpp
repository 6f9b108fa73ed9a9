// dnsfw::xfrd — libuv request helpers.
#include "tools/xfrd/uv.hpp"

namespace dnsfw::xfrd {

namespace {

struct WriteReq {
    uv_write_t req{};
    std::vector<std::uint8_t> bytes;
    void (*done)(uv_stream_t*, int) = nullptr;
};

struct SendReq {
    uv_udp_send_t req{};
    std::vector<std::uint8_t> bytes;
};

}  // namespace

int write_bytes(uv_stream_t* stream, std::vector<std::uint8_t> bytes,
                void (*done)(uv_stream_t* stream, int status)) {
    auto w = std::make_unique<WriteReq>();
    w->bytes = std::move(bytes);
    w->done = done;
    w->req.data = w.get();
    uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(w->bytes.data()),
                               static_cast<unsigned>(w->bytes.size()));
    int rc = uv_write(&w->req, stream, &buf, 1, [](uv_write_t* req, int status) {
        std::unique_ptr<WriteReq> owned(static_cast<WriteReq*>(req->data));
        if (owned->done != nullptr) owned->done(req->handle, status);
    });
    if (rc == 0) w.release();  // freed in the callback
    return rc;
}

int send_datagram(uv_udp_t* udp, const sockaddr* addr, std::span<const std::uint8_t> bytes) {
    auto s = std::make_unique<SendReq>();
    s->bytes.assign(bytes.begin(), bytes.end());
    s->req.data = s.get();
    uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(s->bytes.data()),
                               static_cast<unsigned>(s->bytes.size()));
    int rc = uv_udp_send(&s->req, udp, &buf, 1, addr, [](uv_udp_send_t* req, int) {
        delete static_cast<SendReq*>(req->data);
    });
    if (rc == 0) s.release();
    return rc;
}

std::vector<std::uint8_t> tcp_frame(std::span<const std::uint8_t> message) {
    std::vector<std::uint8_t> out;
    out.reserve(message.size() + 2);
    out.push_back(static_cast<std::uint8_t>(message.size() >> 8));
    out.push_back(static_cast<std::uint8_t>(message.size()));
    out.insert(out.end(), message.begin(), message.end());
    return out;
}

}  // namespace dnsfw::xfrd
