// DFNT convolution: weights transformed once (prepare_conv), then the tiled
// pipeline (run_conv): forward transforms -> one modular GEMM per bin -> inverse
// transforms, each stage parallel over independent work.
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgecc/dfnt.h"
#include "edgecc/dfnt_kernels.h"

namespace edgecc {
namespace dfnt {

namespace {

void fail(const std::string& msg) { throw std::invalid_argument("dfnt: " + msg); }

int resolve_threads(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

struct GemmEntry {
  Modulus modulus;
  Isa isa;
  const char* variant;  // "ifma" / "muludq" / "scalar"; the first match is the default
  const char* name;
  GemmFn fn;
  PackWFn pack;   // nullptr: canonical W
  int w_limbs;    // words per weight residue after packing
};
const GemmEntry kGemms[] = {
    {Modulus::kF5, Isa::kAvx512, "ifma", "f5_gemm_ifma_6x16_avx512", f5_gemm_ifma_6x16_avx512, nullptr, 1},
    {Modulus::kF5, Isa::kAvx512, "muludq", "f5_gemm_muludq_12x8_avx512", f5_gemm_muludq_12x8_avx512,
     f5_pack_w_muludq_avx512, 2},
    {Modulus::kF48, Isa::kAvx512, "ifma", "f48_gemm_ifma_6x16_avx512", f48_gemm_ifma_6x16_avx512, nullptr, 1},
    {Modulus::kF6, Isa::kAvx512, "ifma", "f6_gemm_ifma_4x8_avx512", f6_gemm_ifma_4x8_avx512, nullptr, 2},
    {Modulus::kF5, Isa::kScalar, "scalar", "f5_gemm_scalar", f5_gemm_scalar, nullptr, 1},
    {Modulus::kF48, Isa::kScalar, "scalar", "f48_gemm_scalar", f48_gemm_scalar, nullptr, 1},
    {Modulus::kF6, Isa::kScalar, "scalar", "f6_gemm_scalar", f6_gemm_scalar, nullptr, 2},
};

const GemmEntry& gemm_for(Modulus m, Isa isa, const std::string& variant) {
  for (const GemmEntry& e : kGemms)
    if (e.modulus == m && e.isa == isa && (variant.empty() || variant == e.variant)) return e;
  fail("no pointwise GEMM variant '" + variant + "' for " + modulus_name(m) + " on ISA " + isa_name(isa));
  return kGemms[0];
}

struct AlignedBuffer {
  void* p = nullptr;
  size_t size = 0;
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes) { reserve(bytes); }
  // Grows to at least `bytes`; contents are not kept.
  void reserve(size_t bytes) {
    if (bytes <= size) return;
    std::free(p);
    // Big buffers on 2 MiB pages: each GEMM reads one line per (tile, channel group)
    // block, blocks far apart, which with 4 KiB pages is one TLB miss per line.
    const size_t align = bytes >= (size_t(1) << 21) ? size_t(1) << 21 : 64;
    size = (bytes + align - 1) / align * align;
    p = std::aligned_alloc(align, size);
    if (!p) throw std::bad_alloc();
    if (align > 64) madvise(p, size, MADV_HUGEPAGE);
  }
  ~AlignedBuffer() { std::free(p); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

// One transform scratch per thread, allocated before the parallel region (so an
// allocation failure is an exception, not a crash inside OpenMP).
struct ThreadScratch {
  std::vector<std::unique_ptr<AlignedBuffer>> bufs;
  ThreadScratch(int threads, int n) {
    for (int t = 0; t < threads; ++t) bufs.push_back(std::make_unique<AlignedBuffer>(size_t(transform_scratch_bytes(n))));
  }
  void* mine() const { return bufs[size_t(omp_get_thread_num())]->p; }
};

}  // namespace

// Seconds spent in each stage by the last run on this thread (for benchmarks).
static thread_local StageTimes g_stage_times;
static thread_local double g_stage_start = 0;
static void stage_clock(int stage) {  // stage 0 starts the clock; stage s > 0 ends stage s - 1
  const double now = omp_get_wtime();
  if (stage == 1) g_stage_times.forward += now - g_stage_start;
  if (stage == 2) g_stage_times.pointwise += now - g_stage_start;
  if (stage == 3) g_stage_times.inverse += now - g_stage_start;
  g_stage_start = now;
}

WordBuffer::WordBuffer(size_t words) : n_(words) {
  const size_t bytes = words * sizeof(uint64_t);
  const size_t align = bytes >= (size_t(1) << 21) ? size_t(1) << 21 : 64;
  const size_t size = (bytes + align - 1) / align * align;
  p_ = static_cast<uint64_t*>(std::aligned_alloc(align, size ? size : align));
  if (!p_) throw std::bad_alloc();
  if (align > 64) madvise(p_, size, MADV_HUGEPAGE);
  std::memset(p_, 0, size);
}
WordBuffer::~WordBuffer() { std::free(p_); }
WordBuffer& WordBuffer::operator=(WordBuffer&& o) noexcept {
  if (this != &o) {
    std::free(p_);
    p_ = o.p_, n_ = o.n_;
    o.p_ = nullptr, o.n_ = 0;
  }
  return *this;
}

// Buffers of the last run, reused by the next (fresh pages cost page faults);
// a run that finds them busy allocates its own.
struct ConvPlan::Workspace {
  std::mutex busy;
  AlignedBuffer xp, xf, yf;
};

std::shared_ptr<ConvPlan> prepare_conv(const int64_t* w, int64_t out_channels, int64_t in_channels, int64_t kernel_h,
                                       int64_t kernel_w, Modulus m, int n, Isa isa, const std::string& gemm,
                                       int threads) {
  if (out_channels < 1 || in_channels < 1 || kernel_h < 1 || kernel_w < 1)
    fail("weight shape [" + std::to_string(out_channels) + ", " + std::to_string(in_channels) + ", " +
         std::to_string(kernel_h) + ", " + std::to_string(kernel_w) + "] has an empty dimension");
  const int max_n = std::min(max_transform_length(m), kMaxConvTransform);
  if (log2_exact(n) < 3 || n > max_n)
    fail("transform size " + std::to_string(n) + " must be a power of two in [8, " + std::to_string(max_n) + "] for " +
         modulus_name(m));
  if (kernel_h > n || kernel_w > n)
    fail("kernel " + std::to_string(kernel_h) + "x" + std::to_string(kernel_w) + " does not fit transform size " +
         std::to_string(n));
  auto plan = std::make_shared<ConvPlan>();
  ConvPlan& p = *plan;
  p.modulus = m;
  p.isa = kernel_isa(isa);
  p.n = n;
  p.log_n = log2_exact(n);
  p.out_channels = out_channels, p.in_channels = in_channels, p.kernel_h = kernel_h, p.kernel_w = kernel_w;
  p.cpad = (in_channels + 7) / 8 * 8;
  p.opad = (out_channels + 7) / 8 * 8;
  p.limbs = residue_limbs(m);
  const GemmEntry& ge = gemm_for(m, p.isa, gemm);
  p.gemm_kernel = ge.name;
  p.workspace = std::make_shared<ConvPlan::Workspace>();
  const int64_t bins = int64_t(n) * n, taps = kernel_h * kernel_w;
  p.wf = WordBuffer(size_t(bins * p.cpad * p.opad * p.limbs));

  // Balanced residues (|v| <= p/2) so every kernel can take them as int64.
  const int b = modulus_bits(m);
  std::vector<int64_t> wb(size_t(out_channels * in_channels * taps));
  for (size_t i = 0; i < wb.size(); ++i) {
    if (b == 64) {
      wb[i] = w[i];  // |v| < 2^63 < p already
    } else {
      const __int128 pm = (__int128(1) << b) + 1;
      __int128 r = __int128(w[i]) % pm;
      if (r > pm / 2) r -= pm;
      if (r < -(pm / 2)) r += pm;
      wb[i] = int64_t(r);
    }
  }
  const TransformKernels& tk = transforms_for(m, p.isa);
  const TileGeometry g{n, p.log_n, kernel_h, kernel_w};
  const int64_t ogroups = p.opad / 8, bin_stride = p.cpad * p.opad * p.limbs;
  const int64_t tasks = ogroups * in_channels;
  const int nt = int(std::min<int64_t>(resolve_threads(threads), std::max<int64_t>(tasks, 1)));
  const ThreadScratch scratch(nt, n);
#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t og = t / in_channels, c = t % in_channels;
      const int lanes = int(std::min<int64_t>(8, out_channels - og * 8));
      tk.transform_weights(g, wb.data() + (og * 8 * in_channels + c) * taps, in_channels * taps, lanes,
                           p.wf.data() + w_group_offset(c, og, p.cpad, p.opad, p.limbs), bin_stride, scratch.mine());
    }
  }
  if (ge.pack) {  // the pointwise kernel's own weight layout
    WordBuffer packed(size_t(bins * p.cpad * p.opad * ge.w_limbs));
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t bin = 0; bin < bins; ++bin)
      ge.pack(p.wf.data() + bin * bin_stride, packed.data() + bin * p.cpad * p.opad * ge.w_limbs, p.cpad, p.opad);
    p.wf = std::move(packed);
  }
  p.w_limbs = ge.w_limbs;
  return plan;
}

int64_t conv_chunk_tiles(const ConvPlan& p, int64_t total_tiles, int64_t memory_bytes) {
  const int64_t per_tile = (int64_t(p.n) * p.n * p.limbs * 8 + 64) * (p.cpad + p.opad);
  return std::max<int64_t>(1, std::min<int64_t>(total_tiles, memory_bytes / per_tile));
}

namespace {

// Zero-padded copy in channel blocks of 8: [batch][cpad/8][hp][wp][8], so an n x n
// patch of 8 channels is read with plain loads and every patch lies inside.
template <class T>
void pad_input(const T* x, int64_t batch, int64_t c, int64_t h, int64_t w, int64_t pt, int64_t pl, int64_t cgroups,
               int64_t hp, int64_t wp, T* xp, int nt) {
#pragma omp parallel for collapse(2) schedule(static) num_threads(nt)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t g = 0; g < cgroups; ++g) {
      T* dst = xp + (b * cgroups + g) * hp * wp * 8;
      for (int64_t l = 0; l < 8; ++l) {
        const int64_t ch = g * 8 + l;
        if (ch >= c) continue;
        const T* src = x + (b * c + ch) * h * w;
        for (int64_t i = 0; i < h; ++i) {
          T* row = dst + ((i + pt) * wp + pl) * 8 + l;
          const T* srow = src + i * w;
          for (int64_t j = 0; j < w; ++j) row[j * 8] = srow[j];
        }
      }
    }
  }
}

}  // namespace

void run_conv(const ConvPlan& p, const void* x, int elem_bytes, int64_t batch, int64_t h, int64_t w,
              const int64_t pads[4], void* y, int threads) {
  if (elem_bytes != 1 && elem_bytes != 2) fail("input must be int8 or int16");
  const int64_t pt = pads[0], pl = pads[1], pb = pads[2], pr = pads[3];
  if (pt < 0 || pl < 0 || pb < 0 || pr < 0) fail("padding must be non-negative");
  if (batch < 0 || h < 1 || w < 1) fail("input spatial size must be positive");
  const int64_t oh = h + pt + pb - p.kernel_h + 1, ow = w + pl + pr - p.kernel_w + 1;
  if (oh < 1 || ow < 1)
    fail("kernel " + std::to_string(p.kernel_h) + "x" + std::to_string(p.kernel_w) + " is larger than the padded input " +
         std::to_string(h + pt + pb) + "x" + std::to_string(w + pl + pr));
  if (batch == 0) return;
  const double t_start = omp_get_wtime();
  g_stage_times = StageTimes{};
  const int nt = resolve_threads(threads);
  const int64_t th = p.tile_h(), tw = p.tile_w();
  const int64_t tiles_h = (oh + th - 1) / th, tiles_w = (ow + tw - 1) / tw;
  const int64_t tiles_per_image = tiles_h * tiles_w, total = batch * tiles_per_image;
  const int64_t hp = tiles_h * th + p.kernel_h - 1, wp = tiles_w * tw + p.kernel_w - 1;
  const int64_t cgroups = p.cpad / 8, ogroups = p.opad / 8, L = p.limbs;
  const int out_bytes = p.modulus == Modulus::kF5 ? 4 : 8;

  ConvPlan::Workspace local;
  std::unique_lock<std::mutex> lock(p.workspace->busy, std::try_to_lock);
  ConvPlan::Workspace& ws = lock.owns_lock() ? *p.workspace : local;
  AlignedBuffer& xp = ws.xp;
  xp.reserve(size_t(batch * cgroups * hp * wp * 8 * elem_bytes));
  std::memset(xp.p, 0, size_t(batch * cgroups * hp * wp * 8 * elem_bytes));
  if (elem_bytes == 1)
    pad_input(static_cast<const int8_t*>(x), batch, p.in_channels, h, w, pt, pl, cgroups, hp, wp,
              static_cast<int8_t*>(xp.p), nt);
  else
    pad_input(static_cast<const int16_t*>(x), batch, p.in_channels, h, w, pt, pl, cgroups, hp, wp,
              static_cast<int16_t*>(xp.p), nt);

  g_stage_times.pad = omp_get_wtime() - t_start;
  const TransformKernels& tk = transforms_for(p.modulus, p.isa);
  const GemmFn gemm = [&] {
    for (const GemmEntry& e : kGemms)
      if (p.gemm_kernel == e.name && e.isa == p.isa && e.modulus == p.modulus) return e.fn;
    fail("unknown pointwise kernel " + p.gemm_kernel);
    return kGemms[0].fn;
  }();
  const TileGeometry g{p.n, p.log_n, p.kernel_h, p.kernel_w};
  const int64_t bins = int64_t(p.n) * p.n;
  const int64_t mc = conv_chunk_tiles(p, total, int64_t(256) << 20);
  // One block per (tile, channel group) holds all bins; blocks are one cache line
  // longer than a power of two so a bin's lines across blocks do not all fall into
  // the same cache set.
  const int64_t block = bins * L * 8 + 8;
  ws.xf.reserve(size_t(mc * cgroups * block * 8));
  ws.yf.reserve(size_t(mc * ogroups * block * 8));
  uint64_t* X = static_cast<uint64_t*>(ws.xf.p);
  uint64_t* Y = static_cast<uint64_t*>(ws.yf.p);
  const char* xpb = static_cast<const char*>(xp.p);
  const ThreadScratch scratch(nt, p.n);

  for (int64_t t0 = 0; t0 < total; t0 += mc) {
    const int64_t m = std::min(mc, total - t0);
#pragma omp parallel num_threads(nt)
    {
      // 1. forward transform of every input tile and channel group
#pragma omp master
      stage_clock(0);
#pragma omp for schedule(static)
      for (int64_t task = 0; task < m * cgroups; ++task) {
        const int64_t t = task / cgroups, cg = task % cgroups;
        const int64_t tile = t0 + t, b = tile / tiles_per_image, ti = (tile % tiles_per_image) / tiles_w,
                      tj = tile % tiles_w;
        const int64_t off = (((b * cgroups + cg) * hp + ti * th) * wp + tj * tw) * 8;
        tk.forward_tile(g, xpb + off * elem_bytes, elem_bytes, wp * 8, X + task * block, L * 8,
                        scratch.mine());
      }
      // 2. pointwise: one modular GEMM per frequency bin
#pragma omp master
      stage_clock(1);
#pragma omp for schedule(static)
      for (int64_t bin = 0; bin < bins; ++bin) {
        const GemmArgs a{X + bin * L * 8, cgroups * block, block, p.wf.data() + bin * p.cpad * p.opad * p.w_limbs,
                         Y + bin * L * 8, ogroups * block, block, m, p.cpad, p.opad};
        gemm(a);
      }
      // 3. inverse transform of every output tile and channel group
#pragma omp master
      stage_clock(2);
#pragma omp for schedule(static)
      for (int64_t task = 0; task < m * ogroups; ++task) {
        const int64_t t = task / ogroups, og = task % ogroups;
        const int64_t tile = t0 + t, b = tile / tiles_per_image, ti = (tile % tiles_per_image) / tiles_w,
                      tj = tile % tiles_w;
        const int rows = int(std::min(th, oh - ti * th)), cols = int(std::min(tw, ow - tj * tw));
        const int channels = int(std::min<int64_t>(8, p.out_channels - og * 8));
        const int64_t off = ((b * p.out_channels + og * 8) * oh + ti * th) * ow + tj * tw;
        tk.inverse_tile(g, Y + task * block, L * 8, static_cast<char*>(y) + off * out_bytes, out_bytes,
                        oh * ow, ow, rows, cols, channels, scratch.mine());
      }
#pragma omp master
      stage_clock(3);
    }
  }
}

StageTimes last_stage_times() { return g_stage_times; }

}  // namespace dfnt
}  // namespace edgecc
