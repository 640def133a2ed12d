/* The smallest useful program for the Free Agent demo: prints a greeting and where it was built. */
#include <stdio.h>

#ifndef HELLO_VERSION
#define HELLO_VERSION "dev"
#endif

int main(int argc, char **argv) {
  const char *who = argc > 1 ? argv[1] : "world";
  printf("hello, %s (hello %s, built %s %s)\n", who, HELLO_VERSION, __DATE__, __TIME__);
  return 0;
}
