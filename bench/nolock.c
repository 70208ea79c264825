/* LD_PRELOAD shim: flock() as on a file system without locks (some FUSE mounts, such as a
 * Storage Bucket may be): every call fails with ENOLCK. fcntl() locks (DuckDB's own) are untouched.
 * Built by bench/slowsync.py's build(source=...); used by the DATA_DIR lock tests and drills. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/file.h>

int flock(int fd, int operation) {
    (void)fd;
    (void)operation;
    errno = ENOLCK;
    return -1;
}
