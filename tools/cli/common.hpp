// dnsfw::cli — what every dnsfw subcommand shares: exit codes, the error
// type for runtime failures, the command table entry, and small helpers
// (opening the store with helpful errors, locating the install tree).
#pragma once

#include "args.hpp"
#include "store/store.hpp"

#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace dnsfw::cli {

/// Exit codes of the dnsfw tool (also documented in tools/README.md and in
/// `dnsfw --help`). `dnsfw resolver` exits with Unbound's own status instead
/// once Unbound has started.
inline constexpr int kExitOk = 0;       ///< success (for lookup: match or no match)
inline constexpr int kExitFailure = 1;  ///< the command ran and failed (I/O, store, nothing loaded)
inline constexpr int kExitUsage = 2;    ///< bad command line

/// A runtime failure of a command: main() prints "dnsfw: <what>" on stderr
/// and exits with kExitFailure.
class CommandError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// One subcommand: the words that select it ("zone", "load"), its spec (for
/// parsing and --help) and the function that runs it.
struct Command {
    std::string_view words;  ///< space-separated, e.g. "zone load"
    const CommandSpec& (*spec)();
    int (*run)(const Args&);
};

// Entry points, one file per command group.
const CommandSpec& zone_load_spec();
int zone_load(const Args& args);
const CommandSpec& zone_list_spec();
int zone_list(const Args& args);
const CommandSpec& zone_remove_spec();
int zone_remove(const Args& args);
const CommandSpec& lookup_spec();
int lookup(const Args& args);
const CommandSpec& resolver_spec();
int resolver(const Args& args);
// Issue 4: incremental updates (zone_push.cpp, status.cpp, xfrd_client.cpp).
const CommandSpec& zone_push_spec();
int zone_push(const Args& args);
const CommandSpec& status_spec();
int status(const Args& args);
const CommandSpec& xfrd_spec();
int xfrd(const Args& args);

/// Opens an existing store. A missing directory or a directory that is not a
/// store becomes a CommandError that says how to create one.
store::Store open_existing_store(const std::string& path, bool writable);

/// Directory holding the running dnsfw executable (from /proc/self/exe).
std::filesystem::path executable_dir();

/// "2024-07-05 10:11:12Z" for unix seconds (UTC); "-" for 0.
std::string format_utc(std::uint64_t unix_seconds);

}  // namespace dnsfw::cli
