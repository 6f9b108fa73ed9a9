// dnsfw::store — Snapshot: the query-path reader of the store.
//
// A Snapshot keeps one live read transaction (`txn_`) and one reset spare.
// refresh() is a single comparison of LMDB's last committed txn id with the
// snapshot's when nothing changed. After a commit it renews the *spare*,
// reads the zone records into a fresh view and only then swaps — so a
// failed refresh keeps the previous view intact. Both transactions hold a
// reader slot (MDB_NOTLS), i.e. two slots per Snapshot.
//
// find() builds the rules key (zone id | trigger | owner key) on the stack
// and does one mdb_get; the RuleView points into the memory map and stays
// valid until the next refresh()/release().
#include "store/codec.hpp"
#include "store/impl.hpp"
#include "store/store.hpp"

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <utility>

namespace dnsfw::store {

namespace {

/// The zone set a snapshot resolved at one LMDB txn.
struct View {
    std::vector<ZoneInfo> zones;
    std::vector<std::uint32_t> ids;  // zones[i].id, contiguous for find()
    std::vector<std::string> missing;
    std::uint64_t generation = 0;
};

const ZoneInfo kNoZone{};

}  // namespace

struct Snapshot::Impl {
    Store::Impl* store = nullptr;
    lmdb::Txn txn;    ///< the current view's read txn; live iff `active`
    lmdb::Txn spare;  ///< reset; renewed to build the next view
    bool active = false;
    std::size_t txn_id = 0;  ///< mdb_txn_id of `txn` when it was renewed
    bool all = true;         ///< no explicit active list: every zone in stored order
    std::vector<rpz::Name> requested;
    View view;
    int last_error = 0;

    Impl() = default;
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;
    ~Impl() { set_active(false); }

    void set_active(bool on) noexcept {
        if (on == active) return;
        active = on;
        if (on)
            store->active_snapshots.fetch_add(1);
        else
            store->active_snapshots.fetch_sub(1);
    }

    /// Resolves the active zones as of `t`. Throws StoreError or bad_alloc.
    void load(MDB_txn* t, View& out) const {
        out.zones.clear();
        out.ids.clear();
        out.missing.clear();
        out.generation = store->read_meta_uint(t, codec::kMetaGeneration, 8);
        if (all) {
            for (auto& z : store->read_all_zones(t)) out.zones.push_back(std::move(z.info));
        } else {
            for (const auto& apex : requested) {
                if (auto info = store->read_zone(t, apex))
                    out.zones.push_back(std::move(*info));
                else
                    out.missing.push_back(rpz::name_to_text(apex));
            }
        }
        for (const auto& z : out.zones) out.ids.push_back(z.id);
    }

    /// The slow half of refresh(): renew a transaction and rebuild the view.
    bool reload() noexcept {
        lmdb::Txn& target = active ? spare : txn;
        try {
            std::shared_lock<std::shared_mutex> lock(store->map_mutex);
            if (const int rc = target.renew(); rc != 0) {
                last_error = rc;
                return false;
            }
            const std::size_t id = mdb_txn_id(target.get());
            if (!active && id == txn_id) {  // renewed after release(); nothing committed since
                set_active(true);
                last_error = 0;
                return false;
            }
            View next;
            load(target.get(), next);
            if (active) {
                std::swap(txn, spare);
                spare.reset();
            } else {
                set_active(true);
            }
            const bool changed = next.generation != view.generation || next.ids != view.ids;
            view = std::move(next);
            txn_id = id;
            last_error = 0;
            return changed;
        } catch (const StoreError& e) {
            last_error = e.code() != 0 ? e.code() : MDB_CORRUPTED;
        } catch (...) {
            last_error = ENOMEM;
        }
        target.reset();
        return false;
    }
};

std::unique_ptr<Snapshot> Store::snapshot(const std::vector<std::string>& active) const {
    auto m = std::make_unique<Snapshot::Impl>();
    m->store = impl_.get();
    m->all = active.empty();
    for (const auto& name : active) {
        auto wire = rpz::name_from_text(name);
        if (!wire) throw StoreError(error_text(impl_->path, "invalid zone name '" + name + "'", 0));
        if (std::find(m->requested.begin(), m->requested.end(), *wire) == m->requested.end())
            m->requested.push_back(std::move(*wire));
    }
    std::shared_lock<std::shared_mutex> lock(impl_->map_mutex);
    m->spare = impl_->begin_read(lock, "open snapshot");
    m->spare.reset();
    m->txn = impl_->begin_read(lock, "open snapshot");
    m->load(m->txn.get(), m->view);
    m->txn_id = mdb_txn_id(m->txn.get());
    m->set_active(true);
    return std::unique_ptr<Snapshot>(new Snapshot(std::move(m)));
}

Snapshot::Snapshot(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Snapshot::~Snapshot() = default;

bool Snapshot::refresh() noexcept {
    Impl& m = *impl_;
    if (m.active) {
        MDB_envinfo info;
        if (mdb_env_info(m.store->env.get(), &info) != 0) return false;
        if (info.me_last_txnid == m.txn_id) return false;  // the fast path
    }
    return m.reload();
}

void Snapshot::release() noexcept {
    Impl& m = *impl_;
    if (!m.active) return;
    m.txn.reset();
    m.set_active(false);
}

std::size_t Snapshot::zone_count() const noexcept {
    return impl_->active ? impl_->view.ids.size() : 0;
}

std::size_t Snapshot::max_wildcard_depth(std::size_t zone, rpz::Trigger trigger) const noexcept {
    const auto t = static_cast<std::size_t>(trigger);
    const View& v = impl_->view;
    if (zone >= v.zones.size() || t >= v.zones[zone].max_wildcard_depth.size())
        return rpz::kMaxNameWire;
    return v.zones[zone].max_wildcard_depth[t];
}

std::optional<rpz::RuleView> Snapshot::find(std::size_t zone, rpz::Trigger trigger,
                                            std::span<const std::uint8_t> key) const noexcept {
    const Impl& m = *impl_;
    if (!m.active || zone >= m.view.ids.size()) return std::nullopt;
    std::uint8_t buf[codec::kMaxRuleKey];
    const std::size_t len = codec::make_rule_key(buf, m.view.ids[zone], trigger, key);
    if (len == 0) return std::nullopt;
    MDB_val k{len, buf};
    MDB_val d{};
    if (mdb_get(m.txn.get(), m.store->rules_dbi, &k, &d) != 0) return std::nullopt;
    return rpz::RuleView::parse(lmdb::to_span(d));
}

const rpz::ZonePolicy& Snapshot::policy(std::size_t zone) const noexcept {
    const View& v = impl_->view;
    return zone < v.zones.size() ? v.zones[zone].policy : kNoZone.policy;
}

std::uint64_t Snapshot::trigger_rule_count(std::size_t zone, rpz::Trigger trigger) const noexcept {
    const auto t = static_cast<std::size_t>(trigger);
    const View& v = impl_->view;
    if (zone >= v.zones.size() || t >= v.zones[zone].trigger_rules.size()) return 0;
    return v.zones[zone].trigger_rules[t];
}

const std::bitset<129>& Snapshot::prefix_lengths(std::size_t zone,
                                                 rpz::Trigger trigger) const noexcept {
    const auto t = static_cast<std::size_t>(trigger);
    const View& v = impl_->view;
    if (zone >= v.zones.size() || t >= v.zones[zone].prefix_lengths.size())
        return kNoZone.prefix_lengths[0];
    return v.zones[zone].prefix_lengths[t];
}

const ZoneInfo& Snapshot::zone_info(std::size_t i) const noexcept {
    const View& v = impl_->view;
    return i < v.zones.size() ? v.zones[i] : kNoZone;
}

const std::vector<std::string>& Snapshot::missing_zones() const noexcept {
    return impl_->view.missing;
}

std::uint64_t Snapshot::generation() const noexcept {
    return impl_->view.generation;
}

int Snapshot::last_error() const noexcept {
    return impl_->last_error;
}

void Snapshot::for_each_rule_impl(std::size_t i,
                                  void (*cb)(void*, rpz::Trigger, std::span<const std::uint8_t>,
                                             const rpz::RuleView&),
                                  void* ctx) const {
    const Impl& m = *impl_;
    const std::string& path = m.store->path;
    if (!m.active)
        throw StoreError(error_text(path, "snapshot released (call refresh() first)", 0));
    if (i >= m.view.ids.size()) throw std::out_of_range("Snapshot::for_each_rule: zone index");
    lmdb::Cursor cur;
    int rc = cur.open(m.txn.get(), m.store->rules_dbi);
    if (rc != 0) throw_error(path, "reading rules", rc);
    std::uint8_t prefix[4];
    codec::put_u32(prefix, m.view.ids[i]);
    MDB_val k{sizeof prefix, prefix};
    MDB_val d{};
    for (rc = mdb_cursor_get(cur.get(), &k, &d, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur.get(), &k, &d, MDB_NEXT)) {
        const auto key = lmdb::to_span(k);
        if (key.size() < codec::kRulePrefixSize || std::memcmp(key.data(), prefix, 4) != 0) break;
        if (auto rule = rpz::RuleView::parse(lmdb::to_span(d)))
            cb(ctx, static_cast<rpz::Trigger>(key[4]), key.subspan(codec::kRulePrefixSize), *rule);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) throw_error(path, "reading rules", rc);
}

}  // namespace dnsfw::store
