// Sanitizer builds only: OpenVINO's TBB dlopen()s libtbbbind with RTLD_DEEPBIND, which the
// AddressSanitizer runtime refuses (google/sanitizers#611) by aborting the process. This dlopen()
// comes first in symbol lookup (linked into the executable, or LD_PRELOADed before libasan), drops
// that one flag and calls the next dlopen (the sanitizer's interceptor, then libc's).
#define _GNU_SOURCE
#include <dlfcn.h>

void* dlopen(const char* file, int flags) {
  static void* (*next)(const char*, int) = 0;
  if (!next) next = (void* (*)(const char*, int))dlsym(RTLD_NEXT, "dlopen");
  return next(file, flags & ~RTLD_DEEPBIND);
}
