// dnsfw — command-line tool: load policy zones into the store, inspect them,
// look names up, and run Unbound with the dnsfw module.
//
// This file only dispatches: it finds the subcommand from the leading words
// of argv, parses the rest against that command's spec and turns exceptions
// into messages and exit codes. Commands live in zone.cpp, zone_push.cpp,
// lookup.cpp, explain.cpp, status.cpp, resolver.cpp and xfrd_client.cpp.
#include "args.hpp"
#include "common.hpp"

#include <malloc.h>

#include <array>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#ifndef DNSFW_VERSION
#define DNSFW_VERSION "unknown"
#endif

namespace dnsfw::cli {

// zone.cpp / explain.cpp (issue 3 additions).
const CommandSpec& zone_set_spec();
int zone_set(const Args& args);
const CommandSpec& explain_spec();
int explain(const Args& args);

namespace {

constexpr std::array kCommands{
    Command{"zone load", &zone_load_spec, &zone_load},
    Command{"zone push", &zone_push_spec, &zone_push},
    Command{"zone set", &zone_set_spec, &zone_set},
    Command{"zone list", &zone_list_spec, &zone_list},
    Command{"zone remove", &zone_remove_spec, &zone_remove},
    Command{"lookup", &lookup_spec, &lookup},
    Command{"explain", &explain_spec, &explain},
    Command{"status", &status_spec, &status},
    Command{"resolver", &resolver_spec, &resolver},
    Command{"xfrd", &xfrd_spec, &xfrd},
};

std::size_t word_count(std::string_view words) {
    std::size_t n = 1;
    for (char c : words) n += (c == ' ') ? 1 : 0;
    return n;
}

/// True if argv starts with the space-separated `words`.
bool starts_with_words(std::span<const std::string_view> argv, std::string_view words) {
    std::size_t i = 0;
    while (!words.empty()) {
        auto sp = words.find(' ');
        auto w = words.substr(0, sp);
        if (i >= argv.size() || argv[i] != w) return false;
        ++i;
        words = sp == std::string_view::npos ? std::string_view{} : words.substr(sp + 1);
    }
    return true;
}

void print_overview(std::ostream& os, std::string_view prefix) {
    if (prefix.empty()) {
        os << "usage: dnsfw <command> [options] [args]\n\n"
              "dnsfw " DNSFW_VERSION " — a DNS firewall: RPZ policy zones in an LMDB store,\n"
              "enforced by an Unbound module, kept up to date by zone loads and pushes or by\n"
              "the dnsfw-xfrd daemon (zone transfers, NOTIFY, RFC 2136 UPDATE).\n";
    } else {
        os << "usage: dnsfw " << prefix << " <command> [options] [args]\n";
    }
    os << "\ncommands:\n";
    for (const auto& c : kCommands) {
        if (!prefix.empty() && !c.words.starts_with(std::string(prefix) + " ")) continue;
        const auto& spec = c.spec();
        std::string head = "  " + std::string(c.words);
        os << head << std::string(head.size() < 16 ? 16 - head.size() : 1, ' ') << spec.brief
           << "\n";
    }
    os << "\nRun 'dnsfw <command> --help' for a command's options.\n";
    if (prefix.empty()) {
        os << "\nexit codes:\n"
              "  0  success ('lookup': whether or not the name matched; 'zone push': also\n"
              "     'no change'; 'xfrd': the daemon's reply ended with 'ok')\n"
              "  1  the command failed (unreadable file, store error, nothing loaded, ...)\n"
              "  2  bad command line\n"
              "  'resolver' exits with Unbound's status once Unbound has started\n"
              "  (128+N if Unbound was killed by signal N).\n";
    }
}

int run(std::span<const std::string_view> argv) {
    if (argv.empty()) {
        print_overview(std::cerr, "");
        return kExitUsage;
    }
    if (argv[0] == "-h" || argv[0] == "--help" || argv[0] == "help") {
        print_overview(std::cout, "");
        return kExitOk;
    }
    if (argv[0] == "--version" || argv[0] == "version") {
        std::cout << "dnsfw " DNSFW_VERSION "\n";
        return kExitOk;
    }
    for (const auto& c : kCommands) {
        if (!starts_with_words(argv, c.words)) continue;
        const auto& spec = c.spec();
        Args args;
        try {
            args = Args::parse(spec, argv.subspan(word_count(c.words)));
        } catch (const UsageError& e) {
            std::cerr << "dnsfw " << c.words << ": " << e.what() << "\n"
                      << "Run 'dnsfw " << c.words << " --help' for usage.\n";
            return kExitUsage;
        }
        if (args.help()) {
            std::cout << format_help(spec);
            return kExitOk;
        }
        try {
            return c.run(args);
        } catch (const UsageError& e) {
            std::cerr << "dnsfw " << c.words << ": " << e.what() << "\n"
                      << "Run 'dnsfw " << c.words << " --help' for usage.\n";
            return kExitUsage;
        }
    }
    // A command group without a subcommand ("dnsfw zone"), or a typo.
    for (const auto& c : kCommands) {
        if (c.words.starts_with(std::string(argv[0]) + " ")) {
            bool asked = argv.size() > 1 && (argv[1] == "-h" || argv[1] == "--help");
            if (!asked) {
                if (argv.size() > 1) {
                    std::cerr << "dnsfw: unknown command '" << argv[0] << " " << argv[1]
                              << "'\n\n";
                } else {
                    std::cerr << "dnsfw: '" << argv[0] << "' needs a subcommand\n\n";
                }
            }
            print_overview(asked ? std::cout : std::cerr, argv[0]);
            return asked ? kExitOk : kExitUsage;
        }
    }
    std::cerr << "dnsfw: unknown command '" << argv[0] << "'\n"
              << "Run 'dnsfw --help' for the list of commands.\n";
    return kExitUsage;
}

}  // namespace

}  // namespace dnsfw::cli

int main(int argc, char** argv) {
    // A short-lived tool that may parse millions of records: keep freed heap
    // memory instead of giving it back at once. With glibc's defaults the
    // 64-128 KiB scratch buffers ldns allocates and frees for each record of
    // a master file can make every record shrink the heap and grow it
    // again (two brk calls each: millions per big zone, most of a load's
    // time spent in the kernel).
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_TOP_PAD, 64 << 20);
    std::vector<std::string_view> args(argv + 1, argv + argc);
    try {
        return dnsfw::cli::run(args);
    } catch (const std::exception& e) {
        std::cerr << "dnsfw: " << e.what() << "\n";
        return dnsfw::cli::kExitFailure;
    }
}
