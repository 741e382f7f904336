/*
 * crc32c.h - CRC-32C (Castagnoli), as iSCSI, ext4 and Kafka's record batches use.
 *
 * The SSE4.2 crc32 instruction when the CPU has it (checked once at run time),
 * else a table-driven slice-by-8. Thread-safe.
 */
#ifndef RC_CRC32C_H
#define RC_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) with p[0..len). */
uint32_t rc_crc32c(uint32_t crc, const void *p, size_t len);

/* The portable slice-by-8 path, whatever the CPU (for tests). */
uint32_t rc_crc32c_sw(uint32_t crc, const void *p, size_t len);

#endif
