#include "args.hpp"

#include <algorithm>
#include <charconv>

namespace dnsfw::cli {

namespace {

const OptionSpec* find_option(const CommandSpec& spec, std::string_view name) {
    for (const auto& o : spec.options) {
        if (o.name == name) return &o;
    }
    return nullptr;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

Args Args::parse(const CommandSpec& spec, std::span<const std::string_view> argv) {
    Args out;
    bool options_done = false;
    for (std::size_t i = 0; i < argv.size(); ++i) {
        std::string_view a = argv[i];
        if (options_done || a.size() < 2 || a[0] != '-') {
            out.positional_.emplace_back(a);
            continue;
        }
        if (a == "--") {
            options_done = true;
            continue;
        }
        if (a == "-h" || a == "--help") {
            out.help_ = true;
            continue;
        }
        if (a.substr(0, 2) != "--") {
            throw UsageError("unknown option '" + std::string(a) + "'");
        }
        std::string_view body = a.substr(2);
        std::optional<std::string_view> inline_value;
        if (auto eq = body.find('='); eq != std::string_view::npos) {
            inline_value = body.substr(eq + 1);
            body = body.substr(0, eq);
        }
        const OptionSpec* opt = find_option(spec, body);
        if (opt == nullptr) {
            throw UsageError("unknown option '--" + std::string(body) + "'");
        }
        auto& slot = out.values_[opt->name];
        if (!slot.empty() && !opt->repeatable) {
            throw UsageError("option '--" + opt->name + "' given more than once");
        }
        if (opt->value_name.empty()) {
            if (inline_value) {
                throw UsageError("option '--" + opt->name + "' takes no value");
            }
            slot.emplace_back();
            continue;
        }
        if (inline_value) {
            slot.emplace_back(*inline_value);
        } else if (i + 1 < argv.size()) {
            slot.emplace_back(argv[++i]);
        } else {
            throw UsageError("option '--" + opt->name + "' needs a value (" + opt->value_name +
                             ")");
        }
    }
    if (out.help_) return out;

    for (const auto& o : spec.options) {
        if (o.required && !out.values_.contains(o.name)) {
            throw UsageError("missing required option '--" + o.name + " " + o.value_name + "'");
        }
    }
    const auto n = out.positional_.size();
    if (n < spec.min_positional) {
        throw UsageError(spec.synopsis.empty() ? std::string("missing operand")
                                               : "missing operand: " + spec.synopsis);
    }
    if (n > spec.max_positional) {
        throw UsageError("unexpected argument '" + out.positional_[spec.max_positional] + "'");
    }
    return out;
}

bool Args::flag(std::string_view name) const { return values_.find(name) != values_.end(); }

std::optional<std::string> Args::value(std::string_view name) const {
    auto it = values_.find(name);
    if (it == values_.end() || it->second.empty()) return std::nullopt;
    return it->second.back();
}

std::vector<std::string> Args::values(std::string_view name) const {
    auto it = values_.find(name);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::optional<std::uint64_t> Args::number(std::string_view name, std::uint64_t min,
                                          std::uint64_t max) const {
    auto text = value(name);
    if (!text) return std::nullopt;
    std::uint64_t v = 0;
    const char* first = text->data();
    const char* last = first + text->size();
    auto [ptr, ec] = std::from_chars(first, last, v);
    if (ec != std::errc{} || ptr != last || text->empty() || v < min || v > max) {
        throw UsageError("--" + std::string(name) + ": expected a number from " +
                         std::to_string(min) + " to " + std::to_string(max) + ", got '" + *text +
                         "'");
    }
    return v;
}

std::string format_help(const CommandSpec& spec) {
    std::string out = "usage: " + spec.path;
    if (!spec.options.empty()) out += " [options]";
    if (!spec.synopsis.empty()) out += " " + spec.synopsis;
    out += "\n\n" + spec.summary + "\n";
    if (!spec.options.empty()) {
        out += "\noptions:\n";
        std::vector<std::string> heads;
        std::size_t width = 0;
        for (const auto& o : spec.options) {
            std::string h = "  --" + o.name;
            if (!o.value_name.empty()) h += " " + o.value_name;
            width = std::max(width, h.size());
            heads.push_back(std::move(h));
        }
        heads.emplace_back("  -h, --help");
        width = std::max(width, heads.back().size());
        for (std::size_t i = 0; i < heads.size(); ++i) {
            std::string help = i < spec.options.size() ? spec.options[i].help
                                                       : std::string("print this help and exit");
            if (i < spec.options.size()) {
                if (spec.options[i].required) help += " (required)";
                if (spec.options[i].repeatable) help += " (repeatable)";
            }
            out += heads[i] + std::string(width - heads[i].size() + 2, ' ') + help + "\n";
        }
    }
    if (!spec.epilog.empty()) out += "\n" + spec.epilog;
    if (!out.empty() && out.back() != '\n') out += '\n';
    return out;
}

std::vector<std::string> split_list(std::string_view text) {
    std::vector<std::string> out;
    while (!text.empty()) {
        auto comma = text.find(',');
        auto item = trim(text.substr(0, comma));
        if (!item.empty()) out.emplace_back(item);
        if (comma == std::string_view::npos) break;
        text.remove_prefix(comma + 1);
    }
    return out;
}

}  // namespace dnsfw::cli
