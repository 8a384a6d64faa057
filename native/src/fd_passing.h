// Fd passing over Unix sockets, shared by the modules that send fds (the attach socket, sd_notify).
#pragma once
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace farmem {
// sendmsg of one payload with `fds` attached (SCM_RIGHTS; none: a plain message), retried on EINTR,
// MSG_NOSIGNAL added to `flags`; to the connected peer, or to `to` when given. 0 or -errno.
int SendWithFds(int sock, const uint8_t* data, size_t len, const std::vector<int>& fds, int flags,
                const struct sockaddr* to = nullptr, socklen_t toLen = 0);
}  // namespace farmem
