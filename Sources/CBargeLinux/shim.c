#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/xattr.h>
#include <sys/vfs.h>
#include <grp.h>
#include <signal.h>
#include <malloc.h>
#include <stdio.h>
#include <errno.h>
#include <spawn.h>
#include <pthread.h>
#include <string.h>
#include <stdlib.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <netinet/in.h>
#include <stddef.h>
#include <linux/tcp.h>
#include "CBargeLinux.h"

int CBargeLinux_tcp_bytes(int fd, unsigned long long *received, unsigned long long *acked) {
    struct tcp_info info;
    socklen_t length = sizeof(info);
    memset(&info, 0, sizeof(info));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return -1;
    if (length < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(info.tcpi_bytes_received)) {
        errno = ENOPROTOOPT;
        return -1;
    }
    *received = info.tcpi_bytes_received;
    *acked = info.tcpi_bytes_acked;
    return 0;
}

int CBargeLinux_spawn_close_from(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

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

int CBargeLinux_drop_written(int fd, off_t offset, off_t length) {
    unsigned int flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
    if (sync_file_range(fd, offset, length, flags) != 0) return -1;
    (void)posix_fadvise(fd, offset, length, POSIX_FADV_DONTNEED);  // only a hint: a failure loses nothing
    return 0;
}

unsigned long CBargeLinux_file_system_type(const char *path) {
    struct statfs info;
    return statfs(path, &info) == 0 ? (unsigned long)info.f_type : 0;
}

int CBargeLinux_syncfs(int fd) {
    return syncfs(fd);
}

int CBargeLinux_reserve(int fd, off_t offset, off_t length) {
    return fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length);
}

// The limit on open files the process started with, given back to the programs it starts (hooks).
static struct rlimit inherited_descriptor_limit;
static volatile int descriptor_limit_raised;

long CBargeLinux_raise_descriptor_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return -1;
    if (limit.rlim_cur < limit.rlim_max) {
        struct rlimit raised = limit;
        raised.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &raised) != 0) return -1;
        if (!descriptor_limit_raised) inherited_descriptor_limit = limit;
        descriptor_limit_raised = 1;
        limit = raised;
    }
    return limit.rlim_cur == RLIM_INFINITY ? -1 : (long)limit.rlim_cur;
}

pid_t CBargeLinux_spawn_as(const char *path, char *const argv[], char *const envp[], uid_t uid, gid_t gid,
                           int change_identity) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    // The child: async-signal-safe calls only. Signals the agent ignores or blocks (it takes SIGTERM, SIGINT and
    // SIGHUP through its own handlers) would otherwise stay ignored in the hook.
    for (int number = 1; number < NSIG; number++) signal(number, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (change_identity) {
        if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(126);
    }
    setsid();
    struct rlimit descriptors;
    long open_files = getrlimit(RLIMIT_NOFILE, &descriptors) == 0 && descriptors.rlim_cur != RLIM_INFINITY
                          ? (long)descriptors.rlim_cur
                          : 65536;
    // A program that uses select() breaks with descriptors above 1,024: it gets the limit the agent started with.
    if (descriptor_limit_raised) setrlimit(RLIMIT_NOFILE, &inherited_descriptor_limit);
    // The agent's sockets, epoll sets and files are not the hook's business (and a hook holding one could keep a
    // client or a test waiting): close everything above stderr.
    if (close_range(3, ~0U, 0) != 0) {
        for (long fd = 3; fd < open_files; fd++) close((int)fd);
    }
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        if (devnull > 2) close(devnull);
    }
    execve(path, argv, envp);
    _exit(127);
}

int CBargeLinux_malloc_trim(void) { return malloc_trim(0); }

void CBargeLinux_tune_malloc(void) {
    mallopt(M_MMAP_THRESHOLD, 512 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
    mallopt(M_TOP_PAD, 4 * 1024 * 1024);
}


int CBargeLinux_open_unnamed(int dirfd, unsigned int mode) {
    return openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, (mode_t)mode);
}

int CBargeLinux_link_open_file(int fd, int dirfd, const char *name) {
    if (linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0) return 0;
    // Without CAP_DAC_READ_SEARCH, AT_EMPTY_PATH fails with ENOENT: go through the process's fd directory.
    if (errno != ENOENT && errno != EPERM && errno != EINVAL) return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, path, dirfd, name, AT_SYMLINK_FOLLOW);
}

int CBargeLinux_name_this_thread(const char *name) {
    char kept[16];
    strncpy(kept, name, sizeof kept - 1);
    kept[sizeof kept - 1] = 0;
    return pthread_setname_np(pthread_self(), kept);
}

_Static_assert(sizeof(struct ucred) == sizeof(CBargeLinux_ucred), "ucred layout");

struct may_create_check {
    const char *directory;
    const char *name;
    uid_t uid;
    gid_t gid;
    gid_t groups[256];
    int count;
    int result;
};

static void *may_create_thread(void *argument) {
    struct may_create_check *check = argument;
    // This thread's file-access identity only; it ends with the thread.
    if (syscall(SYS_setgroups, (size_t)check->count, check->groups) != 0) {
        check->result = errno;
        return NULL;
    }
    syscall(SYS_setfsgid, check->gid);
    syscall(SYS_setfsuid, check->uid);
    if ((uid_t)syscall(SYS_setfsuid, -1) != check->uid || (gid_t)syscall(SYS_setfsgid, -1) != check->gid) {
        check->result = EPERM;
        return NULL;
    }
    int fd = open(check->directory, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
    } else if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
        // No unnamed files on this file system (NFS, CIFS, FUSE): create a named one with the same identity and
        // remove it. Not faccessat: without faccessat2 (before Linux 5.8) it checks as the real uid, root.
        char probe[4096];
        int written = snprintf(probe, sizeof probe, "%s/.barge-access-XXXXXX", check->directory);
        if (written < 0 || (size_t)written >= sizeof probe) {
            check->result = ENAMETOOLONG;
            return NULL;
        }
        int made = mkostemp(probe, O_CLOEXEC);
        if (made < 0) {
            check->result = errno;
            return NULL;
        }
        unlink(probe);
        close(made);
    } else {
        check->result = errno;
        return NULL;
    }
    if (check->name != NULL) {
        struct stat directory, entry;
        if (stat(check->directory, &directory) != 0) {
            check->result = errno;
            return NULL;
        }
        int dirfd = open(check->directory, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
            check->result = errno;
            return NULL;
        }
        int found = fstatat(dirfd, check->name, &entry, AT_SYMLINK_NOFOLLOW);
        close(dirfd);
        if (found == 0 && (directory.st_mode & S_ISVTX) && entry.st_uid != check->uid
            && directory.st_uid != check->uid) {
            check->result = EPERM;
            return NULL;
        }
    }
    check->result = 0;
    return NULL;
}

int CBargeLinux_may_create_as(const char *directory, const char *name, uid_t uid, gid_t gid) {
    struct may_create_check check = {.directory = directory, .name = name, .uid = uid, .gid = gid, .result = EIO};
    check.groups[0] = gid;
    check.count = 1;
    struct passwd entry, *found = NULL;
    char buffer[4096];
    if (getpwuid_r(uid, &entry, buffer, sizeof buffer, &found) == 0 && found != NULL) {
        int count = 256;
        if (getgrouplist(found->pw_name, gid, check.groups, &count) >= 0) {
            check.count = count;
        } else {
            check.count = 256;  // more groups than fit: the first 256 (refusing is never wrong here)
        }
    }
    pthread_t thread;
    int started = pthread_create(&thread, NULL, may_create_thread, &check);
    if (started != 0) return started;
    pthread_join(thread, NULL);
    return check.result;
}

int CBargeLinux_is_open_for_writing(int fd) {
    // A read lease is granted only while no process has the file open for writing (fcntl(2), "Leases"); it is
    // released at once. EAGAIN: a writer has it open. Any other error (not the file's owner without CAP_LEASE,
    // leases disabled): unknown.
    if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
        (void)fcntl(fd, F_SETLEASE, F_UNLCK);
        return 0;
    }
    return errno == EAGAIN ? 1 : -1;
}

int CBargeLinux_rename_noreplace(int from_directory, const char *from, int to_directory, const char *to) {
    return renameat2(from_directory, from, to_directory, to, RENAME_NOREPLACE) == 0 ? 0 : errno;
}

int CBargeLinux_set_congestion_control(int fd, const char *name) {
    return setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, (socklen_t)strlen(name)) == 0 ? 0 : errno;
}

int CBargeLinux_set_notsent_lowat(int fd, int bytes) {
    return setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &bytes, sizeof(bytes)) == 0 ? 0 : errno;
}
