// The native boundary: everything Python sees of the engine is declared here.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>

#include "engine.h"
#include "errors.h"
#include "text_decoder.h"

namespace py = pybind11;
using namespace llamaserve;

namespace {

py::dict stats_dict(const StreamStats & s) {
    py::dict d;
    d["prompt_tokens"] = s.prompt_tokens;
    d["completion_tokens"] = s.completion_tokens;
    d["cached_tokens"] = s.cached_tokens;
    d["time_to_first_token"] = s.time_to_first_token < 0 ? py::object(py::none())
                                                         : py::object(py::float_(s.time_to_first_token));
    d["total_time"] = s.total_time;
    d["finish_reason"] = s.finish_reason;
    d["error"] = s.error.empty() ? py::object(py::none()) : py::object(py::str(s.error));
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
    return d;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "llamaserve's native engine over llama.cpp";

    auto engine_error = py::register_exception<EngineError>(m, "EngineError", PyExc_RuntimeError);
    py::register_exception<ModelLoadError>(m, "ModelLoadError", engine_error.ptr());
    py::register_exception<ContextLengthExceeded>(m, "ContextLengthExceeded", engine_error.ptr());
    py::register_exception<QueueFull>(m, "QueueFull", engine_error.ptr());
    py::register_exception<InvalidRequest>(m, "InvalidRequest", engine_error.ptr());

    m.def("set_verbose", &set_verbose_logging, py::arg("verbose"),
          "Print llama.cpp's own log to stderr.");
    m.def("quantize", &quantize_model, py::arg("src"), py::arg("dst"), py::arg("ftype"),
          py::arg("allow_requantize") = false, py::arg("n_threads") = 0,
          py::call_guard<py::gil_scoped_release>(),
          "Quantize a GGUF file with llama.cpp's quantizer (ftype: a llama_ftype value).");
    m.def("supports_gpu_offload", &llama_supports_gpu_offload);
    m.def("system_info", [] { return std::string(llama_print_system_info()); });

    py::class_<TextDecoder>(m, "TextDecoder", "The engine's incremental detokenizer, exposed for tests.")
        .def(py::init<std::vector<std::string>>(), py::arg("stops") = std::vector<std::string>{})
        .def("push", [](TextDecoder & d, const py::bytes & data) {
            auto step = d.push(std::string(data));
            return py::make_tuple(py::str(step.text), step.stopped);
        })
        .def("flush", [](TextDecoder & d) { return py::str(d.flush()); });

    py::class_<SamplingParams>(m, "SamplingParams")
        .def(py::init<>())
        .def_readwrite("temperature", &SamplingParams::temperature)
        .def_readwrite("top_k", &SamplingParams::top_k)
        .def_readwrite("top_p", &SamplingParams::top_p)
        .def_readwrite("min_p", &SamplingParams::min_p)
        .def_readwrite("repeat_penalty", &SamplingParams::repeat_penalty)
        .def_readwrite("presence_penalty", &SamplingParams::presence_penalty)
        .def_readwrite("frequency_penalty", &SamplingParams::frequency_penalty)
        .def_readwrite("penalty_last_n", &SamplingParams::penalty_last_n)
        .def_readwrite("seed", &SamplingParams::seed)
        .def_readwrite("logit_bias", &SamplingParams::logit_bias)
        .def_readwrite("grammar", &SamplingParams::grammar)
        .def_readwrite("grammar_root", &SamplingParams::grammar_root);

    py::class_<GenerationOptions>(m, "GenerationOptions")
        .def(py::init<>())
        .def_readwrite("max_tokens", &GenerationOptions::max_tokens)
        .def_readwrite("stop", &GenerationOptions::stop)
        .def_readwrite("ignore_eos", &GenerationOptions::ignore_eos)
        .def_readwrite("logprobs", &GenerationOptions::logprobs)
        .def_readwrite("cache_prompt", &GenerationOptions::cache_prompt)
        .def_readwrite("add_special", &GenerationOptions::add_special)
        .def_readwrite("parse_special", &GenerationOptions::parse_special);

    py::class_<EngineOptions>(m, "EngineOptions")
        .def(py::init<>())
        .def_readwrite("n_ctx", &EngineOptions::n_ctx)
        .def_readwrite("n_parallel", &EngineOptions::n_parallel)
        .def_readwrite("n_batch", &EngineOptions::n_batch)
        .def_readwrite("n_threads", &EngineOptions::n_threads)
        .def_readwrite("n_gpu_layers", &EngineOptions::n_gpu_layers)
        .def_readwrite("max_queue", &EngineOptions::max_queue)
        .def_readwrite("kv_unified", &EngineOptions::kv_unified);

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
        .def("cancel", &TokenStream::cancel)
        .def_property_readonly("cancelled", &TokenStream::cancelled)
        .def_property_readonly("finished", &TokenStream::finished)
        .def("stats", [](const TokenStream & s) { return stats_dict(s.stats()); });

    py::class_<Engine>(m, "Engine")
        .def(py::init<const std::string &, const EngineOptions &>(), py::arg("model_path"),
             py::arg("options"), py::call_guard<py::gil_scoped_release>())
        .def("submit", &Engine::submit, py::arg("prompt"), py::arg("sampling"), py::arg("options"),
             py::arg("notifier") = nullptr, py::call_guard<py::gil_scoped_release>())
        .def("submit_tokens", &Engine::submit_tokens, py::arg("tokens"), py::arg("sampling"),
             py::arg("options"), py::arg("notifier") = nullptr,
             py::call_guard<py::gil_scoped_release>())
        .def("tokenize", [](const Engine & e, const std::string & text, bool add_special, bool parse_special) {
            return e.model().tokenize(text, add_special, parse_special);
        }, py::arg("text"), py::arg("add_special") = true, py::arg("parse_special") = true,
           py::call_guard<py::gil_scoped_release>())
        .def("token_bytes", [](const Engine & e, llama_token token) {
            if (!e.model().valid_token(token)) throw InvalidRequest("unknown token id " + std::to_string(token));
            return py::bytes(e.model().token_bytes(token));
        }, py::arg("token"))
        .def("detokenize", [](const Engine & e, const std::vector<llama_token> & tokens) {
            std::string text;
            {
                py::gil_scoped_release release;
                append_valid_utf8(e.model().detokenize(tokens), text, true);
            }
            return py::str(text);
        }, py::arg("tokens"))
        .def_property_readonly("metadata", [](const Engine & e) { return metadata_dict(e.model()); })
        .def_property_readonly("n_ctx", &Engine::n_ctx_per_request)
        .def_property_readonly("n_parallel", [](const Engine & e) { return e.options().n_parallel; })
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
        .def("close", &Engine::close, py::call_guard<py::gil_scoped_release>());
}
