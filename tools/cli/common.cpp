#include "common.hpp"

#include <ctime>
#include <system_error>

namespace dnsfw::cli {

namespace fs = std::filesystem;

store::Store open_existing_store(const std::string& path, bool writable) {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
        throw CommandError("store '" + path +
                           "' does not exist (create it by loading a zone: dnsfw zone load --store " +
                           path + " --zone NAME FILE)");
    }
    if (!fs::is_directory(path, ec)) {
        throw CommandError("store '" + path + "' is not a directory (a store is a directory "
                           "holding data.mdb and lock.mdb)");
    }
    store::OpenOptions options;
    options.read_only = !writable;
    options.create = false;
    try {
        return store::Store::open(path, options);
    } catch (const store::StoreError& e) {
        throw CommandError(std::string("cannot open store: ") + e.what());
    }
}

fs::path executable_dir() {
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (ec) throw CommandError("cannot locate the dnsfw executable: " + ec.message());
    return exe.parent_path();
}

std::string format_utc(std::uint64_t unix_seconds) {
    if (unix_seconds == 0) return "-";
    auto t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    if (gmtime_r(&t, &tm) == nullptr) return std::to_string(unix_seconds);
    char buf[32];
    std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
    return std::string(buf, n);
}

}  // namespace dnsfw::cli
