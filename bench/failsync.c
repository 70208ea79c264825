/* Failing-storage emulation for the fault drills (bench/drills.py).
 *
 * While the file named by FAILSYNC_FLAG exists, calls on file descriptors whose
 * path starts with FAILSYNC_PREFIX fail the way a broken or full disk fails:
 *   FAILSYNC_MODE=sync  (default) fsync/fdatasync/sync_file_range -> EIO
 *   FAILSYNC_MODE=write write/pwrite/writev/pwritev/ftruncate/fallocate -> ENOSPC
 *   FAILSYNC_MODE=both  both of the above
 * Remove the flag file and the same process works again: storage "recovers".
 * Everything else (sockets, pipes, other folders) is never touched.
 *
 * Build: gcc -O2 -shared -fPIC -o failsync.so failsync.c -ldl
 * Use:   LD_PRELOAD=failsync.so FAILSYNC_FLAG=/tmp/fail FAILSYNC_PREFIX=/data python app.py
 * bench/drills.py builds it on demand (failsync_env()).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int mode_bits(void) { /* 1 = sync, 2 = write */
    static int cached = -1;
    if (cached < 0) {
        const char *m = getenv("FAILSYNC_MODE");
        if (!m || !*m || strcmp(m, "sync") == 0) cached = 1;
        else if (strcmp(m, "write") == 0) cached = 2;
        else if (strcmp(m, "both") == 0) cached = 3;
        else cached = 1;
    }
    return cached;
}

static int failing(int fd, int bit) {
    if (!(mode_bits() & bit)) return 0;
    const char *flag = getenv("FAILSYNC_FLAG");
    if (!flag || !*flag) return 0;
    static int (*real_access)(const char *, int);
    if (!real_access) real_access = (int (*)(const char *, int))dlsym(RTLD_NEXT, "access");
    int saved = errno;
    int on = real_access(flag, F_OK) == 0;
    errno = saved;
    if (!on) return 0;
    const char *prefix = getenv("FAILSYNC_PREFIX");
    if (!prefix || !*prefix) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    errno = saved;
    if (n <= 0) return 0;
    path[n] = 0;
    return strncmp(path, prefix, strlen(prefix)) == 0;
}

#define REAL(name) static __typeof__(&name) real_##name; \
    if (!real_##name) real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

int fsync(int fd) {
    REAL(fsync);
    if (failing(fd, 1)) { errno = EIO; return -1; }
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    if (failing(fd, 1)) { errno = EIO; return -1; }
    return real_fdatasync(fd);
}

int sync_file_range(int fd, off_t off, off_t n, unsigned int flags) {
    REAL(sync_file_range);
    if (failing(fd, 1)) { errno = EIO; return -1; }
    return real_sync_file_range(fd, off, n, flags);
}

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(write);
    if (failing(fd, 2)) { errno = ENOSPC; return -1; }
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite);
    if (failing(fd, 2)) { errno = ENOSPC; return -1; }
    return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite64);
    if (failing(fd, 2)) { errno = ENOSPC; return -1; }
    return real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL(writev);
    if (failing(fd, 2)) { errno = ENOSPC; return -1; }
    return real_writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    REAL(pwritev);
    if (failing(fd, 2)) { errno = ENOSPC; return -1; }
    return real_pwritev(fd, iov, cnt, off);
}

int ftruncate(int fd, off_t len) {
    REAL(ftruncate);
    if (failing(fd, 2)) { errno = ENOSPC; return -1; }
    return real_ftruncate(fd, len);
}

int fallocate(int fd, int mode, off_t off, off_t len) {
    REAL(fallocate);
    if (failing(fd, 2)) { errno = ENOSPC; return -1; }
    return real_fallocate(fd, mode, off, len);
}

int posix_fallocate(int fd, off_t off, off_t len) {
    REAL(posix_fallocate);
    if (failing(fd, 2)) return ENOSPC;
    return real_posix_fallocate(fd, off, len);
}
