/* The generated accessors of fields appended in a later minor (abi/include/ferrum/ferrum_args_*.h),
 * compiled as strict C99: a struct of an older caller (struct_size = the 1.0 size, in memory that
 * ends there) reads as the registry default; a struct whose struct_size covers the field reads the
 * field; a partly covering struct_size reads the default. The bytes beyond a short struct_size are
 * poisoned, so an accessor that read them would return the poison. Run under ASan, the exact-size
 * heap copy also catches a read past the 1.0 struct. */
#include <ferrum/ferrum_plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define EXPECT(cond)                                              \
  do {                                                            \
    if (!(cond)) {                                                \
      fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                 \
    }                                                             \
  } while (0)

int main(void) {
  ferrum_read_typed_args full;
  void* short_copy;
  uint64_t size;

  /* The released sizes: 1.0 unchanged, 1.1 appended 8 bytes, the current one is 1.1's. */
  EXPECT(FERRUM_READ_TYPED_ARGS_SIZE_V1_0 == 40);
  EXPECT(FERRUM_READ_TYPED_ARGS_SIZE_V1_1 == 48);
  EXPECT(FERRUM_READ_TYPED_ARGS_SIZE == sizeof(ferrum_read_typed_args));
  EXPECT(offsetof(ferrum_read_typed_args, src_offset) == FERRUM_READ_TYPED_ARGS_SIZE_V1_0);
  EXPECT(FERRUM_CONTEXT_TABLE_SIZE_V1_0 == 136);
  EXPECT(FERRUM_CONTEXT_TABLE_SIZE_V1_1 == 192); /* query_attribute + the six event slots */
  EXPECT(FERRUM_MEMORY_TABLE_SIZE_V1_1 == 128);  /* wrap_external, buffer_device_address */
  EXPECT(FERRUM_NEW_CONTEXT_ARGS_SIZE_V1_0 == 32);
  EXPECT(FERRUM_NEW_CONTEXT_ARGS_SIZE_V1_1 == 40);
  EXPECT(offsetof(ferrum_new_context_args, external_stream) == FERRUM_NEW_CONTEXT_ARGS_SIZE_V1_0);
  EXPECT(FERRUM_OP_COUNT_V1_0 == 102);
  EXPECT(FERRUM_ABI_VERSION_MINOR >= 1);

  /* A 1.1 caller: the field is read. */
  memset(&full, 0, sizeof full);
  full.struct_size = sizeof full;
  full.len = 3;
  full.src_offset = 12345;
  EXPECT(ferrum_read_typed_args_src_offset(&full) == 12345);

  /* The same memory with a 1.0 struct_size: the poisoned field is not covered -> default 0. */
  memset(&full, 0xA5, sizeof full);
  full.struct_size = FERRUM_READ_TYPED_ARGS_SIZE_V1_0;
  EXPECT(full.src_offset != 0); /* the poison is there */
  EXPECT(ferrum_read_typed_args_src_offset(&full) == 0);

  /* struct_size covering half the field: still the default. */
  full.struct_size = FERRUM_READ_TYPED_ARGS_SIZE_V1_0 + 4;
  EXPECT(ferrum_read_typed_args_src_offset(&full) == 0);

  /* Every size from the 1.0 size up to (not including) the covering one gives the default; the
   * covering one and larger (a newer caller) give the field. */
  memset(&full, 0, sizeof full);
  full.src_offset = 7;
  for (size = FERRUM_READ_TYPED_ARGS_SIZE_V1_0; size <= FERRUM_READ_TYPED_ARGS_SIZE + 16; ++size) {
    full.struct_size = size;
    EXPECT(ferrum_read_typed_args_src_offset(&full) == (size >= FERRUM_READ_TYPED_ARGS_SIZE_V1_1 ? 7u : 0u));
  }

  /* A real 1.0 caller's struct: exactly FERRUM_READ_TYPED_ARGS_SIZE_V1_0 bytes of heap memory
   * (filled from a full struct; the accessor may read struct_size only). */
  memset(&full, 0, sizeof full);
  full.struct_size = FERRUM_READ_TYPED_ARGS_SIZE_V1_0;
  full.len = 4;
  short_copy = malloc(FERRUM_READ_TYPED_ARGS_SIZE_V1_0);
  if (!short_copy) return 2;
  memcpy(short_copy, &full, FERRUM_READ_TYPED_ARGS_SIZE_V1_0);
  EXPECT(ferrum_read_typed_args_src_offset((const ferrum_read_typed_args*)short_copy) == 0);
  free(short_copy);

  /* new_context's external_stream (1.1): a 1.0 caller's 32-byte struct reads as 0 (its own stream). */
  {
    ferrum_new_context_args nc;
    void* short_nc;
    memset(&nc, 0xA5, sizeof nc);
    nc.struct_size = sizeof nc;
    EXPECT(ferrum_new_context_args_external_stream(&nc) != 0);
    nc.struct_size = FERRUM_NEW_CONTEXT_ARGS_SIZE_V1_0;
    EXPECT(ferrum_new_context_args_external_stream(&nc) == 0);
    short_nc = malloc(FERRUM_NEW_CONTEXT_ARGS_SIZE_V1_0);
    if (!short_nc) return 2;
    memcpy(short_nc, &nc, FERRUM_NEW_CONTEXT_ARGS_SIZE_V1_0);
    EXPECT(ferrum_new_context_args_external_stream((const ferrum_new_context_args*)short_nc) == 0);
    free(short_nc);
  }

  /* load_quant's act_precision (1.2): a 1.1 caller's 56-byte struct (the 1.0 size) reads as
   * FERRUM_QUANT_ACT_EXACT, whatever lies beyond it; a 1.2 caller's field is read. */
  {
    ferrum_load_quant_args lq;
    void* short_lq;
    EXPECT(FERRUM_ABI_VERSION_MINOR >= 2);
    EXPECT(FERRUM_LOAD_QUANT_ARGS_SIZE_V1_0 == 56);
    EXPECT(FERRUM_LOAD_QUANT_ARGS_SIZE_V1_2 == 64);
    EXPECT(FERRUM_LOAD_QUANT_ARGS_SIZE == sizeof(ferrum_load_quant_args));
    EXPECT(offsetof(ferrum_load_quant_args, act_precision) == FERRUM_LOAD_QUANT_ARGS_SIZE_V1_0);
    EXPECT(FERRUM_QUANT_ACT_EXACT == 0 && FERRUM_QUANT_ACT_Q8 == 1);
    memset(&lq, 0xA5, sizeof lq);
    lq.struct_size = sizeof lq;
    lq.act_precision = FERRUM_QUANT_ACT_Q8;
    EXPECT(ferrum_load_quant_args_act_precision(&lq) == FERRUM_QUANT_ACT_Q8);
    lq.struct_size = FERRUM_LOAD_QUANT_ARGS_SIZE_V1_0;
    EXPECT(ferrum_load_quant_args_act_precision(&lq) == FERRUM_QUANT_ACT_EXACT);
    lq.struct_size = FERRUM_LOAD_QUANT_ARGS_SIZE_V1_0 + 2; /* half the field: still the default */
    EXPECT(ferrum_load_quant_args_act_precision(&lq) == FERRUM_QUANT_ACT_EXACT);
    lq.struct_size = FERRUM_LOAD_QUANT_ARGS_SIZE_V1_0;
    short_lq = malloc(FERRUM_LOAD_QUANT_ARGS_SIZE_V1_0);
    if (!short_lq) return 2;
    memcpy(short_lq, &lq, FERRUM_LOAD_QUANT_ARGS_SIZE_V1_0);
    EXPECT(ferrum_load_quant_args_act_precision((const ferrum_load_quant_args*)short_lq) == FERRUM_QUANT_ACT_EXACT);
    free(short_lq);
  }

  if (failures) fprintf(stderr, "%d failure(s)\n", failures);
  return failures ? 1 : 0;
}
