// Each native module registers its exports here; binding.cc only calls these.
#pragma once
#include <napi.h>

namespace farmem {
void InitUffd(Napi::Env env, Napi::Object exports);
void InitMemfd(Napi::Env env, Napi::Object exports);
void InitFdPassing(Napi::Env env, Napi::Object exports);
void InitSdNotify(Napi::Env env, Napi::Object exports);
void InitFaultThread(Napi::Env env, Napi::Object exports);
void InitPageCache(Napi::Env env, Napi::Object exports);
void InitPagemap(Napi::Env env, Napi::Object exports);
void InitMalloc(Napi::Env env, Napi::Object exports);
}  // namespace farmem
