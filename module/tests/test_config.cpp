// Unit tests for dnsfw.toml parsing (module/config.hpp).
#include <catch2/catch.hpp>

#include "module/config.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

using namespace dnsfw::module;

namespace {

std::string error_of(const std::string& text, const std::string& source = "/etc/dnsfw/x.toml") {
    try {
        parse_config(text, source);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("a minimal configuration gets the documented defaults", "[module][config]") {
    const Config c = parse_config("store = \"/var/lib/dnsfw/store\"\n", "/etc/dnsfw/dnsfw.toml");
    CHECK(c.source == "/etc/dnsfw/dnsfw.toml");
    CHECK(c.store == "/var/lib/dnsfw/store");
    CHECK(c.zones.empty());
    CHECK(c.hit_log.empty());
    CHECK_FALSE(c.fail_open);
    REQUIRE(c.ede.has_value());
    CHECK(*c.ede == 15);
    CHECK(c.log_level == LogLevel::Info);
}

TEST_CASE("every key is read", "[module][config]") {
    const Config c = parse_config(R"(
store = "/s"
zones = ["allow.rpz", "Threat.RPZ."]
hit-log = "/var/log/dnsfw/hits.jsonl"
fail-open = true
ede = 17
log-level = "debug"
)",
                                  "/etc/dnsfw/dnsfw.toml");
    CHECK(c.zones == std::vector<std::string>{"allow.rpz", "Threat.RPZ."});
    CHECK(c.hit_log == "/var/log/dnsfw/hits.jsonl");
    CHECK(c.fail_open);
    CHECK(c.ede == std::optional<std::uint16_t>(17));
    CHECK(c.log_level == LogLevel::Debug);
}

TEST_CASE("relative paths are relative to the configuration file", "[module][config]") {
    const Config c =
        parse_config("store = \"store\"\nhit-log = \"log/hits.jsonl\"\n", "/srv/dnsfw/dnsfw.toml");
    CHECK(c.store == "/srv/dnsfw/store");
    CHECK(c.hit_log == "/srv/dnsfw/log/hits.jsonl");
    CHECK(parse_config("store = \"s\"\nhit-log = \"\"\n", "/a/b.toml").hit_log.empty());
}

TEST_CASE("ede accepts codes, names and the ways to turn it off", "[module][config]") {
    auto ede = [](const std::string& v) { return parse_config("store = \"/s\"\nede = " + v, "f").ede; };
    CHECK(ede("0") == std::optional<std::uint16_t>(0));
    CHECK(ede("65535") == std::optional<std::uint16_t>(65535));
    CHECK(ede("-1") == std::nullopt);
    CHECK(ede("\"none\"") == std::nullopt);
    CHECK(ede("\"blocked\"") == std::optional<std::uint16_t>(15));
    CHECK(ede("\"filtered\"") == std::optional<std::uint16_t>(17));
    CHECK(ede("\"forged\"") == std::optional<std::uint16_t>(4));
}

TEST_CASE("configuration errors name the file, the line and the cause", "[module][config]") {
    CHECK(error_of("store = \"/s\"\nzonez = [\"a\"]\n") ==
          "/etc/dnsfw/x.toml:2:9: unknown key 'zonez' (known: store, zones, hit-log, hit-log-queue, "
          "fail-open, ede, log-level)");
    CHECK(error_of("store = \"/s\"\nhit-log-queue = 100\n") ==
          "/etc/dnsfw/x.toml:2:17: 'hit-log-queue' must be an integer from 1024 to 1048576 (records)");
    CHECK(error_of("zones = []\n") == "/etc/dnsfw/x.toml: required key 'store' is missing");
    CHECK(error_of("store = 5\n").find("/etc/dnsfw/x.toml:1:") == 0);
    CHECK(error_of("store = 5\n").find("'store' must be a string") != std::string::npos);
    CHECK(error_of("store = \"\"\n").find("'store' must not be empty") != std::string::npos);
    CHECK(error_of("store = \"/s\"\nfail-open = \"yes\"\n").find(":2:") != std::string::npos);
    CHECK(error_of("store = \"/s\"\nede = 70000\n").find("'ede' must be") != std::string::npos);
    CHECK(error_of("store = \"/s\"\nede = -2\n").find("'ede' must be") != std::string::npos);
    CHECK(error_of("store = \"/s\"\nede = \"blue\"\n").find("is unknown") != std::string::npos);
    CHECK(error_of("store = \"/s\"\nzones = \"a.rpz\"\n").find("must be an array") !=
          std::string::npos);
    CHECK(error_of("store = \"/s\"\nzones = [1]\n").find("entries must be strings") !=
          std::string::npos);
    CHECK(error_of("store = \"/s\"\nzones = [\"a..b\"]\n").find("is not a domain name") !=
          std::string::npos);
    CHECK(error_of("store = \"/s\"\nlog-level = \"loud\"\n").find("'log-level'") !=
          std::string::npos);
    CHECK(error_of("store = \"/s\n").find("/etc/dnsfw/x.toml:1:") == 0);  // TOML syntax
    CHECK(error_of("store = \"/s\"\n[server]\nx = 1\n").find("unknown key 'server'") !=
          std::string::npos);
}

TEST_CASE("load_config reads a file and reports an unreadable one", "[module][config]") {
    const auto dir = std::filesystem::temp_directory_path() / "dnsfw-module-config-test";
    std::filesystem::create_directories(dir);
    const auto path = (dir / "dnsfw.toml").string();
    {
        std::ofstream out(path);
        out << "store = \"store\"\n";
    }
    CHECK(load_config(path).store == (dir / "store").string());
    const std::string missing = (dir / "missing.toml").string();
    try {
        load_config(missing);
        FAIL("no exception");
    } catch (const ConfigError& e) {
        CHECK(std::string(e.what()).find(missing + ": cannot open configuration file") == 0);
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("DNSFW_CONFIG overrides the default path", "[module][config]") {
    ::unsetenv("DNSFW_CONFIG");
    CHECK(config_path_from_environment() == "/etc/dnsfw/dnsfw.toml");
    ::setenv("DNSFW_CONFIG", "", 1);
    CHECK(config_path_from_environment() == "/etc/dnsfw/dnsfw.toml");
    ::setenv("DNSFW_CONFIG", "/tmp/x.toml", 1);
    CHECK(config_path_from_environment() == "/tmp/x.toml");
    ::unsetenv("DNSFW_CONFIG");
}
