// A loaded llama_model: loading with readable errors, metadata, tokenizer access.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llama.h"

namespace llamaserve {

struct ModelMetadata {
    std::string path;
    std::string name;
    std::string architecture;
    std::string description;
    std::string chat_template;  // empty when the GGUF has none
    uint64_t n_params = 0;
    uint64_t file_size = 0;
    uint64_t weights_size = 0;
    int32_t n_ctx_train = 0;
    int32_t n_vocab = 0;
    int32_t bos_token_id = -1;  // -1: the vocabulary has none
    int32_t eos_token_id = -1;
    std::string bos_token;  // their spellings, for chat templates
    std::string eos_token;
    // Fill-in-the-middle tokens as llama.cpp finds them (GGUF keys, else known spellings); -1: none.
    int32_t fim_pre_token_id = -1;
    int32_t fim_suf_token_id = -1;
    int32_t fim_mid_token_id = -1;
    int32_t fim_pad_token_id = -1;
    int32_t fim_rep_token_id = -1;  // a repository's name follows
    int32_t fim_sep_token_id = -1;  // a file's name follows
    // How the vocabulary frames a text pair (a reranker's query and document).
    int32_t sep_token_id = -1;
    bool add_bos = false;
    bool add_eos = false;
    bool add_sep = false;
    std::string rerank_template;  // the GGUF's "rerank" prompt ({query}, {document}); empty when none
};

struct ModelLoadOptions {
    int32_t n_gpu_layers = 0;
};

class Model {
public:
    Model(const std::string & path, const ModelLoadOptions & options);
    ~Model();
    Model(const Model &) = delete;
    Model & operator=(const Model &) = delete;

    llama_model * get() const { return model_; }
    const llama_vocab * vocab() const { return vocab_; }
    const ModelMetadata & metadata() const { return metadata_; }
    const std::vector<llama_token> & eog_tokens() const { return eog_tokens_; }

    std::vector<llama_token> tokenize(const std::string & text, bool add_special,
                                      bool parse_special) const;
    std::string token_bytes(llama_token token) const;
    std::string token_text(llama_token token) const;  // control tokens spelled out too
    std::string detokenize(const std::vector<llama_token> & tokens) const;
    bool valid_token(llama_token token) const {
        return token >= 0 && token < metadata_.n_vocab;
    }

private:
    std::string meta_string(const char * key) const;

    llama_model * model_ = nullptr;
    const llama_vocab * vocab_ = nullptr;
    ModelMetadata metadata_;
    std::vector<llama_token> eog_tokens_;
};

// Writes `dst` from `src` with llama.cpp's quantizer (`ftype` is a llama_ftype value).
void quantize_model(const std::string & src, const std::string & dst, int32_t ftype,
                    bool allow_requantize, int32_t n_threads);

// llama.cpp logs go to stderr only when verbose; errors are kept for exception messages.
void set_verbose_logging(bool verbose);
void install_log_capture();

}  // namespace llamaserve
