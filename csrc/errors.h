// Typed engine errors; bindings.cpp maps each to a named Python exception.
#pragma once
#include <stdexcept>
#include <string>

namespace llamaserve {

struct EngineError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct ModelLoadError : EngineError {
    using EngineError::EngineError;
};
struct ContextLengthExceeded : EngineError {
    using EngineError::EngineError;
};
struct QueueFull : EngineError {
    using EngineError::EngineError;
};
struct InvalidRequest : EngineError {
    using EngineError::EngineError;
};
// Asked of an engine that is closing or closed (a server shutting down, a model unloaded).
struct EngineClosed : EngineError {
    using EngineError::EngineError;
};

}  // namespace llamaserve
