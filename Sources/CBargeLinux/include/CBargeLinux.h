// Linux calls that Swift's Glibc module does not import.
//
// <sys/xattr.h> is not part of the Glibc module map, and struct ucred / accept4 need _GNU_SOURCE. Each wrapper
// is prefixed CBargeLinux_ and says why it exists.
#ifndef CBARGELINUX_H
#define CBARGELINUX_H

#include <sys/types.h>
#include <spawn.h>

// The payload bytes a TCP socket has received and had acknowledged (struct tcp_info's tcpi_bytes_received and
// tcpi_bytes_acked, Linux 4.1): glibc's <netinet/tcp.h> has an older struct tcp_info without them. 0, or -1 with
// errno.
int CBargeLinux_tcp_bytes(int fd, unsigned long long *received, unsigned long long *acked);

/// Whether a process has the open file `fd` (read-only) open for writing: 1 yes, 0 no, -1 unknown (the caller is not
/// the file's owner and lacks CAP_LEASE, or leases are off). Tried with a read lease, released at once.
int CBargeLinux_is_open_for_writing(int fd);

/// Renames `from` (in directory `from_directory`) to `to` (in `to_directory`) unless `to` exists: 0 or the errno
/// (EEXIST: taken).
/// Sets the TCP congestion control of socket `fd` (TCP_CONGESTION): 0 or the errno (ENOENT: the kernel has no such
/// algorithm; EPERM: not allowed to this process).
int CBargeLinux_set_congestion_control(int fd, const char *name);

/// Caps the bytes a TCP socket holds unsent (TCP_NOTSENT_LOWAT, Linux 3.12): 0 or the errno.
int CBargeLinux_set_notsent_lowat(int fd, int bytes);

int CBargeLinux_rename_noreplace(int from_directory, const char *from, int to_directory, const char *to);

// posix_spawn_file_actions_addclosefrom_np (glibc 2.34) is not imported by the Glibc module: closes every descriptor
// from `from` up in the spawned child, at once, with no race against descriptors opened meanwhile.
int CBargeLinux_spawn_close_from(posix_spawn_file_actions_t *actions, int from);

// <sys/xattr.h> is not imported by Swift's Glibc module.
ssize_t CBargeLinux_fgetxattr(int fd, const char *name, void *value, size_t size);
int CBargeLinux_fsetxattr(int fd, const char *name, const void *value, size_t size);
int CBargeLinux_fremovexattr(int fd, const char *name);

// sync_file_range and syncfs need _GNU_SOURCE, which Swift's Glibc module does not define.
// Starts writeback of a written range without waiting, so a later fsync has little left to do.
int CBargeLinux_start_writeback(int fd, off_t offset, off_t length);
// Waits until a range whose writeback was started is on disk, then drops it from the page cache
// (sync_file_range with WAIT_BEFORE | WRITE | WAIT_AFTER, then POSIX_FADV_DONTNEED). Not a durability point: the
// file's metadata still needs fsync. 0, or -1 with errno when the write-back failed. That report is the only one:
// the wait consumes the descriptor's write-back error, and a later fsync on it returns 0, so the caller must keep
// it.
int CBargeLinux_drop_written(int fd, off_t offset, off_t length);
// Flushes the whole file system holding fd: one call makes a batch of files durable.
int CBargeLinux_syncfs(int fd);
// Names the calling thread for the kernel (`top -H`, `ps -L`, perf): at most 15 bytes are kept. 0 or an errno.
int CBargeLinux_name_this_thread(const char *name);
// The type (statfs f_type, a magic number such as 0xEF53 for ext2/3/4) of the file system holding path; 0 when it
// cannot be told. <sys/vfs.h> is not imported by Swift's Glibc module.
unsigned long CBargeLinux_file_system_type(const char *path);
// fallocate with FALLOC_FL_KEEP_SIZE (needs _GNU_SOURCE): reserves the blocks of a range in one allocation without
// changing the file's size. 0, or -1 with errno (EOPNOTSUPP where the file system cannot).
int CBargeLinux_reserve(int fd, off_t offset, off_t length);

// Starts a hook: fork, then in the child drop supplementary groups and take gid/uid (when change_identity is
// set), start a new session, close every descriptor above stderr, and execve path with argv and envp (no shell, no PATH search). Only
// async-signal-safe calls run between fork and execve, as a multi-threaded parent requires. Returns the child's
// pid, or -1 with errno.
pid_t CBargeLinux_spawn_as(const char *path, char *const argv[], char *const envp[], uid_t uid, gid_t gid,
                           int change_identity);

// malloc_trim (<malloc.h>, not in the Glibc module): returns freed heap memory in every arena to the system.
int CBargeLinux_malloc_trim(void);

// Fixed malloc thresholds for a long-running process (mallopt): blocks of 512 KiB and more are mapped on their
// own, and free memory above 1 MiB at the top of any heap is given back. Fixed values turn off glibc's dynamic
// thresholds, which grow after a large block is freed until a heap's freed top is never returned. Not 256 KiB:
// libcurl reallocates each transfer's 256 KiB receive buffer, which was then mapped and unmapped per file (a
// burst of 2,000 small files took 8-25 % longer). A heap grows, and keeps when trimmed, 4 MiB at a time: a burst of
// transfers then reuses its pages instead of giving them back and faulting them in again after each trim (a burst of
// 2,000 small files made 5,100-6,200 page faults with the default pad, 3,500-3,700 with this; each costs a trip to
// the hypervisor on a VM).
void CBargeLinux_tune_malloc(void);

// Raises the soft limit on open files to the hard one (systemd starts services with 1,024 soft, 524,288 hard, and
// asks programs that need more, and never call select(), to raise it themselves): the engine keeps a received file
// open from its last byte until it is placed, up to a few hundred per engine thread while batches gather. Programs
// started by CBargeLinux_spawn_as get the limit back as it was. Returns the new soft limit, or -1 (unlimited, or it
// could not be read or set).
long CBargeLinux_raise_descriptor_limit(void);

// A new regular file without a name in the directory `dirfd` (O_TMPFILE, read-write, close-on-exec); -1 with errno
// where the file system cannot make one.
int CBargeLinux_open_unnamed(int dirfd, unsigned int mode);

// Gives the open file `fd` (made by CBargeLinux_open_unnamed) the name `name` in `dirfd`, never replacing what is
// there: linkat with AT_EMPTY_PATH, else through /proc/self/fd. 0, or -1 with errno (EEXIST: the name is taken).
int CBargeLinux_link_open_file(int fd, int dirfd, const char *name);

// Whether the user `uid` (primary group `gid`, with the supplementary groups the user database gives that user)
// may create a file in `directory` and, when `name` is not NULL and names an entry there, replace that entry (a
// sticky directory keeps other users' files). Checked by trying: on a thread of its own, which takes those ids for
// file access only (setfsuid/setfsgid and setgroups through the raw system calls, which change the calling
// thread alone; glibc's setgroups would change every thread), opens an unnamed file in the directory and lets it
// go. Swift cannot start such a thread with a raw identity, and no other thread's identity ever changes. Blocks
// for a user database look-up: call it off the cooperative pool. 0, or an errno (EACCES, EPERM, ENOENT, ...).
int CBargeLinux_may_create_as(const char *directory, const char *name, uid_t uid, gid_t gid);

// The peer of a connected Unix domain socket (SO_PEERCRED's struct ucred, which needs _GNU_SOURCE).
typedef struct {
    pid_t pid;
    uid_t uid;
    gid_t gid;
} CBargeLinux_ucred;

// libFuzzer's driver (in the toolchain's libclang_rt.fuzzer, linked only by -sanitize=fuzzer): barge-fuzz's main
// hands it the arguments and the function it calls with each input (SwiftPM links an executable's own main, so
// libFuzzer's cannot be the entry). Declared only: nothing else refers to it.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*test_one_input)(const unsigned char *data, size_t size));

#endif
