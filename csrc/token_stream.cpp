#include "token_stream.h"

#include <cerrno>
#include <fcntl.h>
#include <system_error>
#include <unistd.h>

namespace llamaserve {

AsyncNotifier::AsyncNotifier() {
    int fds[2];
    if (pipe(fds) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    for (int fd : fds) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
}

AsyncNotifier::~AsyncNotifier() {
    close(read_fd_);
    close(write_fd_);
}

void AsyncNotifier::notify(uint64_t stream_id) {
    std::lock_guard<std::mutex> lock(mu_);
    ready_.push_back(stream_id);
    if (!signalled_) {
        signalled_ = true;
        const char byte = 1;
        // A full pipe already means "wake up", so a failed write loses nothing.
        [[maybe_unused]] ssize_t n = write(write_fd_, &byte, 1);
    }
}

std::vector<uint64_t> AsyncNotifier::take_ready() {
    char buf[64];
    while (read(read_fd_, buf, sizeof buf) > 0) {
    }
    std::lock_guard<std::mutex> lock(mu_);
    signalled_ = false;
    std::vector<uint64_t> out;
    out.swap(ready_);
    return out;
}

TokenStream::TokenStream(uint64_t id, std::shared_ptr<AsyncNotifier> notifier)
    : id_(id), notifier_(std::move(notifier)) {}

void TokenStream::notify_locked() {
    if (notifier_ && !notified_) {
        notified_ = true;
        notifier_->notify(id_);
    }
}

void TokenStream::push(std::string piece) {
    if (piece.empty()) return;
    std::lock_guard<std::mutex> lock(mu_);
    pieces_.push_back(std::move(piece));
    notify_locked();
    cv_.notify_one();
}

void TokenStream::finish(StreamStats stats, std::string last_piece) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!last_piece.empty()) pieces_.push_back(std::move(last_piece));
    const double ttft = stats_.time_to_first_token;
    stats_ = std::move(stats);
    stats_.time_to_first_token = ttft;
    stats_.total_time = std::chrono::duration<double>(Clock::now() - submitted_at).count();
    finished_ = true;
    notify_locked();
    cv_.notify_all();
}

void TokenStream::mark_token() {
    const double at = std::chrono::duration<double>(Clock::now() - submitted_at).count();
    std::lock_guard<std::mutex> lock(mu_);
    if (stats_.time_to_first_token < 0) stats_.time_to_first_token = at;
    token_times_.push_back(static_cast<float>(at));
}

std::vector<float> TokenStream::token_times() const {
    std::lock_guard<std::mutex> lock(mu_);
    return token_times_;
}

void TokenStream::push_logprob(TokenLogprob record) {
    std::lock_guard<std::mutex> lock(mu_);
    logprobs_.push_back(std::move(record));
}

void TokenStream::push_progress(PromptProgress progress) {
    std::lock_guard<std::mutex> lock(mu_);
    progress_.push_back(progress);
    notify_locked();
    cv_.notify_one();
}

std::vector<PromptProgress> TokenStream::take_progress() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<PromptProgress> out;
    out.swap(progress_);
    return out;
}

std::vector<TokenLogprob> TokenStream::take_logprobs() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<TokenLogprob> out;
    out.swap(logprobs_);
    return out;
}

TokenStream::Wait TokenStream::wait_next(std::string & out, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !pieces_.empty() || finished_; })) {
        return Wait::Timeout;
    }
    if (!pieces_.empty()) {
        out = std::move(pieces_.front());
        pieces_.pop_front();
        return Wait::Piece;
    }
    return Wait::Finished;
}

std::vector<std::string> TokenStream::drain(bool & finished) {
    std::lock_guard<std::mutex> lock(mu_);
    notified_ = false;
    finished = finished_;
    std::vector<std::string> out(std::make_move_iterator(pieces_.begin()),
                                 std::make_move_iterator(pieces_.end()));
    pieces_.clear();
    return out;
}

void TokenStream::cancel() {
    if (!cancelled_.exchange(true, std::memory_order_relaxed) && on_cancel_) on_cancel_();
}

bool TokenStream::finished() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_;
}

StreamStats TokenStream::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
}

}  // namespace llamaserve
