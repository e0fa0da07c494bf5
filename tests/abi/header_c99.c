/* Compiles every public ABI header as C99 with -Wall -Wextra -pedantic -Werror, and checks that
 * the generated FERRUM_<FAMILY>_SLOTS lists name every slot of each table, in table order. */
#include <stddef.h>

#include <ferrum/ferrum.h>
#include <ferrum/ferrum_base.h>
#include <ferrum/ferrum_ops.h>
#include <ferrum/ferrum_plugin.h>

/* The generated declarations of every slot function compile (declared, never defined). */
FERRUM_MEMORY_SLOTS(FERRUM_SLOT_DECL)
FERRUM_DENSE_SLOTS(FERRUM_SLOT_DECL)
FERRUM_COLLECTIVE_SLOTS(FERRUM_SLOT_DECL)

static int bad;
static size_t next_offset;

/* Walks one family's list: each slot must sit right after the previous one, and the list must
 * end where the table ends. */
#define SLOT_AT(table, op) \
  if (offsetof(table, op) != next_offset) bad = 1; \
  next_offset += sizeof(void*);
#define CHECK_FAMILY(table, LIST)  \
  next_offset = sizeof(uint64_t);  \
  LIST                             \
  if (next_offset != sizeof(table)) bad = 1;

#define S_MEMORY(op) SLOT_AT(ferrum_memory_table, op)
#define S_CONTEXT(op) SLOT_AT(ferrum_context_table, op)
#define S_GRAPH(op) SLOT_AT(ferrum_graph_table, op)
#define S_DENSE(op) SLOT_AT(ferrum_dense_table, op)
#define S_ATTENTION(op) SLOT_AT(ferrum_attention_table, op)
#define S_PAGED_KV(op) SLOT_AT(ferrum_paged_kv_table, op)
#define S_QUANT_KV(op) SLOT_AT(ferrum_quant_kv_table, op)
#define S_QUANT_MATMUL(op) SLOT_AT(ferrum_quant_matmul_table, op)
#define S_MOE(op) SLOT_AT(ferrum_moe_table, op)
#define S_MLA(op) SLOT_AT(ferrum_mla_table, op)
#define S_COLLECTIVE(op) SLOT_AT(ferrum_collective_table, op)

int main(void) {
  ferrum_rms_norm_args a = {0};
  a.struct_size = sizeof a;
  CHECK_FAMILY(ferrum_memory_table, FERRUM_MEMORY_SLOTS(S_MEMORY))
  CHECK_FAMILY(ferrum_context_table, FERRUM_CONTEXT_SLOTS(S_CONTEXT))
  CHECK_FAMILY(ferrum_graph_table, FERRUM_GRAPH_SLOTS(S_GRAPH))
  CHECK_FAMILY(ferrum_dense_table, FERRUM_DENSE_SLOTS(S_DENSE))
  CHECK_FAMILY(ferrum_attention_table, FERRUM_ATTENTION_SLOTS(S_ATTENTION))
  CHECK_FAMILY(ferrum_paged_kv_table, FERRUM_PAGED_KV_SLOTS(S_PAGED_KV))
  CHECK_FAMILY(ferrum_quant_kv_table, FERRUM_QUANT_KV_SLOTS(S_QUANT_KV))
  CHECK_FAMILY(ferrum_quant_matmul_table, FERRUM_QUANT_MATMUL_SLOTS(S_QUANT_MATMUL))
  CHECK_FAMILY(ferrum_moe_table, FERRUM_MOE_SLOTS(S_MOE))
  CHECK_FAMILY(ferrum_mla_table, FERRUM_MLA_SLOTS(S_MLA))
  CHECK_FAMILY(ferrum_collective_table, FERRUM_COLLECTIVE_SLOTS(S_COLLECTIVE))
  if (bad) return 2;
  return a.struct_size == FERRUM_RMS_NORM_ARGS_SIZE_V1_0 ? 0 : 1;
}
