// dnsfw::cli — running a child program in the foreground.
#pragma once

#include <string>
#include <vector>

namespace dnsfw::cli {

/// Runs `argv[0]` (a path) with `argv` and the current environment plus
/// `extra_env` ("NAME=value" entries, replacing variables of the same name),
/// and waits for it. SIGINT, SIGTERM, SIGHUP and SIGQUIT received meanwhile
/// are forwarded to the child; the child gets SIGTERM if this process dies.
/// Returns the child's exit status, or 128+N if it was killed by signal N.
/// Throws CommandError if the program cannot be started (e.g. missing or not
/// executable), with the reason. Not thread-safe (changes the signal mask).
int run_foreground(const std::vector<std::string>& argv,
                   const std::vector<std::string>& extra_env);

}  // namespace dnsfw::cli
