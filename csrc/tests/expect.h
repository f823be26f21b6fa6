// A tiny assertion macro shared by the C++ unit tests (no test framework: nothing to download).
#pragma once

#include <cstdio>

static int g_failures = 0;
#define EXPECT(cond, ...)                                 \
  do {                                                   \
    if (!(cond)) {                                       \
      ++g_failures;                                      \
      if (g_failures < 20) {                             \
        std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
        std::printf(__VA_ARGS__);                        \
        std::printf("\n");                               \
      }                                                  \
    }                                                    \
  } while (0)
