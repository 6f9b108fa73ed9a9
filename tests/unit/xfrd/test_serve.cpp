// Unit tests of the Responder (tools/xfrd/serve.hpp) against real LMDB
// stores: SOA answers, AXFR round trip, IXFR from the journal and its
// fallbacks, RFC 2136 UPDATE, NOTIFY, ACL and TSIG refusals.
#include "xfrd_test_util.hpp"

#include <map>
#include <set>

using namespace xfrd_test;
using dnsfw::xfrd::Config;
using dnsfw::xfrd::Outcome;
using dnsfw::xfrd::Responder;
using dnsfw::xfrd::TsigKey;
using dnsfw::xfrd::TsigResult;
using dnsfw::xfrd::TsigSession;
using dnsfw::xfrd::ZoneConfig;

namespace {

/// Verifies every message with `client`; all must be Ok.
void verify_all(TsigSession& client, const std::vector<std::vector<std::uint8_t>>& msgs) {
    for (const auto& m : msgs) REQUIRE(client.verify_response(m) == TsigResult::Ok);
    CHECK(client.last_signed());
}

/// The answer records of all messages, in order.
std::vector<rpz::ZoneRecord> answers(const std::vector<std::vector<std::uint8_t>>& msgs) {
    std::vector<rpz::ZoneRecord> out;
    for (const auto& m : msgs)
        for (auto& r : parse(m).answer) out.push_back(std::move(r));
    return out;
}

std::uint32_t serial_of(const rpz::ZoneRecord& soa) {
    REQUIRE(soa.type == wire::kTypeSoa);
    return *wire::soa_serial(soa.rdata);
}

rpz::ZoneRecord soa_with_serial(World& w, std::uint32_t serial) {
    auto info = w.st.zone("rpz.example");
    return rpz::ZoneRecord{name("rpz.example"), wire::kTypeSoa, 3600,
                           wire::with_soa_serial(info->soa_rdata, serial)};
}

}  // namespace

TEST_CASE("Responder: SOA query", "[xfrd][serve]") {
    World w(records_text());
    SECTION("allowed without a key answers authoritatively") {
        auto o = w.ask(query("RPZ.example", wire::kTypeSoa, 77), "192.0.2.7", false);
        REQUIRE(o.messages.size() == 1);
        CHECK_FALSE(o.stream);
        auto p = parse(o.messages[0]);
        CHECK(p.id == 77);
        CHECK(p.rcode == wire::kRcodeNoError);
        CHECK(p.aa);
        REQUIRE(p.answer.size() == 1);
        CHECK(p.answer[0].owner == name("rpz.example"));
        CHECK(serial_of(p.answer[0]) == 42);
        CHECK(p.answer[0].ttl == 3600);
    }
    SECTION("signed with the ACL's key: signed answer") {
        TsigSession client(xfr_key());
        auto o =
            w.ask(client.sign_request(query("rpz.example", wire::kTypeSoa)), "127.0.0.3", false);
        REQUIRE(o.messages.size() == 1);
        CHECK(parse(o.messages[0]).rcode == wire::kRcodeNoError);
        CHECK(client.verify_response(o.messages[0]) == TsigResult::Ok);
    }
    SECTION("unsigned from a prefix that requires a key: REFUSED, logged") {
        auto o = w.ask(query("rpz.example", wire::kTypeSoa), "127.0.0.3", false);
        REQUIRE(o.messages.size() == 1);
        CHECK(parse(o.messages[0]).rcode == wire::kRcodeRefused);
        CHECK(
            w.log.contains("warning zone rpz.example.: SOA query from 127.0.0.3:5353 (unsigned) "
                           "refused: not allowed by allow-transfer"));
    }
    SECTION("signed with another valid key: REFUSED, signed") {
        TsigSession client(upd_key());
        auto o =
            w.ask(client.sign_request(query("rpz.example", wire::kTypeSoa)), "127.0.0.3", false);
        REQUIRE(o.messages.size() == 1);
        CHECK(parse(o.messages[0]).rcode == wire::kRcodeRefused);
        CHECK(client.verify_response(o.messages[0]) == TsigResult::Ok);
        CHECK(w.log.contains("(key upd-key.) refused: not allowed by allow-transfer"));
    }
    SECTION("from outside every prefix: REFUSED") {
        auto o = w.ask(query("rpz.example", wire::kTypeSoa), "10.1.1.1", false);
        CHECK(parse(o.messages.at(0)).rcode == wire::kRcodeRefused);
    }
    SECTION("a zone that is not configured: REFUSED; other types: REFUSED") {
        CHECK(parse(w.ask(query("other.example", wire::kTypeSoa), "192.0.2.7").messages.at(0))
                  .rcode == wire::kRcodeRefused);
        CHECK(parse(w.ask(query("rpz.example", wire::kTypeA), "192.0.2.7").messages.at(0)).rcode ==
              wire::kRcodeRefused);
    }
    SECTION("configured but not in the store yet: SERVFAIL") {
        auto o = w.ask(query("secondary.rpz", wire::kTypeSoa), "127.0.0.1");
        CHECK(parse(o.messages.at(0)).rcode == wire::kRcodeServFail);
        CHECK(w.log.contains("zone not in the store yet"));
    }
}

TEST_CASE("Responder: TSIG failures are NOTAUTH with the TSIG error", "[xfrd][serve][tsig]") {
    World w(records_text());
    SECTION("BADSIG") {
        TsigSession client(make_key("xfr-key.", "hmac-sha256", "not the configured secret!"));
        auto o = w.ask(client.sign_request(query("rpz.example", wire::kTypeAxfr)));
        REQUIRE(o.messages.size() == 1);
        CHECK_FALSE(o.stream);
        CHECK(parse(o.messages[0]).rcode == wire::kRcodeNotAuth);
        auto rec = dnsfw::xfrd::parse_tsig(o.messages[0]);
        REQUIRE(rec);
        CHECK(rec->error == 16);
        CHECK(rec->mac.empty());
        CHECK(client.verify_response(o.messages[0]) == TsigResult::BadSig);
        CHECK(w.log.contains(
            "warning zone rpz.example.: TSIG BADSIG from 127.0.0.1:5353 (key xfr-key.): refused"));
    }
    SECTION("BADKEY for an unknown key name") {
        TsigSession client(make_key("stranger.", "hmac-sha256", kXfrSecret));
        auto o = w.ask(client.sign_request(query("rpz.example", wire::kTypeSoa)));
        auto rec = dnsfw::xfrd::parse_tsig(o.messages.at(0));
        REQUIRE(rec);
        CHECK(rec->error == 17);
        CHECK(rec->key_name == "stranger.");
        CHECK(client.verify_response(o.messages[0]) == TsigResult::BadKey);
        CHECK(w.log.contains("TSIG BADKEY from 127.0.0.1:5353 (key stranger.): refused"));
    }
    SECTION("BADKEY for the right name with another algorithm") {
        TsigSession client(make_key("xfr-key.", "hmac-sha1", kXfrSecret));
        auto o = w.ask(client.sign_request(query("rpz.example", wire::kTypeSoa)));
        CHECK(dnsfw::xfrd::parse_tsig(o.messages.at(0))->error == 17);
    }
    SECTION("BADTIME: signed error answer") {
        TsigSession client(xfr_key());
        client.set_clock(static_cast<std::uint64_t>(std::time(nullptr)) - 3600);
        auto o = w.ask(client.sign_request(query("rpz.example", wire::kTypeSoa)));
        CHECK(parse(o.messages.at(0)).rcode == wire::kRcodeNotAuth);
        auto rec = dnsfw::xfrd::parse_tsig(o.messages[0]);
        REQUIRE(rec);
        CHECK(rec->error == 18);
        CHECK(client.verify_response(o.messages[0]) == TsigResult::BadTime);
        CHECK(w.log.contains("TSIG BADTIME from 127.0.0.1:5353"));
    }
}

TEST_CASE("Responder: junk and malformed requests", "[xfrd][serve]") {
    World w(records_text());
    CHECK(w.ask({1, 2, 3, 4, 5}).messages.empty());
    auto resp = query("rpz.example", wire::kTypeSoa);
    resp[2] |= 0x80;  // QR: a response is never answered
    CHECK(w.ask(resp).messages.empty());
    std::vector<std::uint8_t> no_question(12, 0);
    no_question[0] = 0x11;
    auto o = w.ask(no_question);
    REQUIRE(o.messages.size() == 1);
    CHECK(parse(o.messages[0]).rcode == wire::kRcodeFormErr);
    CHECK(parse(o.messages[0]).id == 0x1100);
    auto status_op = query("rpz.example", wire::kTypeSoa, 5, nullptr, 2);
    CHECK(parse(w.ask(status_op).messages.at(0)).rcode == wire::kRcodeNotImp);
    auto truncated = query("rpz.example", wire::kTypeSoa);
    truncated.resize(truncated.size() - 3);
    CHECK(parse(w.ask(truncated).messages.at(0)).rcode == wire::kRcodeFormErr);
}

TEST_CASE("Responder: AXFR streams every rule back", "[xfrd][serve][axfr]") {
    const std::string text = records_text();
    World w(text);
    const rpz::Zone expect =
        rpz::parse_zone_text(text, "expect", name("rpz.example"), rpz::InputFormat::Rpz);
    REQUIRE(expect.rules.size() > 20);

    SECTION("signed, one zone with every trigger kind") {
        TsigSession client(xfr_key());
        auto o = w.ask(client.sign_request(query("rpz.example", wire::kTypeAxfr, 0x5151)));
        CHECK(o.messages.empty());
        REQUIRE(o.stream);
        auto msgs = drain(o);
        verify_all(client, msgs);
        auto recs = answers(msgs);
        REQUIRE(recs.size() >= 3);
        CHECK(recs.front().type == wire::kTypeSoa);
        CHECK(recs.back().type == wire::kTypeSoa);
        CHECK(recs.front() == recs.back());
        CHECK(serial_of(recs.front()) == 42);
        CHECK(recs[1].type == wire::kTypeNs);  // synthesised apex NS (the SOA MNAME)
        CHECK(recs[1].rdata == name("ns.rpz.example"));
        std::set<std::uint16_t> triggers_seen;
        recs.pop_back();
        rpz::Zone got = rpz::zone_from_records(name("rpz.example"), recs, "axfr");
        for (const auto& d : got.diagnostics) INFO(d.to_string());
        CHECK(got.serial == 42);
        CHECK(got.soa_rdata == expect.soa_rdata);
        REQUIRE(got.rules.size() == expect.rules.size());
        CHECK(got.rules == expect.rules);
        for (const auto& r : got.rules) triggers_seen.insert(static_cast<std::uint16_t>(r.trigger));
        CHECK(triggers_seen.size() == 5);
        CHECK(parse(msgs[0]).id == 0x5151);
        CHECK(parse(msgs[0]).aa);
        CHECK(w.log.contains(
            "info zone rpz.example.: AXFR to 127.0.0.1:5353 (key xfr-key.): serial 42"));
    }
    SECTION("over UDP: REFUSED") {
        auto o = w.ask(query("rpz.example", wire::kTypeAxfr), "192.0.2.7", false);
        CHECK_FALSE(o.stream);
        CHECK(parse(o.messages.at(0)).rcode == wire::kRcodeRefused);
    }
    SECTION("not allowed: REFUSED and no stream") {
        auto o = w.ask(query("rpz.example", wire::kTypeAxfr), "10.0.0.1");
        CHECK_FALSE(o.stream);
        CHECK(parse(o.messages.at(0)).rcode == wire::kRcodeRefused);
        CHECK(w.log.contains(
            "AXFR from 10.0.0.1:5353 (unsigned) refused: not allowed by allow-transfer"));
    }
    SECTION("a zone that is not configured: NOTAUTH") {
        auto o = w.ask(query("nope.example", wire::kTypeAxfr), "192.0.2.7");
        CHECK(parse(o.messages.at(0)).rcode == wire::kRcodeNotAuth);
    }
}

TEST_CASE("Responder: AXFR of a large zone spans bounded messages", "[xfrd][serve][axfr]") {
    const std::string text = big_zone_text(20000);
    World w(text);
    TsigSession client(xfr_key());
    auto o = w.ask(client.sign_request(query("rpz.example", wire::kTypeAxfr)));
    REQUIRE(o.stream);
    auto msgs = drain(o);
    CHECK(msgs.size() > 20);
    for (std::size_t i = 0; i < msgs.size(); ++i) {
        CHECK(msgs[i].size() <= 16 * 1024 + 512);
        CHECK(parse(msgs[i]).qdcount == (i == 0 ? 1u : 0u));
    }
    verify_all(client, msgs);
    auto recs = answers(msgs);
    recs.pop_back();
    rpz::Zone got = rpz::zone_from_records(name("rpz.example"), recs, "axfr");
    const rpz::Zone expect =
        rpz::parse_zone_text(text, "expect", name("rpz.example"), rpz::InputFormat::Rpz);
    CHECK(got.rules.size() == 20001);
    CHECK(got.rules == expect.rules);

    // A stream dropped half-way stops its producer cleanly, and the store
    // stays writable.
    auto o2 = w.ask(query("rpz.example", wire::kTypeAxfr), "192.0.2.7");
    std::vector<std::uint8_t> m;
    REQUIRE(o2.stream->next(m));
    REQUIRE(o2.stream->next(m));
    o2.stream.reset();
    push_text(w, with_serial(text, 42, 43) + "late.example CNAME .\n");
    CHECK(w.serial() == 43);
}

TEST_CASE("Responder: IXFR from the journal, and its fallbacks", "[xfrd][serve][ixfr]") {
    const std::string v42 = records_text();
    World w(v42);
    // 42 -> 43: one rule removed, one added, one changed.
    std::string v43 = with_serial(v42, 42, 43);
    v43.replace(v43.find("nx.example CNAME ."), 18, "nx.example CNAME rpz-passthru.");
    v43.replace(v43.find("drop.example CNAME rpz-drop."), 28, "");
    v43 += "added43.example CNAME .\n";
    push_text(w, v43);
    // 43 -> 44: local data grows.
    std::string v44 =
        with_serial(v43, 43, 44) + "data.example A 192.0.2.3\nadded44.example A 10.0.0.1\n";
    push_text(w, v44);
    REQUIRE(w.serial() == 44);

    const auto s42 = soa_with_serial(w, 42);
    SECTION("from 42: two difference sequences") {
        TsigSession client(xfr_key());
        auto o = w.ask(client.sign_request(query("rpz.example", wire::kTypeIxfr, 3, &s42)));
        REQUIRE(o.stream);
        auto msgs = drain(o);
        verify_all(client, msgs);
        auto recs = answers(msgs);
        // SOA44 | SOA42 -removed- SOA43 +added+ | SOA43 -removed- SOA44 +added+ | SOA44
        std::vector<std::size_t> soas;
        for (std::size_t i = 0; i < recs.size(); ++i)
            if (recs[i].type == wire::kTypeSoa) soas.push_back(i);
        REQUIRE(soas.size() == 6);
        CHECK(serial_of(recs[soas[0]]) == 44);
        CHECK(serial_of(recs[soas[1]]) == 42);
        CHECK(serial_of(recs[soas[2]]) == 43);
        CHECK(serial_of(recs[soas[3]]) == 43);
        CHECK(serial_of(recs[soas[4]]) == 44);
        CHECK(serial_of(recs[soas[5]]) == 44);
        CHECK(soas[5] == recs.size() - 1);
        auto has = [&](std::size_t from, std::size_t to, const rpz::ZoneRecord& want) {
            for (std::size_t i = from; i < to; ++i)
                if (recs[i].same_rr(want)) return true;
            return false;
        };
        // First sequence: removed between soas[1] and soas[2], added until soas[3].
        CHECK(has(soas[1], soas[2], rr("drop.example.rpz.example. 300 IN CNAME rpz-drop.")));
        CHECK(has(soas[1], soas[2], rr("nx.example.rpz.example. 300 IN CNAME .")));
        CHECK(has(soas[2], soas[3], rr("nx.example.rpz.example. 300 IN CNAME rpz-passthru.")));
        CHECK(has(soas[2], soas[3], rr("added43.example.rpz.example. 300 IN CNAME .")));
        CHECK(has(soas[4], soas[5], rr("data.example.rpz.example. 300 IN A 192.0.2.3")));
        CHECK(has(soas[4], soas[5], rr("added44.example.rpz.example. 300 IN A 10.0.0.1")));
        CHECK(w.log.contains(
            "IXFR to 127.0.0.1:5353 (key xfr-key.): serial 42 -> 44 from the journal (2 changes)"));

        // Replaying the sequences on the old rules gives the stored rules.
        rpz::Zone old_zone =
            rpz::parse_zone_text(v42, "old", name("rpz.example"), rpz::InputFormat::Rpz);
        std::map<rpz::RuleKey, rpz::Rule> rules;
        for (const auto& r : old_zone.rules) rules[{r.trigger, r.key}] = r;
        for (int seq = 0; seq < 2; ++seq) {
            const std::size_t a = soas[1 + 2 * seq], b = soas[2 + 2 * seq], c = soas[3 + 2 * seq];
            std::vector<rpz::ZoneRecord> removed(recs.begin() + static_cast<long>(a + 1),
                                                 recs.begin() + static_cast<long>(b));
            std::vector<rpz::ZoneRecord> added(recs.begin() + static_cast<long>(b + 1),
                                               recs.begin() + static_cast<long>(c));
            std::vector<rpz::Diagnostic> diags;
            auto delta = rpz::apply_records(
                name("rpz.example"), removed, added,
                [&](const rpz::RuleKey& k) -> std::optional<rpz::Rule> {
                    auto it = rules.find(k);
                    if (it == rules.end()) return std::nullopt;
                    return it->second;
                },
                "ixfr", diags);
            CHECK(diags.empty());
            for (const auto& k : delta.removed) rules.erase(k);
            for (const auto& r : delta.upserted) rules[{r.trigger, r.key}] = r;
        }
        std::vector<rpz::Rule> replayed;
        for (auto& [k, r] : rules) replayed.push_back(r);
        // The one difference: records.rpz gives data.example's A RRset mixed
        // TTLs (600, 60), which the zone-file loader keeps, so 43 -> 44 adds
        // 192.0.2.3 with TTL 300 to it; applied as an IXFR the RRset takes
        // the added TTL (RFC 2181 5.2, as BIND and Knot do). Once the loader
        // gives an RRset one TTL this is plain equality.
        auto stored = w.stored_rules();
        const auto data_key = rpz::classify_owner(name("rpz.example"),
                                                  name("data.example.rpz.example"));
        REQUIRE(data_key);
        for (auto& r : stored) {
            if (r.trigger != data_key->trigger || r.key != data_key->key) continue;
            for (auto& l : r.records)
                if (l.type == wire::kTypeA) l.ttl = 300;
            r.ttl = std::min_element(r.records.begin(), r.records.end(),
                                     [](const auto& x, const auto& y) { return x.ttl < y.ttl; })
                        ->ttl;
        }
        CHECK(replayed == stored);
    }
    SECTION("from the current serial, or a newer one: a single SOA") {
        for (std::uint32_t s : {44u, 45u}) {
            const auto soa = soa_with_serial(w, s);
            auto o = w.ask(query("rpz.example", wire::kTypeIxfr, 4, &soa), "192.0.2.7");
            CHECK_FALSE(o.stream);
            REQUIRE(o.messages.size() == 1);
            auto p = parse(o.messages[0]);
            REQUIRE(p.answer.size() == 1);
            CHECK(serial_of(p.answer[0]) == 44);
        }
    }
    SECTION("over UDP when behind: the current SOA only") {
        auto o = w.ask(query("rpz.example", wire::kTypeIxfr, 4, &s42), "192.0.2.7", false);
        CHECK_FALSE(o.stream);
        REQUIRE(o.messages.size() == 1);
        auto p = parse(o.messages[0]);
        REQUIRE(p.answer.size() == 1);
        CHECK(serial_of(p.answer[0]) == 44);
    }
    SECTION("from a serial the journal does not reach: the whole zone") {
        const auto s30 = soa_with_serial(w, 30);
        auto o = w.ask(query("rpz.example", wire::kTypeIxfr, 4, &s30), "192.0.2.7");
        REQUIRE(o.stream);
        auto recs = answers(drain(o));
        CHECK(serial_of(recs.front()) == 44);
        CHECK(recs[1].type == wire::kTypeNs);  // AXFR-style, not a difference sequence
        recs.pop_back();
        CHECK(rpz::zone_from_records(name("rpz.example"), recs, "ixfr").rules == w.stored_rules());
        CHECK(w.log.contains("the journal does not reach serial 30: sending the whole zone"));
    }
    SECTION("after a replace (journal cleared): the whole zone") {
        load_zone(w.st, "rpz.example", with_serial(v44, 44, 50));
        const auto s43 = soa_with_serial(w, 43);
        auto o = w.ask(query("rpz.example", wire::kTypeIxfr, 4, &s43), "192.0.2.7");
        REQUIRE(o.stream);
        auto recs = answers(drain(o));
        CHECK(serial_of(recs.front()) == 50);
        CHECK(recs[1].type == wire::kTypeNs);
    }
    SECTION("without the client's SOA: FORMERR") {
        auto o = w.ask(query("rpz.example", wire::kTypeIxfr), "192.0.2.7");
        CHECK_FALSE(o.stream);
        CHECK(parse(o.messages.at(0)).rcode == wire::kRcodeFormErr);
    }
}

TEST_CASE("Responder: UPDATE", "[xfrd][serve][update]") {
    World w(records_text());
    TsigSession client(upd_key());
    auto send = [&](const std::vector<UpdRr>& pre, const std::vector<UpdRr>& upd,
                    const std::string& ip = "127.0.0.1") {
        client = TsigSession(upd_key());
        auto o = w.ask(client.sign_request(update("rpz.example", pre, upd)), ip, false);
        REQUIRE(o.messages.size() == 1);
        auto p = parse(o.messages[0]);
        CHECK(p.opcode == wire::kOpcodeUpdate);
        CHECK(p.id == 0x4242);
        CHECK(client.verify_response(o.messages[0]) == TsigResult::Ok);
        return std::make_pair(p.rcode, std::move(o));
    };
    auto find = [&](const std::string& owner) -> std::optional<rpz::Rule> {
        const auto key = rpz::classify_owner(name("rpz.example"), name(owner + ".rpz.example"));
        REQUIRE(key);
        for (const auto& r : w.stored_rules())
            if (r.trigger == key->trigger && r.key == key->key) return r;
        return std::nullopt;
    };
    const std::uint16_t IN = wire::kClassIn, ANY = wire::kClassAny, NONE = wire::kClassNone;

    SECTION("add a rule: new serial, journal entry, status") {
        auto [rc, o] = send({}, {{IN, rr("new.example.rpz.example. 300 CNAME .")}});
        CHECK(rc == wire::kRcodeNoError);
        CHECK(o.changed_zone == std::optional<std::string>("rpz.example."));
        CHECK(w.serial() == 43);
        auto r = find("new.example");
        REQUIRE(r);
        CHECK(r->action == rpz::Action::Nxdomain);
        auto j = w.st.journal_since("rpz.example.", 42);
        REQUIRE(j);
        REQUIRE(j->size() == 1);
        CHECK(j->at(0).added.size() == 1);
        CHECK(j->at(0).removed.empty());
        auto st = w.st.status("rpz.example.");
        REQUIRE(st);
        CHECK(st->updates == 1);
        CHECK(st->last_source == "UPDATE from 127.0.0.1 key upd-key.");
        CHECK(
            w.log.contains("info zone rpz.example.: UPDATE from 127.0.0.1:5353 (key upd-key.): "
                           "serial 42 -> 43: 1 rules added, 0 removed, 0 changed"));
    }
    SECTION("serial wraps per RFC 1982") {
        push_text(w, with_serial(records_text(), 42, 4294967295u));
        auto [rc, o] = send({}, {{IN, rr("wrap.example.rpz.example. 300 CNAME .")}});
        CHECK(rc == wire::kRcodeNoError);
        CHECK(w.serial() == 0);
    }
    SECTION("change an action: the CNAME replaces the CNAME") {
        auto [rc, o] = send({}, {{IN, rr("nx.example.rpz.example. 300 CNAME rpz-passthru.")}});
        CHECK(rc == wire::kRcodeNoError);
        CHECK(find("nx.example")->action == rpz::Action::Passthru);
        CHECK(w.log.contains("0 rules added, 0 removed, 1 changed"));
    }
    SECTION("delete one RR, an RRset, a name") {
        auto [rc1, o1] = send({}, {{NONE, ttl0(rr("data.example.rpz.example. 300 A 192.0.2.2"))}});
        CHECK(rc1 == wire::kRcodeNoError);
        auto r = find("data.example");
        REQUIRE(r);
        CHECK(std::count_if(r->records.begin(), r->records.end(),
                            [](const auto& l) { return l.type == wire::kTypeA; }) == 1);
        auto [rc2, o2] = send({}, {{ANY, bare("data.example.rpz.example", wire::kTypeA)}});
        CHECK(rc2 == wire::kRcodeNoError);
        r = find("data.example");
        REQUIRE(r);
        CHECK(std::none_of(r->records.begin(), r->records.end(),
                           [](const auto& l) { return l.type == wire::kTypeA; }));
        CHECK_FALSE(r->records.empty());  // AAAA and TXT stay
        auto [rc3, o3] = send({}, {{ANY, bare("data.example.rpz.example", wire::kTypeAny)}});
        CHECK(rc3 == wire::kRcodeNoError);
        CHECK_FALSE(find("data.example"));
        CHECK(w.serial() == 45);
    }
    SECTION("delete then add in one message: applied in order") {
        auto [rc, o] = send({}, {{ANY, bare("data.example.rpz.example", wire::kTypeAny)},
                                 {IN, rr("data.example.rpz.example. 300 CNAME .")}});
        CHECK(rc == wire::kRcodeNoError);
        auto r = find("data.example");
        REQUIRE(r);
        CHECK(r->action == rpz::Action::Nxdomain);
        CHECK(w.serial() == 43);
    }
    SECTION("prerequisites") {
        struct Case {
            const char* what;
            UpdRr pre;
            std::uint8_t rcode;
        };
        const Case cases[] = {
            {"name in use (absent)",
             {ANY, bare("absent.example.rpz.example", wire::kTypeAny)},
             wire::kRcodeNxDomain},
            {"name in use (present)",
             {ANY, bare("nx.example.rpz.example", wire::kTypeAny)},
             wire::kRcodeNoError},
            {"name not in use (present)",
             {NONE, bare("nx.example.rpz.example", wire::kTypeAny)},
             wire::kRcodeYxDomain},
            {"name not in use (absent)",
             {NONE, bare("absent.example.rpz.example", wire::kTypeAny)},
             wire::kRcodeNoError},
            {"RRset exists (absent)",
             {ANY, bare("data.example.rpz.example", wire::kTypeCname)},
             wire::kRcodeNxRrset},
            {"RRset exists (present)",
             {ANY, bare("data.example.rpz.example", wire::kTypeA)},
             wire::kRcodeNoError},
            {"RRset does not exist (present)",
             {NONE, bare("data.example.rpz.example", wire::kTypeA)},
             wire::kRcodeYxRrset},
            {"RRset does not exist (absent)",
             {NONE, bare("data.example.rpz.example", wire::kTypeMx)},
             wire::kRcodeNoError},
            {"an ENT is not in use",
             {ANY, bare("example.rpz.example", wire::kTypeAny)},
             wire::kRcodeNxDomain},
            {"outside the zone",
             {ANY, bare("www.other.test", wire::kTypeAny)},
             wire::kRcodeNotZone},
        };
        for (const auto& c : cases) {
            INFO(c.what);
            const auto before = w.serial();
            auto [rc, o] = send(
                {c.pre},
                {{IN, rr("p" + std::to_string(before) + ".example.rpz.example. 300 CNAME .")}});
            CHECK(int(rc) == int(c.rcode));
            CHECK(w.serial() == (c.rcode == wire::kRcodeNoError ? before + 1 : before));
        }
    }
    SECTION("value-dependent prerequisites compare whole RRsets") {
        auto a1 = ttl0(rr("data.example.rpz.example. 300 A 192.0.2.1"));
        auto a2 = ttl0(rr("data.example.rpz.example. 300 A 192.0.2.2"));
        auto add = UpdRr{IN, rr("v.example.rpz.example. 300 CNAME .")};
        CHECK(send({{IN, a1}}, {add}).first == wire::kRcodeNxRrset);
        CHECK(w.serial() == 42);
        CHECK(send({{IN, a2}, {IN, a1}}, {add}).first == wire::kRcodeNoError);
        CHECK(w.serial() == 43);
        // Names in rdata compare case-insensitively (canonical form).
        auto mx = ttl0(rr("mx.example.rpz.example. 300 MX 10 mail.EXAMPLE.com."));
        CHECK(send({{IN, mx}}, {{IN, rr("v2.example.rpz.example. 300 CNAME .")}}).first ==
              wire::kRcodeNoError);
    }
    SECTION("a record the policy zone cannot hold refuses the whole update") {
        auto [rc, o] = send({}, {{IN, rr("fine.example.rpz.example. 300 CNAME .")},
                                 {IN, rr("1.2.3.rpz-ip.rpz.example. 300 CNAME .")}});
        CHECK(rc == wire::kRcodeRefused);
        CHECK(w.serial() == 42);
        CHECK_FALSE(find("fine.example"));
        CHECK(w.log.contains("the policy zone cannot hold these records"));
    }
    SECTION("deleting an RR as it was added matches its stored (normalised) form") {
        // The obsolete passthru form is stored as `CNAME rpz-passthru.`.
        auto [rc1, o1] = send({}, {{IN, rr("pt2.example.rpz.example. 300 CNAME pt2.example.")}});
        CHECK(rc1 == wire::kRcodeNoError);
        REQUIRE(find("pt2.example"));
        CHECK(find("pt2.example")->action == rpz::Action::Passthru);
        auto [rc2, o2] =
            send({}, {{NONE, ttl0(rr("pt2.example.rpz.example. 300 CNAME pt2.example."))}});
        CHECK(rc2 == wire::kRcodeNoError);
        CHECK_FALSE(find("pt2.example"));
        CHECK(w.serial() == 44);
        // An RRset delete by type matches it too.
        send({}, {{IN, rr("pt2.example.rpz.example. 300 CNAME pt2.example.")}});
        REQUIRE(find("pt2.example"));
        CHECK(send({}, {{ANY, bare("pt2.example.rpz.example", wire::kTypeCname)}}).first ==
              wire::kRcodeNoError);
        CHECK_FALSE(find("pt2.example"));
        // A DNAME is stored as NODATA (`CNAME *.`): deleting the DNAME, or
        // the DNAME RRset, removes it.
        send({}, {{IN, rr("dn.example.rpz.example. 300 DNAME elsewhere.test.")}});
        REQUIRE(find("dn.example"));
        CHECK(find("dn.example")->action == rpz::Action::Nodata);
        CHECK(send({}, {{NONE, ttl0(rr("dn.example.rpz.example. 300 DNAME elsewhere.test."))}})
                  .first == wire::kRcodeNoError);
        CHECK_FALSE(find("dn.example"));
        send({}, {{IN, rr("dn.example.rpz.example. 300 DNAME elsewhere.test.")}});
        REQUIRE(find("dn.example"));
        CHECK(send({}, {{ANY, bare("dn.example.rpz.example", 39)}}).first == wire::kRcodeNoError);
        CHECK_FALSE(find("dn.example"));
        CHECK(w.serial() == 50);  // eight changes
    }
    SECTION("a record skipped with a warning refuses the whole update") {
        auto [rc, o] = send({}, {{IN, rr("fine.example.rpz.example. 300 CNAME .")},
                                 {IN, rr("typo.example.rpz.example. 300 CNAME rpz-passthr.")}});
        CHECK(rc == wire::kRcodeRefused);
        CHECK(w.serial() == 42);
        CHECK_FALSE(o.changed_zone);
        CHECK_FALSE(find("fine.example"));
        CHECK_FALSE(find("typo.example"));
        CHECK(w.log.contains("record typo.example.rpz.example. CNAME would not be enforced: "
                             "unknown special CNAME target rpz-passthr."));
        CHECK(w.log.contains(": REFUSED"));
        // A warning that still stores the rule (DNAME = NODATA) does not refuse.
        CHECK(send({}, {{IN, rr("dn2.example.rpz.example. 300 DNAME x.test.")}}).first ==
              wire::kRcodeNoError);
        CHECK(find("dn2.example"));
    }
    SECTION("an RR joining an RRset gives the whole RRset its TTL") {
        CHECK(send({}, {{IN, rr("ttlmix.example.rpz.example. 300 A 192.0.2.1")}}).first ==
              wire::kRcodeNoError);
        CHECK(send({}, {{IN, rr("ttlmix.example.rpz.example. 60 A 192.0.2.2")}}).first ==
              wire::kRcodeNoError);
        auto r = find("ttlmix.example");
        REQUIRE(r);
        REQUIRE(r->records.size() == 2);
        CHECK(r->records[0].ttl == 60);
        CHECK(r->records[1].ttl == 60);
        // The journal (IXFR) carries the TTL change of 192.0.2.1.
        auto j = w.st.journal_since("rpz.example.", 43);
        REQUIRE(j);
        REQUIRE(j->size() == 1);
        CHECK(j->at(0).removed.size() == 1);
        CHECK(j->at(0).added.size() == 2);
        for (const auto& a : j->at(0).added) CHECK(a.ttl == 60);
    }
    SECTION("apex SOA/NS changes are ignored politely") {
        auto [rc, o] = send({}, {{IN, rr("rpz.example. 300 NS ns2.example.")},
                                 {ANY, bare("rpz.example", wire::kTypeSoa)}});
        CHECK(rc == wire::kRcodeNoError);
        CHECK(w.serial() == 42);
        CHECK_FALSE(o.changed_zone);
        CHECK(w.log.contains("ignored rpz.example. NS change at the apex"));
    }
    SECTION("a delete of something absent changes nothing") {
        auto [rc, o] = send({}, {{ANY, bare("absent.example.rpz.example", wire::kTypeAny)}});
        CHECK(rc == wire::kRcodeNoError);
        CHECK(w.serial() == 42);
        CHECK_FALSE(o.changed_zone);
    }
    SECTION("update RRs outside the zone: NOTZONE; bad classes: FORMERR") {
        CHECK(send({}, {{IN, rr("www.other.test. 300 CNAME .")}}).first == wire::kRcodeNotZone);
        CHECK(send({}, {{ANY, rr("x.example.rpz.example. 300 CNAME .")}}).first ==
              wire::kRcodeFormErr);
        CHECK(w.serial() == 42);
    }
    SECTION("refusals: unsigned, wrong address, secondary zone") {
        auto o = w.ask(update("rpz.example", {}, {{IN, rr("u.example.rpz.example. 300 CNAME .")}}),
                       "127.0.0.1", false);
        CHECK(parse(o.messages.at(0)).rcode == wire::kRcodeRefused);
        CHECK(w.log.contains(
            "UPDATE from 127.0.0.1:5353 (unsigned) refused: not allowed by allow-update"));
        CHECK(send({}, {{IN, rr("u.example.rpz.example. 300 CNAME .")}}, "127.0.0.2").first ==
              wire::kRcodeRefused);
        auto o2 = w.ask(update("secondary.rpz", {}, {{IN, rr("u.secondary.rpz. 300 CNAME .")}}),
                        "127.0.0.1", false);
        CHECK(parse(o2.messages.at(0)).rcode == wire::kRcodeRefused);
        CHECK(
            w.log.contains("zone secondary.rpz.: UPDATE from 127.0.0.1:5353 (unsigned) refused: "
                           "the zone is a secondary"));
        auto o3 = w.ask(update("unknown.example", {}, {}), "127.0.0.1", false);
        CHECK(parse(o3.messages.at(0)).rcode == wire::kRcodeNotAuth);
        CHECK(w.serial() == 42);
    }
}

TEST_CASE("Responder: NOTIFY", "[xfrd][serve][notify]") {
    World w(records_text());
    const auto soa = rpz::ZoneRecord{name("secondary.rpz"), wire::kTypeSoa, 60,
                                     wire::with_soa_serial(w.st.zone("rpz.example")->soa_rdata, 9)};
    auto notify = [&](std::string_view zone, std::uint16_t id) {
        return query(zone, wire::kTypeSoa, id, &soa, wire::kOpcodeNotify);
    };
    SECTION("from a primary (any port): acknowledged, refresh requested") {
        auto o = w.ask(notify("secondary.rpz", 0x7777), "127.0.0.5", false);
        REQUIRE(o.messages.size() == 1);
        auto p = parse(o.messages[0]);
        CHECK(p.id == 0x7777);
        CHECK(p.opcode == wire::kOpcodeNotify);
        CHECK(p.rcode == wire::kRcodeNoError);
        CHECK(p.qdcount == 1);
        CHECK(o.notified_zone == std::optional<std::string>("secondary.rpz."));
        CHECK(w.log.contains("info zone secondary.rpz.: NOTIFY from 127.0.0.5:5353 serial 9"));
    }
    SECTION("a primary with a key must sign") {
        auto o = w.ask(notify("secondary.rpz", 1), "127.0.0.6", false);
        CHECK(parse(o.messages.at(0)).rcode == wire::kRcodeRefused);
        CHECK_FALSE(o.notified_zone);
        TsigSession client(xfr_key());
        auto o2 = w.ask(client.sign_request(notify("secondary.rpz", 2)), "127.0.0.6", false);
        CHECK(parse(o2.messages.at(0)).rcode == wire::kRcodeNoError);
        CHECK(client.verify_response(o2.messages[0]) == TsigResult::Ok);
        CHECK(o2.notified_zone);
    }
    SECTION("allow-notify admits others") {
        auto o = w.ask(notify("rpz.example", 3), "192.0.2.9", false);
        CHECK(parse(o.messages.at(0)).rcode == wire::kRcodeNoError);
        CHECK(o.notified_zone == std::optional<std::string>("rpz.example."));
    }
    SECTION("strangers are refused; unknown zones NOTAUTH") {
        auto o = w.ask(notify("secondary.rpz", 4), "10.9.9.9", false);
        CHECK(parse(o.messages.at(0)).rcode == wire::kRcodeRefused);
        CHECK_FALSE(o.notified_zone);
        CHECK(
            w.log.contains("warning zone secondary.rpz.: NOTIFY from 10.9.9.9:5353 (unsigned) "
                           "refused: not a primary and not allowed by allow-notify"));
        auto o2 = w.ask(notify("unknown.example", 5), "127.0.0.5", false);
        CHECK(parse(o2.messages.at(0)).rcode == wire::kRcodeNotAuth);
    }
}

TEST_CASE("Responder: mutated requests never crash it", "[xfrd][serve][fuzz]") {
    World w(records_text());
    const auto s42 = soa_with_serial(w, 42);
    TsigSession client(upd_key());
    const std::vector<std::vector<std::uint8_t>> seeds = {
        query("rpz.example", wire::kTypeSoa),
        TsigSession(xfr_key()).sign_request(query("rpz.example", wire::kTypeAxfr)),
        query("rpz.example", wire::kTypeIxfr, 9, &s42),
        client.sign_request(update(
            "rpz.example",
            {{wire::kClassIn, ttl0(rr("data.example.rpz.example. 300 A 192.0.2.1"))}},
            {{wire::kClassIn, rr("f.example.rpz.example. 300 CNAME .")},
             {wire::kClassNone, ttl0(rr("mx.example.rpz.example. 300 MX 10 mail.example.com."))}})),
        query("secondary.rpz", wire::kTypeSoa, 3, &s42, wire::kOpcodeNotify),
    };
    std::uint64_t state = 0x9e3779b97f4a7c15ull;
    auto rnd = [&] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    };
    std::size_t answered = 0;
    for (int i = 0; i < 4000; ++i) {
        auto m = seeds[rnd() % seeds.size()];
        const int edits = 1 + static_cast<int>(rnd() % 4);
        for (int e = 0; e < edits; ++e) {
            switch (rnd() % 3) {
                case 0:
                    m[rnd() % m.size()] = static_cast<std::uint8_t>(rnd());
                    break;
                case 1:
                    m.resize(rnd() % m.size() + 1);
                    break;
                default:
                    m.insert(m.begin() + static_cast<long>(rnd() % m.size()),
                             static_cast<std::uint8_t>(rnd()));
            }
        }
        auto o = w.ask(m, rnd() % 2 ? "127.0.0.1" : "192.0.2.7", rnd() % 2 == 0);
        for (const auto& msg : o.messages) {
            REQUIRE(msg.size() >= 12);
            ++answered;
        }
        if (o.stream) {
            std::vector<std::uint8_t> out;
            int n = 0;
            while (n < 3 && o.stream->next(out)) ++n;
        }
    }
    CHECK(answered > 1000);
    // The zone is still whole and servable.
    auto o = w.ask(query("rpz.example", wire::kTypeAxfr), "192.0.2.7");
    REQUIRE(o.stream);
    auto recs = answers(drain(o));
    recs.pop_back();
    CHECK(rpz::zone_from_records(name("rpz.example"), recs, "axfr").rules == w.stored_rules());
}
