// TODO(skeleton): implemented by its owner; this stub only keeps the build whole.
#include "modules.h"

namespace farmem {
void InitSdNotify(Napi::Env env, Napi::Object exports) {}
}  // namespace farmem
