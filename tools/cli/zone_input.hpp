// dnsfw::cli — reading a policy zone file the way `zone load` and `zone push`
// both do (same options, same parser, same diagnostics), plus the small
// helpers the zone commands share: zone names, SOA serials (RFC 1982) and
// byte sizes.
#pragma once

#include "args.hpp"

#include "rpz/rpz.hpp"
#include "store/store.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace dnsfw::cli {

/// Default store directory of the commands whose --store is optional
/// (`zone push`, `status`): where an installation keeps it (configs/).
inline constexpr const char* kDefaultStorePath = "/var/lib/dnsfw/store";

/// Validates a zone name given on the command line (`option` names it in the
/// message, e.g. "--zone") and returns its wire form. Throws UsageError for
/// a malformed name or the root.
rpz::Name parse_zone_name(const std::string& text, const std::string& option = "--zone");

/// The input options of `zone load` / `zone push`: --format, --action,
/// --subdomains, --max-diagnostics (their OptionSpecs, in that order).
std::vector<OptionSpec> zone_input_options();

/// Those options, checked (before any file is read).
struct ZoneInputOptions {
    rpz::InputFormat format = rpz::InputFormat::Rpz;
    rpz::ListOptions list;
    std::size_t max_diagnostics = 50;
};

/// Checks the input options of `args`. Throws UsageError (unknown format,
/// --action local-data, --action/--subdomains with an RPZ file, ...).
ZoneInputOptions parse_zone_input_options(const Args& args);

/// A parsed input file and what the parse reported.
struct ZoneInput {
    rpz::Zone zone;
    double parse_seconds = 0;
    std::size_t errors = 0;    ///< lines skipped
    std::size_t warnings = 0;
};

/// Parses `file` ("-" = standard input) as zone `zone_name` and prints its
/// diagnostics ("file:line: error: message") on stderr, at most
/// options.max_diagnostics of them. Throws CommandError if the file cannot
/// be read; a bad line never fails the whole file.
ZoneInput read_zone_input(const std::string& file, const rpz::Name& zone_name,
                          const ZoneInputOptions& options);

/// Refuses (CommandError) to change zone `name` if dnsfw-xfrd keeps it as the
/// secondary of a primary (its status records a primary serial or a transfer):
/// its content and serial belong to the primary, and a local change would be
/// overwritten or, worse, make the next primary serial look already applied.
/// `force` (--force) skips the check. `command` names the caller in the message.
void refuse_secondary_zone(const store::Store& st, const std::string& name, bool force,
                           const std::string& command);

/// Storage that is never destroyed (see keep_until_exit).
std::vector<std::shared_ptr<void>>& exit_storage();

/// Moves `value` (a command's big result: a parsed zone, a delta) into
/// storage that is never destroyed, so that its memory goes back to the
/// system with the whole process at exit instead of being freed one
/// allocation at a time (0.1-1 s for a million rules, after the command's
/// work is done). Only for values that own nothing but memory: no
/// destructor of theirs runs. The storage stays reachable, so
/// LeakSanitizer does not count it as a leak.
template <typename T>
void keep_until_exit(T&& value) {
    exit_storage().push_back(std::make_shared<std::remove_cvref_t<T>>(std::forward<T>(value)));
}

/// Prints diagnostics on stderr, at most `cap` of them, then a count of the rest.
void print_diagnostics(const std::vector<rpz::Diagnostic>& diags, std::size_t cap);

/// Writes `serial` into uncompressed SOA rdata (MNAME, RNAME, SERIAL, ...),
/// so a synthesised or overridden serial is also what the SOA says. Leaves
/// malformed rdata alone.
void set_soa_serial(std::vector<std::uint8_t>& rdata, std::uint32_t serial);

/// RFC 1982 serial arithmetic: true if `a` is newer than `b` (a > b).
constexpr bool serial_newer(std::uint32_t a, std::uint32_t b) noexcept {
    return a != b && static_cast<std::uint32_t>(a - b) < 0x80000000u;
}

/// The serial after `v` (RFC 1982 increment). 0 is skipped — the tools use it
/// for "no serial" — so past 2^32-1 the next serial is 1 (still newer).
constexpr std::uint32_t next_serial(std::uint32_t v) noexcept {
    return v == 0xffffffffu ? 1u : v + 1;
}

/// Parses a byte count: digits with an optional binary suffix K, M, G or T
/// (also KB/KiB..., any case): "65536", "64K", "64M", "1G". Throws
/// UsageError naming `option` if malformed or above 2^63.
std::uint64_t parse_byte_size(const std::string& option, const std::string& text);

/// "64 MiB", "512 KiB", "1000 bytes": exact binary units when they divide.
std::string format_bytes(std::uint64_t bytes);

}  // namespace dnsfw::cli
