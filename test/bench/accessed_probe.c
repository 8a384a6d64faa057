// Can a root daemon learn which of another process's memfd pages were *accessed* (read) since a
// point in time, for the evictor's CLOCK? Tries: /proc/pid/clear_refs "1" + kpageflags REFERENCED per
// page, smaps Referenced per VMA, pagemap bits. Child reads pages [0,16) of 64 after the clear.
// Found on 6.18 (this VM's config): PAGEMAP_SCAN has no accessed category (bits 0-8 only, 9+ EINVAL);
// SOFT_DIRTY is never set (CONFIG_MEM_SOFT_DIRTY off); no IDLE_PAGE_TRACKING, DAMON_VADDR or LRU_GEN;
// kpageflags REFERENCED is the folio flag, not the PTE young bit (0 of 16 reads show); smaps
// Referenced sees the reads but only as a per-VMA sum, and clear_refs "1" does not flush the TLB, so
// an access through a cached translation can go unseen. Usage: accessed_probe (root).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#define N 64
#define PAGE 4096
int main(void) {
  int p2c[2], c2p[2]; pipe(p2c); pipe(c2p);
  pid_t pid = fork();
  if (pid == 0) {
    int m = memfd_create("probe", 0); ftruncate(m, N * PAGE);
    volatile char* r = mmap(NULL, N * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    for (int i = 0; i < N; i++) r[i * PAGE] = 1;
    uint64_t a = (uint64_t)r; write(c2p[1], &a, 8);
    char c; read(p2c[0], &c, 1);
    volatile char s = 0; for (int i = 0; i < 16; i++) s += r[i * PAGE];
    write(c2p[1], &c, 1); read(p2c[0], &c, 1); _exit(0);
  }
  uint64_t a; read(c2p[0], &a, 8);
  char path[64]; snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
  int pm = open(path, O_RDONLY), kf = open("/proc/kpageflags", O_RDONLY);
  uint64_t pfn[N], e;
  for (int i = 0; i < N; i++) { pread(pm, &e, 8, (a / PAGE + i) * 8); pfn[i] = e & ((1ULL << 55) - 1);
    if (i == 0) printf("pagemap entry page0: present=%d uffdwp=%d softdirty=%d excl=%d file/shared=%d\n", (int)(e >> 63), (int)(e >> 57 & 1), (int)(e >> 55 & 1), (int)(e >> 56 & 1), (int)(e >> 61 & 1)); }
  char cmd[160];
  snprintf(path, sizeof path, "/proc/%d/clear_refs", pid);
  snprintf(cmd, sizeof cmd, "grep -A20 memfd:probe /proc/%d/smaps | grep -E '^(Referenced|Rss)'", pid);
  printf("before clear: "); fflush(stdout); system(cmd);
  int cr = open(path, O_WRONLY); printf("clear_refs 1: %s\n", write(cr, "1", 1) == 1 ? "ok" : "failed");
  snprintf(cmd, sizeof cmd, "grep -A20 memfd:probe /proc/%d/smaps | grep -E '^Referenced'", pid);
  printf("after clear: "); fflush(stdout); system(cmd);
  int ref = 0; for (int i = 0; i < N; i++) { pread(kf, &e, 8, pfn[i] * 8); ref += (e >> 2) & 1; }
  printf("after clear: kpageflags REFERENCED on %d/%d pages\n", ref, N);
  write(p2c[1], "x", 1); char c; read(c2p[0], &c, 1);
  printf("after reading 16: "); fflush(stdout); system(cmd);
  ref = 0; int first = 0; for (int i = 0; i < N; i++) { pread(kf, &e, 8, pfn[i] * 8); ref += (e >> 2) & 1; if (i < 16) first += (e >> 2) & 1; }
  printf("after reading 16: kpageflags REFERENCED on %d/%d pages (%d of the 16 read)\n", ref, N, first);
  write(p2c[1], "x", 1); waitpid(pid, NULL, 0); return 0;
}
