/* libfarmem: attach a farmem region and use it as ordinary memory.
 *
 *   size_t len;
 *   char *p = farmem_attach("db", &len);
 *   if (!p) { fprintf(stderr, "%s\n", farmem_strerror()); exit(1); }
 *   ... p[0 .. len) is the region: pages arrive from farmemd on first touch ...
 *   farmem_detach(p);
 *
 * The daemon's attach socket is /run/farmem/attach.sock, or $FARMEM_ATTACH_SOCKET.
 *
 * While attached, a background thread holds the connection to farmemd. If farmemd goes away
 * (crash, kill -9, restart), accesses to pages not yet present wait (like a hard NFS mount)
 * while that thread reconnects with backoff and hands the new daemon the same userfaultfd and
 * memfd; then they complete. Do not fork and use the region in the child (the mapping is
 * MADV_DONTFORK), nor mremap or MADV_REMOVE it.
 *
 * Link with -lfarmem -pthread. Thread-safe. */
#ifndef FARMEM_H
#define FARMEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FARMEM_API __attribute__((visibility("default")))

/* Attaches region `name`. Returns the region's base address and stores its size in *len_out
 * (when len_out is not NULL), or returns NULL with errno set and a message for farmem_strerror():
 *   ENOENT  no such region            EACCES  this uid/gid may not attach it
 *   EINVAL  bad name or argument      EAGAIN  farmemd is busy or shutting down: retry
 *   ECONNREFUSED / ENOENT from connecting: farmemd is not running
 *   EPROTO  farmemd spoke an unexpected protocol    ETIMEDOUT  farmemd did not answer */
FARMEM_API void *farmem_attach(const char *name, size_t *len_out);

/* Detaches the region that farmem_attach returned at `ptr` and unmaps it. Returns 0, or -1 with
 * errno (EINVAL: ptr is not an attached region) and a message for farmem_strerror(). */
FARMEM_API int farmem_detach(void *ptr);

/* The message of the last failure of a farmem_* call on this thread ("" when none). */
FARMEM_API const char *farmem_strerror(void);

#ifdef __cplusplus
}
#endif

#endif
