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
#include <bitset>
#include <compare>
#include <cstdint>
#include <functional>
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
    ClientIp = 1,    ///< `<prefix>.<reversed ip>.rpz-client-ip` — the client's address
    Qname = 2,       ///< `name` or `*.name` — the query name (and CNAME targets)
    ResponseIp = 3,  ///< `<prefix>.<reversed ip>.rpz-ip` — A/AAAA in the final answer
    NsDname = 4,     ///< `<ns name>.rpz-nsdname` (or `*.name`) — NS names on the delegation path
    NsIp = 5,        ///< `<prefix>.<reversed ip>.rpz-nsip` — addresses of those name servers
};

/// The triggers in precedence order within one zone.
inline constexpr std::array<Trigger, 5> kTriggerOrder = {
    Trigger::ClientIp, Trigger::Qname, Trigger::ResponseIp, Trigger::NsDname, Trigger::NsIp};

/// True for the triggers whose owner keys are IP keys (ClientIp, ResponseIp, NsIp).
constexpr bool is_ip_trigger(Trigger t) noexcept {
    return t == Trigger::ClientIp || t == Trigger::ResponseIp || t == Trigger::NsIp;
}
/// True for the triggers known only after resolution (ResponseIp, NsDname, NsIp).
constexpr bool is_response_trigger(Trigger t) noexcept {
    return t == Trigger::ResponseIp || t == Trigger::NsDname || t == Trigger::NsIp;
}
/// The owner-name suffix label of a trigger: "rpz-client-ip", "", "rpz-ip",
/// "rpz-nsdname", "rpz-nsip".
std::string_view trigger_label(Trigger t) noexcept;

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
// IP addresses and prefixes (the IP triggers)

/// An IPv4 or IPv6 address. IPv4 is stored v4-mapped (::ffff:a.b.c.d), so
/// one 128-bit space and one prefix arithmetic serve both families.
struct IpAddress {
    std::array<std::uint8_t, 16> bytes{};

    /// ::ffff:a.b.c.d from four octets in network order.
    static IpAddress from_v4(const std::uint8_t* v4) noexcept;
    /// From sixteen octets in network order.
    static IpAddress from_v6(const std::uint8_t* v6) noexcept;
    /// Whether this is a v4-mapped address (::ffff:0:0/96).
    bool is_v4() const noexcept;
    /// Byte order = numeric order ("smaller address").
    auto operator<=>(const IpAddress&) const = default;
};

/// Parses "192.0.2.1" or "2001:db8::1" (RFC 4291 text; an IPv4 tail such as
/// "::ffff:192.0.2.1" is accepted). nullopt if malformed.
std::optional<IpAddress> ip_from_text(std::string_view text) noexcept;
/// "192.0.2.1" for v4-mapped addresses, RFC 5952 text otherwise.
std::string to_string(const IpAddress& ip);

/// An address prefix. `length` counts IPv6 bits: an IPv4 /24 is 120.
/// Well-formed prefixes have no address bit set beyond `length`.
struct IpPrefix {
    IpAddress addr;
    std::uint8_t length = 128;  ///< 0..128
    auto operator<=>(const IpPrefix&) const = default;
    /// Whether `ip` lies in this prefix.
    bool contains(const IpAddress& ip) const noexcept;
};

/// "192.0.2.0/24" (v4-mapped address and length >= 96) or "2001:db8::/32".
std::string to_string(const IpPrefix& prefix);
/// Parses "192.0.2.0/24", "2001:db8::/32" or a bare address (/32 or /128).
/// Bits beyond the length are masked off. nullopt if malformed.
std::optional<IpPrefix> prefix_from_text(std::string_view text) noexcept;
/// Clears every address bit beyond the prefix length.
IpPrefix masked(const IpPrefix& prefix) noexcept;

/// Parses the RPZ encoding of an IP trigger owner: the labels in front of
/// the trigger label (`rpz-ip`, `rpz-client-ip`, `rpz-nsip`), as a wire
/// name (e.g. the wire form of "24.0.2.0.192."). IPv4: `prefix.d.c.b.a`,
/// prefix 1..32, exactly four decimal octets 0..255. IPv6: `prefix` 1..128
/// then the hextets least significant first, lower- or upper-case hex, `zz`
/// standing for the longest run (>= 2) of zero hextets (on a tie the less
/// significant run, i.e. the first `zz` position in the name). Rejected, with
/// `error` (if given) saying why: a prefix out of range or with leading
/// zeros, missing or extra octets/hextets, an octet > 255, leading zeros,
/// address bits set beyond the prefix, and any IPv6 form other than the
/// canonical one (explicit zeros where `zz` belongs, `zz` for a single zero
/// hextet, two `zz`). noexcept apart from `error`'s allocation.
std::optional<IpPrefix> parse_rpz_ip_labels(std::span<const std::uint8_t> wire,
                                            std::string* error = nullptr);

/// The canonical RPZ owner labels of a prefix, without the trigger label:
/// "24.0.2.0.192" or "32.zz.db8.2001". parse_rpz_ip_labels() accepts
/// exactly these.
std::string rpz_ip_labels(const IpPrefix& prefix);

/// Size of an IP rule key: 16 masked address bytes + 1 prefix-length byte.
inline constexpr std::size_t kIpKeySize = 17;

/// The owner key of an IP rule (ClientIp, ResponseIp, NsIp): the address
/// masked to the prefix length, then the length (0..128).
struct IpKey {
    std::array<std::uint8_t, kIpKeySize> bytes{};
    std::span<const std::uint8_t> view() const noexcept { return {bytes.data(), bytes.size()}; }
};

/// Builds the key of `prefix` (masking it). noexcept, no allocation.
void make_ip_key(const IpPrefix& prefix, IpKey& out) noexcept;
/// Key of `ip` masked to `length` bits (the evaluator's probe). noexcept.
void make_ip_key(const IpAddress& ip, std::uint8_t length, IpKey& out) noexcept;
/// The key as an owning vector (parsers, tests).
std::vector<std::uint8_t> ip_key(const IpPrefix& prefix);
/// Decodes an IP key; nullopt unless it is 17 bytes, length <= 128 and no
/// bit is set beyond the length.
std::optional<IpPrefix> prefix_from_ip_key(std::span<const std::uint8_t> key) noexcept;

/// Presentation of a rule key of trigger `t` into caller storage: the name
/// ("*.example.com", "ns1.example.net") for QNAME/NSDNAME keys, the prefix
/// ("192.0.2.0/24") for IP keys. Returns the length, or 0 if malformed or
/// `out` too small. noexcept, no allocation (logs, EDE text).
std::size_t format_rule_key(Trigger t, std::span<const std::uint8_t> key,
                            std::span<char> out) noexcept;
/// format_rule_key as a string ("<invalid>" if malformed).
std::string rule_key_to_text(Trigger t, std::span<const std::uint8_t> key);
/// The owner name a rule key stands for, relative to its policy zone:
/// "bad.example", "*.example", "24.0.2.0.192.rpz-ip", "ns.example.rpz-nsdname".
std::string rule_owner_text(Trigger t, std::span<const std::uint8_t> key);

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
    /// How many problems this entry stands for: 1, or for the summary that
    /// ends a capped list ("N further problems not shown") the N it replaces.
    std::size_t count = 1;
    /// "file:line: error: message" (or warning), as escaped_message().
    std::string to_string() const;
    /// `message` with control bytes written as "\xHH" (messages quote feed
    /// text: never pass terminal escape sequences to a terminal or a log).
    std::string escaped_message() const;
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
// Zone records: rules in resource-record form (zone transfers, UPDATE, diffs)
//
// A policy zone travels between servers as RRs (AXFR/IXFR/UPDATE) but is
// stored as rules (one per (trigger, owner key)). These functions convert in
// both directions with the same validation as the master-file parser, so a
// zone received by transfer is checked exactly like one loaded from a file.

/// One resource record of a policy zone, class IN, uncompressed wire form.
struct ZoneRecord {
    Name owner;                       ///< absolute wire name, lower-case
    std::uint16_t type = 0;
    std::uint32_t ttl = 0;
    std::vector<std::uint8_t> rdata;  ///< uncompressed wire rdata (names lower-cased
                                      ///< where the type's rdata is case-insensitive)
    /// RR identity as RFC 2136 and RFC 1995 use it: owner, type and rdata
    /// (TTL ignored).
    bool same_rr(const ZoneRecord& other) const noexcept {
        return type == other.type && owner == other.owner && rdata == other.rdata;
    }
    bool operator==(const ZoneRecord&) const = default;
};

/// Where a rule lives: its trigger and owner key (the store's rule key).
struct RuleKey {
    Trigger trigger = Trigger::Qname;
    std::vector<std::uint8_t> key;
    auto operator<=>(const RuleKey&) const = default;
};

/// The owner name in zone `apex` of the rule (trigger, key): the QNAME key of
/// www.example.com gives www.example.com.<apex>; the Response-IP key of
/// 10.0.0.0/8 gives 8.0.0.0.10.rpz-ip.<apex>. Throws std::invalid_argument
/// on a malformed key or a name longer than 255 octets.
Name rule_owner(const Name& apex, Trigger trigger, std::span<const std::uint8_t> key);

/// Inverse of rule_owner: the (trigger, key) an owner name of zone `apex`
/// encodes. nullopt, with the reason in `*why` when given, if the owner is
/// outside the zone, the apex itself, has malformed or non-canonical IP
/// labels, or uses an unsupported trigger label.
std::optional<RuleKey> classify_owner(const Name& apex, std::span<const std::uint8_t> owner,
                                      std::string* why = nullptr);

/// The records that express `rule` (trigger and key set) in zone `apex`, in
/// RPZ encoding: a policy action is one CNAME (`.`, `*.`, `rpz-passthru.`,
/// `rpz-drop.`, `rpz-tcp-only.`) with the rule's TTL; local data is its
/// records (a kCnameWildcardTarget CNAME is written `*.suffix`). Feeding
/// them to zone_from_records gives back an equal rule.
std::vector<ZoneRecord> rule_records(const Name& apex, const Rule& rule);

/// Builds rules from records of zone `apex`, validating and merging them
/// exactly as parse_zone_text does for the same RRs. Diagnostics name the
/// input as `label`:N, N = 1-based index into `records`. An apex SOA sets
/// serial, soa_ttl and soa_rdata (a repeat of the same SOA, as an AXFR ends
/// with, is ignored silently); apex NS and DNSSEC records are ignored.
/// Records are canonicalised first (owner and RFC 4034 6.2 rdata names
/// lower-cased; rdata checked against its type's layout: malformed = error).
Zone zone_from_records(const Name& apex, std::span<const ZoneRecord> records,
                       const std::string& label);

/// A rule-level change to one zone, with its RR form for journals and IXFR.
struct RuleDelta {
    std::vector<RuleKey> removed;             ///< keys whose rule goes away
    std::vector<Rule> upserted;               ///< rules added, or replacing the stored one
    std::vector<ZoneRecord> removed_records;  ///< RR form of what goes (incl. replaced rules' old RRs)
    std::vector<ZoneRecord> added_records;    ///< RR form of what comes
    bool empty() const noexcept { return removed.empty() && upserted.empty(); }
};

/// The change that turns `old_rules` into `new_rules` (each sorted by
/// (trigger, key), as parsers and the store produce them). Rules equal in
/// both are not mentioned. Pure; allocates.
RuleDelta diff_rules(const Name& apex, std::span<const Rule> old_rules,
                     std::span<const Rule> new_rules);

/// Applies RR-level removals then additions (one IXFR difference sequence,
/// or the update section of an RFC 2136 UPDATE) to the rules they touch.
/// `current(key)` returns the stored rule of a key, or nullopt. Each owner's
/// resulting RRset is validated as zone_from_records does: a record that
/// would not load is reported in `diagnostics` (label:N, N = 1-based index
/// into `removed` then `added`: added[j] is removed.size()+j+1) and skipped,
/// never failing the rest; an addition that contradicts what the owner keeps
/// (a second policy CNAME, data beside a CNAME) is the one skipped. Removing
/// an RR that is not there is a warning; adding one that is there replaces
/// its TTL. RRs are compared in canonical form (`CNAME <self>` is
/// `CNAME rpz-passthru.`). Apex SOA/NS records are ignored (the
/// caller handles the SOA). Returns the resulting rule-level delta; its
/// removed_records/added_records hold only RRs that actually changed.
RuleDelta apply_records(const Name& apex, std::span<const ZoneRecord> removed,
                        std::span<const ZoneRecord> added,
                        const std::function<std::optional<Rule>(const RuleKey&)>& current,
                        const std::string& label, std::vector<Diagnostic>& diagnostics);

// ---------------------------------------------------------------------------
// Per-zone policy settings

/// Per-zone action override (BIND/Unbound "policy" of a response-policy zone).
/// Stored in the store's zone record: never renumber.
enum class PolicyOverride : std::uint8_t {
    Given = 0,     ///< use each rule's own action
    Disabled = 1,  ///< log what the zone would have done; change nothing, try the next zone
    Nxdomain = 2,  ///< every rule of the zone (passthru rules included) answers NXDOMAIN
    Nodata = 3,
    Passthru = 4,  ///< also "no-op"
    Drop = 5,
    TcpOnly = 6,
    Cname = 7,     ///< local data: a CNAME to ZonePolicy::override_cname
};

/// "given", "disabled", "nxdomain", "nodata", "passthru", "drop", "tcp-only", "cname".
std::string_view to_string(PolicyOverride o) noexcept;
/// Inverse of to_string(PolicyOverride); also accepts "no-op" (= passthru).
std::optional<PolicyOverride> policy_override_from_string(std::string_view s) noexcept;

/// The settings of one policy zone (not part of the zone file; set by
/// `dnsfw zone load/set` and kept in the store's zone record).
struct ZonePolicy {
    PolicyOverride override = PolicyOverride::Given;
    /// Cname override target (wire, lower-case). With override_cname_wildcard
    /// it holds the suffix of a `*.suffix` target: the answer is the qname
    /// prepended to it (as a kCnameWildcardTarget rule).
    Name override_cname;
    bool override_cname_wildcard = false;
    /// Caps the TTL of synthesised answers (never upstream TTLs on passthru).
    std::optional<std::uint32_t> max_policy_ttl;
    /// Queries with RD=0 are not rewritten by this zone (the zone is skipped).
    bool recursive_only = true;
    /// Without it, a DO=1 query whose answer is DNSSEC-signed is not
    /// rewritten by this zone (the zone is skipped).
    bool break_dnssec = false;
    /// Extended DNS Error code on rewritten answers (RFC 8914): 15 Blocked,
    /// 16 Censored, 17 Filtered, 18 Prohibited, 4 Forged Answer; nullopt = none.
    std::optional<std::uint16_t> ede = 15;
    std::string ede_text;  ///< EDE extra text (may be empty)
    bool log = true;       ///< log this zone's hits
    bool add_soa = true;   ///< add the policy zone's SOA to the additional section of rewritten answers
    /// With false, rules written as local data keep their records: the
    /// action override (nxdomain, nodata, passthru, drop, tcp-only, cname)
    /// replaces only the other rules' actions (PowerDNS
    /// defpolOverrideLocalData=false). Does not affect `disabled`: a
    /// disabled zone changes nothing, local-data rules included.
    bool override_local_data = true;
    /// The clients this zone applies to (Unbound tags / views, PowerDNS
    /// per-client policy selection). Empty = every client. Otherwise the zone
    /// is skipped for queries whose client address lies in none of the
    /// prefixes, and for queries without a client address. Prefixes are
    /// stored masked (at most kMaxZoneClients).
    std::vector<IpPrefix> clients;
    bool operator==(const ZonePolicy&) const = default;

    /// True if the zone applies to `client` (always when `clients` is empty).
    bool applies_to(const std::optional<IpAddress>& client) const noexcept {
        if (clients.empty()) return true;
        if (!client) return false;
        for (const IpPrefix& p : clients)
            if (p.contains(*client)) return true;
        return false;
    }

    /// True if this zone's override replaces the action of a rule written
    /// as `written`: false for Given and Disabled, and for LocalData rules
    /// when !override_local_data.
    bool overrides(Action written) const noexcept {
        if (override == PolicyOverride::Given || override == PolicyOverride::Disabled) return false;
        return override_local_data || written != Action::LocalData;
    }
};

/// Most client prefixes a zone may list (ZonePolicy::clients).
inline constexpr std::size_t kMaxZoneClients = 256;

/// The EDE codes a zone may carry (15, 16, 17, 18, 4).
bool is_allowed_ede(std::uint16_t code) noexcept;

// ---------------------------------------------------------------------------
// Evaluation (pure)

/// How the query reached the resolver.
enum class Transport : std::uint8_t { Udp, Tcp, Other };

/// What the evaluator needs to know about one query (one CNAME chain link:
/// the module evaluates each link's name; link 0 is the qname).
struct Query {
    std::span<const std::uint8_t> qname;  ///< wire format, any case
    std::uint16_t qtype = 0;
    std::uint16_t qclass = 1;
    Transport transport = Transport::Udp;
    std::optional<IpAddress> client;  ///< the client's address (CLIENT-IP); none = no match
    bool rd = true;      ///< RD bit of the query (recursive_only)
    bool do_bit = false; ///< DO bit of the query (break_dnssec)
};

/// Facts known only after resolution (at Unbound's moddone): the inputs of
/// the Response-IP, NSDNAME and NSIP triggers. Spans point into the caller's
/// storage for the duration of the evaluate() call.
struct ResponseFacts {
    /// A/AAAA addresses of the final answer section.
    std::span<const IpAddress> answer_ips;
    /// NS names (wire, any case) of the zone cuts on the delegation path.
    std::span<const std::span<const std::uint8_t>> ns_names;
    /// The addresses of those name servers.
    std::span<const IpAddress> ns_ips;
    /// The answer is DNSSEC-secure (break_dnssec).
    bool answer_signed = false;
};

/// Evaluation stage: Query = before resolution (CLIENT-IP and QNAME only);
/// Response = after resolution, with ResponseFacts (every trigger).
enum class Stage : std::uint8_t { Query, Response };

/// Read access to the rules of an ordered set of zones: implemented by the
/// LMDB store (store::Snapshot) and by MemoryRuleSource (tests, tools).
/// Implementations must be noexcept and allocation-free on every method.
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
    /// The zone's settings. Default: ZonePolicy{} (given, recursive-only, ...).
    virtual const ZonePolicy& policy(std::size_t zone) const noexcept;
    /// Number of rules of `trigger` in the zone; kUnknownCount if unknown
    /// (the default: the evaluator then assumes rules may exist).
    virtual std::uint64_t trigger_rule_count(std::size_t zone, Trigger trigger) const noexcept {
        (void)zone;
        (void)trigger;
        return kUnknownCount;
    }
    /// For IP triggers: bit L set iff the zone has a rule of prefix length L
    /// (IPv6 terms, 0..128). Default: every bit set (probe every length).
    virtual const std::bitset<129>& prefix_lengths(std::size_t zone,
                                                   Trigger trigger) const noexcept;

    static constexpr std::uint64_t kUnknownCount = ~std::uint64_t{0};
};

/// One matching rule (the decision's winner, or a DISABLED zone's match).
struct Match {
    std::size_t zone = 0;  ///< index into the RuleSource's zones
    Trigger trigger = Trigger::Qname;
    /// The owner that matched: a name key (exact or "...\1*") for QNAME and
    /// NSDNAME, an IP key (kIpKeySize bytes) for the IP triggers.
    NameKey key;
    bool wildcard = false;
    std::optional<RuleView> rule;
    /// IP triggers: the rule's prefix and the address that fell into it
    /// (client, answer or name-server address).
    std::optional<IpPrefix> prefix;
    IpAddress ip;
    /// NSDNAME: index into ResponseFacts::ns_names of the NS name that matched.
    std::size_t ns_index = 0;
    /// evaluate_chain: the chain link whose name matched (0 = the qname).
    std::size_t link = 0;
};

/// The result of evaluating a query. `rule` and `key` point into the rule
/// source and are valid as long as it is (for a Snapshot: until refresh()).
struct Decision : Match {
    bool matched = false;
    /// The winner's zone settings (nullptr if !matched); valid as `rule`.
    const ZonePolicy* policy = nullptr;
    /// The action after the zone's override (see action()).
    Action effective = Action::Passthru;
    /// Query stage only: a Response-stage trigger (Response-IP, NSDNAME,
    /// NSIP) of a zone of higher precedence than the winner (any zone if
    /// none matched) could still win, or a DO=1 match must wait for the
    /// answer's DNSSEC status (break_dnssec no): the caller must resolve and
    /// evaluate again with ResponseFacts before acting on this decision.
    /// Always false at the Response stage.
    bool needs_response_stage = false;
    /// Matches of DISABLED zones met before the winner (first 4; the rest
    /// are only counted), for logging. They changed nothing.
    static constexpr std::size_t kMaxDisabled = 4;
    std::array<Match, kMaxDisabled> disabled{};
    std::size_t n_disabled = 0;     ///< entries used in disabled[]
    std::size_t disabled_total = 0; ///< all DISABLED-zone matches, even beyond kMaxDisabled

    /// The effective action: the zone's override applied to the rule's
    /// action (PolicyOverride::Cname -> LocalData; a local-data rule keeps
    /// its action when the zone has override_local_data false). Passthru if
    /// !matched.
    Action action() const noexcept { return matched ? effective : Action::Passthru; }
    /// The action written in the rule (before the override).
    Action rule_action() const noexcept { return rule ? rule->action() : Action::Passthru; }
    /// True if the answer is the zone's CNAME override (policy->override_cname,
    /// wildcard form per policy->override_cname_wildcard) rather than the
    /// rule's own records.
    bool cname_override() const noexcept {
        return matched && policy != nullptr && policy->override == PolicyOverride::Cname &&
               policy->overrides(rule_action());
    }
    /// True if the zone's override replaced the rule's written action
    /// (even by the same action, e.g. a passthru rule in a passthru zone).
    bool overridden() const noexcept {
        return matched && policy != nullptr && policy->overrides(rule_action());
    }
    /// TTL for synthesised records of TTL `ttl`: capped by max_policy_ttl.
    std::uint32_t cap_ttl(std::uint32_t ttl) const noexcept {
        return policy != nullptr && policy->max_policy_ttl && *policy->max_policy_ttl < ttl
                   ? *policy->max_policy_ttl
                   : ttl;
    }
};

/// One step of an evaluation, for `dnsfw explain` (TraceSink).
struct TraceStep {
    enum class Outcome : std::uint8_t {
        Hit,       ///< a rule was found and this zone/trigger decides (or is deferred)
        Miss,      ///< probed, no rule
        Skipped,   ///< not probed (see `why`)
        Disabled,  ///< a rule was found in a DISABLED zone: logged, ignored
        Ignored,   ///< a rule was found but the zone is skipped (`why`: break-dnssec)
    };
    std::size_t zone = 0;
    Trigger trigger = Trigger::Qname;
    Outcome outcome = Outcome::Miss;
    /// The probed key (name key or IP key); empty for whole-zone/trigger skips.
    std::span<const std::uint8_t> key;
    /// What was looked up: the qname or NS name (wire) for name triggers.
    std::span<const std::uint8_t> subject;
    /// IP triggers: the address looked up (valid iff has_ip).
    IpAddress ip;
    bool has_ip = false;
    /// Static text: why skipped, or what kind of hit ("exact", "wildcard",
    /// "longest prefix", ...). Never null.
    const char* why = "";
};

/// Receives every probe of an evaluation. Called synchronously; the step's
/// spans are valid only during the call.
class TraceSink {
public:
    virtual ~TraceSink() = default;
    virtual void step(const TraceStep& step) noexcept = 0;
};

/// Evaluates a query with RPZ precedence — the ONE place that implements it:
///  1. chain position (the caller evaluates CNAME links in order; the first
///     link with a match wins);
///  2. zone order (the first zone with an applicable match decides);
///  3. within a zone and trigger: exact before wildcard, a wildcard with
///     more labels before fewer;
///  4. within a zone: Client-IP, QNAME, Response-IP, NSDNAME, NSIP;
///  5. NSDNAME: of several matching NS names, the smallest in canonical order;
///  6. IP triggers: the longest prefix (IPv4 /n counts as /n+96);
///  7. equal prefixes: the smaller address.
/// PASSTHRU is a match and stops evaluation. Zone settings: a DISABLED zone's
/// match is recorded in Decision::disabled and evaluation continues; other
/// overrides replace the effective action of every rule of the zone
/// (passthru included; local-data rules excepted when the zone has
/// override_local_data false). A zone whose `clients` list does not cover
/// the query's client (or the query has none) is skipped. RD=0 with
/// recursive_only: the zone is skipped. DO=1
/// without break_dnssec: a match counts only once the answer is known to be
/// unsigned (at the Query stage it defers: needs_response_stage; at the
/// Response stage with answer_signed the zone is skipped).
/// `facts` == nullptr is the Query stage (Client-IP and QNAME only).
/// Pure, noexcept, no allocation. A malformed qname matches nothing.
Decision evaluate(const RuleSource& source, const Query& query, const ResponseFacts* facts,
                  TraceSink* trace = nullptr) noexcept;

/// Rule 1 (chain position): evaluates the names of a CNAME chain in order —
/// links[0] is the qname, then each CNAME target met while resolving — each
/// as `query` with that qname; the first link with a match wins
/// (Decision::link). If none matches, the last link's decision is returned,
/// with needs_response_stage set if any link needed it. An empty `links`
/// evaluates query.qname alone. Pure, noexcept, no allocation.
Decision evaluate_chain(const RuleSource& source, const Query& query,
                        std::span<const std::span<const std::uint8_t>> links,
                        const ResponseFacts* facts, TraceSink* trace = nullptr) noexcept;

/// The Query stage (facts == nullptr): same as evaluate(source, query, nullptr).
Decision evaluate(const RuleSource& source, const Query& query) noexcept;

/// An in-memory RuleSource over parsed zones (tests and tools). Not for the
/// query path of a large deployment. Thread-safe for concurrent readers once
/// built.
class MemoryRuleSource final : public RuleSource {
public:
    /// Copies the zones' rules; zones[0] has the highest precedence.
    /// `policies[i]` applies to zones[i] (missing entries: ZonePolicy{}).
    explicit MemoryRuleSource(const std::vector<Zone>& zones,
                              std::vector<ZonePolicy> policies = {});
    std::size_t zone_count() const noexcept override;
    std::size_t max_wildcard_depth(std::size_t zone, Trigger trigger) const noexcept override;
    std::optional<RuleView> find(std::size_t zone, Trigger trigger,
                                 std::span<const std::uint8_t> key) const noexcept override;
    const ZonePolicy& policy(std::size_t zone) const noexcept override;
    std::uint64_t trigger_rule_count(std::size_t zone, Trigger trigger) const noexcept override;
    const std::bitset<129>& prefix_lengths(std::size_t zone,
                                           Trigger trigger) const noexcept override;

private:
    struct ZoneData {
        std::vector<std::pair<std::vector<std::uint8_t>, std::vector<std::uint8_t>>>
            entries;  // sorted (trigger byte + key, encoded value)
        ZonePolicy policy;
        std::array<std::uint64_t, 8> counts{};
        std::array<std::size_t, 8> depth{};
        std::array<std::bitset<129>, 8> lengths{};
    };
    std::vector<ZoneData> zones_;
};

/// Facts the store keeps per zone so the evaluator can skip work: per
/// trigger the rule count, the deepest wildcard parent and (IP triggers) the
/// prefix lengths present. Computed from rules (store, MemoryRuleSource).
struct TriggerStats {
    std::array<std::uint64_t, 8> counts{};          ///< index = Trigger value
    std::array<std::uint8_t, 8> max_wildcard_depth{};
    std::array<std::bitset<129>, 8> prefix_lengths{};
};
/// Computes TriggerStats over `rules` (IP rules with malformed keys are
/// counted but add no prefix length).
TriggerStats compute_trigger_stats(std::span<const Rule> rules) noexcept;

}  // namespace dnsfw::rpz
