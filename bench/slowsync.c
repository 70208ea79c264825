/* Slow-storage emulation: add FSYNC_DELAY_US microseconds to every fsync/fdatasync.
 *
 * A DuckDB commit is one write() + one fdatasync() of the WAL, so this models the
 * durable-flush round trip of a network disk (not slow reads or bandwidth).
 * Build: gcc -O2 -shared -fPIC -o slowsync.so slowsync.c -ldl
 * Use:   FSYNC_DELAY_US=30000 LD_PRELOAD=/path/slowsync.so python ...
 * bench/slowsync.py builds it on demand and returns that environment.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <errno.h>

static long delay_us(void) {
    static long cached = -1;
    if (cached < 0) {
        const char *s = getenv("FSYNC_DELAY_US");
        long v = s ? strtol(s, NULL, 10) : 0;
        cached = v > 0 ? v : 0;
    }
    return cached;
}

static void slow(void) {
    long us = delay_us();
    if (us <= 0) return;
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    int saved = errno;
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
    errno = saved;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    slow();
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    slow();
    return real(fd);
}
