/* keras-groupnl: the fused GroupNL tail (see keras_groupnl_tail.h). */
#include "keras_groupnl_tail.h"

#include <math.h>

#if defined(__FAST_MATH__)
#error "keras_groupnl_tail.c must not be compiled with -ffast-math"
#endif

#define KERAS_GROUPNL_UNIT_SHIFT 23

static inline int32_t clamp_s32(int32_t v, int32_t low, int32_t high) {
  return v < low ? low : (v > high ? high : v);
}

/* The int8 unit vector of one pixel's seed maps, in units of 1/128. */
static void unit_vector(const int8_t* x, int32_t seeds, int32_t zero_point,
                        int8_t* unit) {
  int32_t norm2 = 0;
  for (int32_t c = 0; c < seeds; ++c) {
    const int32_t d = x[c] - zero_point;
    norm2 += d * d;
  }
  int32_t k = 0;
  if (norm2 > 0) {
    const float inverse = 1073741824.0f / sqrtf((float)norm2);
    k = (int32_t)inverse;
  }
  const int32_t half = 1 << (KERAS_GROUPNL_UNIT_SHIFT - 1);
  for (int32_t c = 0; c < seeds; ++c) {
    const int32_t d = x[c] - zero_point;
    const int32_t u = (d * k + half) >> KERAS_GROUPNL_UNIT_SHIFT;
    unit[c] = (int8_t)clamp_s32(u, -128, 127);
  }
}

static void nlf_tables(const int8_t* unit, const int8_t* tables,
                       const int32_t* plan, int32_t filters, int32_t low,
                       int32_t high, int8_t* out) {
  for (int32_t j = 0; j < filters; ++j, plan += KERAS_GROUPNL_PLAN_COLUMNS) {
    const int32_t u = unit[plan[KERAS_GROUPNL_SEED]];
    const int32_t table = plan[KERAS_GROUPNL_TABLE];
    const int32_t v = table < 0 ? u : tables[(table << 8) + u + 128];
    const int32_t y = (v * plan[KERAS_GROUPNL_MUL] + plan[KERAS_GROUPNL_ADD]) >>
                      plan[KERAS_GROUPNL_SHIFT];
    out[j] = (int8_t)clamp_s32(y, low, high);
  }
}

static void channel_tables(const int8_t* unit, const int8_t* tables,
                           const int32_t* plan, int32_t filters, int8_t* out) {
  for (int32_t j = 0; j < filters; ++j, plan += KERAS_GROUPNL_PLAN_COLUMNS) {
    out[j] = tables[(j << 8) + unit[plan[KERAS_GROUPNL_SEED]] + 128];
  }
}

int keras_groupnl_tail_s8(const int8_t* x, int32_t pixels, int32_t seeds,
                          const int8_t* tables, const int32_t* plan,
                          int32_t filters, const int32_t* header,
                          int8_t* unit, int8_t* out) {
  const int32_t zero_point = header[0];
  const int32_t mode = header[3];
  if (mode != KERAS_GROUPNL_NLF_TABLES && mode != KERAS_GROUPNL_CHANNEL_TABLES) {
    return -1;
  }
  for (int32_t p = 0; p < pixels; ++p, x += seeds, out += filters) {
    unit_vector(x, seeds, zero_point, unit);
    if (mode == KERAS_GROUPNL_NLF_TABLES) {
      nlf_tables(unit, tables, plan, filters, header[1], header[2], out);
    } else {
      channel_tables(unit, tables, plan, filters, out);
    }
  }
  return 0;
}
