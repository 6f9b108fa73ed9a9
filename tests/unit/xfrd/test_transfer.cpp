// Unit tests of the secondary's transfer handling (tools/xfrd/transfer.hpp):
// reading AXFR/IXFR responses message by message, and committing them to a
// real LMDB store (IXFR sequences as journal entries, AXFR as a diff).
#include <catch2/catch.hpp>

#include "store/store.hpp"
#include "tools/xfrd/serve_wire.hpp"
#include "tools/xfrd/transfer.hpp"

#include <unistd.h>

#include <filesystem>

using dnsfw::xfrd::CommitError;
using dnsfw::xfrd::CommitResult;
using dnsfw::xfrd::IxfrSequence;
using dnsfw::xfrd::TransferParser;
using dnsfw::xfrd::ZoneConfig;
namespace rpz = dnsfw::rpz;
namespace store = dnsfw::store;
namespace wire = dnsfw::xfrd::wire;

namespace {

namespace fs = std::filesystem;
using Step = TransferParser::Step;
using Kind = TransferParser::Kind;
using Mode = TransferParser::Mode;

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "dnsfw-xfrd-transfer-XXXXXX").string();
        REQUIRE(mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

rpz::Name nm(std::string_view text) {
    auto n = rpz::name_from_text(text);
    REQUIRE(n);
    return *n;
}

/// The test zone's apex (a plain constant: REQUIRE cannot run during static initialisation).
const rpz::Name kApex = {1, 't', 3, 'r', 'p', 'z', 0};

std::vector<std::uint8_t> soa_rdata(std::uint32_t serial) {
    std::vector<std::uint8_t> r = nm("ns.t.rpz.");
    rpz::Name rname = nm("admin.t.rpz.");
    r.insert(r.end(), rname.begin(), rname.end());
    for (std::uint32_t v : {serial, 60u, 10u, 3600u, 60u}) wire::put32(r, v);
    return r;
}

rpz::ZoneRecord soa(std::uint32_t serial) {
    return rpz::ZoneRecord{kApex, wire::kTypeSoa, 300, soa_rdata(serial)};
}

/// A QNAME rule record: "<label>.t.rpz. CNAME <target>".
rpz::ZoneRecord cname(std::string_view label, std::string_view target = ".") {
    return rpz::ZoneRecord{nm(std::string(label) + ".t.rpz."), wire::kTypeCname, 300,
                           nm(target)};
}

/// One response message with `records` in the answer section.
std::vector<std::uint8_t> msg(std::uint16_t id, const std::vector<rpz::ZoneRecord>& records,
                              std::uint16_t qtype = wire::kTypeAxfr, std::uint8_t rcode = 0,
                              bool question = true) {
    wire::MessageBuilder b(id, static_cast<std::uint16_t>(wire::kFlagQr | wire::kFlagAa | rcode));
    if (question) b.question(kApex, qtype, wire::kClassIn);
    for (const auto& r : records)
        b.add(wire::MessageBuilder::Section::Answer, r.owner, r.type, wire::kClassIn, r.ttl,
              r.rdata);
    return b.finish();
}

store::Store open_store(const fs::path& dir) {
    store::OpenOptions o;
    o.read_only = false;
    o.create = true;
    o.map_size = std::size_t{64} << 20;
    return store::Store::open(dir.string(), o);
}

ZoneConfig zone_config() {
    ZoneConfig z;
    z.name = "t.rpz.";
    z.apex = kApex;
    return z;
}

bool has_rule(store::Store& st, std::string_view qname) {
    auto snap = st.snapshot({"t.rpz."});
    if (snap->zone_count() == 0) return false;
    auto key = rpz::NameKey{};
    REQUIRE(rpz::make_name_key(nm(qname), key));
    return snap->find(0, rpz::Trigger::Qname, key.view()).has_value();
}

}  // namespace

TEST_CASE("TransferParser: AXFR over several messages", "[xfrd][transfer]") {
    TransferParser p(kApex, Mode::Axfr, 7, 0, 1 << 20);
    CHECK(p.feed(msg(7, {soa(5), cname("a"), cname("b")})) == Step::More);
    CHECK(p.feed(msg(7, {cname("c")}, wire::kTypeAxfr, 0, false)) == Step::More);
    CHECK(p.feed(msg(7, {cname("d"), soa(5)}, wire::kTypeAxfr, 0, false)) == Step::Done);
    CHECK(p.kind() == Kind::Full);
    CHECK(p.new_serial() == 5);
    REQUIRE(p.records().size() == 5);  // the opening SOA once, no closing SOA
    CHECK(p.records()[0].type == wire::kTypeSoa);
    CHECK(p.records()[4] == cname("d"));
    CHECK(p.messages() == 3);
}

TEST_CASE("TransferParser: IXFR difference sequences", "[xfrd][transfer]") {
    TransferParser p(kApex, Mode::Ixfr, 9, 5, 1 << 20);
    // 5 -> 6: -a +b; 6 -> 7: +c; then the final SOA (split over messages).
    CHECK(p.feed(msg(9, {soa(7), soa(5), cname("a"), soa(6), cname("b")}, wire::kTypeIxfr)) ==
          Step::More);
    CHECK(p.feed(msg(9, {soa(6), soa(7), cname("c"), soa(7)}, wire::kTypeIxfr, 0, false)) ==
          Step::Done);
    REQUIRE(p.kind() == Kind::Incremental);
    auto& seqs = p.sequences();
    REQUIRE(seqs.size() == 2);
    CHECK(seqs[0].from == 5);
    CHECK(seqs[0].to == 6);
    CHECK(seqs[0].removed == std::vector<rpz::ZoneRecord>{cname("a")});
    CHECK(seqs[0].added == std::vector<rpz::ZoneRecord>{cname("b")});
    CHECK(seqs[0].to_soa_rdata == soa_rdata(6));
    CHECK(seqs[1].from == 6);
    CHECK(seqs[1].to == 7);
    CHECK(seqs[1].removed.empty());
    CHECK(seqs[1].added == std::vector<rpz::ZoneRecord>{cname("c")});
}

TEST_CASE("TransferParser: IXFR answers other than sequences", "[xfrd][transfer]") {
    SECTION("one SOA, not newer: up to date") {
        TransferParser p(kApex, Mode::Ixfr, 1, 5, 1 << 20);
        CHECK(p.feed(msg(1, {soa(5)}, wire::kTypeIxfr)) == Step::Done);
        CHECK(p.kind() == Kind::UpToDate);
    }
    SECTION("the whole zone (AXFR-style)") {
        TransferParser p(kApex, Mode::Ixfr, 1, 5, 1 << 20);
        CHECK(p.feed(msg(1, {soa(8), cname("a"), cname("x"), soa(8)}, wire::kTypeIxfr)) ==
              Step::Done);
        CHECK(p.kind() == Kind::Full);
        CHECK(p.records().size() == 3);
    }
    SECTION("an empty zone AXFR-style: SOA, SOA") {
        TransferParser p(kApex, Mode::Ixfr, 1, 5, 1 << 20);
        CHECK(p.feed(msg(1, {soa(8), soa(8)}, wire::kTypeIxfr)) == Step::Done);
        CHECK(p.kind() == Kind::Full);
        CHECK(p.records().size() == 1);
    }
    SECTION("an error rcode: fall back to AXFR") {
        TransferParser p(kApex, Mode::Ixfr, 1, 5, 1 << 20);
        CHECK(p.feed(msg(1, {}, wire::kTypeIxfr, wire::kRcodeNotImp)) == Step::Fallback);
        CHECK(p.rcode() == wire::kRcodeNotImp);
    }
    SECTION("a serial older than ours is refused") {
        TransferParser p(kApex, Mode::Ixfr, 1, 5, 1 << 20);
        CHECK(p.feed(msg(1, {soa(4), soa(5)}, wire::kTypeIxfr)) == Step::Error);
        CHECK_THAT(p.error(), Catch::Contains("serial went backwards"));
    }
    SECTION("sequences that do not chain") {
        TransferParser p(kApex, Mode::Ixfr, 1, 5, 1 << 20);
        CHECK(p.feed(msg(1, {soa(7), soa(5), soa(6), soa(9), soa(7), soa(7)}, wire::kTypeIxfr)) ==
              Step::Error);
        CHECK_THAT(p.error(), Catch::Contains("previous one ended at 6"));
    }
}

TEST_CASE("TransferParser: malformed and hostile responses", "[xfrd][transfer]") {
    SECTION("AXFR refused") {
        TransferParser p(kApex, Mode::Axfr, 1, 0, 1 << 20);
        CHECK(p.feed(msg(1, {}, wire::kTypeAxfr, wire::kRcodeNotAuth)) == Step::Error);
        CHECK_THAT(p.error(), Catch::Contains("NOTAUTH"));
    }
    SECTION("a wrong ID") {
        TransferParser p(kApex, Mode::Axfr, 1, 0, 1 << 20);
        CHECK(p.feed(msg(2, {soa(1), soa(1)})) == Step::Error);
    }
    SECTION("not starting with the SOA") {
        TransferParser p(kApex, Mode::Axfr, 1, 0, 1 << 20);
        CHECK(p.feed(msg(1, {cname("a"), soa(1)})) == Step::Error);
    }
    SECTION("another zone's question") {
        TransferParser p(nm("other.rpz."), Mode::Axfr, 1, 0, 1 << 20);
        CHECK(p.feed(msg(1, {soa(1), soa(1)})) == Step::Error);
    }
    SECTION("a second SOA of another serial inside the zone") {
        TransferParser p(kApex, Mode::Axfr, 1, 0, 1 << 20);
        CHECK(p.feed(msg(1, {soa(3), cname("a"), soa(2)})) == Step::Error);
    }
    SECTION("records after the closing SOA") {
        TransferParser p(kApex, Mode::Axfr, 1, 0, 1 << 20);
        CHECK(p.feed(msg(1, {soa(3), cname("a"), soa(3), cname("b")})) == Step::Error);
    }
    SECTION("truncated bytes") {
        TransferParser p(kApex, Mode::Axfr, 1, 0, 1 << 20);
        auto m = msg(1, {soa(3), cname("a"), soa(3)});
        m.resize(m.size() - 5);
        CHECK(p.feed(m) == Step::Error);
        CHECK_THAT(p.error(), Catch::Contains("malformed message 1"));
        TransferParser q(kApex, Mode::Axfr, 1, 0, 1 << 20);
        CHECK(q.feed(std::vector<std::uint8_t>{0, 1, 2}) == Step::Error);
    }
    SECTION("over max-transfer-size") {
        auto first = msg(1, {soa(3), cname("a")});
        TransferParser p(kApex, Mode::Axfr, 1, 0, first.size() + 10);
        CHECK(p.feed(first) == Step::More);
        CHECK(p.feed(msg(1, {cname("b"), soa(3)}, wire::kTypeAxfr, 0, false)) == Step::Error);
        CHECK_THAT(p.error(), Catch::Contains("max-transfer-size"));
    }
}

TEST_CASE("commit_axfr: new zone, diff into a stored zone, refusals", "[xfrd][transfer]") {
    TempDir dir;
    store::Store st = open_store(dir.path);
    ZoneConfig z = zone_config();
    z.journal_size = 12345;

    std::vector<rpz::ZoneRecord> v1 = {soa(5), cname("a"), cname("b"), cname("c", "*.")};
    CommitResult r = dnsfw::xfrd::commit_axfr(st, z, v1, "test");
    CHECK(r.new_zone);
    CHECK(r.changed);
    CHECK(r.to_serial == 5);
    CHECK(r.added == 3);
    auto info = st.zone("t.rpz");
    REQUIRE(info);
    CHECK(info->serial == 5);
    CHECK(info->rule_count == 3);
    CHECK(info->journal_max_bytes == 12345);  // journal-size applied to the new zone

    // -a, c changes action, +d
    std::vector<rpz::ZoneRecord> v2 = {soa(6), cname("b"), cname("c"), cname("d")};
    r = dnsfw::xfrd::commit_axfr(st, z, v2, "test");
    CHECK_FALSE(r.new_zone);
    CHECK(r.from_serial == 5);
    CHECK(r.to_serial == 6);
    CHECK(r.added == 1);
    CHECK(r.removed == 1);
    CHECK(r.changed_rules == 1);
    CHECK(st.zone("t.rpz")->serial == 6);
    CHECK_FALSE(has_rule(st, "a."));
    CHECK(has_rule(st, "d."));
    // Applied as a delta: the journal leads from 5 to 6.
    auto j = st.journal_since("t.rpz.", 5);
    REQUIRE(j);
    REQUIRE(j->size() == 1);
    CHECK((*j)[0].to_serial == 6);

    // Same serial, same content: nothing to do.
    r = dnsfw::xfrd::commit_axfr(st, z, v2, "test");
    CHECK_FALSE(r.changed);

    // Older serial: refused, store unchanged.
    std::vector<rpz::ZoneRecord> old = {soa(4), cname("zzz")};
    CHECK_THROWS_AS(dnsfw::xfrd::commit_axfr(st, z, old, "test"), CommitError);
    CHECK(st.zone("t.rpz")->serial == 6);
    CHECK_FALSE(has_rule(st, "zzz."));

    // A bad record is skipped and reported, never failing the zone.
    std::vector<rpz::ZoneRecord> v3 = {soa(7), cname("b"), cname("c"), cname("d"),
                                       rpz::ZoneRecord{nm("x.t.rpz."), wire::kTypeCname, 300, {}}};
    r = dnsfw::xfrd::commit_axfr(st, z, v3, "test");
    CHECK(r.changed);
    CHECK(r.to_serial == 7);
    CHECK_FALSE(r.diagnostics.empty());
    CHECK(st.zone("t.rpz")->serial == 7);
}

TEST_CASE("commit_ixfr: one journal entry per sequence", "[xfrd][transfer]") {
    TempDir dir;
    store::Store st = open_store(dir.path);
    ZoneConfig z = zone_config();
    std::vector<rpz::ZoneRecord> v1 = {soa(5), cname("a"), cname("b")};
    dnsfw::xfrd::commit_axfr(st, z, v1, "test");

    std::vector<IxfrSequence> seqs(2);
    seqs[0].from = 5;
    seqs[0].to = 6;
    seqs[0].to_soa_ttl = 300;
    seqs[0].to_soa_rdata = soa_rdata(6);
    seqs[0].removed = {cname("a")};
    seqs[0].added = {cname("c")};
    seqs[1].from = 6;
    seqs[1].to = 7;
    seqs[1].to_soa_ttl = 300;
    seqs[1].to_soa_rdata = soa_rdata(7);
    seqs[1].removed = {cname("b")};
    seqs[1].added = {cname("b", "rpz-passthru.")};

    CommitResult r;
    dnsfw::xfrd::commit_ixfr(st, z, seqs, "test", r);
    CHECK(r.sequences == 2);
    CHECK(r.from_serial == 5);
    CHECK(r.to_serial == 7);
    CHECK(r.added == 1);
    CHECK(r.removed == 1);
    CHECK(r.changed_rules == 1);
    CHECK(st.zone("t.rpz")->serial == 7);
    CHECK(has_rule(st, "c."));
    CHECK_FALSE(has_rule(st, "a."));
    auto j = st.journal_since("t.rpz.", 5);
    REQUIRE(j);
    CHECK(j->size() == 2);

    SECTION("a chain that does not start at the stored serial commits nothing") {
        std::vector<IxfrSequence> bad(1);
        bad[0].from = 9;
        bad[0].to = 10;
        bad[0].to_soa_rdata = soa_rdata(10);
        bad[0].added = {cname("q")};
        CommitResult r2;
        CHECK_THROWS_AS(dnsfw::xfrd::commit_ixfr(st, z, bad, "test", r2), CommitError);
        CHECK(r2.sequences == 0);
        CHECK(st.zone("t.rpz")->serial == 7);
        CHECK_FALSE(has_rule(st, "q."));
    }
    SECTION("a failure mid-chain keeps the sequences before it") {
        std::vector<IxfrSequence> two(2);
        two[0].from = 7;
        two[0].to = 8;
        two[0].to_soa_rdata = soa_rdata(8);
        two[0].added = {cname("e")};
        two[1].from = 12;  // does not follow 8
        two[1].to = 13;
        two[1].to_soa_rdata = soa_rdata(13);
        CommitResult r2;
        CHECK_THROWS_AS(dnsfw::xfrd::commit_ixfr(st, z, two, "test", r2), CommitError);
        CHECK(r2.sequences == 1);
        CHECK(st.zone("t.rpz")->serial == 8);
        CHECK(has_rule(st, "e."));
    }
    SECTION("a zone that is not stored") {
        ZoneConfig other = zone_config();
        other.name = "u.rpz.";
        other.apex = nm("u.rpz.");
        CommitResult r2;
        CHECK_THROWS_AS(dnsfw::xfrd::commit_ixfr(st, other, seqs, "test", r2), CommitError);
    }
}
