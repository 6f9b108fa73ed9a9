// dnsfw::rpz — INTERNAL header shared by the zone parsers (parse.cpp,
// parse_list.cpp). Not part of the public contract: include rpz/rpz.hpp.
#pragma once

#include "rpz/rpz.hpp"

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace dnsfw::rpz::detail {

/// Collects rules and diagnostics while a zone is parsed, enforcing the
/// "one rule per (trigger, key)" invariant: identical duplicates are
/// tolerated silently, non-CNAME local data of one owner is merged, and any
/// other second policy for an owner is reported and ignored (first wins).
/// Not thread-safe; one builder per parse.
class ZoneBuilder {
public:
    /// `zone` receives the result in finish(); `label` names the input in
    /// diagnostics.
    ZoneBuilder(Zone& zone, std::string label);

    void error(std::size_t line, std::string message);
    void warning(std::size_t line, std::string message);

    /// Adds a rule candidate: a policy action (no records), a CNAME local
    /// data rule (one record), or one non-CNAME local-data record.
    /// `owner_text` names the owner in diagnostics.
    void add(Trigger trigger, std::vector<std::uint8_t> key, Rule candidate, std::size_t line,
             const std::string& owner_text);

    /// Moves the rules, sorted by (trigger, key), into the zone.
    void finish();

    const std::string& label() const noexcept { return label_; }

private:
    struct Entry {
        Rule rule;
        std::size_t line = 0;  ///< where the owner's first record was
        bool mergeable = false;  ///< local data without a CNAME: more records may join
    };
    void report(Diagnostic::Severity severity, std::size_t line, std::string message);

    Zone& zone_;
    std::string label_;
    std::map<std::pair<Trigger, std::vector<std::uint8_t>>, Entry> rules_;
    std::size_t suppressed_ = 0;
};

/// Diagnostics kept per zone; further ones are counted in a final summary.
inline constexpr std::size_t kMaxDiagnostics = 1000;

/// Appends the "\1*" wildcard suffix to a name key.
std::vector<std::uint8_t> wildcard_key(std::span<const std::uint8_t> key);

/// Name key of a wire name as an owning vector; the name must be valid.
std::vector<std::uint8_t> key_of(std::span<const std::uint8_t> wire);

/// Lower-cased copy of a validated zone name; throws std::invalid_argument
/// if it is not a well-formed wire name.
Name checked_zone_name(const Name& zone_name);

/// Parses list or hosts text into `builder` (parse_list.cpp).
void parse_list_text(std::string_view text, ZoneBuilder& builder, InputFormat format,
                     const ListOptions& options);

/// Synthesised SOA rdata for zones read from lists: mname = apex,
/// rname = hostmaster.<apex>, the given serial, fixed timers, minimum = ttl.
std::vector<std::uint8_t> synthesised_soa_rdata(const Name& apex, std::uint32_t serial,
                                                std::uint32_t ttl);

}  // namespace dnsfw::rpz::detail
