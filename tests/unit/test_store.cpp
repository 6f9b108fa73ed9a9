// Unit tests for dnsfw::store: real LMDB environments in temporary
// directories (removed afterwards).
#include <catch2/catch.hpp>

#include "rpz/rpz.hpp"
#include "store/codec.hpp"
#include "store/store.hpp"

#include <lmdb.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace dnsfw;
using store::OpenOptions;
using store::Store;
using store::StoreError;

namespace {

namespace fs = std::filesystem;

/// A fresh directory under the system temp dir, removed with its contents.
struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "dnsfw-store-test-XXXXXX").string();
        REQUIRE(mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string sub(const std::string& name) const { return (path / name).string(); }
};

OpenOptions writer_options(std::size_t map_size = std::size_t{64} << 20) {
    OpenOptions o;
    o.read_only = false;
    o.create = true;
    o.map_size = map_size;
    return o;
}

rpz::Name wire(std::string_view text) {
    auto n = rpz::name_from_text(text);
    REQUIRE(n.has_value());
    return *n;
}

/// A QNAME rule for `owner` ("name" or "*.name"), key relative to no apex
/// (the protected name itself, as the parser stores it).
rpz::Rule qname_rule(std::string_view owner, rpz::Action action, std::uint32_t ttl = 300) {
    const bool wildcard = owner.substr(0, 2) == "*.";
    const rpz::Name w = wire(wildcard ? owner.substr(2) : owner);
    rpz::NameKey k;
    REQUIRE(rpz::make_name_key(w, k));
    rpz::Rule r;
    r.trigger = rpz::Trigger::Qname;
    r.key.assign(k.bytes.begin(), k.bytes.begin() + static_cast<std::ptrdiff_t>(k.size));
    if (wildcard) {
        r.key.push_back(1);
        r.key.push_back('*');
    }
    r.action = action;
    r.ttl = ttl;
    return r;
}

rpz::Rule local_a_rule(std::string_view owner, std::vector<std::uint8_t> addr) {
    rpz::Rule r = qname_rule(owner, rpz::Action::LocalData, 60);
    r.records.push_back(rpz::LocalRecord{1, 60, std::move(addr)});
    return r;
}

bool rule_less(const rpz::Rule& a, const rpz::Rule& b) {
    return a.trigger != b.trigger ? a.trigger < b.trigger : a.key < b.key;
}

rpz::Zone make_zone(std::string_view name, std::vector<rpz::Rule> rules, std::uint32_t serial = 1,
                    bool sort = true) {
    rpz::Zone z;
    z.name = wire(name);
    z.serial = serial;
    z.soa_ttl = 3600;
    z.soa_rdata = {1, 'a', 0, 1, 'b', 0, 0, 0, 0, 1, 0, 0, 0,
                   2, 0,   0, 0, 3,   0, 0, 0, 4, 0, 0, 0, 5};
    if (sort) std::sort(rules.begin(), rules.end(), rule_less);
    z.rules = std::move(rules);
    return z;
}

/// A zone of `n` synthetic QNAME rules "<prefix><i>.example.".
rpz::Zone big_zone(std::string_view name, std::size_t n, std::string_view prefix = "host") {
    std::vector<rpz::Rule> rules;
    rules.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        rules.push_back(qname_rule(std::string(prefix) + std::to_string(i) + ".example",
                                   rpz::Action::Nxdomain));
    return make_zone(name, std::move(rules));
}

rpz::Decision eval(const rpz::RuleSource& src, std::string_view qname) {
    const rpz::Name q = wire(qname);
    rpz::Query query;
    query.qname = q;
    query.qtype = 1;
    return rpz::evaluate(src, query);
}

/// evaluate() without Catch assertions (safe to call from other threads).
bool matches(const rpz::RuleSource& src, const std::string& qname) {
    const auto q = rpz::name_from_text(qname);
    if (!q) return false;
    rpz::Query query;
    query.qname = *q;
    return rpz::evaluate(src, query).matched;
}

/// find() of the exact QNAME rule for `owner` in active zone `z`.
std::optional<rpz::RuleView> find_owner(const store::Snapshot& snap, std::size_t z,
                                        std::string_view owner) {
    const rpz::Name w = wire(owner);
    rpz::NameKey k;
    REQUIRE(rpz::make_name_key(w, k));
    return snap.find(z, rpz::Trigger::Qname, k.view());
}

std::vector<std::string> zone_names(const std::vector<store::ZoneInfo>& zones) {
    std::vector<std::string> out;
    for (const auto& z : zones) out.push_back(z.name + "@" + std::to_string(z.order));
    return out;
}

}  // namespace

TEST_CASE("a new store is empty and re-opens read-only", "[store]") {
    TempDir tmp;
    const std::string path = tmp.sub("db");
    {
        Store s = Store::open(path, writer_options());
        CHECK(s.path() == path);
        CHECK(s.list_zones().empty());
        CHECK(s.generation() == 0);
        const auto st = s.stats();
        CHECK(st.zones == 0);
        CHECK(st.rules == 0);
        CHECK(st.max_readers >= 1022);
    }
    CHECK(fs::exists(fs::path(path) / "data.mdb"));
    Store r = Store::open(path, OpenOptions{});
    CHECK(r.list_zones().empty());
    auto snap = r.snapshot();
    CHECK(snap->zone_count() == 0);
    CHECK_FALSE(snap->refresh());
    // A read-only store refuses writes, and says where.
    try {
        r.replace_zone(make_zone("rpz.test", {}));
        FAIL("replace_zone on a read-only store succeeded");
    } catch (const StoreError& e) {
        CHECK(std::string(e.what()).find(path) != std::string::npos);
    }
}

TEST_CASE("opening a missing store names the path and the fix", "[store]") {
    TempDir tmp;
    const std::string path = tmp.sub("nowhere");
    for (bool read_only : {true, false}) {
        OpenOptions o;
        o.read_only = read_only;
        o.create = false;
        try {
            Store::open(path, o);
            FAIL("opened a missing store");
        } catch (const StoreError& e) {
            CHECK(std::string(e.what()) ==
                  "store " + path +
                      ": No such file or directory (create it with `dnsfw zone load`)");
            CHECK(e.code() == ENOENT);
        }
    }
    CHECK_FALSE(fs::exists(path));  // nothing was created

    // An existing but empty directory is no store either.
    fs::create_directory(path);
    CHECK_THROWS_WITH(Store::open(path, OpenOptions{}),
                      Catch::Contains(path) && Catch::Contains("No such file or directory"));
    // A plain file is not a directory.
    std::ofstream(tmp.sub("file")) << "x";
    CHECK_THROWS_WITH(Store::open(tmp.sub("file"), OpenOptions{}),
                      Catch::Contains("not a directory"));
}

TEST_CASE("an LMDB environment of another program is not a dnsfw store", "[store]") {
    TempDir tmp;
    const std::string path = tmp.path.string();
    {
        MDB_env* env = nullptr;
        REQUIRE(mdb_env_create(&env) == 0);
        REQUIRE(mdb_env_open(env, path.c_str(), 0, 0644) == 0);
        MDB_txn* txn = nullptr;
        REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
        MDB_dbi dbi = 0;
        REQUIRE(mdb_dbi_open(txn, nullptr, 0, &dbi) == 0);
        char kb[] = "foreign";
        char vb[] = "data";
        MDB_val k{sizeof kb, kb};
        MDB_val v{sizeof vb, vb};
        REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
        REQUIRE(mdb_txn_commit(txn) == 0);
        mdb_env_close(env);
    }
    CHECK_THROWS_WITH(Store::open(path, OpenOptions{}),
                      Catch::Contains(path) && Catch::Contains("not a dnsfw store"));
    // Even a creating writer refuses to take it over.
    CHECK_THROWS_WITH(Store::open(path, writer_options()), Catch::Contains("not a dnsfw store"));
}

TEST_CASE("an unknown format version is refused", "[store]") {
    TempDir tmp;
    const std::string path = tmp.sub("db");
    { Store::open(path, writer_options()); }
    {
        MDB_env* env = nullptr;
        REQUIRE(mdb_env_create(&env) == 0);
        REQUIRE(mdb_env_set_maxdbs(env, 16) == 0);
        REQUIRE(mdb_env_open(env, path.c_str(), 0, 0644) == 0);
        MDB_txn* txn = nullptr;
        REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
        MDB_dbi dbi = 0;
        REQUIRE(mdb_dbi_open(txn, "meta", 0, &dbi) == 0);
        char kb[] = "format";
        unsigned char vb[] = {0, 0, 0, 99};
        MDB_val k{6, kb};
        MDB_val v{4, vb};
        REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
        REQUIRE(mdb_txn_commit(txn) == 0);
        mdb_env_close(env);
    }
    CHECK_THROWS_WITH(Store::open(path, OpenOptions{}),
                      Catch::Contains(path) && Catch::Contains("unknown format version 99"));
}

TEST_CASE("load, list and look up a zone", "[store]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    rpz::Zone z = make_zone("RPZ.Test",
                            {qname_rule("bad.example", rpz::Action::Nxdomain),
                             qname_rule("*.evil.example", rpz::Action::Nodata),
                             qname_rule("*.a.b.c.example", rpz::Action::Drop),
                             local_a_rule("walled.example", {192, 0, 2, 7})},
                            2024010101);
    const store::ZoneInfo info = s.replace_zone(z);
    CHECK(info.name == "rpz.test.");
    CHECK(info.order == 1);
    CHECK(info.serial == 2024010101);
    CHECK(info.rule_count == 4);
    CHECK(info.soa_ttl == 3600);
    CHECK(info.soa_rdata == z.soa_rdata);
    CHECK(info.loaded_at > 1600000000);
    // Deepest wildcard parent: a.b.c.example = 4 labels; no IP wildcards.
    CHECK(info.max_wildcard_depth[static_cast<std::size_t>(rpz::Trigger::Qname)] == 4);
    CHECK(info.max_wildcard_depth[static_cast<std::size_t>(rpz::Trigger::ResponseIp)] == 0);
    CHECK(s.generation() == 1);

    const auto listed = s.list_zones();
    REQUIRE(listed.size() == 1);
    CHECK(listed[0].id == info.id);
    CHECK(listed[0].soa_rdata == z.soa_rdata);
    REQUIRE(s.zone("rpz.test").has_value());  // no trailing dot, other case
    CHECK(s.zone("RPZ.TEST.")->rule_count == 4);
    CHECK_FALSE(s.zone("other.test").has_value());
    CHECK(s.stats().rules == 4);

    auto snap = s.snapshot();
    REQUIRE(snap->zone_count() == 1);
    CHECK(snap->zone_info(0).name == "rpz.test.");
    CHECK(snap->max_wildcard_depth(0, rpz::Trigger::Qname) == 4);
    CHECK(snap->generation() == 1);

    auto hit = find_owner(*snap, 0, "bad.example");
    REQUIRE(hit.has_value());
    CHECK(hit->action() == rpz::Action::Nxdomain);
    CHECK(hit->ttl() == 300);
    CHECK_FALSE(find_owner(*snap, 0, "good.example").has_value());
    CHECK_FALSE(find_owner(*snap, 1, "bad.example").has_value());  // no zone 1

    auto local = find_owner(*snap, 0, "walled.example");
    REQUIRE(local.has_value());
    REQUIRE(local->record_count() == 1);
    std::vector<std::uint8_t> rdata;
    local->for_each_record([&](const rpz::RuleView::RecordView& r) {
        CHECK(r.type == 1);
        rdata.assign(r.rdata.begin(), r.rdata.end());
    });
    CHECK(rdata == std::vector<std::uint8_t>{192, 0, 2, 7});
    CHECK(local->to_rule().records == z.rules[3].records);

    // for_each_rule walks the zone in key order.
    std::vector<std::string> keys;
    snap->for_each_rule(0, [&](rpz::Trigger t, std::span<const std::uint8_t> key,
                               const rpz::RuleView& v) {
        CHECK(t == rpz::Trigger::Qname);
        keys.push_back(rpz::name_key_to_text(key) + "=" + std::string(rpz::to_string(v.action())));
    });
    CHECK(keys == std::vector<std::string>{"*.a.b.c.example=drop", "bad.example=nxdomain",
                                           "*.evil.example=nodata", "walled.example=local-data"});
}

TEST_CASE("evaluate over a Snapshot: exact, wildcard, precedence, miss", "[store]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    s.replace_zone(make_zone("first.rpz", {qname_rule("*.example.com", rpz::Action::Nodata),
                                           qname_rule("ok.example.com", rpz::Action::Passthru)}));
    s.replace_zone(make_zone("second.rpz", {qname_rule("www.example.com", rpz::Action::Drop),
                                            qname_rule("bad.test", rpz::Action::Nxdomain),
                                            qname_rule("*.bad.test", rpz::Action::Drop),
                                            qname_rule("*.deep.bad.test", rpz::Action::TcpOnly)}));
    auto snap = s.snapshot();
    REQUIRE(snap->zone_count() == 2);

    // The first zone's wildcard wins over the second zone's exact match.
    auto d = eval(*snap, "www.example.com");
    CHECK(d.matched);
    CHECK(d.zone == 0);
    CHECK(d.wildcard);
    CHECK(d.action() == rpz::Action::Nodata);
    // Exact before wildcard within a zone.
    d = eval(*snap, "OK.Example.COM");
    CHECK(d.matched);
    CHECK_FALSE(d.wildcard);
    CHECK(d.action() == rpz::Action::Passthru);
    // A wildcard does not match its parent.
    CHECK_FALSE(eval(*snap, "example.com").matched);
    // Exact, then the longest wildcard, two labels below it.
    d = eval(*snap, "bad.test");
    CHECK((d.matched && d.zone == 1 && !d.wildcard && d.action() == rpz::Action::Nxdomain));
    d = eval(*snap, "a.b.bad.test");
    CHECK((d.matched && d.wildcard && d.action() == rpz::Action::Drop));
    d = eval(*snap, "x.y.deep.bad.test");
    CHECK((d.matched && d.wildcard && d.action() == rpz::Action::TcpOnly));
    CHECK(rpz::name_key_to_text(d.key.view()) == "*.deep.bad.test");
    // Misses.
    CHECK_FALSE(eval(*snap, "a.b.c.good.test").matched);
    CHECK_FALSE(eval(*snap, "test").matched);

    // An explicit active list reorders and reports missing zones.
    auto second_only = s.snapshot({"second.rpz", "absent.rpz", "Second.RPZ."});
    REQUIRE(second_only->zone_count() == 1);
    CHECK(second_only->missing_zones() == std::vector<std::string>{"absent.rpz."});
    d = eval(*second_only, "www.example.com");
    CHECK((d.matched && d.zone == 0 && !d.wildcard && d.action() == rpz::Action::Drop));
    auto reversed = s.snapshot({"second.rpz", "first.rpz"});
    REQUIRE(reversed->zone_count() == 2);
    CHECK(reversed->zone_info(1).name == "first.rpz.");
    CHECK(eval(*reversed, "www.example.com").action() == rpz::Action::Drop);
    CHECK_THROWS_AS(s.snapshot({"bad..name"}), StoreError);
}

TEST_CASE("zones keep a dense precedence order", "[store]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    for (const char* n : {"a.rpz", "b.rpz", "c.rpz"}) s.replace_zone(make_zone(n, {}));
    CHECK(zone_names(s.list_zones()) ==
          std::vector<std::string>{"a.rpz.@1", "b.rpz.@2", "c.rpz.@3"});
    CHECK(s.replace_zone(make_zone("d.rpz", {}), 1).order == 1);
    CHECK(zone_names(s.list_zones()) ==
          std::vector<std::string>{"d.rpz.@1", "a.rpz.@2", "b.rpz.@3", "c.rpz.@4"});
    // Replacing without an order keeps the position.
    CHECK(s.replace_zone(make_zone("b.rpz", {}, 2)).order == 3);
    // Moving to a position; positions past the end clamp to last.
    s.replace_zone(make_zone("c.rpz", {}), 1);
    s.replace_zone(make_zone("d.rpz", {}), 99);
    CHECK(zone_names(s.list_zones()) ==
          std::vector<std::string>{"c.rpz.@1", "a.rpz.@2", "b.rpz.@3", "d.rpz.@4"});
    CHECK(s.remove_zone("A.RPZ"));
    CHECK_FALSE(s.remove_zone("a.rpz"));
    CHECK_FALSE(s.remove_zone("bad..name"));
    CHECK(zone_names(s.list_zones()) ==
          std::vector<std::string>{"c.rpz.@1", "b.rpz.@2", "d.rpz.@3"});
    auto snap = s.snapshot();
    REQUIRE(snap->zone_count() == 3);
    CHECK(snap->zone_info(0).name == "c.rpz.");
    CHECK(snap->zone_info(2).name == "d.rpz.");
    CHECK(snap->zone_info(7).name.empty());  // out of range: an empty record
}

TEST_CASE("replace is atomic for readers: old view until refresh, then only the new", "[store]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    s.replace_zone(make_zone("other.rpz", {qname_rule("other.example", rpz::Action::Drop)}));
    const auto v1 =
        s.replace_zone(make_zone("rpz.test", {qname_rule("old1.example", rpz::Action::Nxdomain),
                                              qname_rule("old2.example", rpz::Action::Nxdomain),
                                              qname_rule("both.example", rpz::Action::Nxdomain)}));
    const std::uint64_t gen1 = s.generation();
    auto snap = s.snapshot({"rpz.test"});
    CHECK_FALSE(snap->refresh());  // nothing changed: fast path
    CHECK(find_owner(*snap, 0, "old1.example").has_value());

    const auto v2 = s.replace_zone(make_zone("rpz.test",
                                             {qname_rule("new1.example", rpz::Action::Drop),
                                              qname_rule("both.example", rpz::Action::Drop)},
                                             2));
    CHECK(v2.id != v1.id);
    CHECK(v2.order == v1.order);
    CHECK(s.generation() == gen1 + 1);

    // The open snapshot still sees exactly the old zone.
    CHECK(snap->generation() == gen1);
    CHECK(snap->zone_info(0).serial == 1);
    CHECK(find_owner(*snap, 0, "old1.example").has_value());
    CHECK(find_owner(*snap, 0, "old2.example").has_value());
    CHECK_FALSE(find_owner(*snap, 0, "new1.example").has_value());
    CHECK(find_owner(*snap, 0, "both.example")->action() == rpz::Action::Nxdomain);

    // After refresh: only the new one.
    CHECK(snap->refresh());
    CHECK_FALSE(snap->refresh());
    CHECK(snap->generation() == gen1 + 1);
    CHECK(snap->zone_info(0).serial == 2);
    CHECK(snap->zone_info(0).rule_count == 2);
    CHECK_FALSE(find_owner(*snap, 0, "old1.example").has_value());
    CHECK_FALSE(find_owner(*snap, 0, "old2.example").has_value());
    CHECK(find_owner(*snap, 0, "new1.example").has_value());
    CHECK(find_owner(*snap, 0, "both.example")->action() == rpz::Action::Drop);

    // The old id's rules are gone from disk, the other zone is untouched.
    CHECK(s.stats().rules == 1 + 2);
    auto all = s.snapshot();
    REQUIRE(all->zone_count() == 2);
    CHECK(find_owner(*all, 0, "other.example").has_value());
}

TEST_CASE("remove deletes the zone and its rules", "[store]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    s.replace_zone(big_zone("a.rpz", 3000, "a"));
    s.replace_zone(big_zone("b.rpz", 2000, "b"));
    s.replace_zone(big_zone("c.rpz", 1000, "c"));
    CHECK(s.stats().rules == 6000);
    auto snap = s.snapshot();
    REQUIRE(snap->zone_count() == 3);
    const std::uint64_t gen = s.generation();

    CHECK(s.remove_zone("b.rpz."));
    CHECK(s.generation() == gen + 1);
    CHECK(s.stats().rules == 4000);
    CHECK(s.stats().zones == 2);
    CHECK_FALSE(s.remove_zone("b.rpz."));
    CHECK(s.generation() == gen + 1);  // a no-op is not a change

    // The old view still has it; a refreshed one does not.
    CHECK(find_owner(*snap, 1, "b1999.example").has_value());
    CHECK(snap->refresh());
    REQUIRE(snap->zone_count() == 2);
    CHECK(snap->zone_info(1).name == "c.rpz.");
    CHECK(find_owner(*snap, 0, "a2999.example").has_value());
    CHECK(find_owner(*snap, 1, "c0.example").has_value());
    CHECK_FALSE(eval(*snap, "b5.example").matched);
    std::size_t n = 0;
    snap->for_each_rule(
        1, [&](rpz::Trigger, std::span<const std::uint8_t>, const rpz::RuleView&) { ++n; });
    CHECK(n == 1000);
    CHECK_THROWS_AS(snap->for_each_rule(2, [](auto&&...) {}), std::out_of_range);
}

TEST_CASE("unsorted and duplicate rules are stored sorted, the first one winning", "[store]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    std::vector<rpz::Rule> rules = {qname_rule("z.example", rpz::Action::Drop),
                                    qname_rule("a.example", rpz::Action::Nxdomain),
                                    qname_rule("z.example", rpz::Action::Nodata),
                                    qname_rule("m.example", rpz::Action::Passthru)};
    const auto info = s.replace_zone(make_zone("rpz.test", rules, 1, false));
    CHECK(info.rule_count == 3);
    auto snap = s.snapshot();
    CHECK(find_owner(*snap, 0, "z.example")->action() == rpz::Action::Drop);
    CHECK(find_owner(*snap, 0, "m.example")->action() == rpz::Action::Passthru);

    rpz::Zone bad = make_zone("rpz.test", {qname_rule("q.example", rpz::Action::Drop)});
    bad.rules[0].key = {5, 'a'};  // label longer than the key
    CHECK_THROWS_WITH(s.replace_zone(bad), Catch::Contains("malformed key"));
    CHECK(s.zone("rpz.test")->rule_count == 3);
}

TEST_CASE("release and refresh", "[store]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    s.replace_zone(make_zone("rpz.test", {qname_rule("bad.example", rpz::Action::Drop)}));
    auto snap = s.snapshot();
    CHECK(eval(*snap, "bad.example").matched);
    snap->release();
    CHECK(snap->zone_count() == 0);
    CHECK_FALSE(find_owner(*snap, 0, "bad.example").has_value());
    CHECK_FALSE(eval(*snap, "bad.example").matched);
    snap->release();               // twice is harmless
    CHECK_FALSE(snap->refresh());  // same data as before the release
    CHECK(snap->zone_count() == 1);
    CHECK(eval(*snap, "bad.example").matched);

    snap->release();
    s.replace_zone(make_zone("rpz.test", {qname_rule("worse.example", rpz::Action::Drop)}));
    CHECK(snap->refresh());
    CHECK(snap->last_error() == 0);
    CHECK_FALSE(eval(*snap, "bad.example").matched);
    CHECK(eval(*snap, "worse.example").matched);
}

TEST_CASE("the map grows on demand from a tiny size", "[store]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options(std::size_t{1} << 20));
    CHECK(s.stats().map_size == std::size_t{1} << 20);
    const auto info = s.replace_zone(big_zone("big.rpz", 50000));
    CHECK(info.rule_count == 50000);
    const auto st = s.stats();
    CHECK(st.rules == 50000);
    CHECK(st.map_size > std::size_t{1} << 20);
    auto snap = s.snapshot();
    CHECK(find_owner(*snap, 0, "host0.example").has_value());
    CHECK(find_owner(*snap, 0, "host49999.example").has_value());
    CHECK_FALSE(find_owner(*snap, 0, "host50000.example").has_value());
    snap.reset();

    // A re-opened writer (with the tiny map again) can replace it too.
    Store again = Store::open(tmp.sub("db"), writer_options(std::size_t{1} << 20));
    CHECK(again.replace_zone(big_zone("big.rpz", 50000, "other")).rule_count == 50000);
    CHECK(again.stats().rules == 50000);
}

TEST_CASE("a failed load leaves the store unchanged", "[store]") {
    TempDir tmp;
    OpenOptions o = writer_options(std::size_t{1} << 20);
    o.max_map_size = std::size_t{2} << 20;
    Store s = Store::open(tmp.sub("db"), o);
    const auto before =
        s.replace_zone(make_zone("rpz.test", {qname_rule("keep.example", rpz::Action::Drop)}));
    const std::uint64_t gen = s.generation();
    try {
        s.replace_zone(big_zone("rpz.test", 50000));
        FAIL("a zone larger than max_map_size was stored");
    } catch (const StoreError& e) {
        CHECK(e.code() == MDB_MAP_FULL);
        CHECK_THAT(e.what(), Catch::Contains(tmp.sub("db")) && Catch::Contains("rpz.test") &&
                                 Catch::Contains("MDB_MAP_FULL") &&
                                 Catch::Contains("max_map_size"));
    }
    CHECK(s.generation() == gen);
    const auto after = s.zone("rpz.test");
    REQUIRE(after.has_value());
    CHECK(after->id == before.id);
    CHECK(after->rule_count == 1);
    CHECK(s.stats().rules == 1);
    auto snap = s.snapshot();
    CHECK(eval(*snap, "keep.example").matched);
    CHECK_FALSE(eval(*snap, "host1.example").matched);
}

TEST_CASE("the map is not resized under a live snapshot of the same process", "[store]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options(std::size_t{1} << 20));
    s.replace_zone(make_zone("rpz.test", {qname_rule("keep.example", rpz::Action::Drop)}));
    auto snap = s.snapshot();
    CHECK_THROWS_WITH(s.replace_zone(big_zone("rpz.test", 50000)),
                      Catch::Contains("snapshot") && Catch::Contains("map_size"));
    CHECK(eval(*snap, "keep.example").matched);
    snap->release();
    CHECK(s.replace_zone(big_zone("rpz.test", 50000)).rule_count == 50000);
    CHECK(snap->refresh());
    CHECK(eval(*snap, "host7.example").matched);
    CHECK_FALSE(eval(*snap, "keep.example").matched);
}

TEST_CASE("a reader thread never sees a mix of two versions", "[store]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options(std::size_t{256} << 20));
    auto version = [](int v) {
        std::vector<rpz::Rule> rules;
        for (int i = 0; i < 500; ++i)
            rules.push_back(qname_rule("n" + std::to_string(i) + ".v" + std::to_string(v) + ".test",
                                       rpz::Action::Nxdomain));
        return make_zone("rpz.test", std::move(rules), static_cast<std::uint32_t>(v));
    };
    s.replace_zone(version(0));
    auto snap = s.snapshot();
    std::atomic<bool> stop{false};
    std::atomic<int> views{0};
    std::atomic<int> mixed{0};
    std::thread reader([&] {
        while (!stop.load()) {
            if (snap->refresh()) views.fetch_add(1);
            // Within one view, every name of exactly one version matches.
            const std::uint32_t serial = snap->zone_info(0).serial;
            const std::uint32_t other = 1 - serial;
            for (int i = 0; i < 500; i += 37) {
                const std::string suffix = std::to_string(i) + ".v";
                if (!matches(*snap, "n" + suffix + std::to_string(serial) + ".test") ||
                    matches(*snap, "n" + suffix + std::to_string(other) + ".test"))
                    mixed.fetch_add(1);
            }
        }
    });
    for (int round = 1; round <= 40; ++round) s.replace_zone(version(round % 2));
    // Let the reader observe the final state before stopping it.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (views.load() == 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    stop.store(true);
    reader.join();
    CHECK(views.load() > 0);
    CHECK(mixed.load() == 0);
    CHECK(s.stats().rules == 500);
}

namespace {

/// Runs `body` in a forked child process that opens its own writer Store on
/// `path` (LMDB forbids using the parent's environment after fork; the child
/// never touches it and leaves with _exit so no destructor runs on it).
/// Returns the child's exit status (0 = body returned normally).
template <typename F>
int in_child_process(const std::string& path, std::size_t map_size, F&& body) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int status = 0;
        try {
            OpenOptions o = writer_options(map_size);
            o.create = false;
            Store child = Store::open(path, o);
            body(child);
        } catch (...) {
            status = 1;
        }
        _exit(status);
    }
    int wstatus = 0;
    REQUIRE(waitpid(pid, &wstatus, 0) == pid);
    return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128;
}

}  // namespace

TEST_CASE("a read-only snapshot sees another process's commit after refresh", "[store]") {
    TempDir tmp;
    const std::string path = tmp.sub("db");
    {
        Store w = Store::open(path, writer_options());
        w.replace_zone(make_zone("rpz.test", {qname_rule("old.example", rpz::Action::Drop)}));
    }
    Store reader = Store::open(path, OpenOptions{});
    auto snap = reader.snapshot();
    CHECK(eval(*snap, "old.example").matched);
    CHECK_FALSE(snap->refresh());

    REQUIRE(in_child_process(path, std::size_t{64} << 20, [](Store& s) {
                s.replace_zone(
                    make_zone("rpz.test", {qname_rule("new.example", rpz::Action::Drop)}, 2));
            }) == 0);
    // Still the old view until refresh().
    CHECK(eval(*snap, "old.example").matched);
    CHECK(snap->refresh());
    CHECK(snap->zone_info(0).serial == 2);
    CHECK_FALSE(eval(*snap, "old.example").matched);
    CHECK(eval(*snap, "new.example").matched);
    CHECK(reader.generation() == 2);
}

TEST_CASE("a reader whose map is too small keeps its last view", "[store]") {
    TempDir tmp;
    const std::string path = tmp.sub("db");
    {
        Store w = Store::open(path, writer_options(std::size_t{1} << 20));
        w.replace_zone(make_zone("rpz.test", {qname_rule("old.example", rpz::Action::Drop)}));
    }
    OpenOptions ro;
    ro.map_size = ro.max_map_size = std::size_t{1} << 20;  // reserve only 1 MiB
    Store reader = Store::open(path, ro);
    auto snap = reader.snapshot();
    // Another process grows the file well beyond 1 MiB.
    REQUIRE(in_child_process(path, std::size_t{1} << 20,
                             [](Store& s) { s.replace_zone(big_zone("rpz.test", 50000)); }) == 0);
    CHECK_FALSE(snap->refresh());
    CHECK(snap->last_error() == MDB_MAP_RESIZED);
    CHECK(snap->zone_count() == 1);
    CHECK(eval(*snap, "old.example").matched);  // the last view, intact
    CHECK_FALSE(snap->refresh());               // and it stays so
    CHECK(eval(*snap, "old.example").matched);
    // The Store's own reads would have to remap; with a live snapshot they
    // refuse (remapping would pull the map from under it), without one they
    // adopt the new size.
    CHECK_THROWS_WITH(reader.list_zones(), Catch::Contains("snapshot"));
    snap.reset();
    CHECK(reader.list_zones().at(0).rule_count == 50000);
    auto fresh = reader.snapshot();
    CHECK(eval(*fresh, "host42.example").matched);
}

TEST_CASE("a zone parsed from RPZ text loads and evaluates as in memory", "[store]") {
    const std::string text =
        "$TTL 300\n"
        "@ SOA ns.rpz.test. admin.rpz.test. 7 3600 600 86400 60\n"
        "@ NS ns.rpz.test.\n"
        "bad.example CNAME .\n"
        "*.bad.example CNAME *.\n"
        "walled.example A 192.0.2.1\n"
        "ok.bad.example CNAME rpz-passthru.\n";
    const rpz::Zone zone =
        rpz::parse_zone_text(text, "test.rpz", wire("rpz.test"), rpz::InputFormat::Rpz);
    REQUIRE(zone.rules.size() == 4);
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    const auto info = s.replace_zone(zone);
    CHECK(info.serial == 7);
    CHECK(info.rule_count == 4);
    CHECK(info.soa_rdata == zone.soa_rdata);
    auto snap = s.snapshot();
    const rpz::MemoryRuleSource mem({zone});
    for (const char* q : {"bad.example", "x.bad.example", "a.b.bad.example", "ok.bad.example",
                          "walled.example", "example", "other.test"}) {
        INFO(q);
        const auto a = eval(*snap, q);
        const auto b = eval(mem, q);
        CHECK(a.matched == b.matched);
        CHECK(a.wildcard == b.wildcard);
        CHECK(a.action() == b.action());
    }
    CHECK(eval(*snap, "x.bad.example").action() == rpz::Action::Nodata);
    CHECK(eval(*snap, "ok.bad.example").action() == rpz::Action::Passthru);
}

// ---------------------------------------------------------------------------
// Issue 3: IP keys, per-trigger facts, zone settings, format 2.

namespace {

rpz::Zone rpz_zone(std::string_view apex, const std::string& body) {
    auto z = rpz::parse_zone_text("$TTL 300\n" + body, std::string(apex), wire(apex),
                                  rpz::InputFormat::Rpz);
    REQUIRE(z.diagnostics.empty());
    return z;
}

/// Rewrites meta/format and every zone record of the store at `path` as
/// format 1 wrote them (record version 1, no TLVs) — an old store.
void downgrade_to_format_1(const std::string& path) {
    MDB_env* env = nullptr;
    REQUIRE(mdb_env_create(&env) == 0);
    REQUIRE(mdb_env_set_maxdbs(env, 16) == 0);
    REQUIRE(mdb_env_open(env, path.c_str(), 0, 0644) == 0);
    MDB_txn* txn = nullptr;
    REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
    MDB_dbi meta = 0, zones = 0;
    REQUIRE(mdb_dbi_open(txn, "meta", 0, &meta) == 0);
    REQUIRE(mdb_dbi_open(txn, "zones", 0, &zones) == 0);
    char kb[] = "format";
    unsigned char vb[] = {0, 0, 0, 1};
    MDB_val k{6, kb};
    MDB_val v{4, vb};
    REQUIRE(mdb_put(txn, meta, &k, &v, 0) == 0);
    MDB_cursor* cur = nullptr;
    REQUIRE(mdb_cursor_open(txn, zones, &cur) == 0);
    std::vector<std::pair<std::vector<std::uint8_t>, std::vector<std::uint8_t>>> records;
    MDB_val ck{}, cd{};
    while (mdb_cursor_get(cur, &ck, &cd, records.empty() ? MDB_FIRST : MDB_NEXT) == 0) {
        const auto* p = static_cast<const std::uint8_t*>(cd.mv_data);
        std::vector<std::uint8_t> rec(p, p + cd.mv_size);
        const std::size_t rdlen = static_cast<std::size_t>((rec[41] << 8) | rec[42]);
        rec.resize(43 + rdlen);  // drop the TLVs
        rec[0] = 1;
        const auto* kp = static_cast<const std::uint8_t*>(ck.mv_data);
        records.emplace_back(std::vector<std::uint8_t>(kp, kp + ck.mv_size), rec);
    }
    mdb_cursor_close(cur);
    for (auto& [key, rec] : records) {
        MDB_val kk{key.size(), key.data()};
        MDB_val vv{rec.size(), rec.data()};
        REQUIRE(mdb_put(txn, zones, &kk, &vv, 0) == 0);
    }
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
}

}  // namespace

TEST_CASE("IP rules: keys, per-trigger counts and prefix lengths", "[store][ip]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    auto info = s.replace_zone(rpz_zone("ip.rpz", "24.0.2.0.192.rpz-ip CNAME .\n"
                                                  "32.1.2.0.192.rpz-ip CNAME *.\n"
                                                  "32.zz.db8.2001.rpz-ip CNAME .\n"
                                                  "8.0.0.0.10.rpz-client-ip CNAME rpz-drop.\n"
                                                  "32.53.0.0.10.rpz-nsip CNAME .\n"
                                                  "ns.evil.rpz-nsdname CNAME .\n"
                                                  "*.evil.example.rpz-nsdname CNAME .\n"
                                                  "x.example CNAME .\n"));
    using T = rpz::Trigger;
    auto at = [](T t) { return static_cast<std::size_t>(t); };
    CHECK(info.rule_count == 8);
    CHECK(info.trigger_rules[at(T::ResponseIp)] == 3);
    CHECK(info.trigger_rules[at(T::ClientIp)] == 1);
    CHECK(info.trigger_rules[at(T::NsIp)] == 1);
    CHECK(info.trigger_rules[at(T::NsDname)] == 2);
    CHECK(info.trigger_rules[at(T::Qname)] == 1);
    CHECK(info.max_wildcard_depth[at(T::NsDname)] == 2);
    const auto& rl = info.prefix_lengths[at(T::ResponseIp)];
    CHECK(rl.count() == 3);
    CHECK(rl.test(120));
    CHECK(rl.test(128));
    CHECK(rl.test(32));
    CHECK(info.prefix_lengths[at(T::ClientIp)].test(104));

    // The zone record keeps them; a Snapshot serves them.
    auto again = s.zone("ip.rpz");
    REQUIRE(again);
    CHECK(again->trigger_rules == info.trigger_rules);
    CHECK(again->prefix_lengths == info.prefix_lengths);
    auto snap = s.snapshot();
    CHECK(snap->trigger_rule_count(0, T::ResponseIp) == 3);
    CHECK(snap->prefix_lengths(0, T::ResponseIp) == rl);
    auto p = rpz::prefix_from_text("192.0.2.0/24");
    REQUIRE(p);
    auto r = snap->find(0, T::ResponseIp, rpz::ip_key(*p));
    REQUIRE(r);
    CHECK(r->action() == rpz::Action::Nxdomain);
    std::size_t ip_rules = 0;
    snap->for_each_rule(0, [&](rpz::Trigger t, std::span<const std::uint8_t> key, const rpz::RuleView&) {
        if (rpz::is_ip_trigger(t)) {
            ++ip_rules;
            CHECK(rpz::prefix_from_ip_key(key).has_value());
        }
    });
    CHECK(ip_rules == 5);
    snap.reset();

    // A malformed IP key is refused and nothing changes.
    rpz::Zone bad = make_zone("ip.rpz", {});
    rpz::Rule br;
    br.trigger = T::ResponseIp;
    br.key = std::vector<std::uint8_t>(16, 0xff);  // 16 bytes: not an IP key
    bad.rules.push_back(br);
    CHECK_THROWS_WITH(s.replace_zone(bad), Catch::Contains("malformed key"));
    CHECK(s.zone("ip.rpz")->rule_count == 8);
}

TEST_CASE("zone settings: set_zone_policy, reload keeps them, validation", "[store][policy]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    s.replace_zone(rpz_zone("p.rpz", "x.example CNAME .\n"));
    CHECK(s.zone("p.rpz")->policy == rpz::ZonePolicy{});
    const auto gen = s.generation();

    rpz::ZonePolicy p;
    p.override = rpz::PolicyOverride::Cname;
    p.override_cname = wire("walled.example");
    p.override_cname_wildcard = true;
    p.max_policy_ttl = 60;
    p.recursive_only = false;
    p.break_dnssec = true;
    p.ede = 17;
    p.ede_text = "filtered by p.rpz";
    p.log = false;
    p.add_soa = false;
    p.override_local_data = false;
    p.clients = {*rpz::prefix_from_text("192.0.0.0/8"), *rpz::prefix_from_text("2001:db8::/32")};
    auto info = s.set_zone_policy("P.RPZ.", p);
    CHECK(info.policy == p);
    CHECK(s.generation() == gen + 1);
    CHECK(s.zone("p.rpz")->policy == p);
    CHECK(s.zone("p.rpz")->rule_count == 1);  // rules untouched

    // A Snapshot sees the settings after refresh().
    auto snap = s.snapshot();
    CHECK(snap->policy(0) == p);
    snap.reset();

    // A reload without settings keeps them; with settings replaces them.
    s.replace_zone(rpz_zone("p.rpz", "y.example CNAME .\n"));
    CHECK(s.zone("p.rpz")->policy == p);
    rpz::ZonePolicy q;
    q.ede.reset();
    s.replace_zone(rpz_zone("p.rpz", "y.example CNAME .\n"), {}, q);
    CHECK(s.zone("p.rpz")->policy == q);
    CHECK_FALSE(s.zone("p.rpz")->policy.ede.has_value());

    // Errors change nothing.
    const auto gen2 = s.generation();
    CHECK_THROWS_WITH(s.set_zone_policy("missing.rpz", p), Catch::Contains("no such zone"));
    rpz::ZonePolicy bad;
    bad.override = rpz::PolicyOverride::Cname;  // no target
    CHECK_THROWS_WITH(s.set_zone_policy("p.rpz", bad), Catch::Contains("needs a target"));
    bad.override_cname = wire("x.example");
    bad.ede = 3;
    CHECK_THROWS_WITH(s.set_zone_policy("p.rpz", bad), Catch::Contains("EDE code 3 not allowed"));
    bad.ede = 15;
    bad.clients = {rpz::IpPrefix{*rpz::ip_from_text("192.0.2.1"), 120}};  // host bits set
    CHECK_THROWS_WITH(s.set_zone_policy("p.rpz", bad), Catch::Contains("malformed client prefix"));
    CHECK(s.generation() == gen2);
    CHECK(s.zone("p.rpz")->policy == q);
}

TEST_CASE("zone policy encoding: clients follow the optional trailing byte",
          "[store][policy][format]") {
    rpz::ZonePolicy def;
    const auto old_layout = store::codec::encode_policy(def);
    auto back = store::codec::decode_policy(old_layout);
    REQUIRE(back);
    CHECK(back->clients.empty());  // records without the list: every client

    rpz::ZonePolicy c;
    c.clients = {*rpz::prefix_from_text("192.0.0.0/8"), *rpz::prefix_from_text("2001:db8::/32"),
                 *rpz::prefix_from_text("10.1.2.3")};
    auto enc = store::codec::encode_policy(c);
    CHECK(enc.size() == old_layout.size() + 1 + 2 + 3 * rpz::kIpKeySize);
    CHECK(enc[old_layout.size()] == 2);  // flags2: clients only
    back = store::codec::decode_policy(enc);
    REQUIRE(back);
    CHECK(*back == c);
    CHECK(back->override_local_data);

    // Together with override_local_data no.
    c.override_local_data = false;
    enc = store::codec::encode_policy(c);
    CHECK(enc[old_layout.size()] == 3);
    back = store::codec::decode_policy(enc);
    REQUIRE(back);
    CHECK(*back == c);

    // Truncated, extra bytes, a zero count or a malformed key: malformed.
    auto bad = enc;
    bad.pop_back();
    CHECK_FALSE(store::codec::decode_policy(bad));
    bad = enc;
    bad.push_back(0);
    CHECK_FALSE(store::codec::decode_policy(bad));
    bad = enc;
    bad[old_layout.size() + 1] = 0;
    bad[old_layout.size() + 2] = 0;
    CHECK_FALSE(store::codec::decode_policy(bad));
    bad = enc;
    bad[old_layout.size() + 3 + 16] = 200;  // prefix length > 128
    CHECK_FALSE(store::codec::decode_policy(bad));
}

TEST_CASE("zone policy encoding: override_local_data is an optional trailing byte",
          "[store][policy][format]") {
    // Default settings encode exactly as before the setting existed: the
    // record written by older binaries (no trailing byte) reads as yes.
    rpz::ZonePolicy def;
    const auto old_layout = store::codec::encode_policy(def);
    REQUIRE(old_layout.size() == 1 + 1 + 4 + 2 + 1 + 2);  // override flags ttl ede clen tlen
    auto back = store::codec::decode_policy(old_layout);
    REQUIRE(back);
    CHECK(back->override_local_data);
    CHECK(*back == def);

    rpz::ZonePolicy keep;
    keep.override = rpz::PolicyOverride::Passthru;
    keep.ede_text = "kept";
    keep.override_local_data = false;
    auto enc = store::codec::encode_policy(keep);
    CHECK(enc.size() == old_layout.size() + 4 + 1);
    CHECK(enc.back() == 1);
    back = store::codec::decode_policy(enc);
    REQUIRE(back);
    CHECK_FALSE(back->override_local_data);
    CHECK(*back == keep);

    // Unknown bits of the trailing byte, or bytes after it: malformed.
    auto bad = enc;
    bad.back() = 0x04;
    CHECK_FALSE(store::codec::decode_policy(bad));
    bad = enc;
    bad.push_back(0);
    CHECK_FALSE(store::codec::decode_policy(bad));
    // A truncated EDE text is still caught.
    bad = store::codec::encode_policy(keep);
    bad.resize(bad.size() - 3);
    CHECK_FALSE(store::codec::decode_policy(bad));
}

TEST_CASE("a format-1 store is read, and upgraded by a writer", "[store][format]") {
    TempDir tmp;
    const std::string path = tmp.sub("db");
    {
        Store s = Store::open(path, writer_options());
        s.replace_zone(make_zone("old.rpz", {qname_rule("bad.example", rpz::Action::Nxdomain),
                                             qname_rule("*.worse.example", rpz::Action::Nodata)}));
    }
    downgrade_to_format_1(path);
    {
        // A reader takes it as it is: all rules QNAME, default settings.
        Store ro = Store::open(path, OpenOptions{});
        auto z = ro.zone("old.rpz");
        REQUIRE(z);
        CHECK(z->trigger_rules[static_cast<std::size_t>(rpz::Trigger::Qname)] == 2);
        CHECK(z->policy == rpz::ZonePolicy{});
        auto snap = ro.snapshot();
        CHECK(matches(*snap, "bad.example"));
        CHECK(matches(*snap, "a.worse.example"));
    }
    {
        // A writer upgrades it in place, keeping the zones.
        Store w = Store::open(path, writer_options());
        CHECK(w.zone("old.rpz")->rule_count == 2);
        rpz::ZonePolicy p;
        p.override = rpz::PolicyOverride::Drop;
        w.set_zone_policy("old.rpz", p);
    }
    MDB_env* env = nullptr;
    REQUIRE(mdb_env_create(&env) == 0);
    REQUIRE(mdb_env_set_maxdbs(env, 16) == 0);
    REQUIRE(mdb_env_open(env, path.c_str(), MDB_RDONLY, 0644) == 0);
    MDB_txn* txn = nullptr;
    REQUIRE(mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) == 0);
    MDB_dbi meta = 0;
    REQUIRE(mdb_dbi_open(txn, "meta", 0, &meta) == 0);
    char kb[] = "format";
    MDB_val k{6, kb};
    MDB_val v{};
    REQUIRE(mdb_get(txn, meta, &k, &v) == 0);
    REQUIRE(v.mv_size == 4);
    CHECK(static_cast<const unsigned char*>(v.mv_data)[3] == 2);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    Store ro = Store::open(path, OpenOptions{});
    CHECK(ro.zone("old.rpz")->policy.override == rpz::PolicyOverride::Drop);
}
