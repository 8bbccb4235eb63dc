// Function multiversioning for the hot row kernels: an AVX2 clone picked at load time on CPUs
// that have it, baseline SSE2 otherwise (wheels stay portable).
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(VCMTOOL_NO_CLONES)
#define VCM_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VCM_CLONES
#endif
