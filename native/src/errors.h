// Native errors: every failed syscall becomes a JS Error whose `code` is the errno name
// (EEXIST, ESRCH, ...), with `errno` and `syscall` set. daemon/native.ts turns them into NativeError.
#pragma once
#include <napi.h>
#include <string>

namespace farmem {

// Name of an errno value ("EBADF"), or "E<n>" when unknown.
const char* ErrnoName(int err);

// Builds the error `<syscall>: <strerror> (<NAME>)` with code/errno/syscall properties.
Napi::Error ErrnoError(Napi::Env env, const std::string& syscall, int err);

// Throws a TypeError named by the STYLE rule: "Expected <what> for <name> but received <value>".
Napi::TypeError ArgError(Napi::Env env, const std::string& what, const std::string& name, const Napi::Value& got);

// Argument readers: throw ArgError on a wrong type.
int32_t ArgInt32(const Napi::CallbackInfo& info, size_t i, const char* name);
uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name);  // number or bigint
bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name);

}  // namespace farmem
