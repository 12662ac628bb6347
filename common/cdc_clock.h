/* cdc_clock.h: the two clocks both binaries read, in milliseconds: a
 * monotonic one for deadlines and intervals, the wall clock for ts_ms. */
#ifndef PGCDC_CDC_CLOCK_H
#define PGCDC_CDC_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC: never jumps, so deadlines survive a clock change. */
int64_t cdc_clock_mono_ms(void);
/* CLOCK_REALTIME: milliseconds since the Unix epoch. */
int64_t cdc_clock_wall_ms(void);

#endif
