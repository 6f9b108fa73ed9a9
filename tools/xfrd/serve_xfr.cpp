// dnsfw::xfrd — AXFR/IXFR response streams of the Responder.
//
// A zone transfer is cut into messages of about kMessageTarget octets,
// each signed in turn when the request was (the MAC chain of RFC 8945
// section 5.3.1). The whole zone is read from a store Snapshot by a
// producer thread (Snapshot::for_each_rule is callback-driven) that hands
// over bounded chunks of records, so memory stays small whatever the zone
// size; the journal of an IXFR is bounded by the zone's journal size and is
// streamed from memory.
#include "tools/xfrd/serve_internal.hpp"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

namespace dnsfw::xfrd::detail {

namespace {

/// Packs records pulled from a subclass into messages.
class PackingStream : public ResponseStream {
  public:
    explicit PackingStream(Request& req)
        : id_(req.header.id),
          flags_(static_cast<std::uint16_t>(wire::kFlagQr | wire::kFlagAa |
                                            (req.header.flags & 0x7800) |
                                            (req.header.flags & wire::kFlagRd))),
          qname_(req.qname),
          qtype_(req.qtype),
          qclass_(req.qclass),
          tsig_(std::move(req.tsig)) {
        req.tsig.reset();
    }

    bool next(std::vector<std::uint8_t>& out) override {
        if (done_) return false;
        wire::MessageBuilder mb(id_, flags_);
        // The question goes into the first message only (RFC 5936 2.2.1).
        if (first_) mb.question(qname_, qtype_, qclass_);
        bool any = false;
        while (true) {
            if (!have_pending_) {
                if (!pull(pending_)) {
                    exhausted_ = true;
                    break;
                }
                have_pending_ = true;
            }
            const std::size_t rr_size = pending_.owner.size() + 10 + pending_.rdata.size();
            if (any && mb.size() + rr_size > kMessageTarget) break;
            mb.add(wire::MessageBuilder::Section::Answer, pending_.owner, pending_.type,
                   wire::kClassIn, pending_.ttl, pending_.rdata);
            have_pending_ = false;
            any = true;
        }
        if (!any && !first_) {
            done_ = true;
            return false;
        }
        first_ = false;
        if (exhausted_) done_ = true;
        out = mb.finish();
        if (tsig_) out = tsig_->sign_response(out);
        return true;
    }

  protected:
    /// The next record of the response; false when there is none.
    virtual bool pull(rpz::ZoneRecord& rec) = 0;

  private:
    std::uint16_t id_;
    std::uint16_t flags_;
    rpz::Name qname_;
    std::uint16_t qtype_;
    std::uint16_t qclass_;
    std::optional<TsigSession> tsig_;
    rpz::ZoneRecord pending_;
    bool have_pending_ = false;
    bool first_ = true;
    bool exhausted_ = false;
    bool done_ = false;
};

/// Thrown inside the producer's callback to stop the iteration.
struct Cancelled {};

/// The whole zone: SOA, apex NS, rules, SOA.
class FullStream final : public PackingStream {
  public:
    FullStream(Request& req, const rpz::Name& apex, std::unique_ptr<store::Snapshot> snapshot)
        : PackingStream(req), apex_(apex), snapshot_(std::move(snapshot)) {
        const store::ZoneInfo& info = snapshot_->zone_info(0);
        soa_ = soa_record(apex_, info.soa_ttl, info.soa_rdata);
        ns_ = apex_ns(apex_, info);
        producer_ = std::thread([this] { produce(); });
    }

    ~FullStream() override {
        {
            std::lock_guard<std::mutex> lk(mutex_);
            cancel_ = true;
        }
        cv_.notify_all();
        producer_.join();
    }

  protected:
    bool pull(rpz::ZoneRecord& rec) override {
        switch (phase_) {
            case Phase::Soa:
                rec = soa_;
                phase_ = ns_ ? Phase::Ns : Phase::Rules;
                return true;
            case Phase::Ns:
                rec = *ns_;
                phase_ = Phase::Rules;
                return true;
            case Phase::Rules:
                if (chunk_pos_ < chunk_.size()) {
                    rec = std::move(chunk_[chunk_pos_++]);
                    return true;
                }
                if (take_chunk()) {
                    rec = std::move(chunk_[chunk_pos_++]);
                    return true;
                }
                phase_ = Phase::Done;
                rec = soa_;
                return true;
            case Phase::Done:
                return false;
        }
        return false;
    }

  private:
    enum class Phase { Soa, Ns, Rules, Done };
    static constexpr std::size_t kChunkRecords = 512;
    static constexpr std::size_t kMaxChunks = 4;

    /// Waits for the next chunk; false at the end. Rethrows a producer error.
    bool take_chunk() {
        std::unique_lock<std::mutex> lk(mutex_);
        cv_.wait(lk, [this] { return !queue_.empty() || producer_done_; });
        if (!queue_.empty()) {
            chunk_ = std::move(queue_.front());
            queue_.pop_front();
            chunk_pos_ = 0;
            lk.unlock();
            cv_.notify_all();
            return true;
        }
        if (error_) std::rethrow_exception(error_);
        return false;
    }

    void push(std::vector<rpz::ZoneRecord>&& chunk) {
        std::unique_lock<std::mutex> lk(mutex_);
        cv_.wait(lk, [this] { return queue_.size() < kMaxChunks || cancel_; });
        if (cancel_) throw Cancelled{};
        queue_.push_back(std::move(chunk));
        lk.unlock();
        cv_.notify_all();
    }

    void produce() noexcept {
        try {
            std::vector<rpz::ZoneRecord> chunk;
            snapshot_->for_each_rule(0, [&](rpz::Trigger t, std::span<const std::uint8_t> key,
                                            const rpz::RuleView& view) {
                rpz::Rule rule = view.to_rule();
                rule.trigger = t;
                rule.key.assign(key.begin(), key.end());
                // A stored rule that cannot be expressed (malformed key) is
                // skipped rather than aborting the transfer.
                try {
                    for (auto& r : rpz::rule_records(apex_, rule)) chunk.push_back(std::move(r));
                } catch (const std::invalid_argument&) {
                }
                if (chunk.size() >= kChunkRecords) {
                    push(std::move(chunk));
                    chunk.clear();
                }
            });
            if (!chunk.empty()) push(std::move(chunk));
        } catch (const Cancelled&) {
        } catch (...) {
            std::lock_guard<std::mutex> lk(mutex_);
            error_ = std::current_exception();
        }
        {
            std::lock_guard<std::mutex> lk(mutex_);
            producer_done_ = true;
        }
        cv_.notify_all();
    }

    rpz::Name apex_;
    std::unique_ptr<store::Snapshot> snapshot_;  // used by the producer only
    rpz::ZoneRecord soa_;
    std::optional<rpz::ZoneRecord> ns_;
    Phase phase_ = Phase::Soa;
    std::vector<rpz::ZoneRecord> chunk_;
    std::size_t chunk_pos_ = 0;

    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::vector<rpz::ZoneRecord>> queue_;
    bool producer_done_ = false;
    bool cancel_ = false;
    std::exception_ptr error_;
    std::thread producer_;  // last: started once everything above exists
};

/// IXFR difference sequences from the journal.
class JournalStream final : public PackingStream {
  public:
    JournalStream(Request& req, const rpz::Name& apex, std::vector<store::JournalEntry> entries)
        : PackingStream(req), apex_(apex), entries_(std::move(entries)) {
        const store::JournalEntry& last = entries_.back();
        current_ = soa_record(apex_, last.to_soa_ttl, last.to_soa_rdata);
    }

  protected:
    bool pull(rpz::ZoneRecord& rec) override {
        // States: Start -> per entry (FromSoa, Removed*, ToSoa, Added*) -> End -> Done.
        while (true) {
            switch (state_) {
                case State::Start:
                    rec = current_;
                    state_ = entries_.empty() ? State::End : State::FromSoa;
                    return true;
                case State::FromSoa: {
                    const auto& e = entries_[entry_];
                    rec = soa_record(apex_, e.from_soa_ttl, e.from_soa_rdata);
                    state_ = State::Removed;
                    index_ = 0;
                    return true;
                }
                case State::Removed: {
                    auto& e = entries_[entry_];
                    if (index_ < e.removed.size()) {
                        rec = std::move(e.removed[index_++]);
                        return true;
                    }
                    state_ = State::ToSoa;
                    continue;
                }
                case State::ToSoa: {
                    const auto& e = entries_[entry_];
                    rec = soa_record(apex_, e.to_soa_ttl, e.to_soa_rdata);
                    state_ = State::Added;
                    index_ = 0;
                    return true;
                }
                case State::Added: {
                    auto& e = entries_[entry_];
                    if (index_ < e.added.size()) {
                        rec = std::move(e.added[index_++]);
                        return true;
                    }
                    ++entry_;
                    state_ = entry_ < entries_.size() ? State::FromSoa : State::End;
                    continue;
                }
                case State::End:
                    rec = current_;
                    state_ = State::Done;
                    return true;
                case State::Done:
                    return false;
            }
        }
    }

  private:
    enum class State { Start, FromSoa, Removed, ToSoa, Added, End, Done };
    rpz::Name apex_;
    std::vector<store::JournalEntry> entries_;
    rpz::ZoneRecord current_;
    State state_ = State::Start;
    std::size_t entry_ = 0;
    std::size_t index_ = 0;
};

}  // namespace

std::unique_ptr<ResponseStream> make_full_stream(Request& req, const rpz::Name& apex,
                                                 std::unique_ptr<store::Snapshot> snapshot) {
    return std::make_unique<FullStream>(req, apex, std::move(snapshot));
}

std::unique_ptr<ResponseStream> make_journal_stream(Request& req, const rpz::Name& apex,
                                                    std::vector<store::JournalEntry> entries) {
    if (entries.empty()) throw std::invalid_argument("make_journal_stream: no journal entries");
    return std::make_unique<JournalStream>(req, apex, std::move(entries));
}

}  // namespace dnsfw::xfrd::detail
