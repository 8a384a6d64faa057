/* Hand-written protobuf for the attach messages: see codec.h. */
#include "codec.h"

#include <string.h>

struct wr {
  uint8_t *p;
  size_t n, cap;
  int overflow;
};

static void put_byte(struct wr *w, uint8_t b) {
  if (w->n < w->cap) w->p[w->n] = b;
  else w->overflow = 1;
  w->n++;
}

static void put_varint(struct wr *w, uint64_t v) {
  while (v >= 0x80) {
    put_byte(w, (uint8_t)(v | 0x80));
    v >>= 7;
  }
  put_byte(w, (uint8_t)v);
}

static void put_tag(struct wr *w, uint32_t field, uint32_t wire) { put_varint(w, ((uint64_t)field << 3) | wire); }

/* proto3: default values are not written. */
static void put_uint(struct wr *w, uint32_t field, uint64_t v) {
  if (!v) return;
  put_tag(w, field, 0);
  put_varint(w, v);
}

static void put_bytes(struct wr *w, uint32_t field, const void *data, size_t len) {
  if (!len) return;
  put_tag(w, field, 2);
  put_varint(w, len);
  for (size_t i = 0; i < len; i++) put_byte(w, ((const uint8_t *)data)[i]);
}

static void put_str(struct wr *w, uint32_t field, const char *s) { put_bytes(w, field, s, strlen(s)); }

/* A nested message: encoded into a scratch buffer first to learn its length. */
typedef void (*body_fn)(struct wr *w, const void *m);
static void put_msg(struct wr *w, uint32_t field, body_fn body, const void *m, int always) {
  uint8_t tmp[FM_MAX_PACKET];
  struct wr sub = {tmp, 0, sizeof tmp, 0};
  body(&sub, m);
  if (sub.overflow) {
    w->overflow = 1;
    return;
  }
  if (!sub.n && !always) return;
  put_tag(w, field, 2);
  put_varint(w, sub.n);
  for (size_t i = 0; i < sub.n; i++) put_byte(w, tmp[i]);
}

static void body_reattach(struct wr *w, const void *v) {
  const struct fm_attach_request *a = v;
  put_str(w, 1, a->region_id);
  put_bytes(w, 2, a->token, a->token_len);
}

static void body_attach(struct wr *w, const void *v) {
  const struct fm_attach_request *a = v;
  put_uint(w, 1, a->protocol_version);
  put_str(w, 2, a->region);
  put_uint(w, 3, a->want_write_protect ? 1 : 0);
  if (a->has_reattach) put_msg(w, 4, body_reattach, a, 1);
}

static void body_register(struct wr *w, const void *v) {
  const struct fm_register_request *r = v;
  put_uint(w, 1, r->address);
  put_uint(w, 2, r->length);
  put_uint(w, 3, r->uffd_features);
  put_uint(w, 4, r->write_protect ? 1 : 0);
  put_uint(w, 5, r->user_mode_only ? 1 : 0);
}

static void body_empty(struct wr *w, const void *v) {
  (void)w;
  (void)v;
}

static void body_attach_reply(struct wr *w, const void *v) {
  const struct fm_attach_reply *r = v;
  put_uint(w, 1, r->code);
  put_str(w, 2, r->message);
  put_str(w, 3, r->region_id);
  put_uint(w, 4, r->size_bytes);
  put_uint(w, 5, r->page_size);
  put_uint(w, 6, r->write_protect ? 1 : 0);
  put_uint(w, 7, r->on_unavailable);
  put_uint(w, 8, r->attachment_id);
  put_bytes(w, 9, r->token, r->token_len);
  if (r->wp_async) put_uint(w, 10, 1);
}

static void body_register_reply(struct wr *w, const void *v) {
  const struct fm_register_reply *r = v;
  put_uint(w, 1, r->code);
  put_str(w, 2, r->message);
  put_uint(w, 3, r->attachment_id);
}

static long finish(struct wr *w) { return w->overflow ? -1 : (long)w->n; }

long fm_encode_client(const struct fm_client_msg *m, uint8_t *buf, size_t cap) {
  struct wr w = {buf, 0, cap, 0};
  /* A oneof member is always written, even when empty, so the receiver knows which one it is. */
  switch (m->kind) {
  case FM_MSG_ATTACH: put_msg(&w, 1, body_attach, &m->attach, 1); break;
  case FM_MSG_REGISTER: put_msg(&w, 2, body_register, &m->reg, 1); break;
  case FM_MSG_DETACH: put_msg(&w, 3, body_empty, NULL, 1); break;
  default: return -1;
  }
  return finish(&w);
}

long fm_encode_daemon(const struct fm_daemon_msg *m, uint8_t *buf, size_t cap) {
  struct wr w = {buf, 0, cap, 0};
  switch (m->kind) {
  case FM_MSG_ATTACH_REPLY: put_msg(&w, 1, body_attach_reply, &m->attach_reply, 1); break;
  case FM_MSG_REGISTER_REPLY: put_msg(&w, 2, body_register_reply, &m->register_reply, 1); break;
  default: return -1;
  }
  return finish(&w);
}

/* ---- decoding ---- */

struct rd {
  const uint8_t *p, *end;
};

static int get_varint(struct rd *r, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (r->p >= r->end) return -1;
    uint8_t b = *r->p++;
    if (shift == 63 && b > 1) return -1;
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

/* One field: its number, wire type, and for varints the value, for LEN the slice. */
struct field {
  uint32_t num, wire;
  uint64_t v;
  const uint8_t *data;
  size_t len;
};

static int next_field(struct rd *r, struct field *f, const char **why) {
  uint64_t tag;
  if (get_varint(r, &tag) < 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) {
    *why = "malformed field tag";
    return -1;
  }
  f->num = (uint32_t)(tag >> 3);
  f->wire = (uint32_t)(tag & 7);
  switch (f->wire) {
  case 0:
    if (get_varint(r, &f->v) < 0) {
      *why = "malformed varint";
      return -1;
    }
    return 0;
  case 1:
  case 5: {
    size_t n = f->wire == 1 ? 8 : 4;
    if ((size_t)(r->end - r->p) < n) {
      *why = "truncated fixed-width field";
      return -1;
    }
    r->p += n;
    return 0;
  }
  case 2:
    if (get_varint(r, &f->v) < 0 || f->v > (uint64_t)(r->end - r->p)) {
      *why = "truncated length-delimited field";
      return -1;
    }
    f->data = r->p;
    f->len = (size_t)f->v;
    r->p += f->len;
    return 0;
  default:
    *why = "unsupported wire type";
    return -1;
  }
}

static int want(const struct field *f, uint32_t wire, const char **why) {
  if (f->wire != wire) {
    *why = "field has the wrong wire type";
    return -1;
  }
  return 0;
}

static int copy_str(const struct field *f, char *dst, size_t cap, const char **why) {
  if (want(f, 2, why) < 0) return -1;
  if (f->len >= cap || memchr(f->data, 0, f->len)) {
    *why = "string too long or containing NUL";
    return -1;
  }
  memcpy(dst, f->data, f->len);
  dst[f->len] = 0;
  return 0;
}

static int copy_bytes(const struct field *f, uint8_t *dst, size_t cap, size_t *len, const char **why) {
  if (want(f, 2, why) < 0) return -1;
  if (f->len > cap) {
    *why = "bytes field too long";
    return -1;
  }
  memcpy(dst, f->data, f->len);
  *len = f->len;
  return 0;
}

#define FOR_FIELDS(buf, len)                                       \
  struct rd r = {(buf), (buf) + (len)};                            \
  struct field f;                                                  \
  while (r.p < r.end)                                              \
    if (next_field(&r, &f, why) < 0) return -1;                    \
    else

#define UINT(dst)                          \
  do {                                     \
    if (want(&f, 0, why) < 0) return -1;   \
    (dst) = f.v;                           \
  } while (0)

static int dec_reattach(const uint8_t *b, size_t n, struct fm_attach_request *a, const char **why) {
  FOR_FIELDS(b, n) {
    if (f.num == 1 && copy_str(&f, a->region_id, sizeof a->region_id, why) < 0) return -1;
    if (f.num == 2 && copy_bytes(&f, a->token, sizeof a->token, &a->token_len, why) < 0) return -1;
  }
  return 0;
}

static int dec_attach(const uint8_t *b, size_t n, struct fm_attach_request *a, const char **why) {
  FOR_FIELDS(b, n) {
    switch (f.num) {
    case 1: UINT(a->protocol_version); break;
    case 2: if (copy_str(&f, a->region, sizeof a->region, why) < 0) return -1; break;
    case 3: UINT(a->want_write_protect); a->want_write_protect = !!a->want_write_protect; break;
    case 4:
      if (want(&f, 2, why) < 0 || dec_reattach(f.data, f.len, a, why) < 0) return -1;
      a->has_reattach = 1;
      break;
    }
  }
  return 0;
}

static int dec_register(const uint8_t *b, size_t n, struct fm_register_request *q, const char **why) {
  FOR_FIELDS(b, n) {
    switch (f.num) {
    case 1: UINT(q->address); break;
    case 2: UINT(q->length); break;
    case 3: UINT(q->uffd_features); break;
    case 4: UINT(q->write_protect); q->write_protect = !!q->write_protect; break;
    case 5: UINT(q->user_mode_only); q->user_mode_only = !!q->user_mode_only; break;
    }
  }
  return 0;
}

static int dec_attach_reply(const uint8_t *b, size_t n, struct fm_attach_reply *q, const char **why) {
  FOR_FIELDS(b, n) {
    switch (f.num) {
    case 1: UINT(q->code); break;
    case 2: if (copy_str(&f, q->message, sizeof q->message, why) < 0) return -1; break;
    case 3: if (copy_str(&f, q->region_id, sizeof q->region_id, why) < 0) return -1; break;
    case 4: UINT(q->size_bytes); break;
    case 5: UINT(q->page_size); break;
    case 6: UINT(q->write_protect); q->write_protect = !!q->write_protect; break;
    case 7: UINT(q->on_unavailable); break;
    case 8: UINT(q->attachment_id); break;
    case 9: if (copy_bytes(&f, q->token, sizeof q->token, &q->token_len, why) < 0) return -1; break;
    case 10: UINT(q->wp_async); q->wp_async = !!q->wp_async; break;
    }
  }
  return 0;
}

static int dec_register_reply(const uint8_t *b, size_t n, struct fm_register_reply *q, const char **why) {
  FOR_FIELDS(b, n) {
    switch (f.num) {
    case 1: UINT(q->code); break;
    case 2: if (copy_str(&f, q->message, sizeof q->message, why) < 0) return -1; break;
    case 3: UINT(q->attachment_id); break;
    }
  }
  return 0;
}

/* In a oneof the last member on the wire wins, as protobuf says. */
int fm_decode_client(const uint8_t *buf, size_t len, struct fm_client_msg *m, const char **why) {
  memset(m, 0, sizeof *m);
  FOR_FIELDS(buf, len) {
    if (f.num < 1 || f.num > 3) continue;
    if (want(&f, 2, why) < 0) return -1;
    m->kind = (int)f.num;
    memset(&m->attach, 0, sizeof m->attach);
    memset(&m->reg, 0, sizeof m->reg);
    if (f.num == 1 && dec_attach(f.data, f.len, &m->attach, why) < 0) return -1;
    if (f.num == 2 && dec_register(f.data, f.len, &m->reg, why) < 0) return -1;
  }
  if (!m->kind) {
    *why = "no message in the packet";
    return -1;
  }
  return 0;
}

int fm_decode_daemon(const uint8_t *buf, size_t len, struct fm_daemon_msg *m, const char **why) {
  memset(m, 0, sizeof *m);
  FOR_FIELDS(buf, len) {
    if (f.num < 1 || f.num > 2) continue;
    if (want(&f, 2, why) < 0) return -1;
    m->kind = (int)f.num;
    memset(&m->attach_reply, 0, sizeof m->attach_reply);
    memset(&m->register_reply, 0, sizeof m->register_reply);
    if (f.num == 1 && dec_attach_reply(f.data, f.len, &m->attach_reply, why) < 0) return -1;
    if (f.num == 2 && dec_register_reply(f.data, f.len, &m->register_reply, why) < 0) return -1;
  }
  if (!m->kind) {
    *why = "no message in the packet";
    return -1;
  }
  return 0;
}
