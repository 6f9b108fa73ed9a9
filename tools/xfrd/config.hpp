// dnsfw::xfrd — configuration of the update daemon (dnsfw-xfrd).
//
// Read from a TOML file (configs/xfrd.toml is the annotated example):
//
//   store   = "/var/lib/dnsfw/store"          # the LMDB store the resolver reads
//   listen  = ["127.0.0.1:5300", "[::1]:5300"] # UDP+TCP: NOTIFY in, SOA/AXFR/IXFR out, UPDATE
//   control = "/run/dnsfw/xfrd.sock"          # unix socket: reload, transfer ZONE, status
//   log-level = "info"                        # "debug" | "info" | "warning" | "error"
//   map-size = 1073741824                     # optional: initial LMDB map of this writer (bytes)
//   max-map-size = 68719476736                # optional: the map never grows past it (bytes)
//
//   [key.xfr-key]                             # TSIG keys (RFC 8945), by name
//   algorithm = "hmac-sha256"                 # hmac-md5|hmac-sha1|hmac-sha224|hmac-sha256|hmac-sha384|hmac-sha512
//   secret    = "base64..."
//
//   [[zone]]
//   name             = "threat.rpz"
//   primaries        = ["127.0.0.1:5301 key xfr-key"]  # absent/empty: dnsfw is the source
//   notify           = ["127.0.0.2:53 key xfr-key"]    # secondaries to NOTIFY on change
//   allow-transfer   = ["127.0.0.0/8 key xfr-key"]     # who may AXFR/IXFR/SOA-query it
//   allow-notify     = ["127.0.0.1/32"]                # besides the primaries (which always may)
//   allow-update     = ["127.0.0.1/32 key upd-key"]    # RFC 2136 UPDATE (nsupdate)
//   journal-size     = 67108864                        # bytes of IXFR history kept (store)
//   max-transfer-size = 1073741824                     # bytes of one inbound transfer
//   transfer-timeout = 300                             # seconds for one inbound transfer
//   refresh-min = 5, refresh-max = 86400               # clamp of the SOA refresh timer
//   retry-min = 1,  retry-max = 3600                   # clamp of the SOA retry (backs off x2)
//   ixfr = true                                        # ask IXFR (false: always AXFR)
//
// An endpoint string is "ADDRESS[:PORT] [key NAME]" (IPv6 in brackets when a
// port is given; default port 53). An ACL string is "PREFIX [key NAME]"; with
// a key, the request must carry a valid TSIG of that key.
#pragma once

#include "rpz/rpz.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace dnsfw::xfrd {

/// A configuration error; what() is "FILE: key PATH: reason" (with the line
/// when toml++ reports one).
class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A TSIG key (RFC 8945).
struct TsigKey {
    std::string name;       ///< key name, presentation, lower-case, trailing dot
    std::string algorithm;  ///< canonical wire name, e.g. "hmac-sha256." ("hmac-md5.sig-alg.reg.int." for MD5)
    std::string secret_base64;
    std::vector<std::uint8_t> secret;  ///< decoded secret
};

/// A peer address (primary, NOTIFY target, listen address) with an optional key.
struct Endpoint {
    std::string text;  ///< as configured, for logs
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    std::string key;   ///< TSIG key name ("" = none)
};

/// One access-control entry: clients in `prefix`, with TSIG key `key` if set.
struct AclEntry {
    std::string text;
    rpz::IpPrefix prefix;
    std::string key;   ///< "" = no TSIG required
};

/// The daemon's view of one zone.
struct ZoneConfig {
    std::string name;  ///< presentation, lower-case, trailing dot
    rpz::Name apex;    ///< wire
    std::vector<Endpoint> primaries;   ///< empty: dnsfw is the source (zone push / UPDATE)
    std::vector<Endpoint> notify;
    std::vector<AclEntry> allow_transfer;
    std::vector<AclEntry> allow_notify;
    std::vector<AclEntry> allow_update;
    std::optional<std::uint64_t> journal_size;  ///< applied with Store::set_journal_limit
    std::uint64_t max_transfer_size = std::uint64_t{1} << 30;
    std::uint32_t transfer_timeout = 300;
    std::uint32_t refresh_min = 5, refresh_max = 86400;
    std::uint32_t retry_min = 1, retry_max = 3600;
    bool ixfr = true;
};

/// The whole configuration.
struct Config {
    std::string path;   ///< the file it was read from
    std::string store;
    std::vector<Endpoint> listen;
    std::string control;
    std::string log_level = "info";
    /// Store map sizes of the daemon's writer (store::OpenOptions), if set.
    std::optional<std::uint64_t> map_size;
    std::optional<std::uint64_t> max_map_size;
    std::map<std::string, TsigKey> keys;  ///< by key name (lower-case, trailing dot)
    std::vector<ZoneConfig> zones;

    /// The zone named `name` (any case, trailing dot optional), or nullptr.
    const ZoneConfig* zone(std::string_view name) const noexcept;
    /// The key named `name`, or nullptr.
    const TsigKey* key(std::string_view name) const noexcept;
};

/// Reads and validates `path`. Throws ConfigError naming the file, the
/// setting and the problem (unknown setting, bad address, unknown key,
/// duplicate zone, ...).
Config load_config(const std::string& path);

/// Parses "ADDRESS[:PORT] [key NAME]". Throws ConfigError.
Endpoint parse_endpoint(std::string_view text, std::uint16_t default_port);

/// Parses "PREFIX [key NAME]" (a bare address is a host prefix). Throws ConfigError.
AclEntry parse_acl(std::string_view text);

/// The entry of `acl` that admits `peer` with TSIG key `key` ("" = the
/// request was unsigned), or nullptr. An entry with a key admits only
/// requests signed with that key; an entry without one admits any.
const AclEntry* acl_match(const std::vector<AclEntry>& acl, const sockaddr_storage& peer,
                          std::string_view key) noexcept;

}  // namespace dnsfw::xfrd
