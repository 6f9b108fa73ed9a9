#include "process.hpp"

#include "common.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace dnsfw::cli {

namespace {

/// Owns a file descriptor.
class UniqueFd {
public:
    explicit UniqueFd(int fd = -1) noexcept : fd_(fd) {}
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }
    int get() const noexcept { return fd_; }
    void reset() noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_;
};

constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

/// Restores the signal mask it replaced.
class SignalMaskGuard {
public:
    explicit SignalMaskGuard(const sigset_t& block) {
        if (sigprocmask(SIG_BLOCK, &block, &old_) != 0) {
            throw CommandError(std::string("sigprocmask: ") + std::strerror(errno));
        }
    }
    SignalMaskGuard(const SignalMaskGuard&) = delete;
    SignalMaskGuard& operator=(const SignalMaskGuard&) = delete;
    ~SignalMaskGuard() { sigprocmask(SIG_SETMASK, &old_, nullptr); }
    const sigset_t& old() const noexcept { return old_; }

private:
    sigset_t old_{};
};

std::string env_name(const std::string& entry) { return entry.substr(0, entry.find('=')); }

}  // namespace

int run_foreground(const std::vector<std::string>& argv,
                   const std::vector<std::string>& extra_env) {
    // Everything exec needs is built before fork: the child only calls
    // async-signal-safe functions.
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) {
        std::string entry(*e);
        bool replaced = false;
        for (const auto& x : extra_env) replaced = replaced || env_name(x) == env_name(entry);
        if (!replaced) env_storage.push_back(std::move(entry));
    }
    env_storage.insert(env_storage.end(), extra_env.begin(), extra_env.end());
    std::vector<char*> envp;
    for (auto& e : env_storage) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_storage = argv;
    std::vector<char*> args;
    for (auto& a : argv_storage) args.push_back(a.data());
    args.push_back(nullptr);

    // Signals are taken synchronously with sigwaitinfo(): block them first,
    // with default dispositions so that none is discarded (a job started in
    // the background by a shell inherits SIGINT ignored).
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    signal(SIGCHLD, SIG_DFL);
    for (int s : kForwarded) {
        sigaddset(&set, s);
        signal(s, SIG_DFL);
    }
    SignalMaskGuard mask(set);

    // exec failure is reported through a close-on-exec pipe.
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        throw CommandError(std::string("pipe: ") + std::strerror(errno));
    }
    UniqueFd read_end(fds[0]);
    UniqueFd write_end(fds[1]);

    const pid_t parent = getpid();
    const pid_t child = fork();
    if (child < 0) throw CommandError(std::string("fork: ") + std::strerror(errno));
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(127);
        sigprocmask(SIG_SETMASK, &mask.old(), nullptr);
        execve(args[0], args.data(), envp.data());
        int err = errno;
        ssize_t ignored = write(write_end.get(), &err, sizeof err);
        (void)ignored;
        _exit(127);
    }
    write_end.reset();
    int exec_errno = 0;
    ssize_t n;
    do {
        n = read(read_end.get(), &exec_errno, sizeof exec_errno);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof exec_errno)) {
        int status = 0;
        waitpid(child, &status, 0);
        throw CommandError("cannot run " + argv[0] + ": " + std::strerror(exec_errno));
    }

    for (;;) {
        siginfo_t info{};
        int sig = sigwaitinfo(&set, &info);
        if (sig < 0) continue;  // EINTR
        if (sig != SIGCHLD) {
            kill(child, sig);
            continue;
        }
        int status = 0;
        pid_t r = waitpid(child, &status, WNOHANG);
        if (r == child) {
            if (WIFEXITED(status)) return WEXITSTATUS(status);
            if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
        }
    }
}

}  // namespace dnsfw::cli
