// Sanitizer builds only: proves the sanitizers are live. ctest expects this to fail (WILL_FAIL);
// if it ever passes, the build is not instrumented and test-sanitize's "0 findings" means nothing.
#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char**) {
  char* p = static_cast<char*>(std::malloc(8));
  std::memset(p, 0, 8 + static_cast<std::size_t>(argc));  // argc >= 1: one byte past the end
  std::printf("%d\n", p[0]);
  std::free(p);
  return 0;
}
