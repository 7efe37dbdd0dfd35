/* keras-groupnl: the fused GroupNL tail (see keras_groupnl_tail.h).
 *
 * Plain C, plus a Helium (MVE) path for cores that have it (Cortex-M55,
 * M85): the same arithmetic on vectors of four channels, giving the same
 * bytes. */
#include "keras_groupnl_tail.h"

#include <math.h>
#include <stdlib.h>

#if defined(__FAST_MATH__)
#error "keras_groupnl_tail.c must not be compiled with -ffast-math"
#endif

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#include <arm_mve.h>
#define KERAS_GROUPNL_MVE 1
#endif

#define KERAS_GROUPNL_UNIT_SHIFT 23
#define KERAS_GROUPNL_HALF (1 << (KERAS_GROUPNL_UNIT_SHIFT - 1))

static inline int32_t clamp_s32(int32_t v, int32_t low, int32_t high) {
  v = v < low ? low : v;
  return v > high ? high : v;
}

#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
#include <arm_acle.h>
/* One SSAT instruction: clamp to the int8 range. */
#define KERAS_GROUPNL_SAT8(v) __ssat((v), 8)
#else
#define KERAS_GROUPNL_SAT8(v) clamp_s32((v), -128, 127)
#endif

/* The plan's rows (see keras_groupnl_tail.h). */
typedef struct {
  const int32_t* seed;
  const int32_t* table;
  const int32_t* mul;
  const int32_t* add;
  const int32_t* shift;
} Plan;

static Plan plan_rows(const int32_t* plan, int32_t filters) {
  Plan rows = {plan + KERAS_GROUPNL_SEED * filters,
               plan + KERAS_GROUPNL_TABLE * filters,
               plan + KERAS_GROUPNL_MUL * filters,
               plan + KERAS_GROUPNL_ADD * filters,
               plan + KERAS_GROUPNL_SHIFT * filters};
  return rows;
}

/* d: one pixel's seed maps, zero point removed; with group_in > 1 each
 * seed map sums group_in input channels (see keras_groupnl_tail.h). */
static void seed_differences(const int8_t* x, int32_t seeds,
                             int32_t zero_point, int32_t group_in,
                             int32_t multiplier, int16_t* d) {
  if (group_in == 1) {
#if defined(KERAS_GROUPNL_MVE)
    for (int32_t c = 0; c < seeds; c += 8) {
      const mve_pred16_t p = vctp16q((uint32_t)(seeds - c));
      vstrhq_p_s16(d + c,
                   vsubq_n_s16(vldrbq_z_s16(x + c, p), (int16_t)zero_point),
                   p);
    }
#else
    for (int32_t c = 0; c < seeds; ++c) d[c] = (int16_t)(x[c] - zero_point);
#endif
    return;
  }
  const int32_t offset = group_in * zero_point;
#if defined(KERAS_GROUPNL_MVE)
  if (multiplier == 1) {
    /* Seed c sums inputs c * group_in + i: one gather per i, 8 seeds. */
    const uint16x8_t lanes = vmulq_n_u16(vidupq_n_u16(0, 1), group_in);
    for (int32_t c = 0; c < seeds; c += 8) {
      const mve_pred16_t p = vctp16q((uint32_t)(seeds - c));
      const int8_t* base = x + c * group_in;
      int16x8_t sum = vdupq_n_s16((int16_t)-offset);
      for (int32_t i = 0; i < group_in; ++i) {
        sum = vaddq_s16(sum, vldrbq_gather_offset_z_s16(base + i, lanes, p));
      }
      vstrhq_p_s16(d + c, sum, p);
    }
    return;
  }
#endif
  for (int32_t g = 0; g < seeds / multiplier; ++g) {
    const int8_t* block = x + g * group_in * multiplier;
    for (int32_t o = 0; o < multiplier; ++o) {
      int32_t sum = -offset;
      for (int32_t i = 0; i < group_in; ++i) sum += block[i * multiplier + o];
      d[g * multiplier + o] = (int16_t)sum;
    }
  }
}

/* K = int32(2^30 / sqrt(n)), n the squared norm of d. */
static int32_t inverse_norm(const int16_t* d, int32_t seeds) {
  int32_t norm2 = 0;
#if defined(KERAS_GROUPNL_MVE)
  for (int32_t c = 0; c < seeds; c += 8) {
    const mve_pred16_t p = vctp16q((uint32_t)(seeds - c));
    const int16x8_t v = vldrhq_z_s16(d + c, p);
    norm2 = vmladavaq_p_s16(norm2, v, v, p);
  }
#else
  for (int32_t c = 0; c < seeds; ++c) norm2 += (int32_t)d[c] * d[c];
#endif
  if (norm2 <= 0) return 0;
  const float inverse = 1073741824.0f / sqrtf((float)norm2);
  return (int32_t)inverse;
}

/* One pixel's unit vector (int8, units of 1/128), stored as `u + 128` so
 * that it indexes a table directly. */
static void unit_vector(const int16_t* d, int32_t seeds, uint8_t* index) {
  const int32_t k = inverse_norm(d, seeds);
#if defined(KERAS_GROUPNL_MVE)
  for (int32_t c = 0; c < seeds; c += 4) {
    const mve_pred16_t p = vctp32q((uint32_t)(seeds - c));
    int32x4_t u = vmulq_n_s32(vldrhq_z_s32(d + c, p), k);
    u = vaddq_n_s32(u, KERAS_GROUPNL_HALF);
    u = vshrq_n_s32(u, KERAS_GROUPNL_UNIT_SHIFT);
    u = vminq_s32(vmaxq_s32(u, vdupq_n_s32(-128)), vdupq_n_s32(127));
    vstrbq_p_s32((int8_t*)(index + c), vaddq_n_s32(u, 128), p);
  }
#else
  for (int32_t c = 0; c < seeds; ++c) {
    const int32_t u = (d[c] * k + KERAS_GROUPNL_HALF) >> KERAS_GROUPNL_UNIT_SHIFT;
    index[c] = (uint8_t)(KERAS_GROUPNL_SAT8(u) + 128);
  }
#endif
}

#if defined(KERAS_GROUPNL_MVE)
/* out = clamp((v * A + B) >> S) on four channels from `j`. */
static inline void requantize4(int32x4_t v, const Plan* plan, int32_t j,
                               int32_t low, int32_t high, mve_pred16_t p,
                               int8_t* out) {
  int32x4_t y = vmulq_s32(v, vldrwq_z_s32(plan->mul + j, p));
  y = vaddq_s32(y, vldrwq_z_s32(plan->add + j, p));
  y = vshlq_s32(y, vnegq_s32(vldrwq_z_s32(plan->shift + j, p)));
  y = vminq_s32(vmaxq_s32(y, vdupq_n_s32(low)), vdupq_n_s32(high));
  vstrbq_p_s32(out + j, y, p);
}
#endif

/* Mode 0. The first `seeds` channels are the unit vector itself (the plan's
 * first columns, checked by keras_groupnl_tail_check_plan), the others a
 * table value; every channel then gets its BatchNorm requantisation. */
static void nlf_tables(const uint8_t* index, int32_t seeds,
                       const int8_t* tables, const Plan* plan,
                       int32_t filters, int32_t low, int32_t high,
                       int8_t* out) {
#if defined(KERAS_GROUPNL_MVE)
  int32_t j = 0;
  for (; j < seeds; j += 4) {
    const mve_pred16_t p = vctp32q((uint32_t)(seeds - j));
    const int32x4_t v =
        vsubq_n_s32(vreinterpretq_s32_u32(vldrbq_z_u32(index + j, p)), 128);
    requantize4(v, plan, j, low, high, p, out);
  }
  for (j = seeds; j < filters; j += 4) {
    const mve_pred16_t p = vctp32q((uint32_t)(filters - j));
    const uint32x4_t source =
        vreinterpretq_u32_s32(vldrwq_z_s32(plan->seed + j, p));
    const uint32x4_t at = vldrbq_gather_offset_z_u32(index, source, p);
    const int32x4_t table = vldrwq_z_s32(plan->table + j, p);
    const uint32x4_t offset =
        vaddq_u32(vreinterpretq_u32_s32(vshlq_n_s32(table, 8)), at);
    const int32x4_t v = vldrbq_gather_offset_z_s32(tables, offset, p);
    requantize4(v, plan, j, low, high, p, out);
  }
#else
  int32_t j = 0;
  for (; j < seeds; ++j) {
    const int32_t v = (int32_t)index[j] - 128;
    const int32_t y = (v * plan->mul[j] + plan->add[j]) >> plan->shift[j];
    out[j] = (int8_t)clamp_s32(y, low, high);
  }
  for (; j < filters; ++j) {
    const int8_t* table = tables + (plan->table[j] << 8);
    const int32_t v = table[index[plan->seed[j]]];
    const int32_t y = (v * plan->mul[j] + plan->add[j]) >> plan->shift[j];
    out[j] = (int8_t)clamp_s32(y, low, high);
  }
#endif
}

/* Mode 1: table j holds channel j's output for every unit-vector byte. */
static void channel_tables(const uint8_t* index, const int8_t* tables,
                           const Plan* plan, int32_t filters, int8_t* out) {
#if defined(KERAS_GROUPNL_MVE)
  const uint32x4_t lanes = vmulq_n_u32(vidupq_n_u32(0, 1), 256);
  for (int32_t j = 0; j < filters; j += 4) {
    const mve_pred16_t p = vctp32q((uint32_t)(filters - j));
    const uint32x4_t source =
        vreinterpretq_u32_s32(vldrwq_z_s32(plan->seed + j, p));
    const uint32x4_t at = vldrbq_gather_offset_z_u32(index, source, p);
    const uint32x4_t offset =
        vaddq_u32(vaddq_n_u32(lanes, (uint32_t)j << 8), at);
    vstrbq_p_s32(out + j, vldrbq_gather_offset_z_s32(tables, offset, p), p);
  }
#else
  for (int32_t j = 0; j < filters; ++j) {
    out[j] = tables[(j << 8) + index[plan->seed[j]]];
  }
#endif
}

int keras_groupnl_tail_check_plan(const int32_t* plan, int32_t filters,
                                  int32_t seeds, int32_t num_tables,
                                  int32_t mode) {
  if (mode != KERAS_GROUPNL_NLF_TABLES && mode != KERAS_GROUPNL_CHANNEL_TABLES) {
    return -1;
  }
  if (filters < seeds) return -1;
  const Plan rows = plan_rows(plan, filters);
  for (int32_t j = 0; j < filters; ++j) {
    const int32_t seed = rows.seed[j];
    const int32_t table = rows.table[j];
    if (seed < 0 || seed >= seeds) return -1;
    if (mode == KERAS_GROUPNL_CHANNEL_TABLES) {
      if (table != j || j >= num_tables) return -1;
    } else if (j < seeds ? (seed != j || table != -1)
                         : (table < 0 || table >= num_tables)) {
      return -1;
    } else if (rows.shift[j] < 0 || rows.shift[j] > 31) {
      return -1;
    } else if (128 * llabs((long long)rows.mul[j]) +
                   llabs((long long)rows.add[j]) >=
               2147483648LL) {
      return -1;
    }
  }
  return 0;
}

int keras_groupnl_tail_check_header(const int32_t* header,
                                    int32_t in_channels) {
  const int32_t low = header[1], high = header[2], mode = header[3];
  const int32_t group_in = header[4], multiplier = header[5];
  if (mode != KERAS_GROUPNL_NLF_TABLES && mode != KERAS_GROUPNL_CHANNEL_TABLES) {
    return -1;
  }
  if (header[0] < -128 || header[0] > 127) return -1;
  if (low < -128 || high > 127 || low > high) return -1;
  if (group_in < 1 || multiplier < 1 || in_channels < 1 ||
      in_channels % group_in != 0 ||
      in_channels % ((long long)group_in * multiplier) != 0) {
    return -1;
  }
  const long long seeds = in_channels / group_in;
  const long long largest = (long long)group_in * 255;
  if (seeds > KERAS_GROUPNL_MAX_SEEDS || largest > INT16_MAX ||
      seeds * largest * largest >= 2147483648LL) {
    return -1;
  }
  return 0;
}

int keras_groupnl_tail_s8(const int8_t* x, int32_t pixels,
                          int32_t in_channels, const int8_t* tables,
                          const int32_t* plan, int32_t filters,
                          const int32_t* header, int16_t* diff,
                          uint8_t* index, int8_t* out) {
  const int32_t zero_point = header[0];
  const int32_t mode = header[3];
  const int32_t group_in = header[4];
  const int32_t multiplier = header[5];
  if (mode != KERAS_GROUPNL_NLF_TABLES && mode != KERAS_GROUPNL_CHANNEL_TABLES) {
    return -1;
  }
  if (group_in < 1 || multiplier < 1 ||
      in_channels % (group_in * multiplier) != 0) {
    return -1;
  }
  const int32_t seeds = in_channels / group_in;
  const Plan rows = plan_rows(plan, filters);
  for (int32_t p = 0; p < pixels; ++p, x += in_channels, out += filters) {
    seed_differences(x, seeds, zero_point, group_in, multiplier, diff);
    unit_vector(diff, seeds, index);
    if (mode == KERAS_GROUPNL_NLF_TABLES) {
      nlf_tables(index, seeds, tables, &rows, filters, header[1], header[2],
                 out);
    } else {
      channel_tables(index, tables, &rows, filters, out);
    }
  }
  return 0;
}
