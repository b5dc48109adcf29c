// The native boundary: everything Python sees of the engine is declared here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <limits>
#include <optional>

#include "embedder.h"
#include "ggml-backend.h"
#include "engine.h"
#include "errors.h"
#include "grammar_limits.h"
#include "text_decoder.h"

namespace py = pybind11;
using namespace llamaserve;

namespace {

py::dict stats_dict(const StreamStats & s) {
    py::dict d;
    d["prompt_tokens"] = s.prompt_tokens;
    d["completion_tokens"] = s.completion_tokens;
    d["cached_tokens"] = s.cached_tokens;
    d["reused_tokens"] = s.reused_tokens;
    d["cache_departure"] = s.cache_departure < 0 ? py::object(py::none()) : py::object(py::int_(s.cache_departure));
    d["cache_departure_text"] = s.cache_departure_text;
    d["drafted_tokens"] = s.drafted_tokens;
    d["accepted_tokens"] = s.accepted_tokens;
    d["reasoning_tokens"] = s.reasoning_tokens;
    d["time_to_first_token"] = s.time_to_first_token < 0 ? py::object(py::none())
                                                         : py::object(py::float_(s.time_to_first_token));
    d["total_time"] = s.total_time;
    d["finish_reason"] = s.finish_reason;
    d["error"] = s.error.empty() ? py::object(py::none()) : py::object(py::str(s.error));
    d["error_type"] = s.error.empty() ? py::object(py::none())
                                      : py::object(py::str(s.invalid_request ? "invalid_request" : "internal"));
    return d;
}

// Blocks for the next piece with the GIL released, waking now and then so Ctrl-C works.
py::str next_piece(TokenStream & stream) {
    std::string piece;
    while (true) {
        TokenStream::Wait got;
        {
            py::gil_scoped_release release;
            got = stream.wait_next(piece, std::chrono::milliseconds(100));
        }
        if (got == TokenStream::Wait::Piece) return py::str(piece);
        if (got == TokenStream::Wait::Finished) throw py::stop_iteration();
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
}

// Python ints have no size: one outside what the native side holds is the caller's
// mistake (InvalidRequest), not a TypeError from pybind11's conversion.
// Anything with __index__ counts (numpy integers too), as in pybind11's own conversion.
std::optional<long long> int64_of(const py::handle & value, const std::string & not_int) {
    if (!PyIndex_Check(value.ptr())) throw InvalidRequest(not_int);
    const auto index = py::reinterpret_steal<py::object>(PyNumber_Index(value.ptr()));
    if (!index) throw py::error_already_set();
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
    if (overflow != 0) return std::nullopt;
    return v;
}

std::string spelled(std::optional<long long> v) { return v ? std::to_string(*v) : "beyond 64 bits"; }

template <typename T>
T native_int(const py::handle & value, const std::string & name) {
    const auto v = int64_of(value, name + ": must be an integer");
    if (!v || *v < std::numeric_limits<T>::min() || *v > std::numeric_limits<T>::max()) {
        throw InvalidRequest(name + ": " + spelled(v) + " is out of range");
    }
    return static_cast<T>(*v);
}

llama_token token_id(const py::handle & value, const std::string & name) {
    const auto v = int64_of(value, name + ": token ids must be integers");
    if (!v || *v < 0 || *v > std::numeric_limits<llama_token>::max()) {
        throw InvalidRequest(name + ": unknown token id " + spelled(v));
    }
    return static_cast<llama_token>(*v);
}

std::vector<llama_token> token_ids(const py::handle & values, const std::string & name) {
    if (!py::isinstance<py::sequence>(values) || py::isinstance<py::str>(values)) {
        throw InvalidRequest(name + ": must be a list of token ids");
    }
    std::vector<llama_token> out;
    for (const auto & v : py::reinterpret_borrow<py::sequence>(values)) out.push_back(token_id(v, name));
    return out;
}

// A str with a lone surrogate ("\ud800") has no UTF-8 form.
std::string utf8(const py::handle & value, const std::string & name) {
    if (!PyUnicode_Check(value.ptr())) throw InvalidRequest(name + ": must be a string");
    Py_ssize_t size = 0;
    const char * data = PyUnicode_AsUTF8AndSize(value.ptr(), &size);
    if (!data) {
        PyErr_Clear();
        throw InvalidRequest(name + ": is not valid Unicode (a lone surrogate?)");
    }
    return std::string(data, static_cast<size_t>(size));
}

std::vector<std::string> utf8_list(const py::handle & values, const std::string & name) {
    if (!py::isinstance<py::sequence>(values) || py::isinstance<py::str>(values)) {
        throw InvalidRequest(name + ": must be a list of strings");
    }
    std::vector<std::string> out;
    for (const auto & v : py::reinterpret_borrow<py::sequence>(values)) out.push_back(utf8(v, name));
    return out;
}

std::vector<std::pair<llama_token, float>> logit_bias(const py::handle & values) {
    if (!py::isinstance<py::iterable>(values)) throw InvalidRequest("logit_bias: must be (token id, bias) pairs");
    std::vector<std::pair<llama_token, float>> out;
    for (const auto & item : py::reinterpret_borrow<py::iterable>(values)) {
        if (!py::isinstance<py::sequence>(item) || py::len(item) != 2) {
            throw InvalidRequest("logit_bias: must be (token id, bias) pairs");
        }
        const auto pair = py::reinterpret_borrow<py::sequence>(item);
        const double bias = PyFloat_AsDouble(pair[1].ptr());
        if (bias == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            throw InvalidRequest("logit_bias: biases must be numbers");
        }
        out.emplace_back(token_id(pair[0], "logit_bias"), static_cast<float>(bias));
    }
    return out;
}

// A read-write attribute whose setter converts with `convert(value, name)`.
template <typename Class, typename T, typename Convert>
void checked_field(py::class_<Class> & cls, const char * name, T Class::*member, Convert convert) {
    cls.def_property(
        name, [member](const Class & c) { return c.*member; },
        [member, name, convert](Class & c, const py::handle & value) { c.*member = convert(value, name); });
}

py::dict metadata_dict(const Model & model) {
    const ModelMetadata & m = model.metadata();
    py::dict d;
    d["path"] = m.path;
    d["name"] = m.name;
    d["architecture"] = m.architecture;
    d["description"] = m.description;
    d["chat_template"] = m.chat_template.empty() ? py::object(py::none()) : py::object(py::str(m.chat_template));
    d["n_params"] = m.n_params;
    d["file_size"] = m.file_size;
    d["weights_size"] = m.weights_size;
    d["n_ctx_train"] = m.n_ctx_train;
    d["n_vocab"] = m.n_vocab;
    d["eog_tokens"] = model.eog_tokens();
    d["bos_token_id"] = m.bos_token_id;
    d["eos_token_id"] = m.eos_token_id;
    d["bos_token"] = m.bos_token;
    d["eos_token"] = m.eos_token;
    d["fim_pre_token_id"] = m.fim_pre_token_id;
    d["fim_suf_token_id"] = m.fim_suf_token_id;
    d["fim_mid_token_id"] = m.fim_mid_token_id;
    d["fim_pad_token_id"] = m.fim_pad_token_id;
    d["fim_rep_token_id"] = m.fim_rep_token_id;
    d["fim_sep_token_id"] = m.fim_sep_token_id;
    d["sep_token_id"] = m.sep_token_id;
    d["add_bos"] = m.add_bos;
    d["add_eos"] = m.add_eos;
    d["add_sep"] = m.add_sep;
    d["rerank_template"] =
        m.rerank_template.empty() ? py::object(py::none()) : py::object(py::str(m.rerank_template));
    return d;
}

// The compute backends this build has (CPU, CUDA, Metal, ...) and the devices each found at
// run time: a CUDA build on a machine without a GPU has CUDA with no device.
py::list compute_backends() {
    install_log_capture();  // a GPU backend that finds no device logs why: through our logger, quiet by default
    py::list out;
    for (size_t i = 0; i < ggml_backend_reg_count(); ++i) {
        ggml_backend_reg_t reg = ggml_backend_reg_get(i);
        py::list devices;
        for (size_t j = 0; j < ggml_backend_reg_dev_count(reg); ++j) {
            ggml_backend_dev_t dev = ggml_backend_reg_dev_get(reg, j);
            size_t free = 0, total = 0;
            ggml_backend_dev_memory(dev, &free, &total);
            py::dict d;
            d["name"] = ggml_backend_dev_name(dev);
            d["description"] = ggml_backend_dev_description(dev);
            switch (ggml_backend_dev_type(dev)) {
                case GGML_BACKEND_DEVICE_TYPE_CPU: d["type"] = "cpu"; break;
                case GGML_BACKEND_DEVICE_TYPE_GPU: d["type"] = "gpu"; break;
                case GGML_BACKEND_DEVICE_TYPE_IGPU: d["type"] = "igpu"; break;
                default: d["type"] = "accel"; break;
            }
            d["memory_total"] = total;
            d["memory_free"] = free;
            devices.append(d);
        }
        py::dict backend;
        backend["name"] = ggml_backend_reg_name(reg);
        backend["devices"] = devices;
        out.append(backend);
    }
    return out;
}

// `run` (embed or score) over a list of token-id lists, the GIL released while it runs: a
// (inputs, width) float32 array.
py::array_t<float> pooled_rows(Embedder & e, const py::handle & inputs,
                               std::vector<float> (Embedder::*run)(const std::vector<std::vector<llama_token>> &),
                               int32_t width) {
    if (!py::isinstance<py::sequence>(inputs)) throw InvalidRequest("input: must be a list");
    std::vector<std::vector<llama_token>> ids;
    size_t i = 0;
    for (const auto & item : py::reinterpret_borrow<py::sequence>(inputs)) {
        ids.push_back(token_ids(item, "input[" + std::to_string(i++) + "]"));
    }
    std::vector<float> rows;
    {
        py::gil_scoped_release release;
        rows = (e.*run)(ids);
    }
    py::array_t<float> out({static_cast<py::ssize_t>(ids.size()), static_cast<py::ssize_t>(width)});
    std::copy(rows.begin(), rows.end(), out.mutable_data());
    return out;
}

}  // namespace

// Engine::save_slot or restore_slot as a binding: the GIL released while the scheduler does it,
// the result as a (tokens, state bytes, ms) tuple.
static auto slot_file_action(Engine::SlotFile (Engine::*action)(int32_t, const std::string &)) {
    return [action](Engine & e, int32_t slot, const std::string & path) {
        Engine::SlotFile f;
        {
            py::gil_scoped_release release;
            f = (e.*action)(slot, path);
        }
        return py::make_tuple(f.tokens, f.bytes, f.ms);
    };
}

PYBIND11_MODULE(_native, m) {
    m.attr("MAX_STEP_DRAFTS") = kMaxStepDrafts;  // output rows reserved for drafted tokens
    m.attr("MIN_REUSE_CHUNK") = kMinReuseChunk;  // the shortest chunk --cache-reuse may ask for
    m.attr("MAX_GRAMMAR_BYTES") = GrammarLimits{}.max_bytes;  // what a grammar may be (README, "Grammars")
    m.attr("MAX_GRAMMAR_WIDTH") = GrammarLimits{}.max_width;
    m.doc() = "llamaserve's native engine over llama.cpp";

    auto engine_error = py::register_exception<EngineError>(m, "EngineError", PyExc_RuntimeError);
    py::register_exception<ModelLoadError>(m, "ModelLoadError", engine_error.ptr());
    py::register_exception<ContextLengthExceeded>(m, "ContextLengthExceeded", engine_error.ptr());
    py::register_exception<QueueFull>(m, "QueueFull", engine_error.ptr());
    py::register_exception<InvalidRequest>(m, "InvalidRequest", engine_error.ptr());
    py::register_exception<EngineClosed>(m, "EngineClosed", engine_error.ptr());

    m.def("set_verbose", &set_verbose_logging, py::arg("verbose"),
          "Print llama.cpp's own log to stderr.");
    m.def("quantize", &quantize_model, py::arg("src"), py::arg("dst"), py::arg("ftype"),
          py::arg("allow_requantize") = false, py::arg("n_threads") = 0,
          py::call_guard<py::gil_scoped_release>(),
          "Quantize a GGUF file with llama.cpp's quantizer (ftype: a llama_ftype value).");
    m.def("supports_gpu_offload", &llama_supports_gpu_offload);
    m.def("compute_backends", &compute_backends,
          "The compute backends built in and the devices each found: [{name, devices: [...]}].");

    py::class_<TextDecoder>(m, "TextDecoder", "The engine's incremental detokenizer, exposed for tests.")
        .def(py::init<std::vector<std::string>>(), py::arg("stops") = std::vector<std::string>{})
        .def("push", [](TextDecoder & d, const py::bytes & data) {
            auto step = d.push(std::string(data));
            return py::make_tuple(py::str(step.text), step.stopped);
        })
        .def("flush", [](TextDecoder & d) { return py::str(d.flush()); });

    py::class_<SamplingParams> sampling(m, "SamplingParams");
    sampling.def(py::init<>())
        .def_readwrite("temperature", &SamplingParams::temperature)
        .def_readwrite("top_p", &SamplingParams::top_p)
        .def_readwrite("min_p", &SamplingParams::min_p)
        .def_readwrite("repeat_penalty", &SamplingParams::repeat_penalty)
        .def_readwrite("presence_penalty", &SamplingParams::presence_penalty)
        .def_readwrite("frequency_penalty", &SamplingParams::frequency_penalty);
    checked_field(sampling, "top_k", &SamplingParams::top_k, native_int<int32_t>);
    checked_field(sampling, "penalty_last_n", &SamplingParams::penalty_last_n, native_int<int32_t>);
    checked_field(sampling, "seed", &SamplingParams::seed, native_int<uint32_t>);
    checked_field(sampling, "grammar", &SamplingParams::grammar, utf8);
    checked_field(sampling, "grammar_root", &SamplingParams::grammar_root, utf8);
    checked_field(sampling, "logit_bias", &SamplingParams::logit_bias,
                  [](const py::handle & value, const char *) { return logit_bias(value); });

    py::class_<GenerationOptions> generation(m, "GenerationOptions");
    generation.def(py::init<>())
        .def_readwrite("ignore_eos", &GenerationOptions::ignore_eos)
        .def_readwrite("cache_prompt", &GenerationOptions::cache_prompt)
        .def_readwrite("speculative", &GenerationOptions::speculative)
        .def_readwrite("prediction", &GenerationOptions::prediction)
        .def_readwrite("prediction_tokens", &GenerationOptions::prediction_tokens)
        .def_readwrite("add_special", &GenerationOptions::add_special)
        .def_readwrite("parse_special", &GenerationOptions::parse_special)
        .def_readwrite("post_sampling_probs", &GenerationOptions::post_sampling_probs)
        .def_readwrite("return_progress", &GenerationOptions::return_progress)
        .def_readwrite("id_slot", &GenerationOptions::slot)
        .def_readwrite("preserved_tokens", &GenerationOptions::preserved_tokens)
        .def_readwrite("reasoning_start", &GenerationOptions::reasoning_start)
        .def_readwrite("reasoning_end", &GenerationOptions::reasoning_end)
        .def_readwrite("reasoning_open", &GenerationOptions::reasoning_open)
        .def_readwrite("reasoning_budget", &GenerationOptions::reasoning_budget);
    checked_field(generation, "max_tokens", &GenerationOptions::max_tokens, native_int<int32_t>);
    checked_field(generation, "logprobs", &GenerationOptions::logprobs, native_int<int32_t>);
    checked_field(generation, "stop", &GenerationOptions::stop, utf8_list);

    py::class_<TokenIds, std::shared_ptr<TokenIds>>(m, "TokenIds", "Token ids held natively (a tokenized prediction).")
        .def("__len__", [](const TokenIds & t) { return t.ids.size(); });

    py::class_<EngineOptions>(m, "EngineOptions")
        .def(py::init<>())
        .def_readwrite("n_ctx", &EngineOptions::n_ctx)
        .def_readwrite("n_parallel", &EngineOptions::n_parallel)
        .def_readwrite("n_batch", &EngineOptions::n_batch)
        .def_readwrite("n_threads", &EngineOptions::n_threads)
        .def_readwrite("n_gpu_layers", &EngineOptions::n_gpu_layers)
        .def_readwrite("max_queue", &EngineOptions::max_queue)
        .def_readwrite("kv_unified", &EngineOptions::kv_unified)
        .def_readwrite("n_kv", &EngineOptions::n_kv)
        .def_readwrite("cache_ram", &EngineOptions::cache_ram)
        .def_readwrite("cache_dir", &EngineOptions::cache_dir)
        .def_readwrite("cache_disk", &EngineOptions::cache_disk)
        .def_readwrite("cache_reuse", &EngineOptions::cache_reuse)
        .def_readwrite("type_k", &EngineOptions::type_k)
        .def_readwrite("type_v", &EngineOptions::type_v)
        .def_readwrite("flash_attn", &EngineOptions::flash_attn)
        .def_readwrite("swa_full", &EngineOptions::swa_full)
        .def_readwrite("spec", &EngineOptions::spec)
        .def_readwrite("draft_model", &EngineOptions::draft_model)
        .def_readwrite("spec_draft_max", &EngineOptions::spec_draft_max)
        .def_readwrite("grammar_budget_ms", &EngineOptions::grammar_budget_ms);

    py::class_<AsyncNotifier, std::shared_ptr<AsyncNotifier>>(m, "AsyncNotifier")
        .def(py::init<>())
        .def_property_readonly("fd", &AsyncNotifier::fd)
        .def("take_ready", &AsyncNotifier::take_ready,
             "Empty the wake-up pipe; return the ids of streams with news.");

    py::class_<TokenStream, std::shared_ptr<TokenStream>>(m, "TokenStream")
        .def_property_readonly("id", &TokenStream::id)
        .def("__iter__", [](py::object self) { return self; })
        .def("__next__", &next_piece)
        .def("drain", [](TokenStream & s) {
            bool finished = false;
            auto pieces = s.drain(finished);
            return py::make_tuple(py::cast(pieces), finished);
        }, "Non-blocking: (pieces so far, finished before them).")
        .def("take_logprobs", [](TokenStream & s) {
            py::list out;
            for (auto & r : s.take_logprobs()) out.append(py::make_tuple(r.token, r.logprob, py::cast(r.top)));
            return out;
        }, "[(token, logprob, [(token, logprob), ...]), ...] since the last call.")
        .def("take_progress", [](TokenStream & s) {
            py::list out;
            for (auto & p : s.take_progress()) out.append(py::make_tuple(p.total, p.cache, p.processed, p.ms));
            return out;
        }, "[(total, cache, processed, ms), ...]: the prompt's progress reports since the last call.")
        .def("cancel", &TokenStream::cancel)
        .def_property_readonly("cancelled", &TokenStream::cancelled)
        .def_property_readonly("finished", &TokenStream::finished)
        .def("stats", [](const TokenStream & s) { return stats_dict(s.stats()); })
        .def("token_times", &TokenStream::token_times);

    py::class_<Engine>(m, "Engine")
        .def(py::init<const std::string &, const EngineOptions &>(), py::arg("model_path"),
             py::arg("options"), py::call_guard<py::gil_scoped_release>())
        .def("submit", [](Engine & e, const py::handle & prompt, const SamplingParams & sampling,
                          const GenerationOptions & options, std::shared_ptr<AsyncNotifier> notifier) {
            const std::string text = utf8(prompt, "prompt");
            py::gil_scoped_release release;
            return e.submit(text, sampling, options, std::move(notifier));
        }, py::arg("prompt"), py::arg("sampling"), py::arg("options"), py::arg("notifier") = nullptr)
        .def("submit_tokens", [](Engine & e, const py::handle & tokens, const SamplingParams & sampling,
                                 const GenerationOptions & options, std::shared_ptr<AsyncNotifier> notifier) {
            auto ids = token_ids(tokens, "prompt");
            py::gil_scoped_release release;
            return e.submit_tokens(std::move(ids), sampling, options, std::move(notifier));
        }, py::arg("tokens"), py::arg("sampling"), py::arg("options"), py::arg("notifier") = nullptr)
        .def("prediction_tokens", [](const Engine & e, const py::handle & text) {
            const std::string bytes = utf8(text, "prediction");
            py::gil_scoped_release release;
            auto out = std::make_shared<TokenIds>();
            out->ids = e.model().tokenize(bytes, false, false);
            return out;
        }, py::arg("text"), "A prediction's tokens (as submit would make them), made once for many choices.")
        .def("check_grammar", [](Engine & e, const py::handle & grammar, const py::handle & root) {
            const std::string text = utf8(grammar, "grammar");
            const std::string root_name = utf8(root, "grammar_root");
            py::gil_scoped_release release;
            e.check_grammar(text, root_name);
        }, py::arg("grammar"), py::arg("root") = "root",
           "Compile a GBNF grammar as submit would (InvalidRequest if refused); submit then finds it compiled.")
        .def("tokenize", [](const Engine & e, const py::handle & text, bool add_special, bool parse_special) {
            const std::string bytes = utf8(text, "text");
            py::gil_scoped_release release;
            return e.model().tokenize(bytes, add_special, parse_special);
        }, py::arg("text"), py::arg("add_special") = true, py::arg("parse_special") = true)
        .def("token_bytes", [](const Engine & e, const py::handle & token) {
            const llama_token id = token_id(token, "token");
            if (!e.model().valid_token(id)) throw InvalidRequest("token: unknown token id " + std::to_string(id));
            return py::bytes(e.model().token_bytes(id));
        }, py::arg("token"))
        .def("detokenize", [](const Engine & e, const py::handle & tokens) {
            const auto ids = token_ids(tokens, "tokens");
            std::string text;
            {
                py::gil_scoped_release release;
                append_valid_utf8(e.model().detokenize(ids), text, true);
            }
            return py::str(text);
        }, py::arg("tokens"))
        .def_property_readonly("metadata", [](const Engine & e) { return metadata_dict(e.model()); })
        .def_property_readonly("n_ctx", &Engine::n_ctx_per_request)
        .def_property_readonly("n_parallel", [](const Engine & e) { return e.options().n_parallel; })
        .def_property_readonly("n_batch", [](const Engine & e) { return e.options().n_batch; })
        .def_property_readonly("n_threads", [](const Engine & e) { return e.options().n_threads; })
        .def_property_readonly("queue_depth", &Engine::queue_depth)
        .def_property_readonly("busy_slots", &Engine::busy_slots)
        .def_property_readonly("memory_use", [](const Engine & e) {
            py::list out;
            for (const auto & m : e.memory_use()) {
                py::dict d;
                d["buffer"] = m.buffer;
                d["model"] = m.model;
                d["context"] = m.context;
                d["compute"] = m.compute;
                out.append(d);
            }
            return out;
        }, "Bytes per buffer type (device or host): weights, context (KV), compute.")
        .def_property_readonly("cache_stats", [](const Engine & e) {
            const CacheStats c = e.cache_stats();
            py::dict d;
            d["kv_cells"] = c.kv_cells;
            d["kv_cells_used"] = c.kv_cells_used;
            d["kv_cells_reserved"] = c.kv_cells_reserved;
            d["prompt_tokens"] = c.prompt_tokens;
            d["cached_tokens"] = c.cached_tokens;
            d["requests_hit"] = c.requests_hit;
            d["reused_tokens"] = c.reused_tokens;
            d["requests_departed"] = c.requests_departed;
            d["host_entries"] = c.host.entries;
            d["host_bytes"] = c.host.bytes;
            d["host_budget"] = c.host.budget;
            d["host_hits"] = c.host.hits;
            d["host_evictions"] = c.host.evictions;
            d["host_spare_bytes"] = c.host.spare_bytes;
            d["disk_entries"] = c.disk.entries;
            d["disk_bytes"] = c.disk.bytes;
            d["disk_budget"] = c.disk.budget;
            d["disk_hits"] = c.disk.hits;
            d["disk_writes"] = c.disk.writes;
            d["disk_evictions"] = c.disk.evictions;
            d["disk_dropped"] = c.disk.dropped;
            d["disk_skipped"] = c.disk.skipped;
            return d;
        }, "KV cells (in all, held, promised) and prefix-cache counters.")
        .def_property_readonly("speculation", &Engine::speculation,
                               "The speculation in effect: off, ngram or draft.")
        .def_property_readonly("cache_reuse", [](const Engine & e) {
            py::dict d;
            d["min_chunk"] = e.cache_reuse();
            d["after_new_tokens"] = e.cache_reuse_after_new_tokens();
            return d;
        }, "The reuse past a divergence in effect: min_chunk (0: off) and after_new_tokens.")
        .def_property_readonly("speculation_stats", [](const Engine & e) {
            const SpeculationStats s = e.speculation_stats();
            py::dict d;
            d["drafted"] = s.drafted;
            d["accepted"] = s.accepted;
            return d;
        }, "Drafted tokens verified since the engine started, and how many were accepted.")
        .def_property_readonly("decode_stats", [](const Engine & e) {
            const DecodeStats s = e.decode_stats();
            py::dict d;
            d["decodes"] = s.decodes;
            d["busy_slots"] = s.busy_slots;
            d["verify_steps"] = s.verify_steps;
            d["prompt_tokens"] = s.prompt_tokens;
            d["generated_tokens"] = s.generated_tokens;
            d["prompt_seconds"] = s.prompt_seconds;
            d["generation_seconds"] = s.generation_seconds;
            d["longest_sequence"] = s.longest_sequence;
            return d;
        }, "What the decode loop has done since the engine started: llama_decode calls, requests in them "
           "summed, draft verifications, prompt and generated tokens and the time each took, the longest sequence.")
        .def("save_slot", slot_file_action(&Engine::save_slot),
             "A slot's cached prompt written to `path`: (tokens, state bytes, ms).")
        .def("restore_slot", slot_file_action(&Engine::restore_slot),
             "A slot file read back into an idle slot: (tokens, state bytes, ms).")
        .def("erase_slot", &Engine::erase_slot, py::call_guard<py::gil_scoped_release>(),
             "Drop an idle slot's cached prompt; the tokens it held.")
        .def("close", &Engine::close, py::call_guard<py::gil_scoped_release>());

    py::class_<Embedder>(m, "Embedder",
                         "Sentence embeddings, or a reranker's scores, on a context of their own over an "
                         "engine's model.")
        .def(py::init([](const Engine & engine, int32_t n_ctx, bool rank) {
                 return std::make_unique<Embedder>(engine.model(), n_ctx, engine.options().n_threads, rank);
             }),
             py::arg("engine"), py::arg("n_ctx"), py::arg("rank") = false,
             py::keep_alive<1, 2>())  // the model outlives it
        .def("embed", [](Embedder & e, const py::handle & inputs) {
            return pooled_rows(e, inputs, &Embedder::embed, e.n_embd());
        }, py::arg("inputs"), "One L2-normalized float32 row per list of token ids.")
        .def("score", [](Embedder & e, const py::handle & inputs) {
            return pooled_rows(e, inputs, &Embedder::score, e.n_scores());
        }, py::arg("inputs"), "A reranker's n_scores float32 scores per list of token ids (a framed pair).")
        .def_property_readonly("n_embd", &Embedder::n_embd)
        .def_property_readonly("n_scores", &Embedder::n_scores)
        .def_property_readonly("pooling", &Embedder::pooling);
}
