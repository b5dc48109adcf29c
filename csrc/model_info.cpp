#include "model_info.h"

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <mutex>

#include "errors.h"

namespace llamaserve {

namespace {

std::atomic<bool> g_verbose{false};
thread_local std::string t_last_error;

void log_callback(ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) {
        t_last_error = text;
    }
    if (g_verbose.load(std::memory_order_relaxed)) fputs(text, stderr);
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

}  // namespace

void set_verbose_logging(bool verbose) { g_verbose.store(verbose); }

void install_log_capture() {
    static std::once_flag once;
    std::call_once(once, [] {
        llama_log_set(log_callback, nullptr);
        llama_backend_init();
    });
}

Model::Model(const std::string & path, const ModelLoadOptions & options) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        throw ModelLoadError("model file not found: " + path);
    }
    auto params = llama_model_default_params();
    params.n_gpu_layers = options.n_gpu_layers;
    t_last_error.clear();
    model_ = llama_model_load_from_file(path.c_str(), params);
    if (!model_) {
        std::string why = trimmed(t_last_error);
        throw ModelLoadError("cannot load model " + path + (why.empty() ? "" : ": " + why));
    }
    vocab_ = llama_model_get_vocab(model_);

    metadata_.path = path;
    metadata_.name = meta_string("general.name");
    metadata_.architecture = meta_string("general.architecture");
    char desc[256] = {0};
    llama_model_desc(model_, desc, sizeof desc);
    metadata_.description = desc;
    if (const char * tmpl = llama_model_chat_template(model_, nullptr)) {
        metadata_.chat_template = tmpl;
    }
    metadata_.n_params = llama_model_n_params(model_);
    metadata_.file_size = std::filesystem::file_size(path, ec);
    metadata_.weights_size = llama_model_size(model_);
    metadata_.n_ctx_train = llama_model_n_ctx_train(model_);
    metadata_.n_vocab = llama_vocab_n_tokens(vocab_);

    metadata_.bos_token_id = llama_vocab_bos(vocab_);
    metadata_.eos_token_id = llama_vocab_eos(vocab_);
    if (valid_token(metadata_.bos_token_id)) metadata_.bos_token = token_text(metadata_.bos_token_id);
    if (valid_token(metadata_.eos_token_id)) metadata_.eos_token = token_text(metadata_.eos_token_id);
    metadata_.fim_pre_token_id = llama_vocab_fim_pre(vocab_);
    metadata_.fim_suf_token_id = llama_vocab_fim_suf(vocab_);
    metadata_.fim_mid_token_id = llama_vocab_fim_mid(vocab_);
    metadata_.fim_pad_token_id = llama_vocab_fim_pad(vocab_);
    metadata_.fim_rep_token_id = llama_vocab_fim_rep(vocab_);
    metadata_.fim_sep_token_id = llama_vocab_fim_sep(vocab_);
    metadata_.sep_token_id = llama_vocab_sep(vocab_);
    metadata_.add_bos = llama_vocab_get_add_bos(vocab_);
    metadata_.add_eos = llama_vocab_get_add_eos(vocab_);
    metadata_.add_sep = llama_vocab_get_add_sep(vocab_);
    if (const char * rerank = llama_model_chat_template(model_, "rerank")) metadata_.rerank_template = rerank;
    for (llama_token t = 0; t < metadata_.n_vocab; ++t) {
        if (llama_vocab_is_eog(vocab_, t)) eog_tokens_.push_back(t);
    }
}

void quantize_model(const std::string & src, const std::string & dst, int32_t ftype,
                    bool allow_requantize, int32_t n_threads) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(src, ec)) throw ModelLoadError("model file not found: " + src);
    install_log_capture();
    auto params = llama_model_quantize_default_params();
    params.ftype = static_cast<llama_ftype>(ftype);
    params.allow_requantize = allow_requantize;
    params.nthread = n_threads;
    t_last_error.clear();
    uint32_t rc = 1;
    try {
        rc = llama_model_quantize(src.c_str(), dst.c_str(), &params);
    } catch (const std::exception & e) {  // the quantizer reports some failures by throwing
        t_last_error = e.what();
    }
    if (rc != 0) {
        const std::string why = trimmed(t_last_error);
        throw ModelLoadError("cannot quantize " + src + (why.empty() ? "" : ": " + why));
    }
}

Model::~Model() {
    if (model_) llama_model_free(model_);
}

std::string Model::meta_string(const char * key) const {
    char buf[512];
    const int32_t n = llama_model_meta_val_str(model_, key, buf, sizeof buf);
    return n < 0 ? std::string() : std::string(buf, std::min<size_t>(n, sizeof buf - 1));
}

std::vector<llama_token> Model::tokenize(const std::string & text, bool add_special,
                                         bool parse_special) const {
    std::vector<llama_token> tokens(text.size() + 8);
    int32_t n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()),
                               tokens.data(), static_cast<int32_t>(tokens.size()),
                               add_special, parse_special);
    if (n < 0) {
        tokens.resize(-n);
        n = llama_tokenize(vocab_, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                           static_cast<int32_t>(tokens.size()), add_special, parse_special);
    }
    if (n < 0) throw InvalidRequest("text could not be tokenized");
    tokens.resize(n);
    return tokens;
}

namespace {

std::string piece(const llama_vocab * vocab, llama_token token, bool special) {
    char buf[128];
    int32_t n = llama_token_to_piece(vocab, token, buf, sizeof buf, 0, special);
    if (n >= 0) return std::string(buf, n);
    std::string big(-n, '\0');
    n = llama_token_to_piece(vocab, token, big.data(), static_cast<int32_t>(big.size()), 0, special);
    big.resize(n < 0 ? 0 : n);
    return big;
}

}  // namespace

std::string Model::token_bytes(llama_token token) const { return piece(vocab_, token, false); }

std::string Model::token_text(llama_token token) const { return piece(vocab_, token, true); }

std::string Model::detokenize(const std::vector<llama_token> & tokens) const {
    for (llama_token t : tokens) {
        if (!valid_token(t)) throw InvalidRequest("unknown token id " + std::to_string(t));
    }
    std::string out(tokens.size() * 8 + 16, '\0');
    int32_t n = llama_detokenize(vocab_, tokens.data(), static_cast<int32_t>(tokens.size()),
                                 out.data(), static_cast<int32_t>(out.size()), false, false);
    if (n < 0) {
        out.resize(-n);
        n = llama_detokenize(vocab_, tokens.data(), static_cast<int32_t>(tokens.size()),
                             out.data(), static_cast<int32_t>(out.size()), false, false);
    }
    out.resize(n < 0 ? 0 : n);
    return out;
}

}  // namespace llamaserve
