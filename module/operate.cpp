// The query path: Unbound query state -> rpz::Query -> Decision -> answer.
#include "module/operate.hpp"

#include "module/answer.hpp"
#include "module/cache.hpp"
#include "module/facts.hpp"
#include "module/text.hpp"
#include "module/watch.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <new>

extern "C" {
#include "sldns/pkthdr.h"
}

namespace dnsfw::module {

namespace {

/// Per-query state (qstate->minfo[id]), allocated in the query's region.
struct QueryState {
    enum class Phase : std::uint8_t {
        Passed,      ///< passed on to the next module under store `generation`
        WaitTarget,  ///< waits for the resolution of a redirect target
        TargetDone,  ///< the target's result is in `target` / `target_rcode`
        Anchor,      ///< a refresh query anchoring the cache sweep (sweep.hpp)
    };
    Phase phase = Phase::Passed;
    std::uint64_t generation = 0;          ///< store generation of the decision (Passed)
    ub_packed_rrset_key* cname = nullptr;  ///< the synthesised CNAME (answer head)
    ub_packed_rrset_key* soa = nullptr;    ///< the policy zone's SOA, or nullptr
    /// Upstream CNAMEs kept in front of a rewrite at a later chain link.
    ub_packed_rrset_key* const* prefix = nullptr;
    std::size_t n_prefix = 0;
    dns_msg* target = nullptr;             ///< target's answer (copied), or nullptr
    int target_rcode = 0;                  ///< rcode when target is nullptr
    /// The query-stage decision is final and says "resolve and keep the
    /// answer" (PASSTHRU, or TCP-only over TCP): no evaluation on moddone.
    bool keep = false;
    /// A PASSTHRU rule matched: keep the resolved answer out of the message
    /// cache, so every such query reaches this module (and is logged).
    bool uncache = false;
    /// Link 0 was evaluated at the query stage without a match and without
    /// a pending response-stage trigger: moddone starts at chain link 1.
    bool link0_done = false;
    /// The modules below must not store the answer in the message cache
    /// (qstate->no_cache_store, toggled per upstream reply by
    /// on_query_response()); moddone stores it once it is approved.
    bool guard = false;
    /// qstate->no_cache_store before guard_cache() set it.
    bool saved_no_cache_store = false;
    /// Anchor: the outstanding wake-up query (nullptr once its reply or
    /// timeout was delivered), and how many were sent.
    outbound_entry* wakeup = nullptr;
    std::uint32_t wakeups = 0;
    /// Anchor: the wake-up query's name ("w<n>" + kRefreshSuffix), in the
    /// query's region, rewritten for each query (Unbound copies it).
    std::uint8_t* wake_name = nullptr;
};

/// An anchor gives up after this many wake-up queries (about a minute of
/// sweeping at one per 20 ms); the maintenance thread then has the next
/// refresh query anchor the rest of the sweep.
constexpr std::uint32_t kMaxWakeups = 3000;

/// Everything the answer builders need about the applied policy.
struct Applied {
    const rpz::Decision* decision = nullptr;
    WorkerSlot* slot = nullptr;
    /// The chain link the rule matched (the qname at the query stage): owner
    /// of synthesised records and base of `*.suffix` CNAME targets.
    std::span<const std::uint8_t> owner;
    /// Upstream CNAMEs kept in front of the policy answer (moddone only).
    std::span<ub_packed_rrset_key* const> prefix;
    std::uint16_t ede = 0;
    bool with_ede = false;
};

/// Hands the query to the next module, remembering the store generation of
/// the decision (nullptr slot: unprotected / unpoliced, nothing to redo).
QueryState* pass_on(module_qstate* qstate, int id, const WorkerSlot* slot = nullptr) noexcept {
    QueryState* qs = nullptr;
    if (slot != nullptr) {
        qs = static_cast<QueryState*>(regional_alloc(qstate->region, sizeof(QueryState)));
        if (qs != nullptr) {
            new (qs) QueryState{};
            qs->generation = slot->generation;
            qstate->minfo[id] = qs;
        }
    }
    qstate->ext_state[id] = module_wait_module;
    return qs;
}

/// Keeps the answer of a passed-on query out of the message cache until
/// moddone has approved it: otherwise another worker thread could serve it
/// from the cache, without any module, between the iterator's (or
/// validator's) store and this module's removal. Referrals still reach the
/// cache (on_query_response() lifts the flag for them).
void guard_cache(module_qstate* qstate, QueryState* qs) noexcept {
    if (qs == nullptr) return;
    qs->guard = true;
    qs->saved_no_cache_store = qstate->no_cache_store != 0;
    qstate->no_cache_store = 1;
}

void finish(module_qstate* qstate, int id, dns_msg* msg) noexcept {
    if (msg == nullptr) {
        // Out of memory in the region: SERVFAIL, never the unfiltered answer.
        qstate->return_msg = nullptr;
        qstate->return_rcode = LDNS_RCODE_SERVFAIL;
        qstate->ext_state[id] = module_error;
        return;
    }
    qstate->return_msg = msg;
    qstate->return_rcode = LDNS_RCODE_NOERROR;
    qstate->ext_state[id] = module_finished;
}

HitTransport to_hit_transport(dnsfw_ub_transport t) noexcept {
    switch (t) {
    case DNSFW_UB_UDP: return HitTransport::Udp;
    case DNSFW_UB_TCP: return HitTransport::Tcp;
    case DNSFW_UB_TLS: return HitTransport::Tls;
    case DNSFW_UB_HTTPS: return HitTransport::Https;
    case DNSFW_UB_OTHER: break;
    }
    return HitTransport::Other;
}

rpz::Transport to_query_transport(dnsfw_ub_transport t) noexcept {
    switch (t) {
    case DNSFW_UB_UDP: return rpz::Transport::Udp;
    case DNSFW_UB_TCP:
    case DNSFW_UB_TLS:
    case DNSFW_UB_HTTPS: return rpz::Transport::Tcp;
    case DNSFW_UB_OTHER: break;
    }
    return rpz::Transport::Other;
}

/// Queues one hit-log record (if the hit log is on and the zone logs).
/// `matched` is the name the rule was evaluated for (the query name or a
/// CNAME chain link).
void push_hit(ModuleState& state, const module_qstate* qstate, const dnsfw_ub_client& client,
              const rpz::Match& m, rpz::Action action, bool disabled,
              std::span<const std::uint8_t> matched, const store::Snapshot& snapshot) noexcept {
    HitLog* log = state.hit_log();
    if (log == nullptr || m.zone >= snapshot.zone_count() || !snapshot.policy(m.zone).log) return;
    HitRecord r;
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    r.time_ns = static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    r.qtype = qstate->qinfo.qtype;
    r.transport = to_hit_transport(client.transport);
    if (client.addr.ss_family == AF_INET) {
        sockaddr_in sin{};
        std::memcpy(&sin, &client.addr, sizeof sin);
        r.family = 4;
        std::memcpy(r.address.data(), &sin.sin_addr, 4);
        r.port = ntohs(sin.sin_port);
    } else if (client.addr.ss_family == AF_INET6) {
        sockaddr_in6 sin6{};
        std::memcpy(&sin6, &client.addr, sizeof sin6);
        r.family = 6;
        std::memcpy(r.address.data(), &sin6.sin6_addr, 16);
        r.port = ntohs(sin6.sin6_port);
    }
    r.trigger = m.trigger;
    r.action = action;
    r.disabled = disabled;
    const std::size_t qlen = std::min(qstate->qinfo.qname_len, r.qname.size());
    std::memcpy(r.qname.data(), qstate->qinfo.qname, qlen);
    r.qname_len = static_cast<std::uint16_t>(qlen);
    const std::size_t mlen = std::min(matched.size(), r.match.size());
    std::memcpy(r.match.data(), matched.data(), mlen);
    r.match_len = static_cast<std::uint16_t>(mlen);
    const auto key = m.key.view();
    const std::size_t klen = std::min(key.size(), r.key.size());
    std::memcpy(r.key.data(), key.data(), klen);
    r.key_len = static_cast<std::uint16_t>(klen);
    const std::string& zone = snapshot.zone_info(m.zone).name;
    const std::size_t zlen = std::min(zone.size(), r.zone.size());
    std::memcpy(r.zone.data(), zone.data(), zlen);
    r.zone_len = static_cast<std::uint16_t>(zlen);
    log->push(r);
}

/// Logs the matches of DISABLED zones ("disabled:<what the zone would have done>").
/// `matched`: the name evaluated (query name or chain link).
void log_disabled(ModuleState& state, const module_qstate* qstate, const dnsfw_ub_client& client,
                  const rpz::Decision& d, std::span<const std::uint8_t> matched,
                  const store::Snapshot& snapshot) noexcept {
    for (std::size_t i = 0; i < d.n_disabled && i < d.disabled.size(); ++i) {
        const rpz::Match& m = d.disabled[i];
        const rpz::Action would = m.rule ? m.rule->action() : rpz::Action::Passthru;
        push_hit(state, qstate, client, m, would, true, matched, snapshot);
    }
}

/// "dnsfw: zone threat.rpz. rule *.bad.example nxdomain", after the zone's
/// own EDE text if it has one.
bool attach_ede(module_qstate* qstate, const Applied& a) noexcept {
    if (!a.with_ede) return true;
    char storage[1400];
    TextBuffer t(storage, sizeof storage);
    const rpz::ZonePolicy* policy = a.decision->policy;
    if (policy != nullptr && !policy->ede_text.empty()) {
        t.append(policy->ede_text);
        t.append("; ");
    }
    t.append("dnsfw: zone ");
    t.append(a.slot->snapshot->zone_info(a.decision->zone).name);
    t.append(" rule ");
    char key[rpz::kMaxNameText + 1];
    const std::size_t n =
        rpz::format_rule_key(a.decision->trigger, a.decision->key.view(), {key, sizeof key});
    t.append(n != 0 ? std::string_view(key, n) : std::string_view("<invalid>"));
    t.append(' ');
    t.append(rpz::to_string(a.decision->action()));
    return add_ede(qstate, a.ede, t.view());
}

/// The policy zone's SOA for the additional section (owner = zone apex,
/// TTL = the SOA's TTL capped by max-policy-ttl), or nullptr if the zone has
/// none or its add-soa setting is off.
ub_packed_rrset_key* policy_soa(module_qstate* qstate, const Applied& a) noexcept {
    const std::size_t z = a.decision->zone;
    if (a.decision->policy != nullptr && !a.decision->policy->add_soa) return nullptr;
    if (z >= a.slot->apex.size() || a.slot->apex[z].empty()) return nullptr;
    const store::ZoneInfo& info = a.slot->snapshot->zone_info(z);
    if (info.soa_rdata.empty()) return nullptr;
    const RrSpec soa{LDNS_RR_TYPE_SOA, a.decision->cap_ttl(info.soa_ttl), info.soa_rdata};
    return make_rrset(qstate->region, a.slot->apex[z], LDNS_RR_TYPE_SOA, LDNS_RR_CLASS_IN,
                      {&soa, 1});
}

/// `a.prefix` followed by `sets` (null entries skipped later), in the region.
std::span<ub_packed_rrset_key* const> with_prefix(module_qstate* qstate, const Applied& a,
                                                  std::span<ub_packed_rrset_key* const> sets,
                                                  bool& ok) noexcept {
    ok = true;
    if (a.prefix.empty()) return sets;
    auto** all = static_cast<ub_packed_rrset_key**>(regional_alloc(
        qstate->region, sizeof(ub_packed_rrset_key*) * (a.prefix.size() + sets.size())));
    if (all == nullptr) {
        ok = false;
        return {};
    }
    std::copy(a.prefix.begin(), a.prefix.end(), all);
    std::copy(sets.begin(), sets.end(), all + a.prefix.size());
    return {all, a.prefix.size() + sets.size()};
}

/// NXDOMAIN, NODATA (NOERROR, empty) or another rcode without answer data
/// (but with the upstream CNAMEs in front of a later chain link).
void answer_negative(module_qstate* qstate, int id, const Applied& a, int rcode) noexcept {
    ub_packed_rrset_key* additional[1] = {policy_soa(qstate, a)};
    attach_ede(qstate, a);
    bool ok = true;
    const auto answer = with_prefix(qstate, a, {}, ok);
    if (!ok) return finish(qstate, id, nullptr);
    finish(qstate, id, make_reply(qstate, rcode, false, {answer, {}, additional}));
}

/// The CNAME target of a local-data CNAME: the stored name, or for a
/// `*.suffix` target the chain link's name prepended to the suffix. Returns
/// false (YXDOMAIN) if the result would exceed 255 octets (or the stored
/// name is malformed).
bool cname_target(std::span<const std::uint8_t> owner, bool wildcard,
                  std::span<const std::uint8_t> rdata, std::uint8_t* out, std::size_t& len) noexcept {
    if (rpz::name_wire_length(rdata) != rdata.size()) return false;  // malformed in the store
    if (!wildcard) {
        if (rdata.size() > rpz::kMaxNameWire) return false;
        std::memcpy(out, rdata.data(), rdata.size());
        len = rdata.size();
        return true;
    }
    const std::size_t prefix = owner.size() - 1;  // without the root label
    if (prefix + rdata.size() > rpz::kMaxNameWire) return false;
    std::memcpy(out, owner.data(), prefix);
    std::memcpy(out + prefix, rdata.data(), rdata.size());
    len = prefix + rdata.size();
    return true;
}

/// Starts resolving `target` for the query's type; the answer is completed
/// in finish_redirect() once handle_inform_super() delivered the result.
void start_redirect(module_qstate* qstate, int id, const Applied& a, ub_packed_rrset_key* cname,
                    std::span<const std::uint8_t> target) noexcept {
    ub_packed_rrset_key* soa = policy_soa(qstate, a);
    attach_ede(qstate, a);

    query_info sub_info{};
    sub_info.qname = static_cast<std::uint8_t*>(
        regional_alloc_init(qstate->region, target.data(), target.size()));
    sub_info.qname_len = target.size();
    sub_info.qtype = qstate->qinfo.qtype;
    sub_info.qclass = qstate->qinfo.qclass;
    sub_info.local_alias = nullptr;
    auto* qs = static_cast<QueryState*>(regional_alloc(qstate->region, sizeof(QueryState)));
    if (sub_info.qname == nullptr || qs == nullptr) {
        finish(qstate, id, nullptr);
        return;
    }
    new (qs) QueryState{};
    qs->phase = QueryState::Phase::WaitTarget;
    qs->cname = cname;
    qs->soa = soa;
    qs->prefix = a.prefix.data();
    qs->n_prefix = a.prefix.size();

    const auto flags = static_cast<std::uint16_t>(BIT_RD | (qstate->query_flags & BIT_CD));
    module_env* env = qstate->env;
    if ((*env->detect_cycle)(qstate, &sub_info, flags, 0, 0)) {
        // The target depends on this very query: answer the CNAME alone.
        ub_packed_rrset_key* head[1] = {cname};
        bool ok = true;
        const auto answer = with_prefix(qstate, a, head, ok);
        ub_packed_rrset_key* additional[1] = {soa};
        if (!ok) return finish(qstate, id, nullptr);
        finish(qstate, id, make_reply(qstate, LDNS_RCODE_NOERROR, false, {answer, {}, additional}));
        return;
    }
    module_qstate* sub = nullptr;
    if (!(*env->attach_sub)(qstate, &sub_info, flags, 0, 0, &sub)) {
        finish(qstate, id, nullptr);
        return;
    }
    if (sub != nullptr) {
        // A new state: start it at this module, which passes it on (it has
        // no client of its own, so no policy applies to it).
        sub->curmod = id;
        sub->ext_state[id] = module_state_initial;
        sub->minfo[id] = nullptr;
    }
    qstate->minfo[id] = qs;
    qstate->ext_state[id] = module_wait_subquery;
}

void finish_redirect(module_qstate* qstate, int id, QueryState& qs) noexcept {
    qstate->minfo[id] = nullptr;
    if (qs.target == nullptr || qs.target->rep == nullptr) {
        qstate->return_msg = nullptr;
        qstate->return_rcode = qs.target_rcode != 0 ? qs.target_rcode : LDNS_RCODE_SERVFAIL;
        qstate->ext_state[id] = module_finished;
        return;
    }
    const reply_info& rep = *qs.target->rep;
    const std::size_t an = rep.an_numrrsets;
    const std::size_t ns = rep.ns_numrrsets;
    const std::size_t ar = rep.rrset_count - an - ns;
    const std::size_t head = qs.n_prefix + 1;
    auto** answer = static_cast<ub_packed_rrset_key**>(
        regional_alloc(qstate->region, sizeof(ub_packed_rrset_key*) * (an + head)));
    auto** additional = static_cast<ub_packed_rrset_key**>(
        regional_alloc(qstate->region, sizeof(ub_packed_rrset_key*) * (ar + 1)));
    if (answer == nullptr || additional == nullptr) {
        finish(qstate, id, nullptr);
        return;
    }
    if (qs.n_prefix != 0) std::copy(qs.prefix, qs.prefix + qs.n_prefix, answer);
    answer[qs.n_prefix] = qs.cname;
    std::copy(rep.rrsets, rep.rrsets + an, answer + head);
    std::copy(rep.rrsets + an + ns, rep.rrsets + rep.rrset_count, additional);
    additional[ar] = qs.soa;
    const ReplySections sections{{answer, an + head}, {rep.rrsets + an, ns}, {additional, ar + 1}};
    finish(qstate, id, make_reply(qstate, FLAGS_GET_RCODE(rep.flags), false, sections));
}

/// Local data: the records of the query type (all for ANY); else a CNAME
/// redirect; else NODATA. A zone's CNAME override stands for the rule's
/// records. TTLs are capped by the zone's max-policy-ttl.
void answer_local_data(module_qstate* qstate, int id, const Applied& a) noexcept {
    const rpz::Decision& d = *a.decision;
    const std::uint16_t qtype = qstate->qinfo.qtype;
    const bool any = qtype == LDNS_RR_TYPE_ANY;
    const bool override_cname = d.cname_override();
    const std::size_t n = override_cname ? 1 : d.rule->record_count();

    auto* matching = static_cast<RrSpec*>(regional_alloc(qstate->region, sizeof(RrSpec) * (n + 1)));
    if (matching == nullptr) {
        finish(qstate, id, nullptr);
        return;
    }
    std::size_t m = 0;
    RrSpec cname{};
    bool have_cname = false;
    bool wildcard_target = false;
    auto take = [&](std::uint16_t type, std::uint32_t ttl, std::span<const std::uint8_t> rdata) {
        const RrSpec rr{type, d.cap_ttl(ttl), rdata};
        if (type == qtype || any) new (&matching[m++]) RrSpec(rr);
        if (type == LDNS_RR_TYPE_CNAME && !have_cname) {
            cname = rr;
            have_cname = true;
        }
    };
    if (override_cname) {
        take(LDNS_RR_TYPE_CNAME, d.rule ? d.rule->ttl() : 0, d.policy->override_cname);
        wildcard_target = d.policy->override_cname_wildcard;
    } else {
        d.rule->for_each_record(
            [&](const rpz::RuleView::RecordView& r) { take(r.type, r.ttl, r.rdata); });
        wildcard_target = (d.rule->flags() & rpz::kCnameWildcardTarget) != 0;
    }

    // A CNAME in the answer carries the computed target.
    std::uint8_t target[rpz::kMaxNameWire + 1];
    std::size_t target_len = 0;
    if (have_cname) {
        if (!cname_target(a.owner, wildcard_target, cname.rdata, target, target_len)) {
            answer_negative(qstate, id, a, LDNS_RCODE_YXDOMAIN);  // RFC 6672 style
            return;
        }
        cname.rdata = {target, target_len};
        for (std::size_t i = 0; i < m; ++i) {
            if (matching[i].type == LDNS_RR_TYPE_CNAME) matching[i].rdata = cname.rdata;
        }
    }

    if (m > 0) {
        // One RRset per type, in the order the types first appear.
        auto** sets = static_cast<ub_packed_rrset_key**>(
            regional_alloc(qstate->region, sizeof(ub_packed_rrset_key*) * m));
        auto* same = static_cast<RrSpec*>(regional_alloc(qstate->region, sizeof(RrSpec) * m));
        if (sets == nullptr || same == nullptr) {
            finish(qstate, id, nullptr);
            return;
        }
        std::size_t n_sets = 0;
        for (std::size_t i = 0; i < m; ++i) {
            const std::uint16_t type = matching[i].type;
            bool seen = false;
            for (std::size_t j = 0; j < i && !seen; ++j) seen = matching[j].type == type;
            if (seen) continue;
            std::size_t k = 0;
            for (std::size_t j = i; j < m; ++j) {
                if (matching[j].type == type) new (&same[k++]) RrSpec(matching[j]);
            }
            sets[n_sets] = make_rrset(qstate->region, a.owner, type, LDNS_RR_CLASS_IN, {same, k});
            if (sets[n_sets] == nullptr) {
                finish(qstate, id, nullptr);
                return;
            }
            ++n_sets;
        }
        ub_packed_rrset_key* additional[1] = {policy_soa(qstate, a)};
        attach_ede(qstate, a);
        bool ok = true;
        const auto answer = with_prefix(qstate, a, {sets, n_sets}, ok);
        if (!ok) return finish(qstate, id, nullptr);
        finish(qstate, id, make_reply(qstate, LDNS_RCODE_NOERROR, false, {answer, {}, additional}));
        return;
    }
    if (have_cname) {
        ub_packed_rrset_key* set =
            make_rrset(qstate->region, a.owner, LDNS_RR_TYPE_CNAME, LDNS_RR_CLASS_IN, {&cname, 1});
        if (set == nullptr) {
            finish(qstate, id, nullptr);
            return;
        }
        start_redirect(qstate, id, a, set, {target, target_len});
        return;
    }
    answer_negative(qstate, id, a, LDNS_RCODE_NOERROR);  // NODATA
}

/// The fallback sweep: this resolver thread sweeps the whole message cache
/// itself (and answers nothing else meanwhile).
void sweep_here(ModuleState& state, module_env* env, const WorkerSlot& slot) noexcept {
    timespec t0{};
    timespec t1{};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const SweepResult r = remove_policed_answers(env, slot);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    state.note_swept(slot.generation);
    const auto us = (t1.tv_sec - t0.tv_sec) * 1'000'000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
    state.log_sweep(slot.generation, slot.snapshot->zone_count(), r,
                    std::chrono::microseconds(us), "resolver thread");
}

/// Sends the anchor's next wake-up query to the maintenance thread
/// ("w<n>.refresh.dnsfw.internal. A"); its reply comes as
/// module_event_reply (or module_event_noreply).
bool send_wakeup(ModuleState& state, module_qstate* qstate, QueryState& qs) noexcept {
    const RefreshTarget& to = state.wake_address();
    if (to.len == 0) return false;
    char label[16];
    std::size_t l = 0;
    label[l++] = 'w';
    std::uint32_t v = qs.wakeups;
    char digits[12];
    std::size_t d = 0;
    do {
        digits[d++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (d > 0) label[l++] = digits[--d];
    const std::size_t len = 1 + l + sizeof kRefreshSuffix;
    if (qs.wake_name == nullptr) {
        qs.wake_name = static_cast<std::uint8_t*>(
            regional_alloc(qstate->region, 1 + sizeof label + sizeof kRefreshSuffix));
        if (qs.wake_name == nullptr) return false;
    }
    std::uint8_t* name = qs.wake_name;
    name[0] = static_cast<std::uint8_t>(l);
    std::memcpy(name + 1, label, l);
    std::memcpy(name + 1 + l, kRefreshSuffix, sizeof kRefreshSuffix);
    qs.wakeup = dnsfw_ub_send_wakeup(qstate, name, len, kRefreshSuffix, sizeof kRefreshSuffix,
                                     &to.addr, to.len);
    if (qs.wakeup == nullptr) return false;
    ++qs.wakeups;
    return true;
}

/// The refresh query of a store change that still has to be swept for:
/// park it as the sweep's anchor (sweep.hpp). False if it is not needed
/// (no sweep due, another anchor, fallback mode) or failed to start; the
/// caller then answers it at once.
bool anchor_sweep(ModuleState& state, module_qstate* qstate, int id,
                  const WorkerSlot& slot) noexcept {
    if (!state.anchor_wanted() || state.worker_sweeps(slot.generation)) return false;
    auto* qs = static_cast<QueryState*>(regional_alloc(qstate->region, sizeof(QueryState)));
    if (qs == nullptr) return false;
    new (qs) QueryState{};
    qs->phase = QueryState::Phase::Anchor;
    if (!state.sweep_gate().anchor(qs, {qstate->env->msg_cache, qstate->env->rrset_cache})) {
        return false;  // another resolver thread anchors it
    }
    qstate->minfo[id] = qs;
    if (send_wakeup(state, qstate, *qs)) {
        qstate->ext_state[id] = module_wait_reply;
        return true;
    }
    state.sweep_gate().release(qs);
    qstate->minfo[id] = nullptr;
    state.fall_back_to_worker_sweep(
        "Unbound could not send a query to the maintenance thread's loopback socket");
    if (state.worker_sweeps(slot.generation) && state.claim_sweep(slot.generation)) {
        sweep_here(state, qstate->env, slot);
    }
    return false;
}

/// The refresh query's answer (the module answers it itself; never resolved).
void refuse(module_qstate* qstate, int id) noexcept {
    qstate->return_msg = nullptr;
    qstate->return_rcode = LDNS_RCODE_REFUSED;
    qstate->ext_state[id] = module_finished;
}

/// The anchor's wake-up query was answered (or timed out): wait on while
/// the sweep is due, else end the anchor and answer the refresh query.
void anchor_woken(ModuleState& state, module_qstate* qstate, int id, QueryState& qs) noexcept {
    qs.wakeup = nullptr;  // delivered: nothing to stop any more
    if (state.anchor_wanted() && qs.wakeups < kMaxWakeups && send_wakeup(state, qstate, qs)) {
        qstate->ext_state[id] = module_wait_reply;
        return;
    }
    state.sweep_gate().release(&qs);
    qstate->minfo[id] = nullptr;
    refuse(qstate, id);
}

/// The worker's slot, brought up to date; in the fallback mode sweeps the
/// message cache if this thread is the first to see a new store
/// generation. nullptr while unprotected (fail-open) or if the thread is
/// unknown.
WorkerSlot* current_slot(ModuleState& state, module_qstate* qstate) noexcept {
    Protection* protection = state.protection();
    if (protection == nullptr) return nullptr;
    const int thread = dnsfw_ub_thread_num(qstate->env);
    WorkerSlot* slot = thread >= 0 ? protection->slot(static_cast<std::size_t>(thread)) : nullptr;
    if (slot == nullptr || !slot->snapshot) return nullptr;
    slot->sync();
    // CLIENT-IP rules: every client query gets its own mesh state, so a
    // client never receives the answer decided for another client that
    // asked the same question at the same time (Unbound's own switch, as
    // the subnetcache module uses it; env is this worker's).
    if (slot->client_ip_rules && !qstate->env->unique_mesh) {
        qstate->env->unique_mesh = 1;
        slot->set_unique_mesh = true;
    } else if (!slot->client_ip_rules && slot->set_unique_mesh) {
        qstate->env->unique_mesh = 0;
        slot->set_unique_mesh = false;
    }
    if (state.worker_sweeps(slot->generation) && state.claim_sweep(slot->generation)) {
        sweep_here(state, qstate->env, *slot);
    }
    return slot;
}

/// Applies a matched decision at chain link `owner` (with the upstream
/// CNAMEs `prefix` in front, on moddone), or passes on if it did not match.
void apply(ModuleState& state, module_qstate* qstate, int id, const dnsfw_ub_client& client,
           WorkerSlot* slot, const rpz::Decision& decision, std::span<const std::uint8_t> owner,
           std::span<ub_packed_rrset_key* const> prefix, bool at_moddone) noexcept {
    auto keep = [&](bool uncache) {
        if (at_moddone) {
            if (uncache) remove_cached_answer(qstate);
            qstate->ext_state[id] = module_finished;
            return;
        }
        if (QueryState* qs = pass_on(qstate, id, slot); qs != nullptr) {
            qs->keep = true;
            qs->uncache = uncache;
        }
    };
    const rpz::Action action = decision.action();
    ++slot->applied[static_cast<std::size_t>(action) & 7];
    push_hit(state, qstate, client, decision, action, false, owner, *slot->snapshot);

    Applied a;
    a.decision = &decision;
    a.slot = slot;
    a.owner = owner;
    a.prefix = prefix;
    if (state.config().ede) {
        const std::optional<std::uint16_t> code =
            decision.policy != nullptr ? decision.policy->ede : state.config().ede;
        if (code) {
            a.with_ede = true;
            a.ede = *code;
        }
    }
    switch (action) {
    case rpz::Action::Passthru:
        return keep(true);
    case rpz::Action::Nxdomain:
        return answer_negative(qstate, id, a, LDNS_RCODE_NXDOMAIN);
    case rpz::Action::Nodata:
        return answer_negative(qstate, id, a, LDNS_RCODE_NOERROR);
    case rpz::Action::Drop: {
        // services/mesh.c drops every reply of a state with is_drop set.
        qstate->is_drop = 1;
        finish(qstate, id, make_reply(qstate, LDNS_RCODE_NOERROR, false, {}));
        return;
    }
    case rpz::Action::TcpOnly:
        if (client.transport == DNSFW_UB_UDP) {
            attach_ede(qstate, a);
            finish(qstate, id, make_reply(qstate, LDNS_RCODE_NOERROR, true, {}));
            return;
        }
        // Over TCP: resolve normally. UDP clients that attach to this state
        // while it resolves still get TC=1; the answer is not cached, so the
        // next UDP query reaches this module again.
        mark_tcp_only(qstate);
        qstate->no_cache_store = 1;
        return keep(true);
    case rpz::Action::LocalData:
        if (!decision.rule && !decision.cname_override()) break;
        return answer_local_data(qstate, id, a);
    }
    keep(false);
}

/// The rpz::Query of chain link `name` of this query state.
rpz::Query make_query(const module_qstate* qstate, const dnsfw_ub_client& client, bool has_client,
                      std::span<const std::uint8_t> name) noexcept {
    rpz::Query query;
    query.qname = name;
    query.qtype = qstate->qinfo.qtype;
    query.qclass = qstate->qinfo.qclass;
    query.transport = to_query_transport(client.transport);
    if (has_client) query.client = client_ip(client);
    query.rd = (qstate->query_flags & BIT_RD) != 0;
    query.do_bit = has_client && client.do_bit != 0;
    return query;
}

/// A new query: decide, then answer or pass on.
void police(ModuleState& state, module_qstate* qstate, int id) noexcept {
    WorkerSlot* slot = current_slot(state, qstate);
    if (is_refresh_name({qstate->qinfo.qname, qstate->qinfo.qname_len})) {
        // The maintenance thread's wake-up call (watch.hpp): the snapshot
        // was refreshed by current_slot(); anchor the sweep if one is due;
        // never resolved.
        if (slot != nullptr && anchor_sweep(state, qstate, id, *slot)) return;
        refuse(qstate, id);
        return;
    }
    if (qstate->qinfo.qclass != LDNS_RR_CLASS_IN) {
        pass_on(qstate, id);
        return;
    }
    dnsfw_ub_client client{};
    const bool has_client = dnsfw_ub_first_client(qstate, &client) != 0;
    if (slot == nullptr) {
        pass_on(qstate, id);  // unprotected (fail-open)
        return;
    }
    // Internal queries (prefetch, sub-queries) have no client to answer:
    // never policed, but checked on moddone (their answers are cached).
    if (!has_client) {
        guard_cache(qstate, pass_on(qstate, id, slot));
        return;
    }
    const std::span<const std::uint8_t> qname{qstate->qinfo.qname, qstate->qinfo.qname_len};
    const rpz::Decision d =
        rpz::evaluate(*slot->snapshot, make_query(qstate, client, has_client, qname), nullptr);
    if (d.needs_response_stage) {
        // A response-stage trigger of a zone of higher precedence (or a
        // DO=1 match waiting for the answer's DNSSEC status) may still win:
        // resolve first, decide on moddone.
        guard_cache(qstate, pass_on(qstate, id, slot));
        return;
    }
    log_disabled(state, qstate, client, d, qname, *slot->snapshot);
    if (!d.matched) {
        if (QueryState* qs = pass_on(qstate, id, slot); qs != nullptr) {
            qs->link0_done = true;
            guard_cache(qstate, qs);
        }
        return;
    }
    apply(state, qstate, id, client, slot, d, qname, {}, false);
}

/// Removes the cached answers of this query and of every chain link (the
/// iterator cached the final link's answer under that name too).
void uncache_chain(module_qstate* qstate, std::span<const ChainLink> links) noexcept {
    for (const ChainLink& l : links) {
        msg_cache_remove(qstate->env, const_cast<std::uint8_t*>(l.name.data()), l.name.size(),
                         qstate->qinfo.qtype, qstate->qinfo.qclass, qstate->query_flags);
    }
}

/// Stores the answer of a guarded query state (guard_cache()) as the
/// iterator/validator would have: only RRsets (`rrsets_only`), or the
/// message under the query's question (with its RRsets). Like them, only
/// for recursive (RD) queries and only a NOERROR/NXDOMAIN answer.
/// Returns true if it stored something.
bool store_guarded(module_qstate* qstate, const QueryState& qs, bool rrsets_only) noexcept {
    if (!qs.guard || qs.saved_no_cache_store) return false;
    const dns_msg* msg = qstate->return_msg;
    if (msg == nullptr || msg->rep == nullptr || qstate->return_rcode != LDNS_RCODE_NOERROR) {
        return false;
    }
    if (!rrsets_only && (qstate->query_flags & BIT_RD) == 0) return false;
    const int rcode = FLAGS_GET_RCODE(msg->rep->flags);
    if (rcode != LDNS_RCODE_NOERROR && rcode != LDNS_RCODE_NXDOMAIN) return false;
    if (!dns_cache_store(qstate->env, &qstate->qinfo, msg->rep, rrsets_only ? 1 : 0,
                         qstate->prefetch_leeway, 0, nullptr, qstate->query_flags,
                         qstate->qstarttime)) {
        log_err("dnsfw: out of memory storing an answer in the cache");
        return false;
    }
    return true;
}

/// A passed-on query came back resolved: evaluate the response-stage
/// triggers and the QNAME triggers of every CNAME target, in chain order
/// (the first link with a match wins). Also redoes the query stage if the
/// store changed meanwhile.
void resolved(ModuleState& state, module_qstate* qstate, int id, const QueryState& qs) noexcept {
    if (qs.guard) qstate->no_cache_store = qs.saved_no_cache_store ? 1 : 0;
    // A guarded answer's RRsets go to the RRset cache as the modules below
    // would have stored them; the message waits for the verdict. Storing
    // the message stores its RRsets too, so on the common path (nothing
    // matched, the answer is cached) they are stored once, with it; they
    // are stored first only where something reads them before (the
    // delegation facts of NSDNAME/NSIP rules) or where the message is not
    // stored (a policed answer, CLIENT-IP rules, a held-back answer).
    bool rrsets_pending = qs.guard;
    auto store_rrsets = [&]() noexcept {
        if (rrsets_pending) store_guarded(qstate, qs, true);
        rrsets_pending = false;
    };
    WorkerSlot* slot = current_slot(state, qstate);
    const bool same_generation = slot != nullptr && slot->generation == qs.generation;
    if (slot == nullptr) {
        if (!store_guarded(qstate, qs, false)) store_rrsets();
        qstate->ext_state[id] = module_finished;
        return;
    }
    if (qs.keep && same_generation) {
        store_rrsets();
        // The iterator cached the answer of a PASSTHRU match: drop the
        // message (its RRsets stay cached) so that the next identical query
        // is policed and logged too.
        if (qs.uncache) remove_cached_answer(qstate);
        qstate->ext_state[id] = module_finished;
        return;
    }
    if (slot->ns_rules) store_rrsets();
    dnsfw_ub_client client{};
    const bool has_client = dnsfw_ub_first_client(qstate, &client) != 0;
    const dns_msg* msg = qstate->return_msg;
    ChainLink links[kMaxChainLinks];
    const std::size_t n = walk_cname_chain(qstate->qinfo, msg != nullptr ? msg->rep : nullptr,
                                           {links, kMaxChainLinks});
    const std::span<const ChainLink> chain{links, n};
    const std::size_t first = qs.link0_done && same_generation ? 1 : 0;
    const bool signed_answer = msg != nullptr && msg->rep != nullptr &&
                               msg->rep->security == sec_status_secure;

    // A DO=1 query's DNSSEC-secure answer that a zone without break-dnssec
    // would have rewritten (held back for this client only): the message
    // cache must not keep it, or a DO=0 client would get it unrewritten.
    bool held_back = false;

    rpz::IpAddress answer_ips[kMaxAnswerIps];
    std::span<const std::uint8_t> ns_names[kMaxNsNames];
    rpz::IpAddress ns_ips[kMaxNsIps];
    for (std::size_t i = first; i < n; ++i) {
        rpz::ResponseFacts facts;
        facts.answer_signed = signed_answer;
        if (i + 1 == n && slot->response_ip_rules && msg != nullptr) {
            const std::size_t k =
                collect_answer_ips(msg->rep, links[i].name, {answer_ips, kMaxAnswerIps});
            facts.answer_ips = {answer_ips, k};
        }
        if (slot->ns_rules) {
            std::size_t n_names = 0;
            std::size_t n_ips = 0;
            collect_delegation(qstate->env->rrset_cache, *qstate->env->now, qstate->region,
                               links[i].name, {ns_names, kMaxNsNames}, n_names,
                               {ns_ips, kMaxNsIps}, n_ips);
            facts.ns_names = {ns_names, n_names};
            facts.ns_ips = {ns_ips, n_ips};
        }
        const rpz::Query query = make_query(qstate, client, has_client, links[i].name);
        const rpz::Decision d = rpz::evaluate(*slot->snapshot, query, &facts);
        if (has_client) log_disabled(state, qstate, client, d, links[i].name, *slot->snapshot);
        if (!d.matched) {
            if (!held_back && query.do_bit && signed_answer) {
                rpz::Query without_do = query;
                without_do.do_bit = false;
                held_back = rpz::evaluate(*slot->snapshot, without_do, &facts).matched;
            }
            continue;
        }
        store_rrsets();
        if (d.action() != rpz::Action::Passthru) {
            // Policed: neither this answer nor the chain links' answers may
            // be served from the cache (the iterator stored them already).
            uncache_chain(qstate, chain);
        } else if (slot->client_ip_rules) {
            uncache_chain(qstate, chain);
        }
        if (!has_client) {
            qstate->ext_state[id] = module_finished;
            return;
        }
        // The upstream CNAMEs before the matching link stay in front.
        ub_packed_rrset_key** prefix = nullptr;
        if (i > 0) {
            prefix = static_cast<ub_packed_rrset_key**>(
                regional_alloc(qstate->region, sizeof(ub_packed_rrset_key*) * i));
            if (prefix == nullptr) return finish(qstate, id, nullptr);
            for (std::size_t j = 0; j < i; ++j) prefix[j] = msg->rep->rrsets[links[j].cname_rrset];
        }
        apply(state, qstate, id, client, slot, d, links[i].name, {prefix, i}, true);
        return;
    }
    // Nothing matched: the resolved answer goes out. With CLIENT-IP rules
    // active it must not be served from the cache to other clients (cache
    // hits never reach this module).
    if (slot->client_ip_rules || held_back) {
        store_rrsets();
        uncache_chain(qstate, chain);
    } else if (store_guarded(qstate, qs, false)) {
        rrsets_pending = false;
        // Decided under slot->generation. If the store changed since, a
        // sweep for the new generation may already have passed this
        // entry's hash bin: take the answer out again (the next query is
        // decided afresh). See module/README.md, "Why no stale answer
        // survives a sweep".
        const std::uint64_t decided = slot->generation;
        slot->sync();
        if (slot->generation != decided) remove_cached_answer(qstate);
    }
    store_rrsets();  // the message was not stored (not RD, other rcode)
    qstate->ext_state[id] = module_finished;
}

}  // namespace

void handle_operate(ModuleState& state, module_qstate* qstate, module_ev event, int id) noexcept {
    auto* qs = static_cast<QueryState*>(qstate->minfo[id]);
    switch (event) {
    case module_event_new:
    case module_event_pass:
        if (qs == nullptr) return police(state, qstate, id);
        if (qs->phase == QueryState::Phase::TargetDone) return finish_redirect(qstate, id, *qs);
        if (qs->phase == QueryState::Phase::WaitTarget) {
            qstate->ext_state[id] = module_wait_subquery;
            return;
        }
        if (qs->phase == QueryState::Phase::Anchor) {
            // Still waiting for its wake-up query (or, with none out, send one).
            if (qs->wakeup == nullptr) return anchor_woken(state, qstate, id, *qs);
            qstate->ext_state[id] = module_wait_reply;
            return;
        }
        qstate->ext_state[id] = module_wait_module;  // Passed: pass on again
        return;
    case module_event_moddone:
        // The modules below answered a query this module passed on.
        qstate->minfo[id] = nullptr;
        if (qs != nullptr && qs->phase == QueryState::Phase::Passed) {
            return resolved(state, qstate, id, *qs);
        }
        qstate->ext_state[id] = module_finished;
        return;
    case module_event_reply:
    case module_event_noreply:
    case module_event_capsfail:
        // Only an anchor sends queries of its own (its wake-up query).
        if (qs != nullptr && qs->phase == QueryState::Phase::Anchor) {
            return anchor_woken(state, qstate, id, *qs);
        }
        qstate->ext_state[id] = module_error;
        return;
    default:
        qstate->ext_state[id] = module_error;
        return;
    }
}

void handle_inform_super(module_qstate* sub, int id, module_qstate* super) noexcept {
    auto* qs = static_cast<QueryState*>(super->minfo[id]);
    if (qs == nullptr || qs->phase != QueryState::Phase::WaitTarget) return;
    qs->phase = QueryState::Phase::TargetDone;
    qs->target = nullptr;
    qs->target_rcode = sub->return_rcode != LDNS_RCODE_NOERROR ? sub->return_rcode
                                                               : LDNS_RCODE_SERVFAIL;
    if (sub->return_rcode != LDNS_RCODE_NOERROR || sub->return_msg == nullptr ||
        sub->return_msg->rep == nullptr) {
        return;
    }
    // The sub-query's region goes away with it: copy into ours.
    const reply_info& from = *sub->return_msg->rep;
    auto* msg = static_cast<dns_msg*>(regional_alloc_zero(super->region, sizeof(dns_msg)));
    if (msg == nullptr) return;
    msg->qinfo = super->qinfo;
    msg->rep = construct_reply_info_base(super->region, from.flags, 1, from.ttl, from.prefetch_ttl,
                                         from.serve_expired_ttl, from.an_numrrsets,
                                         from.ns_numrrsets, from.ar_numrrsets, from.rrset_count,
                                         from.security);
    if (msg->rep == nullptr) return;
    for (std::size_t i = 0; i < from.rrset_count; ++i) {
        msg->rep->rrsets[i] = packed_rrset_copy_region(from.rrsets[i], super->region, 0);
        if (msg->rep->rrsets[i] == nullptr) return;
    }
    qs->target = msg;
}

int handle_query_response(module_qstate* qstate, dns_msg* response, int id) noexcept {
    if (qstate == nullptr || id < 0 || id >= MAX_MODULE) return 1;
    const auto* qs = static_cast<const QueryState*>(qstate->minfo[id]);
    if (qs == nullptr || qs->phase != QueryState::Phase::Passed || !qs->guard ||
        qs->saved_no_cache_store) {
        return 1;
    }
    // A referral stores only NS and glue RRsets (no message): let it in, so
    // delegations stay cached. Anything else the iterator might store as a
    // message (answer, NODATA, NXDOMAIN, CNAME, minimised sub-answers) waits
    // for moddone.
    qstate->no_cache_store = dnsfw_ub_response_is_referral(qstate, response) ? 0 : 1;
    return 1;
}

int handle_outgoing_query(module_qstate* qstate, int id) noexcept {
    if (qstate == nullptr || id < 0 || id >= MAX_MODULE) return 1;
    const auto* qs = static_cast<const QueryState*>(qstate->minfo[id]);
    if (qs != nullptr && qs->phase == QueryState::Phase::Passed && qs->guard &&
        !qs->saved_no_cache_store) {
        qstate->no_cache_store = 1;  // a referral's lift ends with the next query
    }
    return 1;
}

void handle_clear(ModuleState* state, module_qstate* qstate, int id) noexcept {
    if (qstate == nullptr) return;
    auto* qs = static_cast<QueryState*>(qstate->minfo[id]);
    if (qs != nullptr && qs->phase == QueryState::Phase::Anchor) {
        // The anchor goes (Unbound deletes the query state: finished early,
        // jostled out, flushed, or the worker is being deleted on a reload
        // or stop, before any cache is): stop the wake-up query, and make
        // the maintenance thread let go of the caches before returning.
        if (qs->wakeup != nullptr) dnsfw_ub_stop_wakeup(qs->wakeup);
        qs->wakeup = nullptr;
        if (state != nullptr) state->sweep_gate().release(qs);
    }
    qstate->minfo[id] = nullptr;
}

}  // namespace dnsfw::module
