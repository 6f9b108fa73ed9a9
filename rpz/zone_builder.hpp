// dnsfw::rpz — INTERNAL header shared by the zone parsers (parse.cpp,
// parse_list.cpp). Not part of the public contract: include rpz/rpz.hpp.
#pragma once

#include "rpz/rpz.hpp"

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dnsfw::rpz::detail {

/// Collects rules and diagnostics while a zone is parsed, enforcing the
/// "one rule per (trigger, key)" invariant: identical duplicates are
/// tolerated silently, non-CNAME local data of one owner is merged, and any
/// other second policy for an owner is reported and ignored (first wins).
///
/// add() only appends (no lookup): finish() sorts the candidates by
/// (trigger, key), stably, and merges each key's candidates in the order
/// they were added, which gives the same rules as checking each candidate
/// when it arrives. A conflict found there is put back among the other
/// diagnostics where add() would have reported it (after everything
/// reported before that add() call), and the kMaxDiagnostics cap is applied
/// to the merged list, so the diagnostics, their order and the "further
/// problems" count do not depend on when conflicts are found.
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
             std::string_view owner_text);

    /// Room for `n` candidates (a hint; add() grows as needed).
    void reserve(std::size_t n);

    /// Merges the candidates of each (trigger, key) and moves the rules,
    /// sorted by (trigger, key), into the zone; completes its diagnostics.
    void finish();

    const std::string& label() const noexcept { return label_; }

private:
    struct Entry {
        Rule rule;               ///< trigger and key set
        std::size_t line = 0;    ///< where the candidate's record was
        /// Owner text: owner_texts_[text_chunk], text_size octets from text_at.
        std::uint32_t text_chunk = 0;
        std::uint32_t text_at = 0;
        std::uint32_t text_size = 0;
        bool mergeable = false;  ///< local data without a CNAME: more records may join
    };
    /// A conflict found by finish(): the diagnostic and the index of the
    /// add() call that would have reported it.
    struct Conflict {
        std::size_t add_index;
        Diagnostic diagnostic;
    };
    void report(Diagnostic::Severity severity, std::size_t line, std::string message);
    /// Merges candidate `c` into the kept rule `e` of the same key; a
    /// conflict is appended to `conflicts`.
    void merge(Entry& e, Entry& c, std::size_t c_index, std::vector<Conflict>& conflicts);
    /// Puts `conflicts` (in add() order) among the diagnostics reported
    /// during the parse and applies the kMaxDiagnostics cap.
    void place_conflicts(std::vector<Conflict> conflicts);

    Zone& zone_;
    std::string label_;
    std::vector<Entry> entries_;  ///< every candidate, in add() order
    /// The candidates' owner texts, back to back in chunks that are never
    /// reallocated (growing one string would copy it again and again).
    std::vector<std::string> owner_texts_;
    std::size_t first_diag_ = 0;  ///< zone_.diagnostics.size() when the builder was made
    /// For each diagnostic this builder stored (zone_.diagnostics from
    /// first_diag_ on): how many add() calls came before it.
    std::vector<std::size_t> diag_adds_;
    std::size_t suppressed_ = 0;
};

/// One record of a policy zone turned into a rule candidate: what
/// ZoneBuilder::add takes (a policy action without records, or one
/// local-data record).
struct Candidate {
    Trigger trigger = Trigger::Qname;
    std::vector<std::uint8_t> key;
    Rule rule;               ///< trigger and key left default (ZoneBuilder::add sets them)
    std::string owner_text;  ///< the owner in diagnostics
};

/// THE validation path of policy-zone records, shared by the master-file
/// parser (parse.cpp: each ldns record becomes a ZoneRecord), by
/// zone_from_records and by apply_records (records.cpp): DNSSEC types,
/// owner classification (outside the zone, apex, trigger label, IP labels,
/// wildcards), SOA/NS below the apex, CNAME special targets, DNAME, local
/// data. Diagnostics go to the builder. The apex SOA sets the zone's serial
/// and SOA. Not thread-safe; one loader per parse.
class RecordLoader {
public:
    /// `zone.name` is the apex (already checked and lower-cased).
    RecordLoader(ZoneBuilder& builder, Zone& zone) : b_(builder), zone_(zone) {}

    /// Validates `rr` and adds its candidate to the builder. `canonical`:
    /// owner and rdata names are already lower-cased (ldns_rr2canonical);
    /// otherwise they are lower-cased here and the rdata is checked against
    /// its type's layout (records from the wire).
    void load(const ZoneRecord& rr, std::size_t line, bool canonical) {
        if (auto c = candidate(rr, line, canonical))
            b_.add(c->trigger, std::move(c->key), std::move(c->rule), line, c->owner_text);
    }

    /// Validates `rr` without adding it: its candidate, or nullopt if it
    /// makes no rule (reported, or an apex record, handled here).
    std::optional<Candidate> candidate(const ZoneRecord& rr, std::size_t line, bool canonical);

private:
    bool cname_action(std::span<const std::uint8_t> target,
                      std::span<const std::uint8_t> trigger_name,
                      std::span<const std::uint8_t> base, Rule& cand, std::size_t line,
                      const std::string& owner_text);
    void apex(const ZoneRecord& rr, std::size_t line);

    ZoneBuilder& b_;
    Zone& zone_;
    std::set<std::uint16_t> warned_types_;
    bool have_soa_ = false;
    bool warned_dname_ = false;
};

/// Outcome of classifying an owner name of a policy zone.
struct OwnerClass {
    enum class Kind { Rule, Apex, Problem };
    Kind kind = Kind::Problem;
    Trigger trigger = Trigger::Qname;
    std::vector<std::uint8_t> key;  ///< Rule: the rule key
    Name rel;   ///< Rule: the owner without the apex, as an absolute name
    Name base;  ///< Rule: `rel` without the trigger label (= rel for QNAME)
    Diagnostic::Severity severity = Diagnostic::Severity::Error;  ///< Problem
    std::string reason;  ///< Problem: what is wrong
    std::string suffix;  ///< Problem: the parser's "; skipped"-style ending
};

/// Classifies `owner` (valid, lower-case wire name) in zone `apex`. `type`
/// is the record's type (SOA and NS below the apex are refused), or 0.
OwnerClass classify_owner_name(const Name& apex, std::span<const std::uint8_t> owner,
                               std::uint16_t type);

/// A lower-cased copy of record `rr` with its rdata checked against the
/// type's layout and its rdata names lower-cased where RFC 4034 6.2 says
/// so. nullopt, with the reason in `why`, if the rdata is malformed.
std::optional<ZoneRecord> canonical_record(const ZoneRecord& rr, std::string& why);

/// The RR type's mnemonic ("CNAME", "TYPE65280").
std::string type_name(std::uint16_t type);

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
