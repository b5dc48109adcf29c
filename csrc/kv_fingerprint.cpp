#include "kv_fingerprint.h"

#include <algorithm>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "checksum.h"
#include "errors.h"
#include "llama.h"

namespace llamaserve {

namespace {

constexpr size_t kHeaderBytes = size_t(1) << 20;

// The file's first MiB (all of a smaller one): the GGUF header and its tensor table.
uint64_t header_hash(const std::string & path, const struct stat & st) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw ModelLoadError("cannot read " + path + " for its prefix-cache fingerprint");
    std::vector<char> head(std::min<size_t>(kHeaderBytes, static_cast<size_t>(st.st_size)));
    size_t got = 0;
    while (got < head.size()) {
        const ssize_t n = ::pread(fd, head.data() + got, head.size() - got, static_cast<off_t>(got));
        if (n <= 0) break;
        got += static_cast<size_t>(n);
    }
    ::close(fd);
    return checksum64(head.data(), got);
}

}  // namespace

uint64_t kv_fingerprint(const KvIdentity & identity) {
    struct stat st {};
    if (::stat(identity.model_path.c_str(), &st) != 0) {
        throw ModelLoadError("cannot read " + identity.model_path + " for its prefix-cache fingerprint");
    }
#if defined(__APPLE__)
    const int64_t mtime_ns = int64_t(st.st_mtimespec.tv_sec) * 1000000000 + st.st_mtimespec.tv_nsec;
#else
    const int64_t mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
#endif
    const std::string text = "state " + std::to_string(LLAMA_STATE_SEQ_VERSION) +
                             "|size " + std::to_string(st.st_size) + "|mtime " + std::to_string(mtime_ns) +
                             "|header " + std::to_string(header_hash(identity.model_path, st)) +
                             "|k " + identity.type_k + "|v " + identity.type_v + "|fa " + identity.flash_attn +
                             "|swa_full " + std::to_string(identity.swa_full) +
                             "|streams " + std::to_string(identity.n_stream);
    return checksum64(text.data(), text.size());
}

}  // namespace llamaserve
