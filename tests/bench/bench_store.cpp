// Benchmarks of the LMDB store's query path: Snapshot::refresh() +
// rpz::evaluate() over a store of 1,000,000 QNAME rules (10% wildcards),
// built once in a temporary directory and removed at exit.
//
// Synthetic names (i = 0..999,999, s = i % 997):
//   i % 10 != 0 : exact  "d<i>.example<s>.com"
//   i % 10 == 0 : wildcard "*.w<i>.example<s>.com"
// Hits: "d<i>.example<s>.com"; wildcard hits "a.b.w<i>.example<s>.com"
// (two labels under the wildcard); misses "q<i>.m<i>.example<s>.com" (four
// labels, one exact probe + three wildcard probes, all failing).
#include <benchmark/benchmark.h>

#include "rpz/rpz.hpp"
#include "store/store.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace dnsfw;

constexpr std::size_t kRules = 1'000'000;
constexpr std::size_t kProbeNames = 4096;  // cycled through, spread over the key space

std::string exact_name(std::size_t i) {
    return "d" + std::to_string(i) + ".example" + std::to_string(i % 997) + ".com";
}
std::string wildcard_parent(std::size_t i) {
    return "w" + std::to_string(i) + ".example" + std::to_string(i % 997) + ".com";
}

rpz::Rule make_rule(const std::string& name, bool wildcard) {
    rpz::Rule r;
    rpz::NameKey k;
    const auto wire = rpz::name_from_text(name);
    if (!wire || !rpz::make_name_key(*wire, k)) std::abort();
    r.key.assign(k.bytes.begin(), k.bytes.begin() + static_cast<std::ptrdiff_t>(k.size));
    if (wildcard) {
        r.key.push_back(1);
        r.key.push_back('*');
    }
    r.action = wildcard ? rpz::Action::Nodata : rpz::Action::Nxdomain;
    r.ttl = 300;
    return r;
}

/// Baseline: the same rules in an in-process hash table (what a resolver's
/// own in-memory RPZ amounts to), evaluated by the same rpz::evaluate.
class HashRuleSource final : public rpz::RuleSource {
public:
    void add(const rpz::Rule& r) {
        std::string k(1, static_cast<char>(r.trigger));
        k.append(r.key.begin(), r.key.end());
        map_.emplace(std::move(k), rpz::encode_rule_value(r));
        if (r.key.size() >= 2 && r.key[r.key.size() - 2] == 1 && r.key.back() == '*') {
            std::size_t labels = 0;
            for (std::size_t i = 0; i + 2 < r.key.size(); i += 1u + r.key[i]) ++labels;
            depth_ = std::max(depth_, labels);
        }
    }
    std::size_t zone_count() const noexcept override { return 1; }
    /// The same probe bound the store keeps per zone (deepest wildcard parent).
    std::size_t max_wildcard_depth(std::size_t, rpz::Trigger) const noexcept override {
        return depth_;
    }
    std::optional<rpz::RuleView> find(std::size_t, rpz::Trigger t,
                                      std::span<const std::uint8_t> key) const noexcept override {
        char buf[rpz::kMaxNameKey + 4];
        buf[0] = static_cast<char>(t);
        std::copy(key.begin(), key.end(), buf + 1);
        const auto it = map_.find(std::string_view(buf, key.size() + 1));
        if (it == map_.end()) return std::nullopt;
        return rpz::RuleView::parse(it->second);
    }

private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    std::unordered_map<std::string, std::vector<std::uint8_t>, Hash, std::equal_to<>> map_;
    std::size_t depth_ = 0;
};

/// The store, built on first use; a read-only Store and one Snapshot, as a
/// resolver worker would hold them.
struct Fixture {
    fs::path dir;
    std::unique_ptr<store::Store> store;
    std::unique_ptr<store::Snapshot> snapshot;
    std::vector<rpz::Name> hits, wildcard_hits, misses;
    HashRuleSource baseline;
    double bytes_per_rule_used = 0;
    double bytes_per_rule_file = 0;

    Fixture() {
        std::string tmpl = (fs::temp_directory_path() / "dnsfw-bench-store-XXXXXX").string();
        if (mkdtemp(tmpl.data()) == nullptr) std::abort();
        dir = tmpl;

        rpz::Zone zone;
        zone.name = *rpz::name_from_text("bench.rpz");
        zone.serial = 1;
        zone.rules.reserve(kRules);
        for (std::size_t i = 0; i < kRules; ++i) {
            const bool wildcard = i % 10 == 0;
            zone.rules.push_back(
                make_rule(wildcard ? wildcard_parent(i) : exact_name(i), wildcard));
        }
        for (const auto& r : zone.rules) baseline.add(r);
        std::sort(zone.rules.begin(), zone.rules.end(),
                  [](const rpz::Rule& a, const rpz::Rule& b) { return a.key < b.key; });
        {
            store::OpenOptions w;
            w.read_only = false;
            w.create = true;
            w.map_size = std::size_t{64} << 20;  // exercise growth too
            store::Store writer = store::Store::open(dir.string(), w);
            const auto t0 = std::chrono::steady_clock::now();
            writer.replace_zone(zone);
            const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - t0)
                                .count();
            const auto st = writer.stats();
            bytes_per_rule_used =
                static_cast<double>(st.used_bytes) / static_cast<double>(st.rules);
            bytes_per_rule_file =
                static_cast<double>(st.file_bytes) / static_cast<double>(st.rules);
            std::printf(
                "store: %zu rules loaded in %lld ms; data.mdb %llu bytes (%.1f bytes/rule), "
                "pages in use %llu bytes (%.1f bytes/rule), map %llu bytes\n",
                kRules, static_cast<long long>(ms), static_cast<unsigned long long>(st.file_bytes),
                bytes_per_rule_file, static_cast<unsigned long long>(st.used_bytes),
                bytes_per_rule_used, static_cast<unsigned long long>(st.map_size));
        }
        store =
            std::make_unique<store::Store>(store::Store::open(dir.string(), store::OpenOptions{}));
        snapshot = store->snapshot();

        for (std::size_t n = 0; n < kProbeNames; ++n) {
            // Spread probes over the whole key space (a prime stride).
            const std::size_t i = (n * 7919) % kRules;
            const std::size_t e = i % 10 == 0 ? i + 1 : i;  // an exact rule
            const std::size_t w = i - i % 10;               // a wildcard rule
            hits.push_back(*rpz::name_from_text(exact_name(e)));
            wildcard_hits.push_back(*rpz::name_from_text("a.b." + wildcard_parent(w)));
            misses.push_back(*rpz::name_from_text("q" + std::to_string(i) + ".m" +
                                                  std::to_string(i) + ".example" +
                                                  std::to_string(i % 997) + ".com"));
        }
    }
    ~Fixture() {
        snapshot.reset();
        store.reset();
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

Fixture& fixture() {
    static Fixture f;
    return f;
}

void run_lookups(benchmark::State& state, const std::vector<rpz::Name>& names, bool expect_match,
                 bool expect_wildcard) {
    Fixture& f = fixture();
    std::size_t n = 0;
    std::size_t wrong = 0;
    for (auto _ : state) {
        f.snapshot->refresh();
        rpz::Query q;
        q.qname = names[n++ % names.size()];
        q.qtype = 1;
        const rpz::Decision d = rpz::evaluate(*f.snapshot, q);
        if (d.matched != expect_match || d.wildcard != expect_wildcard) ++wrong;
        benchmark::DoNotOptimize(d);
    }
    if (wrong != 0) state.SkipWithError("unexpected lookup result");
    state.counters["bytes_per_rule"] = f.bytes_per_rule_used;
    state.counters["rules"] = static_cast<double>(kRules);
}

void run_baseline(benchmark::State& state, const std::vector<rpz::Name>& names,
                  bool expect_match) {
    Fixture& f = fixture();
    std::size_t n = 0;
    std::size_t wrong = 0;
    for (auto _ : state) {
        rpz::Query q;
        q.qname = names[n++ % names.size()];
        q.qtype = 1;
        const rpz::Decision d = rpz::evaluate(f.baseline, q);
        if (d.matched != expect_match) ++wrong;
        benchmark::DoNotOptimize(d);
    }
    if (wrong != 0) state.SkipWithError("unexpected lookup result");
}

// Baselines: the same evaluation over an in-memory hash table of the same rules.
void BM_BaselineHashExactHit(benchmark::State& state) { run_baseline(state, fixture().hits, true); }
BENCHMARK(BM_BaselineHashExactHit);
void BM_BaselineHashWildcardHit(benchmark::State& state) {
    run_baseline(state, fixture().wildcard_hits, true);
}
BENCHMARK(BM_BaselineHashWildcardHit);
void BM_BaselineHashMiss(benchmark::State& state) { run_baseline(state, fixture().misses, false); }
BENCHMARK(BM_BaselineHashMiss);

void BM_StoreRefreshUnchanged(benchmark::State& state) {
    Fixture& f = fixture();
    for (auto _ : state) benchmark::DoNotOptimize(f.snapshot->refresh());
}
BENCHMARK(BM_StoreRefreshUnchanged);

void BM_StoreLookupExactHit(benchmark::State& state) {
    run_lookups(state, fixture().hits, true, false);
}
BENCHMARK(BM_StoreLookupExactHit);

void BM_StoreLookupWildcardHit(benchmark::State& state) {
    run_lookups(state, fixture().wildcard_hits, true, true);
}
BENCHMARK(BM_StoreLookupWildcardHit);

void BM_StoreLookupMiss(benchmark::State& state) {
    run_lookups(state, fixture().misses, false, false);
}
BENCHMARK(BM_StoreLookupMiss);

}  // namespace
