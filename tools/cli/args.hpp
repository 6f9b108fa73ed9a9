// dnsfw::cli — a small command-line option parser for the dnsfw tool.
//
// Each subcommand describes itself with a CommandSpec (usage line, summary,
// options, positional arguments); Args::parse() checks argv against it and
// format_help() prints the same spec as `--help` text, so usage and parsing
// cannot drift apart.
//
// Accepted syntax: `--name value`, `--name=value`, flags `--name`, `-h` /
// `--help` anywhere, and `--` to end options. Options may come before or
// after positional arguments.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace dnsfw::cli {

/// A mistake in how the command was called (unknown option, missing value,
/// bad number...). main() prints it with a hint to `--help` and exits with
/// kExitUsage.
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// One `--option` of a command.
struct OptionSpec {
    std::string name;        ///< without the leading "--"
    std::string value_name;  ///< e.g. "DIR"; empty for a flag that takes no value
    std::string help;        ///< one line; the default belongs here
    bool repeatable = false; ///< may be given several times (values kept in order)
    bool required = false;   ///< parse() fails without it (unless --help)
};

/// What a (sub)command accepts; also the source of its `--help` text.
struct CommandSpec {
    std::string path;        ///< "dnsfw zone load"
    std::string brief;       ///< one line for the command list of `dnsfw --help`
    std::string synopsis;    ///< operands after the options, e.g. "FILE"
    std::string summary;     ///< one or more lines describing the command
    std::vector<OptionSpec> options;
    std::size_t min_positional = 0;
    std::size_t max_positional = 0;
    std::string epilog;      ///< optional trailing text (examples, exit codes)
};

/// Parsed arguments of one command. Value type.
class Args {
public:
    /// Parses `argv` (the arguments after the command words) against `spec`.
    /// Throws UsageError naming the offending argument. When `-h`/`--help`
    /// is present, the other checks (required options, operand count) are
    /// skipped and help() is true.
    static Args parse(const CommandSpec& spec, std::span<const std::string_view> argv);

    /// True if `-h` or `--help` was given.
    bool help() const noexcept { return help_; }
    /// True if flag `name` was given.
    bool flag(std::string_view name) const;
    /// The (last) value of option `name`, if given.
    std::optional<std::string> value(std::string_view name) const;
    /// Every value of a repeatable option, in command-line order.
    std::vector<std::string> values(std::string_view name) const;
    /// The positional operands.
    const std::vector<std::string>& positional() const noexcept { return positional_; }

    /// Parses option `name` as an unsigned integer within [min, max].
    /// Throws UsageError ("--order: expected a number from 1 to ..., got 'x'").
    std::optional<std::uint64_t> number(std::string_view name, std::uint64_t min,
                                        std::uint64_t max) const;

private:
    bool help_ = false;
    std::map<std::string, std::vector<std::string>, std::less<>> values_;
    std::vector<std::string> positional_;
};

/// The `--help` text of a command, ending with a newline.
std::string format_help(const CommandSpec& spec);

/// Splits "a,b,,c" into {"a","b","c"} (empty items dropped, blanks trimmed).
std::vector<std::string> split_list(std::string_view text);

}  // namespace dnsfw::cli
