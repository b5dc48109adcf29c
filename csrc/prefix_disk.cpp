#include "prefix_disk.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

#include "checksum.h"
#include "errors.h"
#include "snapshot_file.h"

namespace fs = std::filesystem;

namespace llamaserve {

namespace {

constexpr const char * kSuffix = ".kvsnap";
constexpr const char * kTempMark = ".kvsnap.tmp-";
// Snapshots waiting for the writer. Each is shared with the host tier while it holds it, so
// the queue costs memory only for those it has let go; a disk that cannot keep up with this
// many is behind for good, and the surplus is skipped.
constexpr size_t kMaxQueuedWrites = 4;

bool ends_with(const std::string & s, const char * suffix) {
    const size_t n = std::char_traits<char>::length(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

std::string hex64(uint64_t v) {
    char text[17];
    std::snprintf(text, sizeof text, "%016" PRIx64, v);
    return text;
}

// A temporary file whose writer is gone (its name: <file>.tmp-<pid>-<count>): what a crash or a
// kill left of a write.
bool abandoned_temp(const std::string & name) {
    const size_t mark = name.find(kTempMark);
    if (mark == std::string::npos) return false;
    const long pid = std::strtol(name.c_str() + mark + std::char_traits<char>::length(kTempMark), nullptr, 10);
    return pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

}  // namespace

DiskPrefixTier::DiskPrefixTier(std::string dir, uint64_t budget, uint64_t fingerprint)
    : dir_(std::move(dir)), budget_(budget), fingerprint_(fingerprint), prefix_(hex64(fingerprint) + "-") {
    std::error_code error;
    fs::create_directories(dir_, error);
    if (error || !fs::is_directory(dir_, error)) {
        throw InvalidRequest("cache_dir: cannot use '" + dir_ + "' as a folder for prefix snapshots");
    }
    counts_.budget = budget_;
    scan();
    evict();  // the budget may be smaller than last time
    writer_ = std::thread([this] { run(); });
}

DiskPrefixTier::~DiskPrefixTier() { close(); }

void DiskPrefixTier::scan() {
    std::error_code error;
    for (const auto & item : fs::directory_iterator(dir_, error)) {
        const std::string name = item.path().filename().string();
        if (abandoned_temp(name)) {
            ::unlink(item.path().c_str());
            continue;
        }
        if (!ends_with(name, kSuffix) || name.compare(0, prefix_.size(), prefix_) != 0) continue;
        Entry entry;
        entry.name = name;
        SnapshotFileIndex read;
        switch (read_snapshot_index(path_of(name), fingerprint_, read)) {
            case SnapshotRead::ok:
                entry.tokens = std::move(read.tokens);
                entry.bytes = read.bytes;
                index_.push_back(std::move(entry));
                break;
            case SnapshotRead::damaged:  // our name, not our content: never read it again
                ::unlink(path_of(name).c_str());
                ++counts_.dropped;
                break;
            case SnapshotRead::missing:
                break;
        }
    }
}

std::string DiskPrefixTier::name_of(const std::vector<llama_token> & tokens) const {
    return prefix_ + hex64(checksum64(tokens.data(), tokens.size() * sizeof(llama_token))) + kSuffix;
}

bool DiskPrefixTier::indexed_locked(const std::string & name) const {
    return std::any_of(index_.begin(), index_.end(), [&](const Entry & e) { return e.name == name; });
}

void DiskPrefixTier::forget_locked(const std::string & name) {
    index_.erase(std::remove_if(index_.begin(), index_.end(), [&](const Entry & e) { return e.name == name; }),
                 index_.end());
}

DiskPrefixTier::Candidate DiskPrefixTier::find(const std::vector<llama_token> & prompt, bool partial,
                                               size_t better_than) const {
    std::lock_guard<std::mutex> lock(mu_);
    Candidate best;
    best.reuse = better_than;
    for (const auto & entry : index_) {
        const size_t reuse = snapshot_serves(entry.tokens, prompt, partial);
        if (reuse > best.reuse) best = {entry.name, reuse};
    }
    return best;
}

SharedPrefix DiskPrefixTier::longest_shared(const std::vector<llama_token> & prompt) const {
    std::lock_guard<std::mutex> lock(mu_);
    SharedPrefix best;
    for (const auto & entry : index_) {
        const SharedPrefix shared = shared_prefix(entry.tokens, prompt);
        if (shared.n > best.n) best = shared;
    }
    return best;
}

bool DiskPrefixTier::holds(const std::vector<llama_token> & tokens, size_t n) const {
    std::lock_guard<std::mutex> lock(mu_);
    return std::any_of(index_.begin(), index_.end(),
                       [&](const Entry & e) { return is_prefix_snapshot(e.tokens, tokens, n); });
}

std::shared_ptr<const PrefixSnapshot> DiskPrefixTier::load(const Candidate & candidate) {
    auto snapshot = std::make_shared<PrefixSnapshot>();
    const SnapshotRead read = read_snapshot_file(path_of(candidate.name), fingerprint_, *snapshot);
    if (read == SnapshotRead::damaged) ::unlink(path_of(candidate.name).c_str());
    std::lock_guard<std::mutex> lock(mu_);
    if (read != SnapshotRead::ok) {
        forget_locked(candidate.name);
        if (read == SnapshotRead::damaged) ++counts_.dropped;
        return nullptr;
    }
    touch_locked(candidate.name);
    return snapshot;
}

void DiskPrefixTier::count_hit() {
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_.hits;
}

void DiskPrefixTier::save(std::shared_ptr<const PrefixSnapshot> snapshot) {
    std::string name = name_of(snapshot->tokens);
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_ || indexed_locked(name) ||
        std::any_of(queue_.begin(), queue_.end(), [&](const Job & j) { return j.snapshot && j.name == name; })) {
        return;
    }
    const auto writes = std::count_if(queue_.begin(), queue_.end(), [](const Job & j) { return j.snapshot != nullptr; });
    if (static_cast<size_t>(writes) >= kMaxQueuedWrites) {
        ++counts_.skipped;
        return;
    }
    queue_.push_back({std::move(name), std::move(snapshot)});
    wake_.notify_one();
}

void DiskPrefixTier::touch(const std::vector<llama_token> & tokens) {
    const std::string name = name_of(tokens);
    std::lock_guard<std::mutex> lock(mu_);
    if (indexed_locked(name)) touch_locked(name);
}

void DiskPrefixTier::touch_locked(const std::string & name) {
    // Touches are cheap and may be lost (the order is a little off): a bounded few wait.
    if (closing_ || queue_.size() >= 2 * kMaxQueuedWrites) return;
    queue_.push_back({name, nullptr});
    wake_.notify_one();
}

void DiskPrefixTier::close() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        closing_ = true;
    }
    wake_.notify_all();
    if (writer_.joinable()) writer_.join();
}

void DiskPrefixTier::run() {
    for (;;) {
        Job job;
        {
            std::unique_lock<std::mutex> lock(mu_);
            wake_.wait(lock, [&] { return closing_ || !queue_.empty(); });
            if (queue_.empty()) return;  // closing, and every queued write done
            job = std::move(queue_.front());
            queue_.pop_front();
        }
        if (job.snapshot) {
            write(job);
        } else {
            ::utimensat(AT_FDCWD, path_of(job.name).c_str(), nullptr, 0);  // now: the LRU order
        }
    }
}

void DiskPrefixTier::write(const Job & job) {
    const bool written = write_snapshot_file(path_of(job.name), fingerprint_, *job.snapshot);
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (!written) {
            ++counts_.skipped;  // a full disk, a folder gone: the snapshot lives on in memory
            return;
        }
        std::error_code error;
        const uint64_t bytes = fs::file_size(path_of(job.name), error);
        forget_locked(job.name);
        index_.push_back({job.name, job.snapshot->tokens, error ? 0 : bytes});
        ++counts_.writes;
    }
    evict();
}

void DiskPrefixTier::evict() {
    // The folder as it is now: other engines and servers may share it.
    struct File {
        std::string name;
        uint64_t bytes;
        fs::file_time_type used;
    };
    std::vector<File> files;
    uint64_t total = 0;
    std::error_code error;
    for (const auto & item : fs::directory_iterator(dir_, error)) {
        const std::string name = item.path().filename().string();
        if (!ends_with(name, kSuffix)) continue;
        std::error_code stat_error;
        const uint64_t bytes = item.file_size(stat_error);
        const auto used = item.last_write_time(stat_error);
        if (stat_error) continue;  // deleted meanwhile
        files.push_back({name, bytes, used});
        total += bytes;
    }
    if (total <= budget_) return;
    std::sort(files.begin(), files.end(), [](const File & a, const File & b) { return a.used < b.used; });
    for (const auto & file : files) {
        if (total <= budget_) break;
        if (::unlink(path_of(file.name).c_str()) != 0 && errno != ENOENT) continue;
        total -= file.bytes;
        std::lock_guard<std::mutex> lock(mu_);
        forget_locked(file.name);
        ++counts_.evictions;
    }
}

DiskTierStats DiskPrefixTier::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    DiskTierStats s = counts_;
    s.entries = index_.size();
    s.bytes = 0;
    for (const auto & entry : index_) s.bytes += entry.bytes;
    return s;
}

}  // namespace llamaserve
