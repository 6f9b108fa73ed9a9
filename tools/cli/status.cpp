// `dnsfw status`: per-zone serial, size and update bookkeeping (transfers,
// pushes, UPDATEs, failures) as recorded in the store by dnsfw-xfrd and
// `dnsfw zone push`. Reads the store only: works whether or not the daemon
// runs.
#include "common.hpp"
#include "zone_input.hpp"

#include "store/store.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dnsfw::cli {

namespace {

/// One row: a zone of the store and/or a recorded status.
struct Row {
    std::string name;
    std::optional<store::ZoneInfo> info;     ///< nullopt: status only (never stored yet)
    std::optional<store::ZoneStatus> status; ///< nullopt: nothing recorded
    /// Whether the dnsfw-xfrd that wrote the status still runs.
    store::ProcessId::Liveness daemon = store::ProcessId::Liveness::Unknown;
};

using Liveness = store::ProcessId::Liveness;

/// A transfer the status marks as under way, and whether it really is.
enum class TransferState { None, InProgress, Interrupted, Unknown };

TransferState transfer_state(const Row& r) {
    if (!r.status || r.status->transfer_started == 0) return TransferState::None;
    switch (r.daemon) {
        case Liveness::Running: return TransferState::InProgress;
        case Liveness::Gone: return TransferState::Interrupted;
        case Liveness::Unknown: break;
    }
    return TransferState::Unknown;
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

/// "2024-07-05T10:11:12Z" (ISO 8601, UTC); "" for 0.
std::string iso_utc(std::uint64_t t) {
    if (t == 0) return "";
    auto tt = static_cast<std::time_t>(t);
    std::tm tm{};
    if (gmtime_r(&tt, &tm) == nullptr) return std::to_string(t);
    char buf[32];
    std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return std::string(buf, n);
}

/// "42 s", "5 min", "3 h", "2 d": seconds below two minutes, then coarser.
std::string span_text(std::uint64_t s) {
    if (s < 120) return std::to_string(s) + " s";
    if (s < 2 * 3600) return std::to_string(s / 60) + " min";
    if (s < 2 * 86400) return std::to_string(s / 3600) + " h";
    return std::to_string(s / 86400) + " d";
}

/// "2024-07-05T10:11:12Z (42 s ago)", or "never".
std::string when_text(std::uint64_t t, std::uint64_t now) {
    if (t == 0) return "never";
    const std::string at = iso_utc(t);
    if (t > now) return at + " (in " + span_text(t - now) + ")";
    return at + " (" + span_text(now - t) + " ago)";
}

/// "in 288 s", "due" (now or overdue by less than a second), "overdue 5 s", "-".
std::string next_text(std::uint64_t t, std::uint64_t now) {
    if (t == 0) return "-";
    if (t > now) return "in " + span_text(t - now);
    if (t == now) return "due";
    return "overdue " + span_text(now - t);
}

nlohmann::json time_json(std::uint64_t t) {
    return t == 0 ? nlohmann::json(nullptr) : nlohmann::json(iso_utc(t));
}

nlohmann::json row_json(const Row& r, std::uint64_t now) {
    nlohmann::json j;
    j["name"] = r.name;
    j["in_store"] = r.info.has_value();
    if (r.info) {
        j["order"] = r.info->order;
        j["serial"] = r.info->serial;
        j["rules"] = r.info->rule_count;
        j["journal_max_bytes"] = r.info->journal_max_bytes;
        j["loaded_at"] = r.info->loaded_at;
        j["loaded_at_utc"] = time_json(r.info->loaded_at);
    } else {
        for (const char* k : {"order", "serial", "rules", "journal_max_bytes", "loaded_at",
                              "loaded_at_utc"})
            j[k] = nullptr;
    }
    const store::ZoneStatus s = r.status.value_or(store::ZoneStatus{});
    j["has_status"] = r.status.has_value();
    j["last_attempt"] = s.last_attempt;
    j["last_attempt_utc"] = time_json(s.last_attempt);
    j["last_success"] = s.last_success;
    j["last_success_utc"] = time_json(s.last_success);
    j["last_success_age"] =
        s.last_success == 0 || s.last_success > now ? nlohmann::json(nullptr)
                                                    : nlohmann::json(now - s.last_success);
    j["last_failure"] = s.last_failure;
    j["last_failure_utc"] = time_json(s.last_failure);
    j["last_error"] = s.last_error;
    // The zone is failing right now if its last failure is after its last success.
    j["failing"] = s.last_failure != 0 && s.last_failure > s.last_success;
    j["last_source"] = s.last_source;
    j["transfers"] = {{"full", s.transfers_full},
                      {"incremental", s.transfers_incremental},
                      {"failed", s.transfers_failed}};
    j["updates"] = s.updates;
    j["primary_serial"] = s.primary_serial == 0 ? nlohmann::json(nullptr)
                                                : nlohmann::json(s.primary_serial);
    j["next_check"] = s.next_check;
    j["next_check_utc"] = time_json(s.next_check);
    // The dnsfw-xfrd process that wrote the status: running true/false, or
    // null when it cannot be told (another pid namespace).
    if (s.daemon.pid == 0) {
        j["daemon"] = nullptr;
    } else {
        j["daemon"] = {{"pid", s.daemon.pid},
                       {"running", r.daemon == Liveness::Unknown
                                       ? nlohmann::json(nullptr)
                                       : nlohmann::json(r.daemon == Liveness::Running)}};
    }
    const TransferState ts = transfer_state(r);
    j["transfer_started"] = s.transfer_started;
    j["transfer_started_utc"] = time_json(s.transfer_started);
    j["transfer_kind"] = s.transfer_kind;
    j["transfer_in_progress"] = ts == TransferState::InProgress;
    j["transfer_interrupted"] = ts == TransferState::Interrupted;
    j["last_transfer_skipped"] = s.last_transfer_skipped;
    return j;
}

}  // namespace

const CommandSpec& status_spec() {
    static const CommandSpec spec{
        "dnsfw status",
        "per-zone serial, rules, transfers, pushes and failures (from the store)",
        "",
        "Show, for every zone of the store and every zone dnsfw-xfrd has recorded a\n"
        "status for (a secondary zone whose first transfer has not succeeded yet is\n"
        "only the latter): serial, rule count, journal bound, last success and last\n"
        "failure with its reason, transfers full/incremental/failed, deltas applied by\n"
        "'zone push' and RFC 2136 UPDATE, where the last change came from, the last\n"
        "serial seen at the primary and when dnsfw-xfrd checks it next.\n"
        "Reads the store only: works whether or not dnsfw-xfrd is running. The\n"
        "status names the dnsfw-xfrd process that wrote it: when that process is\n"
        "gone, NEXT-CHECK says 'daemon not running', and a transfer it had started\n"
        "is shown as interrupted (it did not finish; nothing of it was committed).",
        {
            {"store", "DIR", std::string("store directory (default ") + kDefaultStorePath + ")"},
            {"json", "", "print one JSON object {store, time, zones: [...]} instead of a table"},
        },
        0,
        0,
        "columns: XFR = transfers full/incremental/failed; UPDATES = zone push + UPDATE\n"
        "deltas; PRIMARY = last serial seen at the primary; a zone whose last failure is\n"
        "newer than its last success is marked FAILING, with the reason below its row;\n"
        "below it too: a transfer under way or interrupted, records the last transfer\n"
        "skipped.\n"
        "\nexit: 0 shown, 1 store missing or unreadable, 2 bad command line.\n",
    };
    return spec;
}

int status(const Args& args) {
    const std::string store_path = args.value("store").value_or(kDefaultStorePath);
    auto st = open_existing_store(store_path, false);
    std::vector<Row> rows;
    try {
        std::map<std::string, store::ZoneStatus> statuses;
        for (auto& [name, s] : st.statuses()) statuses[lower(name)] = s;
        for (auto& z : st.list_zones()) {
            Row r{z.name, z, std::nullopt, store::ProcessId::Liveness::Unknown};
            if (auto it = statuses.find(lower(z.name)); it != statuses.end()) {
                r.status = it->second;
                statuses.erase(it);
            }
            rows.push_back(std::move(r));
        }
        for (auto& [name, s] : statuses)
            rows.push_back(Row{name, std::nullopt, s, store::ProcessId::Liveness::Unknown});
    } catch (const store::StoreError& e) {
        throw CommandError(std::string("store: ") + e.what());
    }
    for (Row& r : rows)
        if (r.status) r.daemon = r.status->daemon.liveness();
    const auto now = static_cast<std::uint64_t>(std::time(nullptr));

    if (args.flag("json")) {
        nlohmann::json out;
        out["store"] = st.path();
        out["time"] = now;
        out["time_utc"] = iso_utc(now);
        out["zones"] = nlohmann::json::array();
        for (const Row& r : rows) out["zones"].push_back(row_json(r, now));
        std::cout << out.dump(2) << "\n";
        return kExitOk;
    }

    if (rows.empty()) {
        std::cout << "no zones in store " << st.path() << "\n";
        return kExitOk;
    }
    const std::vector<std::string> header = {"ZONE",         "SERIAL",       "RULES",
                                             "JOURNAL",      "LAST-SUCCESS", "LAST-FAILURE",
                                             "XFR F/I/FAIL", "UPDATES",      "PRIMARY",
                                             "NEXT-CHECK",   "LAST-SOURCE"};
    // Right-aligned numeric columns.
    const std::vector<bool> right = {false, true, true, true, false, false,
                                     true,  true, true, false, false};
    std::vector<std::vector<std::string>> cells;
    std::vector<std::string> notes;
    for (const Row& r : rows) {
        const store::ZoneStatus s = r.status.value_or(store::ZoneStatus{});
        const bool failing = s.last_failure != 0 && s.last_failure > s.last_success;
        std::string failure = when_text(s.last_failure, now);
        if (failing) failure += " FAILING";
        cells.push_back({
            r.name,
            r.info ? std::to_string(r.info->serial) : "-",
            r.info ? std::to_string(r.info->rule_count) : "-",
            r.info ? format_bytes(r.info->journal_max_bytes) : "-",
            when_text(s.last_success, now),
            failure,
            std::to_string(s.transfers_full) + "/" + std::to_string(s.transfers_incremental) +
                "/" + std::to_string(s.transfers_failed),
            std::to_string(s.updates),
            s.primary_serial == 0 ? "-" : std::to_string(s.primary_serial),
            s.next_check != 0 && r.daemon == Liveness::Gone ? "daemon not running"
                                                             : next_text(s.next_check, now),
            s.last_source.empty() ? "-" : s.last_source,
        });
        std::string note;
        if (!r.info) note = "  not in the store yet (no transfer has succeeded)";
        const auto add_note = [&note](const std::string& text) {
            if (!note.empty()) note += "\n";
            note += "  " + text;
        };
        if (!s.last_error.empty())
            add_note((failing ? "error: " : "last error (since recovered): ") + s.last_error);
        const std::string kind = s.transfer_kind.empty() ? "a transfer" : s.transfer_kind;
        const std::string pid = "dnsfw-xfrd pid " + std::to_string(s.daemon.pid);
        switch (transfer_state(r)) {
            case TransferState::None:
                break;
            case TransferState::InProgress:
                add_note("transfer under way: " + kind + " since " +
                         when_text(s.transfer_started, now));
                break;
            case TransferState::Interrupted:
                add_note(kind + " started at " + iso_utc(s.transfer_started) +
                         " did not finish (interrupted: " + pid +
                         " is not running); nothing of it was committed");
                break;
            case TransferState::Unknown:
                add_note(kind + " started at " + iso_utc(s.transfer_started) +
                         " has not finished (cannot tell whether " + pid +
                         " still runs: another pid namespace?)");
                break;
        }
        if (s.last_transfer_skipped > 0)
            add_note("last transfer skipped " + std::to_string(s.last_transfer_skipped) +
                     (s.last_transfer_skipped == 1 ? " record" : " records") +
                     " (see the dnsfw-xfrd log)");
        notes.push_back(std::move(note));
    }
    std::vector<std::size_t> width(header.size());
    for (std::size_t c = 0; c < header.size(); ++c) {
        width[c] = header[c].size();
        for (const auto& row : cells) width[c] = std::max(width[c], row[c].size());
    }
    const auto print_row = [&](const std::vector<std::string>& row) {
        std::string line;
        for (std::size_t c = 0; c < row.size(); ++c) {
            const std::string pad(width[c] - row[c].size(), ' ');
            const bool last = c + 1 == row.size();
            line += right[c] ? pad + row[c] : (last ? row[c] : row[c] + pad);
            if (!last) line += "  ";
        }
        std::cout << line << "\n";
    };
    print_row(header);
    for (std::size_t i = 0; i < cells.size(); ++i) {
        print_row(cells[i]);
        if (!notes[i].empty()) std::cout << notes[i] << "\n";
    }
    return kExitOk;
}

}  // namespace dnsfw::cli
