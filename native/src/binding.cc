// Exports only: each concept lives in its own file (uffd, memfd, fd_passing, sd_notify,
// fault_thread, page_cache, pagemap, malloc_tune). daemon/native.ts is the only importer of this addon.
#include <napi.h>

#include "modules.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  farmem::InitUffd(env, exports);
  farmem::InitMemfd(env, exports);
  farmem::InitFdPassing(env, exports);
  farmem::InitSdNotify(env, exports);
  farmem::InitPageCache(env, exports);
  farmem::InitFaultThread(env, exports);
  farmem::InitPagemap(env, exports);
  farmem::InitMalloc(env, exports);
  return exports;
}

NODE_API_MODULE(farmem_native, Init)
