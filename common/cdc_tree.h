/* cdc_tree.h: yajl trees of validated JSON text, built without yajl's
 * parser, and the arena a consumer puts a batch of them into. No I/O. */
#ifndef PGCDC_CDC_TREE_H
#define PGCDC_CDC_TREE_H

#include <stddef.h>

#include <yajl/yajl_tree.h>

/* An arena for decoded trees: a consumer decoding a batch of events puts
 * all their trees into one, allocated by bumping a pointer through large
 * chunks, and frees them together with cdc_arena_reset() once the batch
 * is done (per-node malloc and free were half of the consumer's time).
 * Chunks are kept for the next batch, up to a bound. Not thread-safe. */
typedef struct cdc_arena cdc_arena;
cdc_arena *cdc_arena_new(void);
/* Frees every tree in the arena at once; trees decoded into it must not be
 * used any more (their cdc_decoded_event_free() is still allowed). */
void cdc_arena_reset(cdc_arena *a);
void cdc_arena_free(cdc_arena *a);
/* Bytes the arena holds (in use and kept). */
size_t cdc_arena_size(const cdc_arena *a);

/* The tree of json[0..len), which cdc_json_validate() must have accepted
 * (nothing is checked again), laid out as yajl_tree_parse lays it out. In
 * `arena` when it is not NULL, else malloc'd node by node so that
 * yajl_tree_free() frees it. NULL when memory runs out. */
yajl_val cdc_tree_build(cdc_arena *arena, const char *json, size_t len);

#endif
