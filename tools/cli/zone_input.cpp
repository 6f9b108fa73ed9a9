#include "zone_input.hpp"

#include "common.hpp"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <iostream>
#include <iterator>

namespace dnsfw::cli {

rpz::Name parse_zone_name(const std::string& text, const std::string& option) {
    auto name = rpz::name_from_text(text);
    if (!name) throw UsageError(option + ": '" + text + "' is not a valid domain name");
    if (rpz::name_label_count(*name) == 0) {
        throw UsageError(option + ": a policy zone cannot be the root zone");
    }
    return *name;
}

std::vector<OptionSpec> zone_input_options() {
    return {
        {"format", "FORMAT", "rpz (default), list (one domain or URL per line) or hosts"},
        {"action", "ACTION",
         "list/hosts only: nxdomain (default), nodata, passthru, drop or tcp-only"},
        {"subdomains", "",
         "list/hosts only: also match every subdomain of each name (a warning names any "
         "line this makes cover a whole top-level domain)"},
        {"max-diagnostics", "N", "print at most N diagnostics (default 50)"},
    };
}

ZoneInputOptions parse_zone_input_options(const Args& args) {
    ZoneInputOptions out;
    if (auto f = args.value("format")) {
        auto parsed = rpz::format_from_string(*f);
        if (!parsed) throw UsageError("--format: expected rpz, list or hosts, got '" + *f + "'");
        out.format = *parsed;
    }
    if (auto a = args.value("action")) {
        auto parsed = rpz::action_from_string(*a);
        if (!parsed || *parsed == rpz::Action::LocalData) {
            throw UsageError("--action: expected nxdomain, nodata, passthru, drop or tcp-only, "
                             "got '" + *a + "'");
        }
        out.list.action = *parsed;
    }
    out.list.include_subdomains = args.flag("subdomains");
    if (out.format == rpz::InputFormat::Rpz && (args.value("action") || args.flag("subdomains"))) {
        throw UsageError("--action and --subdomains apply to --format list or hosts only (an "
                         "RPZ file states its own actions and wildcards)");
    }
    out.max_diagnostics =
        static_cast<std::size_t>(args.number("max-diagnostics", 0, 1'000'000).value_or(50));
    return out;
}

std::vector<std::shared_ptr<void>>& exit_storage() {
    // Deliberately never deleted: no exit-time destructor frees its contents.
    static auto* storage = new std::vector<std::shared_ptr<void>>();
    return *storage;
}

void print_diagnostics(const std::vector<rpz::Diagnostic>& diags, std::size_t cap) {
    std::size_t shown = 0;
    for (const auto& d : diags) {
        if (shown == cap) break;
        std::cerr << d.to_string() << "\n";
        ++shown;
    }
    if (diags.size() > shown) {
        std::cerr << "... and " << diags.size() - shown << " more (" << diags.size()
                  << " diagnostics in total; raise --max-diagnostics to see them)\n";
    }
}

ZoneInput read_zone_input(const std::string& file, const rpz::Name& zone_name,
                          const ZoneInputOptions& options) {
    const bool from_stdin = file == "-";
    // The parser only says "cannot open"; say why.
    if (!from_stdin && ::access(file.c_str(), R_OK) != 0) {
        throw CommandError("cannot read '" + file + "': " + std::strerror(errno));
    }
    const auto t0 = std::chrono::steady_clock::now();
    ZoneInput out;
    try {
        if (from_stdin) {
            std::string text{std::istreambuf_iterator<char>(std::cin), {}};
            if (std::cin.bad()) throw CommandError("cannot read standard input");
            out.zone = rpz::parse_zone_text(text, "<stdin>", zone_name, options.format,
                                            options.list);
        } else {
            out.zone = rpz::parse_zone_file(file, zone_name, options.format, options.list);
        }
    } catch (const CommandError&) {
        throw;
    } catch (const std::exception& e) {
        std::string what = e.what();
        throw CommandError(what.find(file) == std::string::npos ? file + ": " + what : what);
    }
    out.parse_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const auto& d : out.zone.diagnostics) {
        (d.severity == rpz::Diagnostic::Severity::Error ? out.errors : out.warnings) += 1;
    }
    print_diagnostics(out.zone.diagnostics, options.max_diagnostics);
    return out;
}

void set_soa_serial(std::vector<std::uint8_t>& rdata, std::uint32_t serial) {
    std::span<const std::uint8_t> rest(rdata);
    std::size_t mname = rpz::name_wire_length(rest);
    if (mname == 0) return;
    std::size_t rname = rpz::name_wire_length(rest.subspan(mname));
    if (rname == 0) return;
    std::size_t at = mname + rname;
    if (rdata.size() < at + 20) return;
    for (int i = 0; i < 4; ++i) {
        rdata[at + static_cast<std::size_t>(i)] =
            static_cast<std::uint8_t>(serial >> (24 - 8 * i));
    }
}

std::uint64_t parse_byte_size(const std::string& option, const std::string& text) {
    const auto bad = [&] {
        return UsageError("--" + option + ": expected a byte count such as 1048576, 512K, 64M "
                          "or 1G, got '" + text + "'");
    };
    std::uint64_t v = 0;
    const char* first = text.data();
    const char* last = first + text.size();
    auto [ptr, ec] = std::from_chars(first, last, v);
    if (ec != std::errc{} || ptr == first) throw bad();
    std::string unit(ptr, last);
    for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    unsigned shift = 0;
    if (unit.empty() || unit == "b") {
        shift = 0;
    } else {
        static constexpr std::string_view kUnits = "kmgt";
        const auto at = kUnits.find(unit[0]);
        const std::string_view tail = std::string_view(unit).substr(1);
        if (at == std::string_view::npos || !(tail.empty() || tail == "b" || tail == "ib"))
            throw bad();
        shift = 10 * static_cast<unsigned>(at + 1);
    }
    constexpr std::uint64_t kMax = std::uint64_t{1} << 63;
    if (shift > 0 && v > (kMax >> shift)) throw bad();
    v <<= shift;
    if (v > kMax) throw bad();
    return v;
}

std::string format_bytes(std::uint64_t bytes) {
    static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
    std::string out = std::to_string(bytes) + (bytes == 1 ? " byte" : " bytes");
    for (unsigned i = 4; i >= 1; --i) {
        const std::uint64_t unit = std::uint64_t{1} << (10 * i);
        if (bytes >= unit && bytes % unit == 0) {
            return std::to_string(bytes / unit) + " " + kUnits[i - 1];
        }
    }
    return out;
}

void refuse_secondary_zone(const store::Store& st, const std::string& name, bool force,
                           const std::string& command) {
    if (force) return;
    std::optional<store::ZoneStatus> status;
    try {
        status = st.status(name);
    } catch (const store::StoreError& e) {
        throw CommandError(std::string("store: ") + e.what());
    }
    if (!status) return;
    if (status->primary_serial == 0 && status->transfers_full == 0 &&
        status->transfers_incremental == 0)
        return;
    throw CommandError(
        "zone " + name + " is a secondary zone: dnsfw-xfrd transfers it from a primary (last " +
        (status->last_source.empty() ? std::string("transfer") : status->last_source) +
        ", primary serial " + std::to_string(status->primary_serial) + "), so a local " +
        command + " would be overwritten or hide the primary's next change. Change it on the "
        "primary, or use 'dnsfw xfrd transfer " + name + " --full' to resynchronise; --force "
        "does it anyway. Store unchanged.");
}

}  // namespace dnsfw::cli
