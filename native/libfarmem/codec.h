/* The few protobuf messages of proto/farmem/v1/attach.proto, encoded and decoded by hand (varints
 * and length-delimited fields only), so libfarmem needs no protobuf runtime. Unknown fields are
 * skipped, as protobuf requires. test/attach/codec.test.ts checks these bytes against protobufjs. */
#ifndef FARMEM_CODEC_H
#define FARMEM_CODEC_H
#include <stddef.h>
#include <stdint.h>

#define FM_PROTOCOL_VERSION 1
#define FM_MAX_PACKET 4096
#define FM_NAME_MAX 255
#define FM_TOKEN_MAX 32

/* AttachCode */
enum {
  FM_OK = 0,
  FM_INVALID_ARGUMENT = 3,
  FM_NOT_FOUND = 5,
  FM_PERMISSION_DENIED = 7,
  FM_RESOURCE_EXHAUSTED = 8,
  FM_FAILED_PRECONDITION = 9,
  FM_UNIMPLEMENTED = 12,
  FM_INTERNAL = 13,
  FM_UNAVAILABLE = 14,
};

/* Which message an AttachClientMessage / AttachDaemonMessage carries (its oneof field number). */
enum { FM_MSG_NONE = 0, FM_MSG_ATTACH = 1, FM_MSG_REGISTER = 2, FM_MSG_DETACH = 3 };
enum { FM_MSG_ATTACH_REPLY = 1, FM_MSG_REGISTER_REPLY = 2 };

struct fm_attach_request {
  uint32_t protocol_version;
  char region[FM_NAME_MAX + 1];
  int want_write_protect;
  int has_reattach;
  char region_id[FM_NAME_MAX + 1];
  uint8_t token[FM_TOKEN_MAX];
  size_t token_len;
};

struct fm_register_request {
  uint64_t address, length, uffd_features;
  int write_protect, user_mode_only;
};

struct fm_attach_reply {
  uint32_t code;
  char message[1024];
  char region_id[FM_NAME_MAX + 1];
  uint64_t size_bytes;
  uint32_t page_size;
  int write_protect;
  int wp_async; /* also ask UFFD_FEATURE_WP_ASYNC (field 10) */
  uint32_t on_unavailable;
  uint64_t attachment_id;
  uint8_t token[FM_TOKEN_MAX];
  size_t token_len;
};

struct fm_register_reply {
  uint32_t code;
  char message[1024];
  uint64_t attachment_id;
};

struct fm_client_msg {
  int kind; /* FM_MSG_ATTACH / FM_MSG_REGISTER / FM_MSG_DETACH */
  struct fm_attach_request attach;
  struct fm_register_request reg;
};

struct fm_daemon_msg {
  int kind; /* FM_MSG_ATTACH_REPLY / FM_MSG_REGISTER_REPLY */
  struct fm_attach_reply attach_reply;
  struct fm_register_reply register_reply;
};

/* Each encoder writes into buf (cap bytes) and returns the length, or -1 when it does not fit. */
long fm_encode_client(const struct fm_client_msg *m, uint8_t *buf, size_t cap);
long fm_encode_daemon(const struct fm_daemon_msg *m, uint8_t *buf, size_t cap);
/* Each decoder returns 0, or -1 with a static reason in *why (malformed bytes, a string too long). */
int fm_decode_client(const uint8_t *buf, size_t len, struct fm_client_msg *m, const char **why);
int fm_decode_daemon(const uint8_t *buf, size_t len, struct fm_daemon_msg *m, const char **why);

#endif
