{
  "targets": [
    {
      "target_name": "farmem_native",
      "sources": [
        "native/src/binding.cc",
        "native/src/errors.cc",
        "native/src/uffd.cc",
        "native/src/memfd.cc",
        "native/src/fd_passing.cc",
        "native/src/sd_notify.cc",
        "native/src/fault_thread.cc",
        "native/src/page_cache.cc",
        "native/src/pagemap.cc",
        "native/src/malloc_tune.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native/include"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lpthread"]
    }
  ]
}
