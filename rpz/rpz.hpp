// dnsfw::rpz — the Response Policy Zone model, rule encoding, zone parsing
// and the pure policy evaluator.
//
// This folder is pure: no Unbound, no LMDB, no libuv. Only the zone parser
// (parse.cpp) touches ldns. Everything here is usable from the module's
// query path (noexcept functions) and from tools (functions that throw or
// return diagnostics).
//
// Vocabulary
//  - A *name* is a domain name in DNS wire format (length-prefixed labels,
//    ending with the root label 0), always stored lower-cased.
//  - A *name key* is the store's sort key for an owner name: its labels in
//    reverse order (root side first), each as [len][bytes], lower-cased, no
//    terminating root label. "www.Example.com." -> "\3com\7example\3www".
//    An ancestor's key is a byte prefix of its descendants' keys. The root
//    has the empty key. A wildcard owner "*.example.com" is the key of
//    "example.com" followed by "\1*".
//  - A *rule* is everything a policy zone says about one trigger owner: its
//    action and, for local data, the records to synthesise.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dnsfw::rpz {

/// Maximum wire length of a domain name (RFC 1035 section 2.3.4).
inline constexpr std::size_t kMaxNameWire = 255;

/// Kind of trigger. The numeric values are part of the store's key layout:
/// never renumber. Order is the draft's precedence order within a zone
/// (Client-IP, QNAME, Response-IP, NSDNAME, NSIP).
enum class Trigger : std::uint8_t {
    ClientIp = 1,    ///< `<prefix>.<reversed ip>.rpz-client-ip` (not yet enforced)
    Qname = 2,       ///< `name` or `*.name` — the query name (and CNAME targets)
    ResponseIp = 3,  ///< `<prefix>.<reversed ip>.rpz-ip` (not yet enforced)
    NsDname = 4,     ///< `<ns name>.rpz-nsdname` (not yet enforced)
    NsIp = 5,        ///< `<prefix>.<reversed ip>.rpz-nsip` (not yet enforced)
};

/// Policy action. Numeric values are stored in rule values: never renumber.
enum class Action : std::uint8_t {
    Nxdomain = 1,   ///< `CNAME .`               — answer NXDOMAIN
    Nodata = 2,     ///< `CNAME *.`              — answer NOERROR, empty answer
    Passthru = 3,   ///< `CNAME rpz-passthru.`   — resolve normally, stop policy evaluation
                    ///<  (also the obsolete form: a CNAME to the trigger's own name)
    Drop = 4,       ///< `CNAME rpz-drop.`       — send no reply at all
    TcpOnly = 5,    ///< `CNAME rpz-tcp-only.`   — UDP: empty answer with TC=1; TCP: resolve
    LocalData = 6,  ///< any other RRs           — synthesise these records; a CNAME is a
                    ///<  redirect (e.g. walled garden) that is then resolved normally
};

/// "nxdomain", "nodata", "passthru", "drop", "tcp-only", "local-data".
std::string_view to_string(Action a) noexcept;
/// "client-ip", "qname", "response-ip", "nsdname", "nsip".
std::string_view to_string(Trigger t) noexcept;
/// Inverse of to_string(Action); also accepts "no-op" for passthru. nullopt if unknown.
std::optional<Action> action_from_string(std::string_view s) noexcept;

// ---------------------------------------------------------------------------
// Names

/// A domain name in lower-cased wire format. Value type; cheap to copy for
/// the short names DNS uses. Thread-safe as any value.
using Name = std::vector<std::uint8_t>;

/// Parses presentation format ("www.example.com", trailing dot optional,
/// "\DDD" and "\X" escapes accepted) into a lower-cased wire name.
/// nullopt if a label is empty or longer than 63 octets or the name is longer
/// than 255 octets. "." and "" give the root name.
std::optional<Name> name_from_text(std::string_view text) noexcept;

/// Presentation format of a wire name, with a trailing dot ("." for the root),
/// escaping non-printable octets as \DDD. Returns "<invalid>" for malformed input.
std::string name_to_text(std::span<const std::uint8_t> wire);

/// Upper bound of a presentation-form name or name key (every octet as
/// "\DDD", plus the dots).
inline constexpr std::size_t kMaxNameText = 4 * kMaxNameWire + 4;

/// name_to_text into caller storage: returns the number of characters
/// written, or 0 if the name is malformed or `out` is too small. noexcept,
/// no allocation (the query path's log and EDE text use it).
std::size_t format_name(std::span<const std::uint8_t> wire, std::span<char> out) noexcept;

/// name_key_to_text into caller storage; same contract as format_name.
std::size_t format_name_key(std::span<const std::uint8_t> key, std::span<char> out) noexcept;

/// Validates a wire name (labels <= 63, total <= 255, terminated). Returns
/// its wire length, or 0 if malformed. noexcept, no allocation.
std::size_t name_wire_length(std::span<const std::uint8_t> wire) noexcept;

/// Number of labels of a wire name, not counting the root label.
std::size_t name_label_count(std::span<const std::uint8_t> wire) noexcept;

/// Upper bound of a name key's length (255 octets of name, less the root).
inline constexpr std::size_t kMaxNameKey = kMaxNameWire;

/// A name key in a fixed buffer (no allocation on the query path).
struct NameKey {
    std::array<std::uint8_t, kMaxNameKey + 2> bytes{};  // +2: room for the "\1*" suffix
    std::size_t size = 0;
    std::span<const std::uint8_t> view() const noexcept { return {bytes.data(), size}; }
};

/// Builds the name key of a wire name (lower-casing as it goes). Returns
/// false if the name is malformed. noexcept, no allocation.
bool make_name_key(std::span<const std::uint8_t> wire, NameKey& out) noexcept;

/// The presentation form of a name key ("*.example.com" style, no trailing
/// dot, "." for the empty key).
std::string name_key_to_text(std::span<const std::uint8_t> key);

// ---------------------------------------------------------------------------
// Rules

/// One record of local data. `rdata` is uncompressed wire format; names in
/// rdata are lower-cased only where the RR type is case-insensitive by spec.
struct LocalRecord {
    std::uint16_t type = 0;  ///< RR type (class is always IN)
    std::uint32_t ttl = 0;
    std::vector<std::uint8_t> rdata;
    bool operator==(const LocalRecord&) const = default;
};

/// Rule value flags (stored; never renumber).
enum RuleFlags : std::uint16_t {
    /// The local data is a CNAME whose target was written `*.suffix`: the
    /// answer's CNAME target is the query name prepended to `suffix`. The
    /// stored rdata then holds just `suffix`.
    kCnameWildcardTarget = 1u << 0,
};

/// Everything one policy zone says about one trigger owner.
struct Rule {
    Trigger trigger = Trigger::Qname;
    /// Name key of the trigger owner relative to the zone apex (for QNAME:
    /// the key of the protected name; for wildcards ending in "\1*").
    std::vector<std::uint8_t> key;
    Action action = Action::Nxdomain;
    std::uint16_t flags = 0;
    /// Policy TTL: the TTL of the rule's records (the smallest, for local data).
    std::uint32_t ttl = 0;
    /// Local data records; empty unless action == LocalData.
    std::vector<LocalRecord> records;
    bool operator==(const Rule&) const = default;
};

/// Serialises a rule's value (everything but trigger and key) into the stored
/// byte format:
///   u8 version(=1) | u8 action | u16 flags | u32 ttl | u16 n_records |
///   n × (u16 type | u32 ttl | u16 rdlen | rdata) | extensions (TLV, reserved:
///   u16 tag | u16 len | bytes — e.g. feed provenance; readers skip unknown tags)
/// All integers big-endian. Throws std::length_error if rdata exceeds 65535.
std::vector<std::uint8_t> encode_rule_value(const Rule& rule);

/// A zero-copy view of an encoded rule value. Valid as long as the bytes it
/// points to (e.g. an LMDB read transaction's page) are valid.
class RuleView {
public:
    /// Validates and wraps `bytes`. Returns nullopt if the encoding is
    /// malformed or of an unknown version. noexcept, no allocation.
    static std::optional<RuleView> parse(std::span<const std::uint8_t> bytes) noexcept;

    Action action() const noexcept { return action_; }
    std::uint16_t flags() const noexcept { return flags_; }
    std::uint32_t ttl() const noexcept { return ttl_; }
    std::uint16_t record_count() const noexcept { return n_records_; }

    struct RecordView {
        std::uint16_t type;
        std::uint32_t ttl;
        std::span<const std::uint8_t> rdata;
    };
    /// Calls f(RecordView) for each local-data record, in stored order.
    template <typename F>
    void for_each_record(F&& f) const noexcept {
        const std::uint8_t* p = records_.data();
        for (std::uint16_t i = 0; i < n_records_; ++i) {
            RecordView r{static_cast<std::uint16_t>((p[0] << 8) | p[1]),
                         (std::uint32_t{p[2]} << 24) | (std::uint32_t{p[3]} << 16) |
                             (std::uint32_t{p[4]} << 8) | p[5],
                         {}};
            std::size_t len = static_cast<std::size_t>((p[6] << 8) | p[7]);
            r.rdata = {p + 8, len};
            f(r);
            p += 8 + len;
        }
    }
    /// Decodes into an owning Rule (trigger and key left default). Allocates.
    Rule to_rule() const;

private:
    Action action_ = Action::Nxdomain;
    std::uint16_t flags_ = 0;
    std::uint32_t ttl_ = 0;
    std::uint16_t n_records_ = 0;
    std::span<const std::uint8_t> records_;
};

// ---------------------------------------------------------------------------
// Zones and parsing

/// Where an input problem is: file and 1-based line, and what is wrong.
struct Diagnostic {
    enum class Severity { Warning, Error };
    Severity severity = Severity::Error;
    std::string file;
    std::size_t line = 0;
    std::string message;
    /// "file:line: error: message" (or warning).
    std::string to_string() const;
};

/// A parsed policy zone. Rules are unique per (trigger, key): when a zone
/// lists the same owner twice, records of the same owner are merged into one
/// local-data rule, and a conflicting second policy action for an owner that
/// already has one is reported and ignored (the first one loaded wins).
struct Zone {
    Name name;                       ///< zone apex (wire, lower-case)
    std::uint32_t serial = 0;        ///< from the SOA; 0 if the file has none; 1 for lists
    std::uint32_t soa_ttl = 0;       ///< TTL of the SOA record
    std::vector<std::uint8_t> soa_rdata;  ///< uncompressed SOA rdata (synthesised for lists)
    std::vector<Rule> rules;
    std::vector<Diagnostic> diagnostics;  ///< everything reported while parsing
};

enum class InputFormat {
    Rpz,    ///< RFC 1035 master file of a policy zone
    List,   ///< one domain per line; '#' and ';' comments; "*.name" lines allowed
    Hosts,  ///< hosts file: "<address> <name> [<name>...]"; localhost entries ignored
};
std::optional<InputFormat> format_from_string(std::string_view s) noexcept;

/// Options for reading plain lists and hosts files.
struct ListOptions {
    Action action = Action::Nxdomain;  ///< action for every listed name
    bool include_subdomains = false;   ///< also add "*.name" for each name
    std::uint32_t ttl = 300;
};

/// Parses `path` as a policy zone named `zone_name` (the origin for relative
/// owner names when the file has no $ORIGIN). A bad line is reported (file,
/// line, reason) in Zone::diagnostics and skipped; so are SOA/NS at the apex
/// (used for serial/SOA, not rules), records outside the zone, DNSSEC and
/// ZONEMD records, triggers not yet supported, and anything that would make a
/// rule for the root or every name. Throws std::runtime_error only if the
/// file cannot be opened or read, and std::invalid_argument for caller bugs
/// (a malformed `zone_name`, or Action::LocalData as a list action).
/// Rules come out sorted by (trigger, key). Diagnostics are capped at 1000
/// per zone plus one summary line (line 0).
Zone parse_zone_file(const std::string& path, const Name& zone_name, InputFormat format,
                     const ListOptions& list_options = {});

/// Same as parse_zone_file for text already in memory; `label` names it in
/// diagnostics.
Zone parse_zone_text(std::string_view text, const std::string& label, const Name& zone_name,
                     InputFormat format, const ListOptions& list_options = {});

// ---------------------------------------------------------------------------
// Evaluation (pure)

/// How the query reached the resolver.
enum class Transport : std::uint8_t { Udp, Tcp, Other };

/// What the evaluator needs to know about one query.
struct Query {
    std::span<const std::uint8_t> qname;  ///< wire format, any case
    std::uint16_t qtype = 0;
    std::uint16_t qclass = 1;
    Transport transport = Transport::Udp;
};

/// Read access to the rules of an ordered set of zones: implemented by the
/// LMDB store (store::Snapshot) and by MemoryRuleSource (tests, tools).
/// Implementations must be noexcept and allocation-free on find().
class RuleSource {
public:
    virtual ~RuleSource() = default;
    /// Number of active zones, in precedence order (index 0 = highest).
    virtual std::size_t zone_count() const noexcept = 0;
    /// Maximum label count of any wildcard parent in zone `zone` for
    /// `trigger` (lets the evaluator skip probes no rule can match); return
    /// kMaxNameWire if unknown.
    virtual std::size_t max_wildcard_depth(std::size_t zone, Trigger trigger) const noexcept {
        (void)zone;
        (void)trigger;
        return kMaxNameWire;
    }
    /// Looks up the rule with exactly this (trigger, key) in zone `zone`.
    virtual std::optional<RuleView> find(std::size_t zone, Trigger trigger,
                                         std::span<const std::uint8_t> key) const noexcept = 0;
};

/// The result of evaluating a query. `rule` and `key` point into the rule
/// source and are valid as long as it is.
struct Decision {
    bool matched = false;
    std::size_t zone = 0;  ///< index into the RuleSource's zones
    Trigger trigger = Trigger::Qname;
    NameKey key;           ///< the owner that matched (exact or "...\1*")
    bool wildcard = false;
    std::optional<RuleView> rule;
    Action action() const noexcept { return rule ? rule->action() : Action::Passthru; }
};

/// Evaluates QNAME triggers with RPZ precedence: earlier zone first; within a
/// zone the exact name before any wildcard, a longer wildcard before a shorter
/// one. A PASSTHRU match stops evaluation like any other match. Pure,
/// noexcept, no allocation. A malformed qname never matches.
Decision evaluate(const RuleSource& source, const Query& query) noexcept;

/// An in-memory RuleSource over parsed zones (tests and tools). Not for the
/// query path of a large deployment. Thread-safe for concurrent readers once
/// built.
class MemoryRuleSource final : public RuleSource {
public:
    /// Copies the zones' rules; zones[0] has the highest precedence.
    explicit MemoryRuleSource(const std::vector<Zone>& zones);
    std::size_t zone_count() const noexcept override;
    std::optional<RuleView> find(std::size_t zone, Trigger trigger,
                                 std::span<const std::uint8_t> key) const noexcept override;

private:
    std::vector<std::vector<std::pair<std::vector<std::uint8_t>, std::vector<std::uint8_t>>>>
        zones_;  // per zone: sorted (trigger byte + key, encoded value)
};

}  // namespace dnsfw::rpz
