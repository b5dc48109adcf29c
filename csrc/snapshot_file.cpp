#include "snapshot_file.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checksum.h"

namespace llamaserve {

namespace {

constexpr char kMagic[8] = {'L', 'S', 'K', 'V', 'S', 'N', 'A', 'P'};
// More tokens than any context holds: a header that claims them is damaged.
constexpr uint64_t kMaxTokens = uint64_t(1) << 26;

struct Header {
    char magic[8];
    uint32_t version;
    uint32_t reserved;
    uint64_t fingerprint;
    uint64_t n_tokens;
    uint64_t state_size;
    uint64_t checksum;
};
static_assert(sizeof(Header) == 48, "the header is written as it is laid out");

// Closes a descriptor on every way out.
struct Fd {
    int fd;
    explicit Fd(int f) : fd(f) {}
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
    Fd(const Fd &) = delete;
    Fd & operator=(const Fd &) = delete;
};

bool write_all(int fd, const void * data, size_t size) {
    const auto * p = static_cast<const char *>(data);
    while (size > 0) {
        const ssize_t n = ::write(fd, p, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        size -= static_cast<size_t>(n);
    }
    return true;
}

bool read_all(int fd, void * data, size_t size) {
    auto * p = static_cast<char *>(data);
    while (size > 0) {
        const ssize_t n = ::read(fd, p, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        size -= static_cast<size_t>(n);
    }
    return true;
}

uint64_t content_checksum(const std::vector<llama_token> & tokens, const uint8_t * state, size_t state_size) {
    const uint64_t of_tokens = checksum64(tokens.data(), tokens.size() * sizeof(llama_token));
    return checksum64(state, state_size, of_tokens);
}

std::string folder_of(const std::string & path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}

// Opens `path` and reads its header and tokens, checking them against `fingerprint`.
SnapshotRead open_checked(const std::string & path, uint64_t fingerprint, Fd & file, Header & header,
                          std::vector<llama_token> & tokens, uint64_t & bytes) {
    file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (file.fd < 0) return errno == ENOENT ? SnapshotRead::missing : SnapshotRead::damaged;
    struct stat st {};
    if (::fstat(file.fd, &st) != 0 || !read_all(file.fd, &header, sizeof header)) return SnapshotRead::damaged;
    if (std::memcmp(header.magic, kMagic, sizeof kMagic) != 0 || header.version != kSnapshotFileVersion ||
        header.fingerprint != fingerprint || header.n_tokens == 0 || header.n_tokens > kMaxTokens) {
        return SnapshotRead::damaged;
    }
    bytes = static_cast<uint64_t>(st.st_size);
    if (bytes != sizeof header + header.n_tokens * sizeof(llama_token) + header.state_size) {
        return SnapshotRead::damaged;  // cut short, or grown: not what was written
    }
    tokens.resize(header.n_tokens);
    return read_all(file.fd, tokens.data(), tokens.size() * sizeof(llama_token)) ? SnapshotRead::ok
                                                                                : SnapshotRead::damaged;
}

}  // namespace

bool write_snapshot_file(const std::string & path, uint64_t fingerprint, const PrefixSnapshot & snapshot) {
    Header header{};
    std::memcpy(header.magic, kMagic, sizeof kMagic);
    header.version = kSnapshotFileVersion;
    header.fingerprint = fingerprint;
    header.n_tokens = snapshot.tokens.size();
    header.state_size = snapshot.state.size();
    header.checksum = content_checksum(snapshot.tokens, snapshot.state.data(), snapshot.state.size());
    // The process id and a count keep apart two writers of the same snapshot (two servers on one
    // folder, two engines of one model in one process); a later start removes what a writer
    // that died left (prefix_disk.cpp).
    static std::atomic<uint64_t> writes{0};
    const std::string temp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(writes++);
    bool ok;
    {
        Fd file(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        ok = file.fd >= 0 && write_all(file.fd, &header, sizeof header) &&
             write_all(file.fd, snapshot.tokens.data(), snapshot.tokens.size() * sizeof(llama_token)) &&
             write_all(file.fd, snapshot.state.data(), snapshot.state.size()) && ::fsync(file.fd) == 0;
    }
    ok = ok && ::rename(temp.c_str(), path.c_str()) == 0;
    if (!ok) {
        ::unlink(temp.c_str());
        return false;
    }
    // The rename is durable once the folder's entry is on the disk too.
    Fd folder(::open(folder_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (folder.fd >= 0) ::fsync(folder.fd);
    return true;
}

SnapshotRead read_snapshot_index(const std::string & path, uint64_t fingerprint, SnapshotFileIndex & out) {
    Fd file(-1);
    Header header{};
    return open_checked(path, fingerprint, file, header, out.tokens, out.bytes);
}

SnapshotRead read_snapshot_file(const std::string & path, uint64_t fingerprint, PrefixSnapshot & out) {
    Fd file(-1);
    Header header{};
    uint64_t bytes = 0;
    const SnapshotRead read = open_checked(path, fingerprint, file, header, out.tokens, bytes);
    if (read != SnapshotRead::ok) return read;
    out.state.resize(header.state_size);
    if (!read_all(file.fd, out.state.data(), out.state.size()) ||
        content_checksum(out.tokens, out.state.data(), out.state.size()) != header.checksum) {
        return SnapshotRead::damaged;
    }
    return SnapshotRead::ok;
}

}  // namespace llamaserve
