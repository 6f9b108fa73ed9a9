// dnsfw::rpz — plain domain lists (also URL lists) and hosts files.
//
// Every listed name becomes a QNAME rule with ListOptions::action; lines are
// parsed independently, so a bad line is reported and the rest still loads.
#include "rpz/zone_builder.hpp"

#include <arpa/inet.h>

#include <array>
#include <optional>

namespace dnsfw::rpz::detail {
namespace {

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

char ascii_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    return true;
}

/// Splits a line into whitespace-separated tokens, stopping at a token that
/// starts a comment ('#' or ';').
std::vector<std::string_view> tokens(std::string_view line) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && is_space(line[i])) ++i;
        if (i >= line.size() || line[i] == '#' || line[i] == ';') break;
        std::size_t start = i;
        while (i < line.size() && !is_space(line[i])) ++i;
        out.push_back(line.substr(start, i - start));
    }
    return out;
}

bool is_ip_address(std::string_view s) {
    if (s.size() >= 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
    if (auto pct = s.find('%'); pct != std::string_view::npos) s = s.substr(0, pct);  // zone id
    if (s.empty() || s.size() > 64) return false;
    std::string z(s);
    std::array<unsigned char, 16> buf{};
    return inet_pton(AF_INET, z.c_str(), buf.data()) == 1 ||
           inet_pton(AF_INET6, z.c_str(), buf.data()) == 1;
}

/// The host of "scheme://[userinfo@]host[:port][/path...]"; nullopt if the
/// token is not a URL.
std::optional<std::string_view> url_host(std::string_view token) {
    const std::size_t sep = token.find("://");
    if (sep == std::string_view::npos || sep == 0) return std::nullopt;
    for (std::size_t i = 0; i < sep; ++i) {
        char c = ascii_lower(token[i]);
        bool ok = (c >= 'a' && c <= 'z') || (i > 0 && ((c >= '0' && c <= '9') || c == '+' ||
                                                        c == '-' || c == '.'));
        if (!ok) return std::nullopt;
    }
    std::string_view authority = token.substr(sep + 3);
    authority = authority.substr(0, authority.find_first_of("/?#\\"));
    if (auto at = authority.rfind('@'); at != std::string_view::npos)
        authority = authority.substr(at + 1);
    if (!authority.empty() && authority.front() == '[') {  // IPv6 literal
        auto close = authority.find(']');
        return close == std::string_view::npos ? authority : authority.substr(0, close + 1);
    }
    return authority.substr(0, authority.find(':'));
}

/// Checks host-name syntax (letters, digits, '-', '_'; labels 1..63;
/// total <= 255). Returns an error message, or empty if valid.
std::string host_syntax_error(std::string_view host) {
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    std::size_t wire = 1;
    std::size_t label = 0;
    for (char c : host) {
        if (c == '.') {
            if (label == 0) return "empty label in '" + std::string(host) + "'";
            wire += 1 + label;
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
        if (!ok) return "invalid character in domain name '" + std::string(host) + "'";
        if (++label > 63) return "label longer than 63 octets in '" + std::string(host) + "'";
    }
    if (label == 0) return "empty label in '" + std::string(host) + "'";
    wire += 1 + label;
    if (wire > kMaxNameWire) return "name longer than 255 octets: '" + std::string(host) + "'";
    return {};
}

/// Names that hosts files map to loopback for the machine itself.
bool is_local_host_name(std::string_view n) {
    static constexpr std::array<std::string_view, 12> kLocal = {
        "localhost",      "localhost.localdomain", "local",          "broadcasthost",
        "0.0.0.0",        "ip6-localhost",         "ip6-loopback",   "ip6-localnet",
        "ip6-mcastprefix", "ip6-allnodes",         "ip6-allrouters", "ip6-allhosts"};
    for (std::string_view l : kLocal)
        if (iequals(n, l)) return true;
    return false;
}

class ListParser {
public:
    ListParser(ZoneBuilder& b, const ListOptions& o) : b_(b), opt_(o) {}

    /// Adds the rule(s) for one listed host name (possibly "*.name").
    /// `written` is the token as the line has it (the URL of a URL line),
    /// for diagnostics; empty means `text`.
    void add_name(std::string_view text, std::size_t line, std::string_view written = {}) {
        if (written.empty()) written = text;
        if (text.empty() || text == ".") {
            b_.error(line, "empty or root name is never a rule; skipped");
            return;
        }
        bool wildcard = false;
        if (text.starts_with("*.")) {
            wildcard = true;
            text.remove_prefix(2);
        }
        if (text.empty() || text == "." || text == "*") {
            b_.error(line, "'" + std::string(wildcard ? "*." : "") + std::string(text) +
                               "' would match every name; skipped");
            return;
        }
        if (is_ip_address(text)) {
            b_.warning(line, "IP address " + std::string(text) +
                                 " skipped: lists hold names only (write IP rules as rpz-ip / "
                                 "rpz-client-ip owners in an RPZ zone)");
            return;
        }
        if (std::string err = host_syntax_error(text); !err.empty()) {
            b_.error(line, err + "; skipped");
            return;
        }
        auto name = name_from_text(text);
        if (!name) {  // host_syntax_error should have caught it
            b_.error(line, "invalid domain name '" + std::string(text) + "'; skipped");
            return;
        }
        auto key = key_of(*name);
        const std::string owner = name_to_text(*name);
        if (!wildcard && opt_.include_subdomains && name_label_count(*name) == 1) {
            // One stray "com" in a feed would block a whole TLD. That can be
            // meant (".zip"), so it is loaded, but never silently.
            const std::string tld = owner.substr(0, owner.size() - 1);  // no trailing dot
            b_.warning(line, "--subdomains makes '" + std::string(written) +
                                 "' cover every name under the top-level domain " + tld);
        }
        if (!wildcard) add_rule(key, line, owner);
        if (wildcard || opt_.include_subdomains) add_rule(wildcard_key(key), line, "*." + owner);
    }

    void list_line(std::string_view line, std::size_t nr) {
        auto toks = tokens(line);
        if (toks.empty()) return;
        if (toks.size() > 1) {
            b_.error(nr, "unexpected text after '" + std::string(toks[0]) + "'; line skipped");
            return;
        }
        if (auto host = url_host(toks[0])) {
            if (host->empty()) {
                b_.error(nr, "URL without a host; skipped");
                return;
            }
            if (host->find('*') != std::string_view::npos) {
                b_.error(nr, "invalid host in URL '" + std::string(*host) + "'; skipped");
                return;
            }
            add_name(*host, nr, toks[0]);
            return;
        }
        add_name(toks[0], nr);
    }

    void hosts_line(std::string_view line, std::size_t nr) {
        auto toks = tokens(line);
        if (toks.empty()) return;
        if (!is_ip_address(toks[0])) {
            b_.error(nr, "expected an address, found '" + std::string(toks[0]) + "'; line skipped");
            return;
        }
        if (toks.size() == 1) {
            b_.error(nr, "no host name after the address; line skipped");
            return;
        }
        for (std::size_t i = 1; i < toks.size(); ++i) {
            if (!is_local_host_name(toks[i])) add_name(toks[i], nr);
        }
    }

private:
    void add_rule(std::vector<std::uint8_t> key, std::size_t line, const std::string& owner) {
        Rule r;
        r.action = opt_.action;
        r.ttl = opt_.ttl;
        b_.add(Trigger::Qname, std::move(key), std::move(r), line, owner);
    }

    ZoneBuilder& b_;
    const ListOptions& opt_;
};

}  // namespace

void parse_list_text(std::string_view text, ZoneBuilder& builder, InputFormat format,
                     const ListOptions& options) {
    ListParser parser(builder, options);
    std::size_t nr = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(pos, end - pos);
        pos = end + 1;
        ++nr;
        if (nr == 1 && line.starts_with("\xEF\xBB\xBF")) line.remove_prefix(3);  // UTF-8 BOM
        if (format == InputFormat::Hosts)
            parser.hosts_line(line, nr);
        else
            parser.list_line(line, nr);
    }
}

}  // namespace dnsfw::rpz::detail
