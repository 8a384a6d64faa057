/* codec_check: drives codec.c from the command line so test/attach/codec.test.ts can check that
 * the C codec and protobufjs agree on every byte.
 *
 *   codec_check encode-client attach|register|detach [key=value ...]   -> hex on stdout
 *   codec_check encode-daemon attach_reply|register_reply [key=value ...]
 *   codec_check decode-client HEX | decode-daemon HEX                 -> one JSON line (u64 as strings)
 * Exit 0, or 1 with "error: <why>" on stdout when decoding fails, 2 on usage errors. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

static void usage(const char *why) {
  fprintf(stderr, "codec_check: %s\n", why);
  exit(2);
}

static size_t unhex(const char *s, uint8_t *out, size_t cap) {
  size_t n = strlen(s);
  if (n % 2 || n / 2 > cap) usage("bad hex");
  for (size_t i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) usage("bad hex");
    out[i] = (uint8_t)v;
  }
  return n / 2;
}

static void put_hex(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
}

static void put_json_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c < 0x20) printf("\\u%04x", c);
    else putchar(c);
  }
  putchar('"');
}

/* key=value arguments */
static const char *arg(int argc, char **argv, const char *key) {
  size_t k = strlen(key);
  for (int i = 3; i < argc; i++)
    if (!strncmp(argv[i], key, k) && argv[i][k] == '=') return argv[i] + k + 1;
  return NULL;
}
static uint64_t num(int argc, char **argv, const char *key) {
  const char *v = arg(argc, argv, key);
  return v ? strtoull(v, NULL, 0) : 0;
}
static void str(int argc, char **argv, const char *key, char *dst, size_t cap) {
  const char *v = arg(argc, argv, key);
  snprintf(dst, cap, "%s", v ? v : "");
}

int main(int argc, char **argv) {
  if (argc < 3) usage("expected a command and an argument");
  uint8_t buf[FM_MAX_PACKET];
  const char *cmd = argv[1], *what = argv[2];
  if (!strcmp(cmd, "encode-client")) {
    struct fm_client_msg m;
    memset(&m, 0, sizeof m);
    if (!strcmp(what, "attach")) {
      m.kind = FM_MSG_ATTACH;
      m.attach.protocol_version = (uint32_t)num(argc, argv, "version");
      str(argc, argv, "region", m.attach.region, sizeof m.attach.region);
      m.attach.want_write_protect = (int)num(argc, argv, "wp");
      if (arg(argc, argv, "region_id")) {
        m.attach.has_reattach = 1;
        str(argc, argv, "region_id", m.attach.region_id, sizeof m.attach.region_id);
        const char *t = arg(argc, argv, "token");
        if (t) m.attach.token_len = unhex(t, m.attach.token, sizeof m.attach.token);
      }
    } else if (!strcmp(what, "register")) {
      m.kind = FM_MSG_REGISTER;
      m.reg.address = num(argc, argv, "address");
      m.reg.length = num(argc, argv, "length");
      m.reg.uffd_features = num(argc, argv, "features");
      m.reg.write_protect = (int)num(argc, argv, "wp");
      m.reg.user_mode_only = (int)num(argc, argv, "umo");
    } else if (!strcmp(what, "detach")) {
      m.kind = FM_MSG_DETACH;
    } else usage("unknown client message");
    long n = fm_encode_client(&m, buf, sizeof buf);
    if (n < 0) usage("too large");
    put_hex(buf, (size_t)n);
    putchar('\n');
    return 0;
  }
  if (!strcmp(cmd, "encode-daemon")) {
    struct fm_daemon_msg m;
    memset(&m, 0, sizeof m);
    if (!strcmp(what, "attach_reply")) {
      struct fm_attach_reply *r = &m.attach_reply;
      m.kind = FM_MSG_ATTACH_REPLY;
      r->code = (uint32_t)num(argc, argv, "code");
      str(argc, argv, "message", r->message, sizeof r->message);
      str(argc, argv, "region_id", r->region_id, sizeof r->region_id);
      r->size_bytes = num(argc, argv, "size");
      r->page_size = (uint32_t)num(argc, argv, "page_size");
      r->write_protect = (int)num(argc, argv, "wp");
      r->wp_async = (int)num(argc, argv, "wp_async");
      r->on_unavailable = (uint32_t)num(argc, argv, "on_unavailable");
      r->attachment_id = num(argc, argv, "attachment_id");
      const char *t = arg(argc, argv, "token");
      if (t) r->token_len = unhex(t, r->token, sizeof r->token);
    } else if (!strcmp(what, "register_reply")) {
      m.kind = FM_MSG_REGISTER_REPLY;
      m.register_reply.code = (uint32_t)num(argc, argv, "code");
      str(argc, argv, "message", m.register_reply.message, sizeof m.register_reply.message);
      m.register_reply.attachment_id = num(argc, argv, "attachment_id");
    } else usage("unknown daemon message");
    long n = fm_encode_daemon(&m, buf, sizeof buf);
    if (n < 0) usage("too large");
    put_hex(buf, (size_t)n);
    putchar('\n');
    return 0;
  }
  size_t len = unhex(what, buf, sizeof buf);
  const char *why = "";
  if (!strcmp(cmd, "decode-client")) {
    struct fm_client_msg m;
    if (fm_decode_client(buf, len, &m, &why) < 0) {
      printf("error: %s\n", why);
      return 1;
    }
    if (m.kind == FM_MSG_ATTACH) {
      printf("{\"kind\":\"attach\",\"version\":%u,\"region\":", m.attach.protocol_version);
      put_json_str(m.attach.region);
      printf(",\"wp\":%d,\"reattach\":%d,\"region_id\":", m.attach.want_write_protect, m.attach.has_reattach);
      put_json_str(m.attach.region_id);
      printf(",\"token\":\"");
      put_hex(m.attach.token, m.attach.token_len);
      printf("\"}\n");
    } else if (m.kind == FM_MSG_REGISTER) {
      printf("{\"kind\":\"register\",\"address\":\"%" PRIu64 "\",\"length\":\"%" PRIu64 "\",\"features\":\"%" PRIu64 "\",\"wp\":%d,\"umo\":%d}\n",
             m.reg.address, m.reg.length, m.reg.uffd_features, m.reg.write_protect, m.reg.user_mode_only);
    } else {
      printf("{\"kind\":\"detach\"}\n");
    }
    return 0;
  }
  if (!strcmp(cmd, "decode-daemon")) {
    struct fm_daemon_msg m;
    if (fm_decode_daemon(buf, len, &m, &why) < 0) {
      printf("error: %s\n", why);
      return 1;
    }
    if (m.kind == FM_MSG_ATTACH_REPLY) {
      struct fm_attach_reply *r = &m.attach_reply;
      printf("{\"kind\":\"attach_reply\",\"code\":%u,\"message\":", r->code);
      put_json_str(r->message);
      printf(",\"region_id\":");
      put_json_str(r->region_id);
      printf(",\"size\":\"%" PRIu64 "\",\"page_size\":%u,\"wp\":%d,\"wp_async\":%d,\"on_unavailable\":%u,\"attachment_id\":\"%" PRIu64 "\",\"token\":\"", r->size_bytes,
             r->page_size, r->write_protect, r->wp_async, r->on_unavailable, r->attachment_id);
      put_hex(r->token, r->token_len);
      printf("\"}\n");
    } else {
      printf("{\"kind\":\"register_reply\",\"code\":%u,\"message\":", m.register_reply.code);
      put_json_str(m.register_reply.message);
      printf(",\"attachment_id\":\"%" PRIu64 "\"}\n", m.register_reply.attachment_id);
    }
    return 0;
  }
  usage("unknown command");
}
