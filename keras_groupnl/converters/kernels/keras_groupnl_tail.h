/* keras-groupnl: the fused GroupNL tail for microcontrollers.
 *
 * One call computes everything a GroupNL layer does after its seed
 * convolution (L2 normalisation, the sinusoid tables, the folded
 * BatchNorm and ReLU / ReLU6) for int8 tensors. The arithmetic is defined
 * in keras_groupnl/converters/_fused.py, whose NumPy reference gives the
 * same bytes. Plain C99; do not compile with -ffast-math (it changes the
 * float32 square root and division the normalisation relies on). Right
 * shifts of negative int32 values must be arithmetic (floor), as on every
 * Arm and x86 compiler (C99 leaves it to the implementation).
 */
#ifndef KERAS_GROUPNL_TAIL_H_
#define KERAS_GROUPNL_TAIL_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Rows of the int32 channel plan `(5, filters)`: one field per row, one
 * column per output channel. */
enum {
  KERAS_GROUPNL_SEED = 0,   /* the seed channel the output comes from */
  KERAS_GROUPNL_TABLE = 1,  /* its table, or -1 for the unit vector */
  KERAS_GROUPNL_MUL = 2,    /* A */
  KERAS_GROUPNL_ADD = 3,    /* B (rounding included) */
  KERAS_GROUPNL_SHIFT = 4,  /* S */
  KERAS_GROUPNL_PLAN_ROWS = 5
};

/* Modes (header[3]). */
enum {
  KERAS_GROUPNL_NLF_TABLES = 0,     /* one table per NLF, BatchNorm per channel */
  KERAS_GROUPNL_CHANNEL_TABLES = 1  /* one table per output channel */
};

/* The most seed maps a call normalises per pixel (the int32 sum of
 * squares and the int16 differences are bounded by it). */
#define KERAS_GROUPNL_MAX_SEEDS 1024

/* Checks a header once, before any call: a known mode, an int8 output
 * range, and an input of `in_channels` that sums to at most
 * KERAS_GROUPNL_MAX_SEEDS seed maps whose differences fit int16 and whose
 * sum of squares fits int32.
 * Returns 0, or -1. */
int keras_groupnl_tail_check_header(const int32_t* header,
                                    int32_t in_channels);

/* Checks a channel plan once, before any call: every seed channel and
 * table in range; in mode 0 the first `seeds` channels are the unit vector
 * itself, (c, -1, A, B, S), as the converter writes them (the kernel relies
 * on it), and every channel's requantisation stays in int32
 * (128 |A| + |B| < 2^31, 0 <= S <= 31); in mode 1 channel j reads table j.
 * Returns 0, or -1. */
int keras_groupnl_tail_check_plan(const int32_t* plan, int32_t filters,
                                  int32_t seeds, int32_t num_tables,
                                  int32_t mode);

/* Computes `pixels` output vectors of `filters` int8 channels from as many
 * input vectors of `in_channels` int8 values. `header` is {zero point of
 * x, output min, output max, mode, group_in, multiplier}: the input holds
 * `in_channels / group_in` seed maps, each the sum of `group_in` input
 * channels (1: the input is the seed maps). `tables` holds 256 int8 values
 * per table; `diff` (int16) and `index` (bytes) are scratch memory of one
 * entry per seed map. The plan must have passed
 * keras_groupnl_tail_check_plan. Returns 0, or -1 for a bad header. */
int keras_groupnl_tail_s8(const int8_t* x, int32_t pixels,
                          int32_t in_channels, const int8_t* tables,
                          const int32_t* plan, int32_t filters,
                          const int32_t* header, int16_t* diff,
                          uint8_t* index, int8_t* out);

#ifdef __cplusplus
}
#endif

#endif /* KERAS_GROUPNL_TAIL_H_ */
