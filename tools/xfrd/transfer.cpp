// dnsfw::xfrd — parsing transfer responses and committing them to the store.
#include "tools/xfrd/transfer.hpp"

#include "tools/xfrd/serve_wire.hpp"

#include <ldns/ldns.h>

#include <algorithm>
#include <memory>

namespace dnsfw::xfrd {

namespace {

struct PktFree {
    void operator()(ldns_pkt* p) const noexcept { ldns_pkt_free(p); }
};
using PktPtr = std::unique_ptr<ldns_pkt, PktFree>;

bool is_apex_soa(const rpz::ZoneRecord& rr, const rpz::Name& apex) {
    return rr.type == wire::kTypeSoa && rr.owner == apex;
}

}  // namespace

TransferParser::TransferParser(rpz::Name apex, Mode mode, std::uint16_t query_id,
                               std::uint32_t client_serial, std::uint64_t max_bytes)
    : apex_(std::move(apex)),
      mode_(mode),
      query_id_(query_id),
      client_serial_(client_serial),
      max_bytes_(max_bytes) {}

TransferParser::Step TransferParser::fail(std::string why) {
    error_ = std::move(why);
    kind_ = Kind::None;
    return Step::Error;
}

TransferParser::Step TransferParser::feed(std::span<const std::uint8_t> message) {
    ++messages_;
    bytes_ += message.size();
    const std::string nth = "message " + std::to_string(messages_);
    if (bytes_ > max_bytes_)
        return fail("transfer exceeds max-transfer-size (" + std::to_string(max_bytes_) +
                    " bytes) at " + nth);
    auto hdr = wire::read_header(message);
    if (!hdr) return fail("malformed " + nth + ": shorter than a DNS header");
    if (hdr->id != query_id_)
        return fail(nth + " has ID " + std::to_string(hdr->id) + ", expected " +
                    std::to_string(query_id_));
    if (!hdr->qr() || hdr->opcode() != wire::kOpcodeQuery)
        return fail(nth + " is not a query response");
    if (hdr->rcode() != wire::kRcodeNoError) {
        rcode_ = hdr->rcode();
        const std::string rc = wire::rcode_name(hdr->rcode());
        if (mode_ == Mode::Ixfr && messages_ == 1) {
            error_ = "IXFR refused: " + rc;
            return Step::Fallback;
        }
        return fail("primary answered " + rc + " (" + nth + ")");
    }
    ldns_pkt* raw = nullptr;
    ldns_status st = ldns_wire2pkt(&raw, message.data(), message.size());
    PktPtr pkt(raw);
    if (st != LDNS_STATUS_OK)
        return fail("malformed " + nth + ": " + ldns_get_errorstr_by_id(st));
    if (messages_ == 1) {
        ldns_rr_list* q = ldns_pkt_question(pkt.get());
        if (q != nullptr && ldns_rr_list_rr_count(q) > 0) {
            const ldns_rr* qrr = ldns_rr_list_rr(q, 0);
            const ldns_rdf* owner = ldns_rr_owner(qrr);
            rpz::Name qname(ldns_rdf_data(owner), ldns_rdf_data(owner) + ldns_rdf_size(owner));
            wire::lower_name(qname);
            if (qname != apex_) return fail("response is for another zone (" + nth + ")");
        }
    }
    ldns_rr_list* answer = ldns_pkt_answer(pkt.get());
    const std::size_t n = answer == nullptr ? 0 : ldns_rr_list_rr_count(answer);
    if (n == 0 && state_ != State::FirstSoa) return fail(nth + " has no answer records");
    for (std::size_t i = 0; i < n; ++i) {
        const ldns_rr* lrr = ldns_rr_list_rr(answer, i);
        auto rr = wire::zone_record_from_ldns(lrr);
        if (!rr) return fail("malformed record " + std::to_string(i + 1) + " in " + nth);
        ++rrs_;
        Step s = record(std::move(*rr), static_cast<std::uint16_t>(ldns_rr_get_class(lrr)));
        if (s == Step::Error) return s;
        if (state_ == State::Done && i + 1 < n)
            return fail("records after the final SOA (" + nth + ")");
    }
    if (state_ == State::Done) return Step::Done;
    // A response of only the server's SOA, not newer than ours: up to date
    // (RFC 1995 section 2).
    if (state_ == State::FirstSoa && mode_ == Mode::Ixfr && messages_ == 1 && rrs_ == 1 &&
        !wire::serial_newer(new_serial_, client_serial_)) {
        state_ = State::Done;
        kind_ = Kind::UpToDate;
        return Step::Done;
    }
    return Step::More;
}

TransferParser::Step TransferParser::record(rpz::ZoneRecord&& rr, std::uint16_t rr_class) {
    if (rr_class != wire::kClassIn)
        return fail("record of class " + std::to_string(rr_class) + " in an IN zone");
    const bool soa = is_apex_soa(rr, apex_);
    switch (state_) {
        case State::Start: {
            if (!soa) return fail("the first record is not the SOA of " + rpz::name_to_text(apex_));
            auto serial = wire::soa_serial(rr.rdata);
            if (!serial) return fail("malformed SOA record");
            new_serial_ = *serial;
            new_soa_ttl_ = rr.ttl;
            new_soa_rdata_ = rr.rdata;
            if (mode_ == Mode::Ixfr && wire::serial_newer(client_serial_, new_serial_))
                return fail("the primary's serial " + std::to_string(new_serial_) +
                            " is older than ours (" + std::to_string(client_serial_) +
                            "): serial went backwards, refused");
            first_soa_ = std::move(rr);
            state_ = State::FirstSoa;
            return Step::More;
        }
        case State::FirstSoa: {
            auto serial = soa ? wire::soa_serial(rr.rdata) : std::nullopt;
            if (soa && !serial) return fail("malformed SOA record");
            if (mode_ == Mode::Ixfr && soa && *serial == client_serial_ &&
                new_serial_ != client_serial_) {
                kind_ = Kind::Incremental;
                IxfrSequence seq;
                seq.from = *serial;
                sequences_.push_back(std::move(seq));
                state_ = State::IxfrDel;
                return Step::More;
            }
            kind_ = Kind::Full;
            records_.push_back(first_soa_);
            if (soa) {
                // An empty zone: SOA, SOA.
                if (*serial != new_serial_)
                    return fail("the closing SOA has serial " + std::to_string(*serial) +
                                ", the opening one " + std::to_string(new_serial_));
                state_ = State::Done;
                return Step::More;
            }
            records_.push_back(std::move(rr));
            state_ = State::AxfrBody;
            return Step::More;
        }
        case State::AxfrBody: {
            if (soa) {
                auto serial = wire::soa_serial(rr.rdata);
                if (!serial || *serial != new_serial_)
                    return fail("a second SOA with serial " +
                                (serial ? std::to_string(*serial) : std::string("?")) +
                                " inside the zone (expected " + std::to_string(new_serial_) +
                                " to close it)");
                state_ = State::Done;
                return Step::More;
            }
            records_.push_back(std::move(rr));
            return Step::More;
        }
        case State::IxfrDel: {
            if (soa) {
                auto serial = wire::soa_serial(rr.rdata);
                if (!serial) return fail("malformed SOA record");
                IxfrSequence& seq = sequences_.back();
                seq.to = *serial;
                seq.to_soa_ttl = rr.ttl;
                seq.to_soa_rdata = std::move(rr.rdata);
                if (!wire::serial_newer(seq.to, seq.from))
                    return fail("IXFR sequence " + std::to_string(seq.from) + " -> " +
                                std::to_string(seq.to) + " does not increase the serial");
                state_ = State::IxfrAdd;
                return Step::More;
            }
            sequences_.back().removed.push_back(std::move(rr));
            return Step::More;
        }
        case State::IxfrAdd: {
            if (soa) {
                auto serial = wire::soa_serial(rr.rdata);
                if (!serial) return fail("malformed SOA record");
                const IxfrSequence& last = sequences_.back();
                if (*serial == new_serial_ && last.to == new_serial_) {
                    state_ = State::Done;
                    return Step::More;
                }
                if (*serial != last.to)
                    return fail("IXFR sequence starts at serial " + std::to_string(*serial) +
                                " but the previous one ended at " + std::to_string(last.to));
                IxfrSequence seq;
                seq.from = *serial;
                sequences_.push_back(std::move(seq));
                state_ = State::IxfrDel;
                return Step::More;
            }
            sequences_.back().added.push_back(std::move(rr));
            return Step::More;
        }
        case State::Done:
            return fail("records after the final SOA");
    }
    return fail("internal parser state");
}

// ---------------------------------------------------------------------------
// Commit

namespace {

std::unique_ptr<store::Snapshot> zone_snapshot(store::Store& store, const ZoneConfig& zone) {
    auto snap = store.snapshot({zone.name});
    if (snap->zone_count() == 0) return nullptr;
    return snap;
}

std::optional<rpz::Rule> stored_rule(const store::Snapshot& snap, const rpz::RuleKey& key) {
    auto view = snap.find(0, key.trigger, key.key);
    if (!view) return std::nullopt;
    rpz::Rule r = view->to_rule();
    r.trigger = key.trigger;
    r.key = key.key;
    return r;
}

bool rule_less(const rpz::Rule& a, const rpz::Rule& b) {
    if (a.trigger != b.trigger) return a.trigger < b.trigger;
    return a.key < b.key;
}

}  // namespace

void commit_ixfr(store::Store& store, const ZoneConfig& zone, std::vector<IxfrSequence>& sequences,
                 const std::string& label, CommitResult& result) {
    bool first = true;
    for (IxfrSequence& seq : sequences) {
        auto snap = zone_snapshot(store, zone);
        if (!snap) throw CommitError("zone " + zone.name + " is not in the store");
        const std::uint32_t stored = snap->zone_info(0).serial;
        if (first) {
            result.from_serial = stored;
            result.to_serial = stored;
            first = false;
        }
        if (stored != seq.from)
            throw CommitError("IXFR sequence " + std::to_string(seq.from) + " -> " +
                              std::to_string(seq.to) + " does not start at the stored serial " +
                              std::to_string(stored));
        std::vector<rpz::Diagnostic> diags;
        const store::Snapshot& s = *snap;
        store::ZoneDelta delta;
        delta.changes = rpz::apply_records(
            zone.apex, seq.removed, seq.added,
            [&s](const rpz::RuleKey& key) { return stored_rule(s, key); }, label, diags);
        for (const rpz::Rule& r : delta.changes.upserted) {
            if (s.find(0, r.trigger, r.key))
                ++result.changed_rules;
            else
                ++result.added;
        }
        result.removed += delta.changes.removed.size();
        result.diagnostics.insert(result.diagnostics.end(), diags.begin(), diags.end());
        // Release the read transaction before writing: while it is live this
        // process cannot grow the map (store.hpp).
        snap.reset();
        delta.zone = zone.name;
        delta.from_serial = seq.from;
        delta.to_serial = seq.to;
        delta.soa_ttl = seq.to_soa_ttl;
        delta.soa_rdata = seq.to_soa_rdata;
        store::ZoneInfo info = store.apply_delta(delta);
        result.to_serial = info.serial;
        result.rules = info.rule_count;
        result.changed = true;
        ++result.sequences;
        // The sequence's records are no longer needed: free them as we go.
        seq.removed = {};
        seq.added = {};
    }
}

CommitResult commit_axfr(store::Store& store, const ZoneConfig& zone,
                         std::span<const rpz::ZoneRecord> records, const std::string& label,
                         bool allow_older) {
    CommitResult result;
    rpz::Zone fresh = rpz::zone_from_records(zone.apex, records, label);
    fresh.name = zone.apex;
    result.diagnostics = std::move(fresh.diagnostics);
    fresh.diagnostics.clear();
    result.to_serial = fresh.serial;

    auto snap = zone_snapshot(store, zone);
    if (!snap) {
        store::ZoneInfo info = store.replace_zone(fresh);
        if (zone.journal_size) info = store.set_journal_limit(zone.name, *zone.journal_size);
        result.new_zone = true;
        result.changed = true;
        result.added = fresh.rules.size();
        result.rules = info.rule_count;
        result.to_serial = info.serial;
        return result;
    }
    const store::ZoneInfo stored = snap->zone_info(0);
    result.from_serial = stored.serial;
    if (!allow_older && wire::serial_newer(stored.serial, fresh.serial))
        throw CommitError("the primary's serial " + std::to_string(fresh.serial) +
                          " is older than the stored serial " + std::to_string(stored.serial) +
                          ": serial went backwards, refused");
    std::vector<rpz::Rule> old_rules;
    old_rules.reserve(stored.rule_count);
    snap->for_each_rule(0, [&](rpz::Trigger t, std::span<const std::uint8_t> key,
                               const rpz::RuleView& view) {
        rpz::Rule r = view.to_rule();
        r.trigger = t;
        r.key.assign(key.begin(), key.end());
        old_rules.push_back(std::move(r));
    });
    snap.reset();  // before any write (map growth)
    if (!std::is_sorted(old_rules.begin(), old_rules.end(), rule_less))
        std::sort(old_rules.begin(), old_rules.end(), rule_less);
    if (!std::is_sorted(fresh.rules.begin(), fresh.rules.end(), rule_less))
        std::sort(fresh.rules.begin(), fresh.rules.end(), rule_less);
    rpz::RuleDelta diff = rpz::diff_rules(zone.apex, old_rules, fresh.rules);
    for (const rpz::Rule& r : diff.upserted) {
        bool existed = std::binary_search(old_rules.begin(), old_rules.end(), r, rule_less);
        if (existed)
            ++result.changed_rules;
        else
            ++result.added;
    }
    result.removed = diff.removed.size();
    old_rules = {};
    if (wire::serial_newer(stored.serial, fresh.serial)) {
        // allow_older: no journal entry can lead backwards; replace, which
        // also clears the journal (downstream secondaries then AXFR).
        store::ZoneInfo info = store.replace_zone(fresh);
        result.changed = true;
        result.rules = info.rule_count;
        result.to_serial = info.serial;
        return result;
    }
    if (fresh.serial == stored.serial) {
        result.rules = stored.rule_count;
        if (diff.empty() && fresh.soa_rdata == stored.soa_rdata) return result;  // nothing new
        // Same serial, other content: no journal entry can describe it
        // (serial N -> N); replace, which also clears the journal.
        store::ZoneInfo info = store.replace_zone(fresh);
        result.changed = true;
        result.rules = info.rule_count;
        return result;
    }
    store::ZoneDelta delta;
    delta.zone = zone.name;
    delta.from_serial = stored.serial;
    delta.to_serial = fresh.serial;
    delta.soa_ttl = fresh.soa_ttl;
    delta.soa_rdata = fresh.soa_rdata;
    delta.changes = std::move(diff);
    store::ZoneInfo info = store.apply_delta(delta);
    result.changed = true;
    result.rules = info.rule_count;
    result.to_serial = info.serial;
    return result;
}

}  // namespace dnsfw::xfrd
