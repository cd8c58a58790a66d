#pragma once
/// \file
/// Atomic file replacement, used by every ember saver (NPY, safetensors).
///
/// The new contents go to a temporary file in the target's own directory (a rename is only
/// atomic within one file system), which is flushed, fsync'ed, closed and renamed over the
/// target; then the directory is fsync'ed so that the rename itself survives a power cut.
/// Whatever happens (an exception from the code producing the bytes, a full disk, a crash),
/// the target holds either its previous contents or the complete new ones, never a mix.
/// On an exception the temporary is removed; only a crash of the whole process can leave
/// one behind (a hidden ".NAME.tmp-PID-N" file next to the target). The first write to a
/// target in a process removes such leftovers of processes that no longer exist (a PID
/// that is alive, even if reused by another program, keeps its file).
///
/// POSIX only (open/write/fsync/rename). The new file gets the usual 0666 & ~umask
/// permissions; the permissions of a file it replaces are not carried over.
#if !__has_include(<unistd.h>)
#error "ember/io needs a POSIX system (open, write, fsync, rename)"
#endif

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <concepts>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "ember/core/error.hpp"

namespace ember {

namespace detail {
// strerror() is not thread-safe; this is.
inline std::string errno_text(int err) { return std::generic_category().message(err); }

// Removes the temporaries "<prefix>PID-N" in `dir` left by processes that have died, once
// per prefix and process. Best effort: a file that cannot be listed or removed stays.
inline void remove_stale_temporaries(const std::filesystem::path& dir, const std::string& prefix) {
    static std::mutex mutex;
    static std::set<std::string> done;
    {
        std::lock_guard lock(mutex);
        if (!done.insert((dir / prefix).string()).second) return;
    }
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (!name.starts_with(prefix)) continue;
        const std::string rest = name.substr(prefix.size());  // "PID-N"
        const std::size_t dash = rest.find('-');
        if (dash == 0 || dash == std::string::npos || rest.find_first_not_of("0123456789-") != std::string::npos) continue;
        const long pid = std::strtol(rest.substr(0, dash).c_str(), nullptr, 10);
        if (pid <= 0 || pid == static_cast<long>(::getpid())) continue;
        if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
            std::error_code ignored;
            std::filesystem::remove(it->path(), ignored);
        }
    }
}
}  // namespace detail

class AtomicWriter;
template <class Fill>
    requires std::invocable<Fill&, AtomicWriter&>
void write_file_atomic(const std::filesystem::path& path, Fill&& fill, const char* op = "write_file_atomic");

/// Receives the bytes of a file being written by write_file_atomic. Writes are buffered;
/// a failed system call throws ember::Error naming the file.
class AtomicWriter {
public:
    AtomicWriter(const AtomicWriter&) = delete;
    AtomicWriter& operator=(const AtomicWriter&) = delete;

    /// Appends `n` bytes from `data`.
    void write(const void* data, std::size_t n) {
        const auto* p = static_cast<const std::byte*>(data);
        if (buf_.size() + n > kBufferSize) flush();
        if (n >= kBufferSize) write_fd(p, n);  // large blocks bypass the buffer
        else buf_.insert(buf_.end(), p, p + n);
        written_ += n;
    }
    /// Appends the characters of `s`.
    void write(std::string_view s) { write(s.data(), s.size()); }
    /// Bytes written so far.
    std::uint64_t bytes_written() const { return written_; }

private:
    template <class Fill>
        requires std::invocable<Fill&, AtomicWriter&>
    friend void write_file_atomic(const std::filesystem::path& path, Fill&& fill, const char* op);

    static constexpr std::size_t kBufferSize = std::size_t(1) << 18;

    AtomicWriter(int fd, const std::filesystem::path& target, const char* op)
        : fd_(fd), target_(target), op_(op) {
        buf_.reserve(kBufferSize);
    }

    void flush() {
        write_fd(buf_.data(), buf_.size());
        buf_.clear();
    }
    void write_fd(const std::byte* p, std::size_t n) {
        while (n > 0) {
            const ssize_t k = ::write(fd_, p, n);
            if (k < 0) {
                if (errno == EINTR) continue;
                detail::fail(op_, target_.string(), ": write failed: ", detail::errno_text(errno));
            }
            p += k;
            n -= static_cast<std::size_t>(k);
        }
    }

    int fd_;
    std::filesystem::path target_;
    const char* op_;
    std::vector<std::byte> buf_;
    std::uint64_t written_ = 0;
};

/// Replaces `path` atomically with the bytes that `fill(AtomicWriter&)` writes (see the top
/// of this file). If `fill` throws, the exception propagates, the temporary is removed and
/// `path` is untouched. Failures of the file system throw ember::Error("op: path: ...").
template <class Fill>
    requires std::invocable<Fill&, AtomicWriter&>
void write_file_atomic(const std::filesystem::path& path, Fill&& fill, const char* op) {
    const std::string name = path.filename().string();
    EMBER_CHECK(!name.empty() && name != "." && name != "..", op, "'", path.string(),
                "' does not name a file");
    const std::filesystem::path dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();

    // A name unique to this process and call, created with O_EXCL so two writers (threads
    // or processes) never share a temporary. Long names are shortened to stay under the
    // usual 255-byte limit for a file name.
    static std::atomic<std::uint64_t> counter{0};
    std::string tmp_prefix = ".";  // appended piece by piece: g++ 12 warns (falsely) on "." + string
    tmp_prefix += name.substr(0, 200);
    tmp_prefix += ".tmp-";
    detail::remove_stale_temporaries(dir, tmp_prefix);
    std::filesystem::path tmp;
    int fd = -1;
    for (int attempt = 0; fd < 0; ++attempt) {
        tmp = dir / (tmp_prefix + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1)));
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        // EEXIST: a leftover from a crashed process that had our pid; try the next number.
        if (fd < 0 && (errno != EEXIST || attempt > 100))
            detail::fail(op, path.string(), ": cannot create the temporary file ", tmp.string(), ": ",
                         detail::errno_text(errno));
    }

    auto fail_and_clean = [&](const char* what, int err) {
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        detail::fail(op, path.string(), ": ", what, ": ", detail::errno_text(err));
    };
    try {
        AtomicWriter writer(fd, path, op);
        fill(writer);
        writer.flush();
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    // fsync before rename: otherwise a crash soon after the rename can leave the new name
    // pointing at a file whose data never reached the disk (an empty or partial file).
    if (::fsync(fd) != 0) fail_and_clean("fsync failed", errno);
    const int closed = ::close(fd);
    fd = -1;
    if (closed != 0) fail_and_clean("close failed", errno);  // e.g. NFS reports errors here
    if (std::rename(tmp.c_str(), path.c_str()) != 0) fail_and_clean("cannot rename the temporary over it", errno);

    // The rename is a change to the directory, which must be synced too to be durable.
    // Some file systems cannot fsync a directory (EINVAL); the write itself is complete then,
    // so that is not an error. A directory we cannot open is skipped for the same reason.
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        const int synced = ::fsync(dfd);
        const int err = errno;
        ::close(dfd);
        if (synced != 0 && err != EINVAL && err != ENOTSUP)
            detail::fail(op, path.string(), ": written and renamed, but fsync of its directory failed: ",
                         detail::errno_text(err));
    }
}

/// The same for bytes already in memory.
inline void write_file_atomic(const std::filesystem::path& path, std::string_view bytes,
                              const char* op = "write_file_atomic") {
    write_file_atomic(path, [&](AtomicWriter& w) { w.write(bytes); }, op);
}

}  // namespace ember
