// Unit tests for the store's incremental path: Store::apply_delta, the
// per-zone journal (journal_since, set_journal_limit, trimming, gaps) and
// status records — real LMDB environments in temporary directories.
#include <catch2/catch.hpp>

#include "rpz/rpz.hpp"
#include "store/codec.hpp"
#include "store/store.hpp"

#include <lmdb.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace dnsfw;
using store::JournalEntry;
using store::OpenOptions;
using store::Store;
using store::StoreError;
using store::ZoneDelta;
using store::ZoneStatus;

namespace {

namespace fs = std::filesystem;

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "dnsfw-journal-test-XXXXXX").string();
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

/// Name key of `name` without Catch assertions (for big loops).
std::vector<std::uint8_t> key_of(std::string_view text) {
    auto n = rpz::name_from_text(text);
    rpz::NameKey k;
    if (!n || !rpz::make_name_key(*n, k)) throw std::runtime_error("bad name");
    return {k.view().begin(), k.view().end()};
}

rpz::Rule qrule(std::string_view owner, rpz::Action action, std::uint32_t ttl = 300) {
    rpz::Rule r;
    r.trigger = rpz::Trigger::Qname;
    const bool wildcard = owner.starts_with("*.");
    r.key = key_of(wildcard ? owner.substr(2) : owner);
    if (wildcard) r.key.insert(r.key.end(), {1, '*'});
    r.action = action;
    r.ttl = ttl;
    return r;
}

rpz::Rule iprule(rpz::Trigger t, std::string_view prefix, rpz::Action action) {
    rpz::Rule r;
    r.trigger = t;
    auto p = rpz::prefix_from_text(prefix);
    REQUIRE(p);
    r.key = rpz::ip_key(*p);
    r.action = action;
    r.ttl = 300;
    return r;
}

/// SOA rdata with `serial` (mname a., rname b.).
std::vector<std::uint8_t> soa(std::uint32_t serial) {
    std::vector<std::uint8_t> v = {1, 'a', 0, 1, 'b', 0};
    for (std::uint32_t x : {serial, 3600u, 600u, 86400u, 60u})
        for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<std::uint8_t>(x >> s));
    return v;
}

bool rule_less(const rpz::Rule& a, const rpz::Rule& b) {
    return a.trigger != b.trigger ? a.trigger < b.trigger : a.key < b.key;
}

rpz::Zone make_zone(std::string_view name, std::vector<rpz::Rule> rules, std::uint32_t serial) {
    rpz::Zone z;
    z.name = wire(name);
    z.serial = serial;
    z.soa_ttl = 3600;
    z.soa_rdata = soa(serial);
    std::sort(rules.begin(), rules.end(), rule_less);
    z.rules = std::move(rules);
    return z;
}

/// The delta from `from` to `to` as the CLI / daemon build it.
ZoneDelta delta_of(const rpz::Zone& from, const rpz::Zone& to) {
    ZoneDelta d;
    d.zone = rpz::name_to_text(to.name);
    d.from_serial = from.serial;
    d.to_serial = to.serial;
    d.soa_ttl = to.soa_ttl;
    d.soa_rdata = to.soa_rdata;
    d.changes = rpz::diff_rules(to.name, from.rules, to.rules);
    return d;
}

/// Every stored rule of active zone `i` (trigger and key set).
std::vector<rpz::Rule> stored_rules(const store::Snapshot& snap, std::size_t i) {
    std::vector<rpz::Rule> out;
    snap.for_each_rule(i, [&](rpz::Trigger t, std::span<const std::uint8_t> k,
                              const rpz::RuleView& v) {
        rpz::Rule r = v.to_rule();
        r.trigger = t;
        r.key.assign(k.begin(), k.end());
        out.push_back(std::move(r));
    });
    return out;
}

bool has_rule(const store::Snapshot& snap, std::size_t zone, const rpz::Rule& r) {
    return snap.find(zone, r.trigger, r.key).has_value();
}

/// Everything a ZoneInfo holds (it has no operator==).
bool same_info(const store::ZoneInfo& a, const store::ZoneInfo& b) {
    return a.name == b.name && a.id == b.id && a.order == b.order && a.serial == b.serial &&
           a.rule_count == b.rule_count && a.soa_ttl == b.soa_ttl && a.soa_rdata == b.soa_rdata &&
           a.loaded_at == b.loaded_at && a.max_wildcard_depth == b.max_wildcard_depth &&
           a.trigger_rules == b.trigger_rules && a.prefix_lengths == b.prefix_lengths &&
           a.policy == b.policy && a.journal_max_bytes == b.journal_max_bytes;
}

std::size_t journal_entries(const Store& s, const std::string& zone, std::uint32_t serial) {
    auto j = s.journal_since(zone, serial);
    return j ? j->size() : std::size_t{999999};
}

}  // namespace

TEST_CASE("apply_delta: rules, counts, SOA, journal and generation in one commit",
          "[store][journal]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    const rpz::Zone v1 = make_zone("threat.rpz",
                                   {qrule("a.test", rpz::Action::Nxdomain),
                                    qrule("b.test", rpz::Action::Nxdomain),
                                    qrule("*.c.test", rpz::Action::Nodata),
                                    iprule(rpz::Trigger::ResponseIp, "192.0.2.0/24", rpz::Action::Drop)},
                                   1);
    const auto loaded = s.replace_zone(v1);
    CHECK(loaded.journal_max_bytes == store::kDefaultJournalBytes);
    const rpz::Zone v2 = make_zone(
        "threat.rpz",
        {qrule("a.test", rpz::Action::Drop),                 // changed
         qrule("*.c.test", rpz::Action::Nodata),             // kept
         qrule("*.x.y.z.deep.test", rpz::Action::Nxdomain),  // new, deeper wildcard
         iprule(rpz::Trigger::ResponseIp, "192.0.2.0/24", rpz::Action::Drop),
         iprule(rpz::Trigger::ResponseIp, "2001:db8:1::/48", rpz::Action::Nxdomain),  // new length
         iprule(rpz::Trigger::NsIp, "10.0.0.0/8", rpz::Action::Nxdomain)},            // new trigger
        2);
    auto snap = s.snapshot();
    const std::uint64_t gen = s.generation();
    const ZoneDelta d = delta_of(v1, v2);
    const auto info = s.apply_delta(d);

    CHECK(info.serial == 2);
    CHECK(info.soa_rdata == soa(2));
    CHECK(info.id == loaded.id);  // edited in place
    CHECK(info.rule_count == 6);
    CHECK(info.trigger_rules[static_cast<std::size_t>(rpz::Trigger::Qname)] == 3);
    CHECK(info.trigger_rules[static_cast<std::size_t>(rpz::Trigger::ResponseIp)] == 2);
    CHECK(info.trigger_rules[static_cast<std::size_t>(rpz::Trigger::NsIp)] == 1);
    const auto& lengths = info.prefix_lengths[static_cast<std::size_t>(rpz::Trigger::ResponseIp)];
    CHECK(lengths.test(120));
    CHECK(lengths.test(48));
    CHECK(info.prefix_lengths[static_cast<std::size_t>(rpz::Trigger::NsIp)].test(104));
    CHECK(info.max_wildcard_depth[static_cast<std::size_t>(rpz::Trigger::Qname)] == 5);  // x.y.z.deep.test
    CHECK(s.generation() == gen + 1);
    CHECK(same_info(*s.zone("threat.rpz"), info));

    // The open snapshot still sees serial 1 until it refreshes (MVCC) ...
    CHECK(snap->zone_info(0).serial == 1);
    CHECK(has_rule(*snap, 0, qrule("b.test", rpz::Action::Nxdomain)));
    // ... then exactly v2.
    CHECK(snap->refresh());
    CHECK(snap->generation() == gen + 1);
    CHECK(snap->zone_info(0).serial == 2);
    CHECK(stored_rules(*snap, 0) == v2.rules);
    rpz::Query q;
    const auto qn = wire("www.x.y.z.deep.test");
    q.qname = qn;
    CHECK(rpz::evaluate(*snap, q).matched);
    snap.reset();

    // The journal holds the change in RR form, with both SOAs.
    auto j = s.journal_since("THREAT.rpz", 1);
    REQUIRE(j.has_value());
    REQUIRE(j->size() == 1);
    const JournalEntry& e = j->front();
    CHECK(e.from_serial == 1);
    CHECK(e.to_serial == 2);
    CHECK(e.from_soa_rdata == soa(1));
    CHECK(e.to_soa_rdata == soa(2));
    CHECK(e.from_soa_ttl == 3600);
    CHECK(e.removed == d.changes.removed_records);
    CHECK(e.added == d.changes.added_records);
    CHECK(e.time > 0);
    CHECK(!e.removed.empty());
    CHECK(!e.added.empty());
    CHECK(s.journal_since("threat.rpz", 2)->empty());
    CHECK_FALSE(s.journal_since("threat.rpz", 0).has_value());
    CHECK_THROWS_AS(s.journal_since("missing.rpz", 1), StoreError);
}

TEST_CASE("apply_delta: counts stay right for replaced, absent and removed rules",
          "[store][journal]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    s.replace_zone(make_zone("z.rpz",
                             {qrule("a.test", rpz::Action::Nxdomain),
                              iprule(rpz::Trigger::ClientIp, "10.1.0.0/16", rpz::Action::Drop)},
                             5));
    ZoneDelta d;
    d.zone = "z.rpz.";
    d.from_serial = 5;
    d.to_serial = 6;
    d.soa_ttl = 60;
    d.soa_rdata = soa(6);
    d.changes.upserted = {qrule("a.test", rpz::Action::Drop)};         // replaces: count unchanged
    d.changes.removed = {rpz::RuleKey{rpz::Trigger::Qname, key_of("absent.test")}};  // no-op
    auto info = s.apply_delta(d);
    CHECK(info.rule_count == 2);
    CHECK(info.trigger_rules[static_cast<std::size_t>(rpz::Trigger::Qname)] == 1);
    CHECK(info.soa_ttl == 60);

    d.from_serial = 6;
    d.to_serial = 7;
    d.changes = {};
    d.changes.removed = {rpz::RuleKey{rpz::Trigger::ClientIp,
                                      iprule(rpz::Trigger::ClientIp, "10.1.0.0/16",
                                             rpz::Action::Drop).key}};
    info = s.apply_delta(d);
    CHECK(info.rule_count == 1);
    CHECK(info.trigger_rules[static_cast<std::size_t>(rpz::Trigger::ClientIp)] == 0);
    // Prefix lengths only grow until the next replace (extra probes, never a miss).
    CHECK(info.prefix_lengths[static_cast<std::size_t>(rpz::Trigger::ClientIp)].test(112));
    CHECK(s.stats().rules == 1);

    // An SOA-only change (no rules) is a valid delta and a journal entry.
    d.from_serial = 7;
    d.to_serial = 8;
    d.changes = {};
    CHECK(s.apply_delta(d).serial == 8);
    CHECK(journal_entries(s, "z.rpz", 5) == 3);
    CHECK(s.journal_since("z.rpz", 7)->front().removed.empty());

    // A replace_zone recomputes the facts from scratch.
    auto re = s.replace_zone(make_zone("z.rpz", {qrule("a.test", rpz::Action::Drop)}, 9));
    CHECK_FALSE(re.prefix_lengths[static_cast<std::size_t>(rpz::Trigger::ClientIp)].test(112));
}

TEST_CASE("apply_delta refuses, changing nothing: mismatch, missing zone, bad key, same serial",
          "[store][journal]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    const rpz::Zone v1 = make_zone("z.rpz", {qrule("a.test", rpz::Action::Nxdomain)}, 10);
    s.replace_zone(v1);
    const rpz::Zone v2 = make_zone("z.rpz", {qrule("b.test", rpz::Action::Nxdomain)}, 11);
    const auto before = *s.zone("z.rpz");
    const std::uint64_t gen = s.generation();
    auto unchanged = [&] {
        CHECK(same_info(*s.zone("z.rpz"), before));
        CHECK(s.generation() == gen);
        CHECK(s.stats().rules == 1);
        CHECK(s.journal_since("z.rpz", 10)->empty());
        CHECK_FALSE(s.journal_since("z.rpz", 9).has_value());
    };

    ZoneDelta d = delta_of(v1, v2);
    d.from_serial = 9;  // someone else changed the zone first
    try {
        s.apply_delta(d);
        FAIL("a delta from the wrong serial was applied");
    } catch (const StoreError& e) {
        CHECK(e.code() == store::kSerialMismatch);
        CHECK_THAT(e.what(), Catch::Contains("z.rpz") && Catch::Contains("stored serial is 10"));
    }
    unchanged();

    d = delta_of(v1, v2);
    d.zone = "other.rpz";
    CHECK_THROWS_WITH(s.apply_delta(d), Catch::Contains("no such zone"));
    unchanged();

    d = delta_of(v1, v2);
    d.changes.upserted.push_back(qrule("c.test", rpz::Action::Nxdomain));
    d.changes.upserted.back().key = {9, 'x'};  // label runs past the end
    CHECK_THROWS_WITH(s.apply_delta(d), Catch::Contains("malformed key"));
    unchanged();

    d = delta_of(v1, v2);
    d.changes.upserted.push_back(qrule("c.test", rpz::Action::LocalData));  // local data, no records
    CHECK_THROWS_WITH(s.apply_delta(d), Catch::Contains("not a valid rule"));
    unchanged();

    d = delta_of(v1, v2);
    d.to_serial = 10;
    CHECK_THROWS_WITH(s.apply_delta(d), Catch::Contains("serial must change"));
    unchanged();

    CHECK(s.apply_delta(delta_of(v1, v2)).serial == 11);
}

TEST_CASE("apply_delta is all or nothing when the map is full", "[store][journal]") {
    TempDir tmp;
    OpenOptions o = writer_options(std::size_t{2} << 20);
    o.max_map_size = std::size_t{2} << 20;
    Store s = Store::open(tmp.sub("db"), o);
    std::vector<rpz::Rule> rules;
    for (int i = 0; i < 2000; ++i)
        rules.push_back(qrule("old" + std::to_string(i) + ".test", rpz::Action::Nxdomain));
    const rpz::Zone v1 = make_zone("z.rpz", rules, 1);
    s.replace_zone(v1);
    rules.push_back(qrule("small.test", rpz::Action::Drop));
    const rpz::Zone v2 = make_zone("z.rpz", rules, 2);
    s.apply_delta(delta_of(v1, v2));  // a small delta fits

    const auto before = *s.zone("z.rpz");
    const std::uint64_t gen = s.generation();
    const auto stats = s.stats();
    // 40,000 new rules (and their journal entry) cannot fit in 2 MiB.
    for (int i = 0; i < 40000; ++i)
        rules.push_back(qrule("new-rule-number-" + std::to_string(i) + ".test", rpz::Action::Drop));
    const rpz::Zone v3 = make_zone("z.rpz", rules, 3);
    try {
        s.apply_delta(delta_of(v2, v3));
        FAIL("a delta larger than max_map_size was applied");
    } catch (const StoreError& e) {
        CHECK(e.code() == MDB_MAP_FULL);
        CHECK_THAT(e.what(), Catch::Contains("z.rpz") && Catch::Contains("max_map_size"));
    }
    CHECK(same_info(*s.zone("z.rpz"), before));
    CHECK(s.generation() == gen);
    CHECK(s.stats().rules == stats.rules);
    auto j = s.journal_since("z.rpz", 1);
    REQUIRE(j.has_value());
    CHECK(j->size() == 1);
    CHECK(j->front().to_serial == 2);
    CHECK(s.journal_since("z.rpz", 2)->empty());
    auto snap = s.snapshot();
    CHECK(has_rule(*snap, 0, qrule("small.test", rpz::Action::Drop)));
    CHECK_FALSE(has_rule(*snap, 0, qrule("new-rule-number-0.test", rpz::Action::Drop)));
    snap.reset();

    // With room to grow, the same delta applies (the map grows and retries).
    Store roomy = [&] {
        OpenOptions big = writer_options(std::size_t{2} << 20);
        big.max_map_size = std::size_t{256} << 20;
        return Store::open(tmp.sub("db2"), big);
    }();
    roomy.replace_zone(v2);
    CHECK(roomy.apply_delta(delta_of(v2, v3)).rule_count == 42001);
    CHECK(roomy.stats().map_size > std::size_t{2} << 20);
    CHECK(journal_entries(roomy, "z.rpz", 2) == 1);
}

TEST_CASE("journal_since: chains, trimming, and gaps after replace_zone", "[store][journal]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    std::vector<rpz::Rule> rules = {qrule("base.test", rpz::Action::Nxdomain)};
    rpz::Zone cur = make_zone("z.rpz", rules, 100);
    s.replace_zone(cur);
    for (std::uint32_t serial = 101; serial <= 110; ++serial) {
        rules.push_back(qrule("r" + std::to_string(serial) + ".test", rpz::Action::Nxdomain));
        rpz::Zone next = make_zone("z.rpz", rules, serial);
        s.apply_delta(delta_of(cur, next));
        cur = next;
    }
    for (std::uint32_t from = 100; from <= 110; ++from) {
        auto j = s.journal_since("z.rpz", from);
        REQUIRE(j.has_value());
        REQUIRE(j->size() == 110 - from);
        std::uint32_t expect = from;
        for (const auto& e : *j) {  // a chain, oldest first
            CHECK(e.from_serial == expect);
            CHECK(e.to_serial == expect + 1);
            REQUIRE(e.added.size() == 1);
            CHECK(e.added[0].owner == rpz::rule_owner(wire("z.rpz"), rpz::Trigger::Qname,
                                                      key_of("r" + std::to_string(expect + 1) +
                                                             ".test")));
            expect = e.to_serial;
        }
    }
    CHECK_FALSE(s.journal_since("z.rpz", 99).has_value());  // never existed
    CHECK_FALSE(s.journal_since("z.rpz", 111).has_value()); // the future

    // Trim: every entry is the same size here; keep about three of them.
    std::uint64_t entry_bytes = 0;
    {
        auto e = s.journal_since("z.rpz", 109)->front();
        entry_bytes = store::codec::encode_journal_entry(e).size() + store::codec::kJournalKeySize;
    }
    const std::uint64_t gen = s.generation();
    auto info = s.set_journal_limit("z.rpz", 3 * entry_bytes + entry_bytes / 2);
    CHECK(info.journal_max_bytes == 3 * entry_bytes + entry_bytes / 2);
    CHECK(s.zone("z.rpz")->journal_max_bytes == info.journal_max_bytes);
    CHECK(s.generation() == gen);  // not a policy change
    CHECK_FALSE(s.journal_since("z.rpz", 106).has_value());
    CHECK(journal_entries(s, "z.rpz", 107) == 3);

    // New entries push the oldest out (trimmed in the same commit).
    rules.push_back(qrule("r111.test", rpz::Action::Nxdomain));
    rpz::Zone next = make_zone("z.rpz", rules, 111);
    s.apply_delta(delta_of(cur, next));
    cur = next;
    CHECK_FALSE(s.journal_since("z.rpz", 107).has_value());
    CHECK(journal_entries(s, "z.rpz", 108) == 3);

    // A limit of 0 keeps no history; deltas still apply.
    s.set_journal_limit("z.rpz", 0);
    CHECK_FALSE(s.journal_since("z.rpz", 110).has_value());
    rules.push_back(qrule("r112.test", rpz::Action::Nxdomain));
    next = make_zone("z.rpz", rules, 112);
    CHECK(s.apply_delta(delta_of(cur, next)).serial == 112);
    cur = next;
    CHECK_FALSE(s.journal_since("z.rpz", 111).has_value());
    CHECK(s.journal_since("z.rpz", 112)->empty());

    // replace_zone: the history no longer leads to the content (gap), the
    // bound is kept; a new zone gets the default bound.
    s.set_journal_limit("z.rpz", 1u << 20);
    rules.push_back(qrule("r113.test", rpz::Action::Nxdomain));
    next = make_zone("z.rpz", rules, 113);
    s.apply_delta(delta_of(cur, next));
    CHECK(journal_entries(s, "z.rpz", 112) == 1);
    auto re = s.replace_zone(make_zone("z.rpz", rules, 200));
    CHECK(re.journal_max_bytes == 1u << 20);
    CHECK_FALSE(s.journal_since("z.rpz", 112).has_value());
    CHECK_FALSE(s.journal_since("z.rpz", 113).has_value());
    CHECK(s.journal_since("z.rpz", 200)->empty());
    CHECK(s.replace_zone(make_zone("new.rpz", rules, 1)).journal_max_bytes ==
          store::kDefaultJournalBytes);
    CHECK_THROWS_AS(s.set_journal_limit("missing.rpz", 1), StoreError);

    // No journal entry of the old zone id survives (LMDB table level).
    CHECK(s.stats().zones == 2);
}

TEST_CASE("zone records without the journal bound read as the default", "[store][journal]") {
    store::ZoneInfo info;
    info.id = 7;
    info.order = 1;
    info.journal_max_bytes = 12345;
    const auto apex = wire("z.rpz");
    auto bytes = store::codec::encode_zone_record(info);
    auto back = store::codec::decode_zone_record(apex, bytes);
    REQUIRE(back);
    CHECK(back->journal_max_bytes == 12345);
    // The bound is the last TLV (4 + 8 octets): a record written before it existed.
    bytes.resize(bytes.size() - 12);
    back = store::codec::decode_zone_record(apex, bytes);
    REQUIRE(back);
    CHECK(back->journal_max_bytes == store::kDefaultJournalBytes);
}

TEST_CASE("status records: round trip, no generation bump, removed with the zone",
          "[store][status]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    s.replace_zone(make_zone("threat.rpz", {qrule("a.test", rpz::Action::Nxdomain)}, 1));
    auto snap = s.snapshot();
    const std::uint64_t gen = s.generation();

    ZoneStatus st;
    st.last_attempt = 1700000000;
    st.last_success = 1700000001;
    st.last_failure = 1699999999;
    st.last_error = "transfer from 127.0.0.1:5301 failed: connection closed";
    st.last_source = "IXFR from 127.0.0.1:5301";
    st.transfers_full = 1;
    st.transfers_incremental = 42;
    st.transfers_failed = 3;
    st.updates = 7;
    st.primary_serial = 4000000000u;
    st.next_check = 1700003600;
    s.put_status("Threat.RPZ", st);
    ZoneStatus pending;  // a zone not (yet) in the store
    pending.last_attempt = 5;
    pending.last_error = std::string(70000, 'x');  // truncated to 65535
    s.put_status("pending.rpz.", pending);

    CHECK(s.status("threat.rpz.") == st);
    auto p = s.status("pending.rpz");
    REQUIRE(p);
    CHECK(p->last_error.size() == 65535);
    CHECK_FALSE(s.status("none.rpz").has_value());
    auto all = s.statuses();
    REQUIRE(all.size() == 2);
    // In key order (apex wire): "\6threat" before "\7pending".
    CHECK(all[0].first == "threat.rpz.");
    CHECK(all[0].second == st);
    CHECK(all[1].first == "pending.rpz.");

    // A status write commits a txn, but is not a policy change.
    CHECK(s.generation() == gen);
    CHECK_FALSE(snap->refresh());
    CHECK(snap->generation() == gen);
    CHECK(has_rule(*snap, 0, qrule("a.test", rpz::Action::Nxdomain)));
    snap.reset();

    // Overwrite, then remove the zone: its status goes with it.
    st.updates = 8;
    s.put_status("threat.rpz", st);
    CHECK(s.status("threat.rpz")->updates == 8);
    CHECK(s.remove_zone("threat.rpz"));
    CHECK_FALSE(s.status("threat.rpz").has_value());
    CHECK(s.statuses().size() == 1);

    // Readers see it too.
    Store ro = Store::open(tmp.sub("db"), OpenOptions{});
    CHECK(ro.status("pending.rpz")->last_attempt == 5);
    CHECK_THROWS_AS(ro.put_status("x.rpz", st), StoreError);
}

TEST_CASE("status records: extensions (transfer under way, skipped records, daemon)",
          "[store][status]") {
    ZoneStatus st;
    st.last_attempt = 10;
    st.last_error = "e";
    const auto plain = store::codec::encode_status(st);
    // Nothing set: no extension written (older readers see the same bytes).
    st.transfer_started = 1700000100;
    st.transfer_kind = "AXFR from 127.0.0.1:5301";
    st.last_transfer_skipped = 3;
    st.daemon = store::ProcessId::self();
    REQUIRE(st.daemon.pid == static_cast<std::uint32_t>(::getpid()));
    const auto full = store::codec::encode_status(st);
    REQUIRE(full.size() > plain.size());
    CHECK(std::equal(plain.begin(), plain.end(), full.begin()));
    auto back = store::codec::decode_status(full);
    REQUIRE(back);
    CHECK(*back == st);
    // A record written before the extensions existed reads with defaults.
    back = store::codec::decode_status(plain);
    REQUIRE(back);
    CHECK(back->transfer_started == 0);
    CHECK(back->transfer_kind.empty());
    CHECK(back->daemon.pid == 0);
    // Unknown tags are skipped, a known tag of the wrong length is ignored.
    auto extra = full;
    extra.insert(extra.end(), {0x7f, 0x00, 0x00, 0x02, 0xaa, 0xbb});
    extra.insert(extra.end(), {0x00, 0x01, 0x00, 0x01, 0xcc});
    back = store::codec::decode_status(extra);
    REQUIRE(back);
    CHECK(*back == st);
    // Broken framing is still an error.
    extra.push_back(0x00);
    CHECK_FALSE(store::codec::decode_status(extra).has_value());

    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    s.put_status("threat.rpz", st);
    CHECK(s.status("threat.rpz") == st);
}

TEST_CASE("ProcessId::liveness: running, exited, reused pid, another boot or namespace",
          "[store][status]") {
    using L = store::ProcessId::Liveness;
    const store::ProcessId me = store::ProcessId::self();
    CHECK(me.liveness() == L::Running);
    CHECK(store::ProcessId{}.liveness() == L::Unknown);
    if (me.start_ticks != 0) {
        store::ProcessId reused = me;
        reused.start_ticks += 1;  // same pid, another process
        CHECK(reused.liveness() == L::Gone);
    }
    if (!me.boot_id.empty()) {
        store::ProcessId old_boot = me;
        old_boot.boot_id = "00000000-0000-0000-0000-000000000000";
        CHECK(old_boot.liveness() == L::Gone);
    }
    if (!me.pid_ns.empty()) {
        store::ProcessId other_ns = me;
        other_ns.pid_ns = "pid:[1]";
        CHECK(other_ns.liveness() == L::Unknown);
    }
    // A child that exited: a zombie until reaped, then no process at all.
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) ::_exit(0);
    const store::ProcessId kid = store::ProcessId::of(static_cast<std::uint32_t>(child));
    for (int i = 0; i < 200 && kid.liveness() == L::Running; ++i) ::usleep(10000);
    CHECK(kid.liveness() == L::Gone);  // exited, not yet reaped
    int wstatus = 0;
    REQUIRE(::waitpid(child, &wstatus, 0) == child);
    CHECK(kid.liveness() == L::Gone);
}

TEST_CASE("remove_zone removes the journal: a re-added zone starts without history",
          "[store][journal]") {
    TempDir tmp;
    Store s = Store::open(tmp.sub("db"), writer_options());
    const rpz::Zone v1 = make_zone("z.rpz", {qrule("a.test", rpz::Action::Nxdomain)}, 1);
    const rpz::Zone v2 = make_zone("z.rpz", {qrule("b.test", rpz::Action::Nxdomain)}, 2);
    s.replace_zone(v1);
    s.apply_delta(delta_of(v1, v2));
    CHECK(journal_entries(s, "z.rpz", 1) == 1);
    CHECK(s.remove_zone("z.rpz"));
    CHECK_THROWS_AS(s.journal_since("z.rpz", 1), StoreError);
    s.replace_zone(v2);
    CHECK_FALSE(s.journal_since("z.rpz", 1).has_value());

    // Nothing is left in the journal table for the removed zone id.
    s.remove_zone("z.rpz");
    MDB_env* env = nullptr;
    REQUIRE(mdb_env_create(&env) == 0);
    REQUIRE(mdb_env_set_maxdbs(env, 16) == 0);
    REQUIRE(mdb_env_open(env, tmp.sub("db").c_str(), MDB_RDONLY, 0644) == 0);
    MDB_txn* txn = nullptr;
    REQUIRE(mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) == 0);
    MDB_dbi j = 0;
    REQUIRE(mdb_dbi_open(txn, "journal", 0, &j) == 0);
    MDB_stat st{};
    REQUIRE(mdb_stat(txn, j, &st) == 0);
    CHECK(st.ms_entries == 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

TEST_CASE("a store without journal/status tables: readers cope, writers create them",
          "[store][journal][format]") {
    TempDir tmp;
    const std::string path = tmp.sub("db");
    {
        Store s = Store::open(path, writer_options());
        s.replace_zone(make_zone("z.rpz", {qrule("a.test", rpz::Action::Nxdomain)}, 1));
    }
    {
        // Drop the tables, as a store written before they existed.
        MDB_env* env = nullptr;
        REQUIRE(mdb_env_create(&env) == 0);
        REQUIRE(mdb_env_set_maxdbs(env, 16) == 0);
        REQUIRE(mdb_env_open(env, path.c_str(), 0, 0644) == 0);
        MDB_txn* txn = nullptr;
        REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
        for (const char* name : {"journal", "status"}) {
            MDB_dbi d = 0;
            REQUIRE(mdb_dbi_open(txn, name, 0, &d) == 0);
            REQUIRE(mdb_drop(txn, d, 1) == 0);
        }
        REQUIRE(mdb_txn_commit(txn) == 0);
        mdb_env_close(env);
    }
    {
        Store ro = Store::open(path, OpenOptions{});
        CHECK_FALSE(ro.status("z.rpz").has_value());
        CHECK(ro.statuses().empty());
        CHECK(ro.journal_since("z.rpz", 1)->empty());
        CHECK_FALSE(ro.journal_since("z.rpz", 0).has_value());
        CHECK(ro.zone("z.rpz")->journal_max_bytes == store::kDefaultJournalBytes);
    }
    Store w = Store::open(path, writer_options());
    w.put_status("z.rpz", ZoneStatus{});
    const rpz::Zone v1 = make_zone("z.rpz", {qrule("a.test", rpz::Action::Nxdomain)}, 1);
    const rpz::Zone v2 = make_zone("z.rpz", {qrule("b.test", rpz::Action::Nxdomain)}, 2);
    w.apply_delta(delta_of(v1, v2));
    CHECK(journal_entries(w, "z.rpz", 1) == 1);
    CHECK(w.status("z.rpz") == ZoneStatus{});
}

TEST_CASE("apply_delta: 10,000 rule changes on a 1,000,000-rule zone", "[store][journal][big]") {
    TempDir tmp;
    OpenOptions o = writer_options(std::size_t{1} << 30);
    Store s = Store::open(tmp.sub("db"), o);
    constexpr std::size_t kRules = 1000000;
    const rpz::Name apex = wire("big.rpz");
    rpz::Zone z;
    z.name = apex;
    z.serial = 1;
    z.soa_ttl = 3600;
    z.soa_rdata = soa(1);
    z.rules.reserve(kRules);
    for (std::size_t i = 0; i < kRules; ++i)
        z.rules.push_back(qrule("host" + std::to_string(i) + ".example", rpz::Action::Nxdomain));
    std::sort(z.rules.begin(), z.rules.end(), rule_less);
    const auto t_load = std::chrono::steady_clock::now();
    s.replace_zone(z);
    const double load_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();

    // 5,000 removed, 2,500 changed, 2,500 new: 10,000 rule changes.
    ZoneDelta d;
    d.zone = "big.rpz";
    d.from_serial = 1;
    d.to_serial = 2;
    d.soa_ttl = 3600;
    d.soa_rdata = soa(2);
    for (std::size_t i = 0; i < 5000; ++i) {
        const rpz::Rule& r = z.rules[i * 150];
        d.changes.removed.push_back(rpz::RuleKey{r.trigger, r.key});
        auto rrs = rpz::rule_records(apex, r);
        d.changes.removed_records.insert(d.changes.removed_records.end(), rrs.begin(), rrs.end());
    }
    for (std::size_t i = 0; i < 2500; ++i) {
        const rpz::Rule& old = z.rules[i * 150 + 75];
        rpz::Rule r = old;
        r.action = rpz::Action::Drop;
        d.changes.upserted.push_back(r);
        auto rrs = rpz::rule_records(apex, old);
        d.changes.removed_records.insert(d.changes.removed_records.end(), rrs.begin(), rrs.end());
        rrs = rpz::rule_records(apex, r);
        d.changes.added_records.insert(d.changes.added_records.end(), rrs.begin(), rrs.end());
    }
    for (std::size_t i = 0; i < 2500; ++i) {
        rpz::Rule r = qrule("fresh" + std::to_string(i) + ".example", rpz::Action::Nodata);
        d.changes.upserted.push_back(r);
        auto rrs = rpz::rule_records(apex, r);
        d.changes.added_records.insert(d.changes.added_records.end(), rrs.begin(), rrs.end());
    }
    const auto t0 = std::chrono::steady_clock::now();
    const auto info = s.apply_delta(d);
    const double apply_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("apply_delta: 10000 rule changes on a %zu-rule zone in %.3f s "
                "(replace_zone of the zone: %.3f s)\n",
                kRules, apply_s, load_s);
    CHECK(info.rule_count == kRules - 5000 + 2500);
    CHECK(apply_s < 10.0);  // loose: catches a whole-zone rewrite, not a slow disk

    auto snap = s.snapshot();
    CHECK_FALSE(has_rule(*snap, 0, z.rules[0]));
    CHECK(snap->find(0, rpz::Trigger::Qname, z.rules[75].key)->action() == rpz::Action::Drop);
    CHECK(has_rule(*snap, 0, qrule("fresh2499.example", rpz::Action::Nodata)));
    CHECK(has_rule(*snap, 0, z.rules[1]));
    snap.reset();
    auto j = s.journal_since("big.rpz", 1);
    REQUIRE(j);
    REQUIRE(j->size() == 1);
    CHECK(j->front().removed.size() == 7500);
    CHECK(j->front().added.size() == 5000);
}
