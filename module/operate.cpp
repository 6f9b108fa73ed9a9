// The query path: Unbound query state -> rpz::Query -> Decision -> answer.
#include "module/operate.hpp"

#include "module/answer.hpp"
#include "module/cache.hpp"
#include "module/text.hpp"
#include "module/watch.hpp"

#include <algorithm>
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
    };
    Phase phase = Phase::Passed;
    std::uint64_t generation = 0;          ///< store generation of the decision (Passed)
    ub_packed_rrset_key* cname = nullptr;  ///< the synthesised CNAME (answer head)
    ub_packed_rrset_key* soa = nullptr;    ///< the policy zone's SOA, or nullptr
    dns_msg* target = nullptr;             ///< target's answer (copied), or nullptr
    int target_rcode = 0;                  ///< rcode when target is nullptr
    /// A PASSTHRU rule matched: keep the resolved answer out of the message
    /// cache, so every such query reaches this module (and is logged).
    bool passthru = false;
};

/// Everything the answer builders need about the applied policy.
struct Applied {
    const rpz::Decision* decision = nullptr;
    WorkerSlot* slot = nullptr;
    std::uint16_t ede = 0;
    bool with_ede = false;
    /// Deciding again on module_event_moddone (the store changed while the
    /// query resolved): "pass on" then means "keep the resolved answer".
    bool at_moddone = false;
};

/// Hands the query to the next module (remembering the store generation of
/// the decision), or with `at_moddone` keeps the answer it returned.
void pass_on(module_qstate* qstate, int id, const WorkerSlot* slot = nullptr,
             bool at_moddone = false) noexcept {
    if (at_moddone) {
        qstate->ext_state[id] = module_finished;
        return;
    }
    if (slot != nullptr) {
        auto* qs = static_cast<QueryState*>(regional_alloc(qstate->region, sizeof(QueryState)));
        if (qs != nullptr) {
            new (qs) QueryState{};
            qs->generation = slot->generation;
            qstate->minfo[id] = qs;
        }
    }
    qstate->ext_state[id] = module_wait_module;
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

void push_hit(HitLog& log, const module_qstate* qstate, const dnsfw_ub_client& client,
              const rpz::Decision& d, const store::Snapshot& snapshot) noexcept {
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
    r.trigger = d.trigger;
    r.action = d.action();
    const std::size_t qlen = std::min(qstate->qinfo.qname_len, r.qname.size());
    std::memcpy(r.qname.data(), qstate->qinfo.qname, qlen);
    r.qname_len = static_cast<std::uint16_t>(qlen);
    const auto key = d.key.view();
    const std::size_t klen = std::min(key.size(), r.key.size());
    std::memcpy(r.key.data(), key.data(), klen);
    r.key_len = static_cast<std::uint16_t>(klen);
    const std::string& zone = snapshot.zone_info(d.zone).name;
    const std::size_t zlen = std::min(zone.size(), r.zone.size());
    std::memcpy(r.zone.data(), zone.data(), zlen);
    r.zone_len = static_cast<std::uint16_t>(zlen);
    log.push(r);
}

/// "dnsfw: zone threat.rpz. rule *.bad.example nxdomain"
bool attach_ede(module_qstate* qstate, const Applied& a) noexcept {
    if (!a.with_ede) return true;
    char storage[1400];
    TextBuffer t(storage, sizeof storage);
    t.append("dnsfw: zone ");
    t.append(a.slot->snapshot->zone_info(a.decision->zone).name);
    t.append(" rule ");
    append_name_key(t, a.decision->key.view());
    t.append(' ');
    t.append(rpz::to_string(a.decision->action()));
    return add_ede(qstate, a.ede, t.view());
}

/// The policy zone's SOA for the additional section (owner = zone apex,
/// TTL = the SOA's TTL), or nullptr if the zone has none.
ub_packed_rrset_key* policy_soa(module_qstate* qstate, const Applied& a) noexcept {
    const std::size_t z = a.decision->zone;
    if (z >= a.slot->apex.size() || a.slot->apex[z].empty()) return nullptr;
    const store::ZoneInfo& info = a.slot->snapshot->zone_info(z);
    if (info.soa_rdata.empty()) return nullptr;
    const RrSpec soa{LDNS_RR_TYPE_SOA, info.soa_ttl, info.soa_rdata};
    return make_rrset(qstate->region, a.slot->apex[z], LDNS_RR_TYPE_SOA, LDNS_RR_CLASS_IN,
                      {&soa, 1});
}

/// NXDOMAIN, NODATA (NOERROR, empty) or another rcode without answer data.
void answer_negative(module_qstate* qstate, int id, const Applied& a, int rcode) noexcept {
    ub_packed_rrset_key* additional[1] = {policy_soa(qstate, a)};
    attach_ede(qstate, a);
    finish(qstate, id, make_reply(qstate, rcode, false, {{}, {}, additional}));
}

/// The CNAME target of a local-data CNAME: the stored name, or for a
/// `*.suffix` target the query name prepended to the suffix. Returns false
/// (YXDOMAIN) if the result would exceed 255 octets (or the stored name is
/// malformed).
bool cname_target(const module_qstate* qstate, const rpz::RuleView& rule,
                  std::span<const std::uint8_t> rdata, std::uint8_t* out, std::size_t& len) noexcept {
    if (rpz::name_wire_length(rdata) != rdata.size()) return false;  // malformed in the store
    if ((rule.flags() & rpz::kCnameWildcardTarget) == 0) {
        if (rdata.size() > rpz::kMaxNameWire) return false;
        std::memcpy(out, rdata.data(), rdata.size());
        len = rdata.size();
        return true;
    }
    const std::size_t prefix = qstate->qinfo.qname_len - 1;  // without the root label
    if (prefix + rdata.size() > rpz::kMaxNameWire) return false;
    std::memcpy(out, qstate->qinfo.qname, prefix);
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
    new (qs) QueryState{QueryState::Phase::WaitTarget, 0, cname, soa, nullptr, 0};

    const auto flags = static_cast<std::uint16_t>(BIT_RD | (qstate->query_flags & BIT_CD));
    module_env* env = qstate->env;
    if ((*env->detect_cycle)(qstate, &sub_info, flags, 0, 0)) {
        // The target depends on this very query: answer the CNAME alone.
        ub_packed_rrset_key* answer[1] = {cname};
        ub_packed_rrset_key* additional[1] = {soa};
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
    auto** answer = static_cast<ub_packed_rrset_key**>(
        regional_alloc(qstate->region, sizeof(ub_packed_rrset_key*) * (an + 1)));
    auto** additional = static_cast<ub_packed_rrset_key**>(
        regional_alloc(qstate->region, sizeof(ub_packed_rrset_key*) * (ar + 1)));
    if (answer == nullptr || additional == nullptr) {
        finish(qstate, id, nullptr);
        return;
    }
    answer[0] = qs.cname;
    std::copy(rep.rrsets, rep.rrsets + an, answer + 1);
    std::copy(rep.rrsets + an + ns, rep.rrsets + rep.rrset_count, additional);
    additional[ar] = qs.soa;
    const ReplySections sections{{answer, an + 1}, {rep.rrsets + an, ns}, {additional, ar + 1}};
    finish(qstate, id, make_reply(qstate, FLAGS_GET_RCODE(rep.flags), false, sections));
}

/// Local data: the records of the query type (all for ANY); else a CNAME
/// redirect; else NODATA.
void answer_local_data(module_qstate* qstate, int id, const Applied& a) noexcept {
    const rpz::RuleView& rule = *a.decision->rule;
    const std::uint16_t qtype = qstate->qinfo.qtype;
    const bool any = qtype == LDNS_RR_TYPE_ANY;
    const std::size_t n = rule.record_count();

    auto* matching = static_cast<RrSpec*>(regional_alloc(qstate->region, sizeof(RrSpec) * (n + 1)));
    if (matching == nullptr) {
        finish(qstate, id, nullptr);
        return;
    }
    std::size_t m = 0;
    RrSpec cname{};
    bool have_cname = false;
    rule.for_each_record([&](const rpz::RuleView::RecordView& r) {
        if (r.type == qtype || any) new (&matching[m++]) RrSpec{r.type, r.ttl, r.rdata};
        if (r.type == LDNS_RR_TYPE_CNAME && !have_cname) {
            cname = RrSpec{r.type, r.ttl, r.rdata};
            have_cname = true;
        }
    });

    // A CNAME in the answer carries the computed target.
    std::uint8_t target[rpz::kMaxNameWire + 1];
    std::size_t target_len = 0;
    if (have_cname) {
        if (!cname_target(qstate, rule, cname.rdata, target, target_len)) {
            answer_negative(qstate, id, a, LDNS_RCODE_YXDOMAIN);  // RFC 6672 style
            return;
        }
        cname.rdata = {target, target_len};
        for (std::size_t i = 0; i < m; ++i) {
            if (matching[i].type == LDNS_RR_TYPE_CNAME) matching[i].rdata = cname.rdata;
        }
    }
    const std::span<const std::uint8_t> owner{qstate->qinfo.qname, qstate->qinfo.qname_len};

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
            sets[n_sets] = make_rrset(qstate->region, owner, type, LDNS_RR_CLASS_IN, {same, k});
            if (sets[n_sets] == nullptr) {
                finish(qstate, id, nullptr);
                return;
            }
            ++n_sets;
        }
        ub_packed_rrset_key* additional[1] = {policy_soa(qstate, a)};
        attach_ede(qstate, a);
        finish(qstate, id,
               make_reply(qstate, LDNS_RCODE_NOERROR, false, {{sets, n_sets}, {}, additional}));
        return;
    }
    if (have_cname) {
        ub_packed_rrset_key* set =
            make_rrset(qstate->region, owner, LDNS_RR_TYPE_CNAME, LDNS_RR_CLASS_IN, {&cname, 1});
        if (set == nullptr) {
            finish(qstate, id, nullptr);
            return;
        }
        start_redirect(qstate, id, a, set, {target, target_len});
        return;
    }
    answer_negative(qstate, id, a, LDNS_RCODE_NOERROR);  // NODATA
}

/// The worker's slot, brought up to date; sweeps the message cache if this
/// thread is the first to see a new store generation. nullptr while
/// unprotected (fail-open) or if the thread is unknown.
WorkerSlot* current_slot(ModuleState& state, module_qstate* qstate) noexcept {
    Protection* protection = state.protection();
    if (protection == nullptr) return nullptr;
    const int thread = dnsfw_ub_thread_num(qstate->env);
    WorkerSlot* slot = thread >= 0 ? protection->slot(static_cast<std::size_t>(thread)) : nullptr;
    if (slot == nullptr || !slot->snapshot) return nullptr;
    slot->sync();
    if (state.claim_sweep(slot->generation)) {
        timespec t0{};
        timespec t1{};
        clock_gettime(CLOCK_MONOTONIC, &t0);
        const SweepResult r = remove_policed_answers(qstate->env, *slot->snapshot);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        const auto us = (t1.tv_sec - t0.tv_sec) * 1'000'000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
        const LogLevel level = r.complete ? LogLevel::Info : LogLevel::Error;
        if (state.log().enabled(level)) {
            try {
                state.log()(level, "store generation " + std::to_string(slot->generation) + ": " +
                                       std::to_string(slot->snapshot->zone_count()) +
                                       " active zone(s); removed " + std::to_string(r.removed) +
                                       " of " + std::to_string(r.examined) +
                                       " cached answers, policed now (" + std::to_string(us) +
                                       " us)" +
                                       (r.complete ? "" : "; OUT OF MEMORY: sweep incomplete"));
            } catch (...) {
            }
        }
    }
    return slot;
}

/// Applies a matched decision (or passes on if `decision` did not match).
void apply(ModuleState& state, module_qstate* qstate, int id, const dnsfw_ub_client& client,
           WorkerSlot* slot, const rpz::Decision& decision, bool at_moddone) noexcept {
    if (!decision.matched || !decision.rule) return pass_on(qstate, id, slot, at_moddone);

    const rpz::Action action = decision.action();
    ++slot->applied[static_cast<std::size_t>(action) & 7];
    if (HitLog* log = state.hit_log()) push_hit(*log, qstate, client, decision, *slot->snapshot);

    Applied a;
    a.decision = &decision;
    a.slot = slot;
    a.at_moddone = at_moddone;
    if (state.config().ede) {
        a.with_ede = true;
        a.ede = *state.config().ede;
    }
    switch (action) {
    case rpz::Action::Passthru:
        pass_on(qstate, id, slot, at_moddone);
        if (auto* qs = static_cast<QueryState*>(qstate->minfo[id]); qs != nullptr && !at_moddone)
            qs->passthru = true;
        return;
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
        return pass_on(qstate, id, slot, at_moddone);
    case rpz::Action::LocalData:
        return answer_local_data(qstate, id, a);
    }
    pass_on(qstate, id, slot, at_moddone);
}

rpz::Decision decide(const module_qstate* qstate, const dnsfw_ub_client& client,
                     const WorkerSlot& slot) noexcept {
    rpz::Query query;
    query.qname = {qstate->qinfo.qname, qstate->qinfo.qname_len};
    query.qtype = qstate->qinfo.qtype;
    query.qclass = qstate->qinfo.qclass;
    query.transport = to_query_transport(client.transport);
    return rpz::evaluate(*slot.snapshot, query);
}

/// A new query: decide, then answer or pass on.
void police(ModuleState& state, module_qstate* qstate, int id) noexcept {
    WorkerSlot* slot = current_slot(state, qstate);
    if (is_refresh_name({qstate->qinfo.qname, qstate->qinfo.qname_len})) {
        // The maintenance thread's wake-up call (watch.hpp): already served
        // by current_slot(); never resolved.
        qstate->return_msg = nullptr;
        qstate->return_rcode = LDNS_RCODE_REFUSED;
        qstate->ext_state[id] = module_finished;
        return;
    }
    if (qstate->qinfo.qclass != LDNS_RR_CLASS_IN) return pass_on(qstate, id);
    dnsfw_ub_client client{};
    const bool has_client = dnsfw_ub_first_client(qstate, &client) != 0;
    if (slot == nullptr) return pass_on(qstate, id);  // unprotected (fail-open)
    // Internal queries (prefetch, sub-queries) have no client to answer:
    // never policed, but re-checked on moddone like any other.
    if (!has_client) return pass_on(qstate, id, slot);
    apply(state, qstate, id, client, slot, decide(qstate, client, *slot), false);
}

/// A passed-on query came back resolved. If the store changed meanwhile
/// and the name is policed now, the answer (already cached by the iterator)
/// is removed from the cache and the policy applied instead.
void resolved(ModuleState& state, module_qstate* qstate, int id, const QueryState& qs) noexcept {
    // The iterator cached the answer of a PASSTHRU match: drop the message
    // (its RRsets stay cached, so the next query is answered without going
    // upstream) so that the next identical query is policed and logged too.
    if (qs.passthru) remove_cached_answer(qstate);
    WorkerSlot* slot = current_slot(state, qstate);
    if (slot == nullptr || slot->generation == qs.generation) {
        qstate->ext_state[id] = module_finished;
        return;
    }
    dnsfw_ub_client client{};
    const bool has_client = dnsfw_ub_first_client(qstate, &client) != 0;
    const rpz::Decision decision = decide(qstate, client, *slot);
    if (!decision.matched || !decision.rule || decision.action() == rpz::Action::Passthru) {
        qstate->ext_state[id] = module_finished;
        return;
    }
    remove_cached_answer(qstate);
    if (!has_client) {
        qstate->ext_state[id] = module_finished;
        return;
    }
    if (decision.action() != rpz::Action::TcpOnly) qstate->return_msg = nullptr;
    apply(state, qstate, id, client, slot, decision, true);
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

void handle_clear(module_qstate* qstate, int id) noexcept {
    if (qstate != nullptr) qstate->minfo[id] = nullptr;
}

}  // namespace dnsfw::module
