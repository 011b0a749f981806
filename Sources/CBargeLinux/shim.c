#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>
#include <sys/xattr.h>
#include "CBargeLinux.h"

ssize_t CBargeLinux_fgetxattr(int fd, const char *name, void *value, size_t size) {
    return fgetxattr(fd, name, value, size);
}

int CBargeLinux_fsetxattr(int fd, const char *name, const void *value, size_t size) {
    return fsetxattr(fd, name, value, size, 0);
}

int CBargeLinux_fremovexattr(int fd, const char *name) {
    return fremovexattr(fd, name);
}

int CBargeLinux_start_writeback(int fd, off_t offset, off_t length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}

int CBargeLinux_syncfs(int fd) {
    return syncfs(fd);
}
