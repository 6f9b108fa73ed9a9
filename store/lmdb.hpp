// dnsfw::store internal — move-only RAII owners for LMDB's C handles.
//
// Not a public header: only store/*.cpp include it. Nothing here throws;
// callers turn return codes into StoreError (write/open paths) or into
// "no answer" (query path).
#pragma once

#include <lmdb.h>

#include <cerrno>
#include <cstdint>
#include <span>
#include <utility>

namespace dnsfw::store::lmdb {

/// Owns an MDB_env; closes it on destruction. Every Txn and Cursor of the
/// environment must be gone before it is closed.
class Env {
  public:
    Env() noexcept = default;
    explicit Env(MDB_env* env) noexcept : env_(env) {}
    Env(Env&& other) noexcept : env_(std::exchange(other.env_, nullptr)) {}
    Env& operator=(Env&& other) noexcept {
        if (this != &other) {
            close();
            env_ = std::exchange(other.env_, nullptr);
        }
        return *this;
    }
    Env(const Env&) = delete;
    Env& operator=(const Env&) = delete;
    ~Env() { close(); }

    MDB_env* get() const noexcept { return env_; }

    /// Creates an (unopened) environment. Returns the LMDB error code.
    int create() noexcept {
        close();
        return mdb_env_create(&env_);
    }

    void close() noexcept {
        if (env_ != nullptr) mdb_env_close(std::exchange(env_, nullptr));
    }

  private:
    MDB_env* env_ = nullptr;
};

/// Owns an MDB_txn. Aborts it on destruction unless committed. A read-only
/// transaction may be reset (reader slot kept, snapshot released) and renewed.
class Txn {
  public:
    Txn() noexcept = default;
    Txn(Txn&& other) noexcept : txn_(std::exchange(other.txn_, nullptr)) {}
    Txn& operator=(Txn&& other) noexcept {
        if (this != &other) {
            abort();
            txn_ = std::exchange(other.txn_, nullptr);
        }
        return *this;
    }
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;
    ~Txn() { abort(); }

    MDB_txn* get() const noexcept { return txn_; }
    explicit operator bool() const noexcept { return txn_ != nullptr; }

    /// Begins a transaction (flags: 0 or MDB_RDONLY). Returns the LMDB error code.
    int begin(MDB_env* env, unsigned flags) noexcept {
        abort();
        return mdb_txn_begin(env, nullptr, flags, &txn_);
    }
    /// Commits; the handle is gone afterwards whatever the outcome (LMDB frees
    /// the transaction even when commit fails).
    int commit() noexcept {
        if (txn_ == nullptr) return EINVAL;
        return mdb_txn_commit(std::exchange(txn_, nullptr));
    }
    void abort() noexcept {
        if (txn_ != nullptr) mdb_txn_abort(std::exchange(txn_, nullptr));
    }
    /// Read-only transactions: drop the snapshot, keep the handle.
    void reset() noexcept {
        if (txn_ != nullptr) mdb_txn_reset(txn_);
    }
    /// Read-only transactions: take a fresh snapshot after reset().
    int renew() noexcept { return txn_ != nullptr ? mdb_txn_renew(txn_) : EINVAL; }

  private:
    MDB_txn* txn_ = nullptr;
};

/// Owns an MDB_cursor. In a write transaction it must be destroyed before
/// the transaction commits or aborts (LMDB frees write cursors itself at
/// that point); in a read transaction before the transaction is freed.
class Cursor {
  public:
    Cursor() noexcept = default;
    Cursor(Cursor&& other) noexcept : cursor_(std::exchange(other.cursor_, nullptr)) {}
    Cursor& operator=(Cursor&& other) noexcept {
        if (this != &other) {
            close();
            cursor_ = std::exchange(other.cursor_, nullptr);
        }
        return *this;
    }
    Cursor(const Cursor&) = delete;
    Cursor& operator=(const Cursor&) = delete;
    ~Cursor() { close(); }

    MDB_cursor* get() const noexcept { return cursor_; }

    int open(MDB_txn* txn, MDB_dbi dbi) noexcept {
        close();
        return mdb_cursor_open(txn, dbi, &cursor_);
    }
    void close() noexcept {
        if (cursor_ != nullptr) mdb_cursor_close(std::exchange(cursor_, nullptr));
    }

  private:
    MDB_cursor* cursor_ = nullptr;
};

/// An MDB_val over a byte span (LMDB never writes through key/data inputs).
inline MDB_val to_val(std::span<const std::uint8_t> bytes) noexcept {
    return MDB_val{bytes.size(), const_cast<std::uint8_t*>(bytes.data())};
}

/// A byte span over an MDB_val (valid while its transaction is).
inline std::span<const std::uint8_t> to_span(const MDB_val& v) noexcept {
    return {static_cast<const std::uint8_t*>(v.mv_data), v.mv_size};
}

}  // namespace dnsfw::store::lmdb
