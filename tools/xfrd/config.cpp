// dnsfw::xfrd — reading and validating the daemon's TOML configuration.
#include "tools/xfrd/config.hpp"

#include <arpa/inet.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <limits>
#include <set>

namespace dnsfw::xfrd {

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

/// Lower-case, exactly one trailing dot ("." for the root).
std::string canonical_name(std::string_view s) {
    std::string out = lower(s);
    if (out.empty() || out.back() != '.') out.push_back('.');
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

/// Splits "MAIN [key NAME]" into MAIN and the canonical key name ("" if none).
std::pair<std::string_view, std::string> split_key(std::string_view text) {
    text = trim(text);
    const std::string_view whole = text;
    std::vector<std::string_view> words;
    while (!text.empty()) {
        std::size_t end = 0;
        while (end < text.size() && !std::isspace(static_cast<unsigned char>(text[end]))) ++end;
        words.push_back(text.substr(0, end));
        text = trim(text.substr(end));
    }
    if (words.empty()) throw ConfigError("empty value");
    if (words.size() == 1) return {words[0], ""};
    if (words.size() == 3 && lower(words[1]) == "key") {
        if (!rpz::name_from_text(words[2]) || words[2] == ".")
            throw ConfigError("bad key name '" + std::string(words[2]) + "'");
        return {words[0], canonical_name(words[2])};
    }
    throw ConfigError("expected 'ADDRESS [key NAME]', got '" + std::string(whole) + "'");
}

std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view in) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    std::vector<std::uint8_t> out;
    std::uint32_t acc = 0;
    int bits = 0;
    std::size_t pad = 0, chars = 0;
    for (char c : in) {
        if (std::isspace(static_cast<unsigned char>(c))) continue;
        if (c == '=') {
            ++pad;
            ++chars;
            continue;
        }
        if (pad != 0) return std::nullopt;  // data after padding
        int v = value(c);
        if (v < 0) return std::nullopt;
        ++chars;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xff));
        }
    }
    if (pad > 2 || chars % 4 != 0) return std::nullopt;
    return out;
}

/// Canonical TSIG algorithm name (as on the wire), or "" if unsupported.
std::string canonical_algorithm(std::string_view name) {
    std::string n = lower(name);
    if (!n.empty() && n.back() == '.') n.pop_back();
    if (n == "hmac-md5" || n == "hmac-md5.sig-alg.reg.int") return "hmac-md5.sig-alg.reg.int.";
    for (const char* a :
         {"hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"}) {
        if (n == a) return n + ".";
    }
    return "";
}

bool parse_address(std::string_view text, std::uint16_t port, Endpoint& ep) {
    std::string a(text);
    ep.addr = {};
    sockaddr_in v4{};
    sockaddr_in6 v6{};
    if (inet_pton(AF_INET, a.c_str(), &v4.sin_addr) == 1) {
        v4.sin_family = AF_INET;
        v4.sin_port = htons(port);
        std::memcpy(&ep.addr, &v4, sizeof v4);
        ep.addr_len = sizeof v4;
        return true;
    }
    if (inet_pton(AF_INET6, a.c_str(), &v6.sin6_addr) == 1) {
        v6.sin6_family = AF_INET6;
        v6.sin6_port = htons(port);
        std::memcpy(&ep.addr, &v6, sizeof v6);
        ep.addr_len = sizeof v6;
        return true;
    }
    return false;
}

/// Same address family, address and port.
bool same_socket(const Endpoint& a, const Endpoint& b) {
    if (a.addr.ss_family != b.addr.ss_family) return false;
    if (a.addr.ss_family == AF_INET) {
        const auto* x = reinterpret_cast<const sockaddr_in*>(&a.addr);
        const auto* y = reinterpret_cast<const sockaddr_in*>(&b.addr);
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const auto* x = reinterpret_cast<const sockaddr_in6*>(&a.addr);
    const auto* y = reinterpret_cast<const sockaddr_in6*>(&b.addr);
    return x->sin6_port == y->sin6_port &&
           std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(in6_addr)) == 0;
}

/// Letters, digits, '-', '_' and dots only (no spaces, escapes or controls).
bool hostname_chars(std::string_view name) {
    for (char c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
            return false;
    return true;
}

/// Reads a whole file's settings, tracking the key path for messages.
class Reader {
public:
    explicit Reader(std::string path) : path_(std::move(path)) {}

    [[noreturn]] void fail(const toml::node* node, const std::string& key,
                           const std::string& why) const {
        std::string where = path_;
        if (node != nullptr && node->source().begin.line != 0)
            where += ":" + std::to_string(node->source().begin.line);
        throw ConfigError(where + ": key " + key + ": " + why);
    }

    std::string string(const toml::node& node, const std::string& key) const {
        const auto* s = node.as_string();
        if (s == nullptr) fail(&node, key, "expected a string");
        return s->get();
    }

    std::uint64_t integer(const toml::node& node, const std::string& key, std::uint64_t min,
                          std::uint64_t max) const {
        const auto* i = node.as_integer();
        if (i == nullptr) fail(&node, key, "expected an integer");
        std::int64_t v = i->get();
        if (v < 0 || static_cast<std::uint64_t>(v) < min || static_cast<std::uint64_t>(v) > max)
            fail(&node, key,
                 "value " + std::to_string(v) + " out of range " + std::to_string(min) + ".." +
                     std::to_string(max));
        return static_cast<std::uint64_t>(v);
    }

    std::uint32_t u32(const toml::node& node, const std::string& key, std::uint32_t min) const {
        return static_cast<std::uint32_t>(
            integer(node, key, min, std::numeric_limits<std::uint32_t>::max()));
    }

    bool boolean(const toml::node& node, const std::string& key) const {
        const auto* b = node.as_boolean();
        if (b == nullptr) fail(&node, key, "expected true or false");
        return b->get();
    }

    /// A string or an array of strings.
    std::vector<std::pair<std::string, const toml::node*>> strings(const toml::node& node,
                                                                   const std::string& key) const {
        std::vector<std::pair<std::string, const toml::node*>> out;
        if (node.is_string()) {
            out.emplace_back(string(node, key), &node);
            return out;
        }
        const auto* arr = node.as_array();
        if (arr == nullptr) fail(&node, key, "expected an array of strings");
        std::size_t i = 0;
        for (const toml::node& item : *arr) {
            out.emplace_back(string(item, key + "[" + std::to_string(i) + "]"), &item);
            ++i;
        }
        return out;
    }

    Config read() {
        toml::table root;
        try {
            root = toml::parse_file(path_);
        } catch (const toml::parse_error& e) {
            std::string where = path_;
            if (e.source().begin.line != 0) where += ":" + std::to_string(e.source().begin.line);
            throw ConfigError(where + ": " + std::string(e.description()));
        }
        Config cfg;
        cfg.path = path_;
        const toml::node* store_node = nullptr;
        // Keys first: endpoints and ACLs refer to them.
        if (const toml::node* keys = root.get("key")) {
            const auto* tbl = keys->as_table();
            if (tbl == nullptr) fail(keys, "key", "expected tables [key.NAME]");
            for (auto&& [k, v] : *tbl) read_key(std::string(k.str()), v, cfg);
        }
        for (auto&& [k, v] : root) {
            const std::string key(k.str());
            if (key == "store") {
                cfg.store = string(v, key);
                store_node = &v;
            } else if (key == "listen") {
                for (auto& [text, node] : strings(v, key)) {
                    Endpoint ep = endpoint(text, node, key, 53);
                    if (!ep.key.empty()) fail(node, key, "a listen address takes no key");
                    for (const Endpoint& other : cfg.listen)
                        if (same_socket(other, ep))
                            fail(node, key, "duplicate listen address '" + ep.text + "' (same as '" +
                                                other.text + "')");
                    cfg.listen.push_back(std::move(ep));
                }
            } else if (key == "control") {
                cfg.control = string(v, key);
            } else if (key == "log-level") {
                cfg.log_level = lower(string(v, key));
                if (cfg.log_level != "debug" && cfg.log_level != "info" &&
                    cfg.log_level != "warning" && cfg.log_level != "error")
                    fail(&v, key, "expected \"debug\", \"info\", \"warning\" or \"error\"");
            } else if (key == "map-size") {
                cfg.map_size = integer(v, key, std::uint64_t{1} << 20,
                                       std::numeric_limits<std::int64_t>::max());
            } else if (key == "max-map-size") {
                cfg.max_map_size = integer(v, key, std::uint64_t{1} << 20,
                                           std::numeric_limits<std::int64_t>::max());
            } else if (key == "key") {
                // read above
            } else if (key == "zone") {
                const auto* arr = v.as_array();
                if (arr == nullptr) fail(&v, key, "expected [[zone]] tables");
                std::size_t i = 0;
                for (const toml::node& z : *arr) {
                    read_zone(z, "zone[" + std::to_string(i) + "]", cfg);
                    ++i;
                }
            } else {
                fail(&v, key, "unknown setting");
            }
        }
        if (cfg.store.empty()) fail(store_node, "store", "missing (the store directory)");
        if (cfg.store.front() != '/')
            fail(store_node, "store",
                 "'" + cfg.store + "' is a relative path (it would depend on the directory the "
                 "daemon starts in): give an absolute path");
        return cfg;
    }

private:
    Endpoint endpoint(const std::string& text, const toml::node* node, const std::string& key,
                      std::uint16_t default_port) const {
        try {
            return parse_endpoint(text, default_port);
        } catch (const ConfigError& e) {
            fail(node, key, e.what());
        }
    }

    void check_key(const std::string& name, const toml::node* node, const std::string& key,
                   const Config& cfg) const {
        if (!name.empty() && cfg.key(name) == nullptr)
            fail(node, key, "unknown key '" + name + "' (no [key." + name + "] table)");
    }

    void read_key(const std::string& raw_name, const toml::node& node, Config& cfg) {
        const std::string path = "key." + raw_name;
        const auto* tbl = node.as_table();
        if (tbl == nullptr) fail(&node, path, "expected a table");
        TsigKey k;
        if (!rpz::name_from_text(raw_name) || raw_name.empty() || raw_name == ".")
            fail(&node, path, "bad key name '" + raw_name + "'");
        k.name = canonical_name(raw_name);
        const toml::node* secret_node = nullptr;
        bool have_alg = false;
        for (auto&& [kk, v] : *tbl) {
            const std::string key(kk.str());
            if (key == "algorithm") {
                k.algorithm = canonical_algorithm(string(v, path + ".algorithm"));
                if (k.algorithm.empty())
                    fail(&v, path + ".algorithm",
                         "unsupported algorithm '" + string(v, path) +
                             "' (hmac-md5, hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, "
                             "hmac-sha512)");
                have_alg = true;
            } else if (key == "secret") {
                k.secret_base64 = string(v, path + ".secret");
                auto decoded = base64_decode(k.secret_base64);
                if (!decoded) fail(&v, path + ".secret", "not valid base64");
                if (decoded->empty()) fail(&v, path + ".secret", "empty secret");
                k.secret = std::move(*decoded);
                secret_node = &v;
            } else {
                fail(&v, path + "." + key, "unknown setting");
            }
        }
        if (!have_alg) k.algorithm = "hmac-sha256.";
        if (secret_node == nullptr) fail(&node, path + ".secret", "missing");
        if (cfg.keys.count(k.name) != 0) fail(&node, path, "duplicate key '" + k.name + "'");
        cfg.keys.emplace(k.name, std::move(k));
    }

    std::vector<AclEntry> acl(const toml::node& v, const std::string& key, const Config& cfg) {
        std::vector<AclEntry> out;
        std::size_t i = 0;
        for (auto& [text, node] : strings(v, key)) {
            const std::string item = key + "[" + std::to_string(i++) + "]";
            AclEntry e;
            try {
                e = parse_acl(text);
            } catch (const ConfigError& err) {
                fail(node, item, err.what());
            }
            check_key(e.key, node, item, cfg);
            out.push_back(std::move(e));
        }
        return out;
    }

    std::vector<Endpoint> endpoints(const toml::node& v, const std::string& key,
                                    const Config& cfg) {
        std::vector<Endpoint> out;
        std::size_t i = 0;
        for (auto& [text, node] : strings(v, key)) {
            const std::string item = key + "[" + std::to_string(i++) + "]";
            Endpoint ep = endpoint(text, node, item, 53);
            const auto* sa = reinterpret_cast<const sockaddr_in*>(&ep.addr);
            if (ntohs(sa->sin_port) == 0) fail(node, item, "port 0 is not a peer's port");
            check_key(ep.key, node, item, cfg);
            out.push_back(std::move(ep));
        }
        return out;
    }

    void read_zone(const toml::node& node, const std::string& path, Config& cfg) {
        const auto* tbl = node.as_table();
        if (tbl == nullptr) fail(&node, path, "expected a table");
        ZoneConfig z;
        const toml::node *rmin = nullptr, *tmin = nullptr, *update_node = nullptr;
        for (auto&& [kk, v] : *tbl) {
            const std::string key(kk.str());
            const std::string item = path + "." + key;
            if (key == "name") {
                std::string name = string(v, item);
                auto wire = rpz::name_from_text(name);
                if (!wire || name.empty() || wire->size() <= 1 || !hostname_chars(name))
                    fail(&v, item,
                         "bad zone name '" + name +
                             "' (expected a domain name: letters, digits, '-', '_' and dots)");
                z.apex = *wire;
                z.name = rpz::name_to_text(*wire);
            } else if (key == "primaries") {
                z.primaries = endpoints(v, item, cfg);
            } else if (key == "notify") {
                z.notify = endpoints(v, item, cfg);
            } else if (key == "allow-transfer") {
                z.allow_transfer = acl(v, item, cfg);
            } else if (key == "allow-notify") {
                z.allow_notify = acl(v, item, cfg);
            } else if (key == "allow-update") {
                z.allow_update = acl(v, item, cfg);
                update_node = &v;
            } else if (key == "journal-size") {
                z.journal_size = integer(v, item, 0, std::numeric_limits<std::int64_t>::max());
            } else if (key == "max-transfer-size") {
                z.max_transfer_size = integer(v, item, 512, std::numeric_limits<std::int64_t>::max());
            } else if (key == "transfer-timeout") {
                z.transfer_timeout = u32(v, item, 1);
            } else if (key == "refresh-min") {
                z.refresh_min = u32(v, item, 1);
                rmin = &v;
            } else if (key == "refresh-max") {
                z.refresh_max = u32(v, item, 1);
            } else if (key == "retry-min") {
                z.retry_min = u32(v, item, 1);
                tmin = &v;
            } else if (key == "retry-max") {
                z.retry_max = u32(v, item, 1);
            } else if (key == "ixfr") {
                z.ixfr = boolean(v, item);
            } else {
                fail(&v, item, "unknown setting");
            }
        }
        if (z.name.empty()) fail(&node, path + ".name", "missing");
        if (z.refresh_min > z.refresh_max)
            fail(rmin ? rmin : &node, path + ".refresh-min", "greater than refresh-max");
        if (z.retry_min > z.retry_max)
            fail(tmin ? tmin : &node, path + ".retry-min", "greater than retry-max");
        if (cfg.zone(z.name) != nullptr)
            fail(&node, path + ".name", "duplicate zone '" + z.name + "'");
        if (!z.primaries.empty() && !z.allow_update.empty())
            fail(update_node, path + ".allow-update",
                 "zone '" + z.name + "' has primaries (it is a secondary, which refuses UPDATE): "
                 "remove allow-update, or the primaries");
        cfg.zones.push_back(std::move(z));
    }

    std::string path_;
};

}  // namespace

const ZoneConfig* Config::zone(std::string_view name) const noexcept {
    try {
        const std::string want = canonical_name(name);
        for (const ZoneConfig& z : zones)
            if (z.name == want) return &z;
    } catch (...) {
    }
    return nullptr;
}

const TsigKey* Config::key(std::string_view name) const noexcept {
    try {
        auto it = keys.find(canonical_name(name));
        return it == keys.end() ? nullptr : &it->second;
    } catch (...) {
        return nullptr;
    }
}

Config load_config(const std::string& path) { return Reader(path).read(); }

Endpoint parse_endpoint(std::string_view text, std::uint16_t default_port) {
    auto [main, key] = split_key(text);
    Endpoint ep;
    ep.text = std::string(trim(text));
    ep.key = key;
    std::string_view addr = main;
    std::uint16_t port = default_port;
    auto parse_port = [&](std::string_view p) {
        unsigned v = 0;
        auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
        if (p.empty() || ec != std::errc{} || ptr != p.data() + p.size() || v > 65535)
            throw ConfigError("bad port '" + std::string(p) + "' in '" + std::string(main) + "'");
        port = static_cast<std::uint16_t>(v);
    };
    if (!addr.empty() && addr.front() == '[') {
        // [v6]:port or [v6]
        auto close = addr.find(']');
        if (close == std::string_view::npos)
            throw ConfigError("missing ']' in '" + std::string(main) + "'");
        std::string_view rest = addr.substr(close + 1);
        addr = addr.substr(1, close - 1);
        if (!rest.empty()) {
            if (rest.front() != ':' && rest.front() != '@')
                throw ConfigError("expected ':PORT' after ']' in '" + std::string(main) + "'");
            parse_port(rest.substr(1));
        }
    } else if (auto at = addr.rfind('@'); at != std::string_view::npos) {
        parse_port(addr.substr(at + 1));
        addr = addr.substr(0, at);
    } else if (std::count(addr.begin(), addr.end(), ':') == 1) {
        auto colon = addr.find(':');
        parse_port(addr.substr(colon + 1));
        addr = addr.substr(0, colon);
    }
    if (main.front() != '[' && std::count(addr.begin(), addr.end(), ':') > 1) {
        // A bare IPv6 literal is an address only (default port). "::1:53"
        // is a valid address (::0.1.0.83) but most likely meant [::1]:53:
        // when the text without its last ":GROUP" is an address too, refuse.
        const std::size_t last = addr.rfind(':');
        const std::string_view head = addr.substr(0, last), tail = addr.substr(last + 1);
        Endpoint probe;
        const bool digits = !tail.empty() && std::all_of(tail.begin(), tail.end(), [](char c) {
            return std::isdigit(static_cast<unsigned char>(c)) != 0;
        });
        if (digits && parse_address(head, port, probe) && parse_address(addr, port, ep))
            throw ConfigError("'" + std::string(addr) + "' is ambiguous: write [" +
                              std::string(head) + "]:" + std::string(tail) +
                              " for a port, or [" + std::string(addr) +
                              "] for the address (a bare IPv6 address takes the default port)");
    }
    if (!parse_address(addr, port, ep))
        throw ConfigError("'" + std::string(addr) + "' is not an IPv4 or IPv6 address (expected " +
                          "ADDRESS[:PORT] [key NAME], IPv6 as [ADDRESS]:PORT)");
    return ep;
}

AclEntry parse_acl(std::string_view text) {
    auto [main, key] = split_key(text);
    AclEntry e;
    e.text = std::string(trim(text));
    e.key = key;
    auto prefix = rpz::prefix_from_text(main);
    if (!prefix)
        throw ConfigError("'" + std::string(main) +
                          "' is not an address prefix (expected e.g. 127.0.0.0/8 or ::1/128)");
    e.prefix = rpz::masked(*prefix);
    // prefix_from_text masks the host bits itself: compare with the address as written.
    const auto written = rpz::ip_from_text(main.substr(0, main.find('/')));
    if (written && !(e.prefix.addr == *written))
        throw ConfigError("'" + std::string(main) + "' has host bits set: write " +
                          rpz::to_string(e.prefix) + " (the network) or a longer prefix");
    return e;
}

const AclEntry* acl_match(const std::vector<AclEntry>& acl, const sockaddr_storage& peer,
                          std::string_view key) noexcept {
    rpz::IpAddress ip;
    if (peer.ss_family == AF_INET) {
        const auto* sa = reinterpret_cast<const sockaddr_in*>(&peer);
        ip = rpz::IpAddress::from_v4(reinterpret_cast<const std::uint8_t*>(&sa->sin_addr));
    } else if (peer.ss_family == AF_INET6) {
        const auto* sa = reinterpret_cast<const sockaddr_in6*>(&peer);
        ip = rpz::IpAddress::from_v6(reinterpret_cast<const std::uint8_t*>(&sa->sin6_addr));
    } else {
        return nullptr;
    }
    // Compare key names without allocating: case-insensitive, trailing dot optional.
    auto strip = [](std::string_view s) {
        if (!s.empty() && s.back() == '.') s.remove_suffix(1);
        return s;
    };
    const std::string_view want = strip(key);
    for (const AclEntry& e : acl) {
        if (!e.prefix.contains(ip)) continue;
        if (e.key.empty()) return &e;
        const std::string_view have = strip(e.key);
        if (want.empty() || have.size() != want.size()) continue;
        bool same = true;
        for (std::size_t i = 0; i < have.size() && same; ++i)
            same = std::tolower(static_cast<unsigned char>(have[i])) ==
                   std::tolower(static_cast<unsigned char>(want[i]));
        if (same) return &e;
    }
    return nullptr;
}

}  // namespace dnsfw::xfrd
