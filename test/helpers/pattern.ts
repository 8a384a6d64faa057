// fmwork's page contents, touch order and checksum, computed the same way as
// test/workloads/fmwork_pattern.h (checked against it by test/workloads/pattern.test.ts).
import path from 'node:path';

const M64 = (1n << 64n) - 1n;
const GOLDEN = 0x9e3779b97f4a7c15n;
const WORD_STEP = 0xd1b54a32d192ed03n;
export const FNV_OFFSET = 0xcbf29ce484222325n;

/** Path of a built C workload (test/workloads/bin/NAME), from dist/test/helpers or test/helpers. */
export function workloadBin(name: string): string {
  const root = __dirname.includes(`${path.sep}dist${path.sep}`) ? path.join(__dirname, '..', '..', '..') : path.join(__dirname, '..', '..');
  return path.join(root, 'test', 'workloads', 'bin', name);
}

/** splitmix64's finalizer. */
export function mix(x: bigint): bigint {
  x &= M64;
  x ^= x >> 30n;
  x = (x * 0xbf58476d1ce4e5b9n) & M64;
  x ^= x >> 27n;
  x = (x * 0x94d049bb133111ebn) & M64;
  x ^= x >> 31n;
  return x;
}

/** Word `word` of page `page` as fmwork --op write --seed `seed` writes it. */
export function patternWord(seed: bigint, page: number, word: number): bigint {
  return (mix(seed + BigInt(page) * GOLDEN) + BigInt(word) * WORD_STEP) & M64;
}

/** The whole page fmwork --op write writes (and --op verify expects). */
export function patternPage(seed: bigint, page: number, pageSize: number): Buffer {
  const buf = Buffer.alloc(pageSize);
  const words = new BigUint64Array(buf.buffer, buf.byteOffset, pageSize / 8);
  const base = mix(seed + BigInt(page) * GOLDEN);
  let v = base;
  for (let i = 0; i < words.length; i++) {
    words[i] = v;
    v = (v + WORD_STEP) & M64;
  }
  return buf;
}

/** The order fmwork touches pages in for --pattern `pattern` over `n` pages. */
export function pageOrder(pattern: string, n: number): number[] {
  const order: number[] = [];
  if (pattern === 'seq') {
    for (let i = 0; i < n; i++) order.push(i);
  } else if (pattern === 'reverse') {
    for (let i = n - 1; i >= 0; i--) order.push(i);
  } else if (/^stride:[1-9][0-9]*$/.test(pattern)) {
    const k = Number(pattern.slice(7));
    for (let s = 0; s < k && s < n; s++) for (let p = s; p < n; p += k) order.push(p);
  } else if (/^(random|zipf):[0-9]+$/.test(pattern)) {
    const zipf = pattern.startsWith('zipf');
    let state = BigInt(pattern.slice(zipf ? 5 : 7)) & M64;
    const next = () => {
      state = (state + GOLDEN) & M64;
      return mix(state);
    };
    for (let i = 0; i < n; i++) order.push(i);
    for (let i = n - 1; i >= 1; i--) {
      const j = Number(next() % BigInt(i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    if (zipf) return zipfDraws(order, next);
  } else {
    throw new TypeError(`Expected seq|reverse|stride:K|random:SEED|zipf:SEED for pattern but received "${pattern}"`);
  }
  return order;
}

/** The skew of zipf:SEED (YCSB's default). */
export const ZIPF_THETA = 0.99;

/** zipf:SEED after its shuffle: perm.length draws of a rank by zipf(0.99), mapped through perm. */
function zipfDraws(perm: number[], next: () => bigint): number[] {
  const n = perm.length;
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) cdf[i] = sum += Math.pow(i + 1, -ZIPF_THETA);
  const out: number[] = [];
  for (let d = 0; d < n; d++) {
    const target = Number(next() >> 11n) * 2 ** -53 * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = lo + Math.floor((hi - lo) / 2);
      if (cdf[mid]! > target) hi = mid;
      else lo = mid + 1;
    }
    out.push(perm[lo]!);
  }
  return out;
}

/** 64-bit FNV-1a over `data`, continuing from `h`. Works in 16-bit limbs: BigInt per byte is too slow. */
export function fnv1a(h: bigint, data: Uint8Array): bigint {
  let h0 = Number(h & 0xffffn);
  let h1 = Number((h >> 16n) & 0xffffn);
  let h2 = Number((h >> 32n) & 0xffffn);
  let h3 = Number((h >> 48n) & 0xffffn);
  for (let i = 0; i < data.length; i++) {
    h0 ^= data[i]!;
    // h * (2^40 + 0x1b3) mod 2^64
    const t0 = h0 * 0x1b3;
    const t1 = h1 * 0x1b3 + (t0 >>> 16);
    const t2 = h2 * 0x1b3 + h0 * 256 + (t1 >>> 16);
    const t3 = h3 * 0x1b3 + h1 * 256 + (t2 >>> 16);
    h0 = t0 & 0xffff;
    h1 = t1 & 0xffff;
    h2 = t2 & 0xffff;
    h3 = t3 & 0xffff;
  }
  return (BigInt(h3) << 48n) | (BigInt(h2) << 32n) | (BigInt(h1) << 16n) | BigInt(h0);
}

/** fmwork's "checksum" for pages whose contents are `page(i)`, touched in `pattern` order `repeat` times. */
export function expectedChecksum(pattern: string, pages: number, repeat: number, page: (index: number) => Uint8Array): string {
  const order = pageOrder(pattern, pages);
  let h = FNV_OFFSET;
  for (let r = 0; r < repeat; r++) for (const p of order) h = fnv1a(h, page(p));
  return h.toString(16).padStart(16, '0');
}

/** The JSON line fmwork prints. */
export interface FmworkResult {
  pages: number;
  op: 'read' | 'write' | 'verify';
  checksum: string;
  mismatches: number;
  ns: number;
  p50_ns: number | null;
  p99_ns: number | null;
  max_ns: number | null;
}
