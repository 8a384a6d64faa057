// mallocTune(mmapThreshold, trimThreshold): glibc malloc's two thresholds, set once at start.
//
// Every page read moves through buffers of about 1 MiB (a read answer; its grpc-js reassembly).
// With glibc's defaults each such buffer may be its own mmap (the threshold adapts upward only
// after frees) and the top of the heap is given back past 128 KiB, so the same memory is mapped,
// faulted in, zeroed by the kernel and unmapped again for every answer: ~20% of a memory server's
// CPU per page served in a sequential scan. A fixed mmap threshold above those buffers (and below
// the memory server's 64 MiB slabs, which must still go back to the kernel when freed) and a trim
// threshold that keeps a few dozen of them around stop that. Answers false where malloc is not
// glibc's (nothing set).
#include <napi.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "errors.h"
#include "modules.h"

namespace farmem {
namespace {

Napi::Value MallocTune(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t mmapThreshold = ArgInt32(info, 0, "mmapThreshold");
  int32_t trimThreshold = ArgInt32(info, 1, "trimThreshold");
  if (mmapThreshold <= 0) throw ArgError(env, "a positive number of bytes", "mmapThreshold", info[0]);
  if (trimThreshold <= 0) throw ArgError(env, "a positive number of bytes", "trimThreshold", info[1]);
#if defined(__GLIBC__)
  // mallopt returns 1 on success, 0 on an out-of-range value (the mmap threshold caps at 32 MiB on 64-bit).
  bool ok = mallopt(M_MMAP_THRESHOLD, mmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, trimThreshold) == 1;
  return Napi::Boolean::New(env, ok);
#else
  return Napi::Boolean::New(env, false);
#endif
}

}  // namespace

void InitMalloc(Napi::Env env, Napi::Object exports) {
  exports.Set("mallocTune", Napi::Function::New(env, MallocTune, "mallocTune"));
}

}  // namespace farmem
