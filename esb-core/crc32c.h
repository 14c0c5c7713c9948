/* crc32c.h - CRC-32C (Castagnoli), as used by the log record format.
 * Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at
 * run time), a slicing-by-8 table otherwise. Thread-safe. */
#ifndef ESB_CRC32C_H
#define ESB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend crc (start with 0) over n bytes at p; returns the new CRC.
 * esb_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t esb_crc32c(uint32_t crc, const void *p, size_t n);
/* The portable implementation alone (for tests that compare both). */
uint32_t esb_crc32c_sw(uint32_t crc, const void *p, size_t n);

#endif
