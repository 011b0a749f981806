# Sourced by the benchmarks: an ext4 file system made afresh for every run, on a loop device with direct I/O.
#
# On the machine's own file system the speed of creating files drifts with its history by more than the changes
# measured (ext4 without a journal scans past inodes freed in the last minutes for every new file), so a run can
# take each run's output on a new file system instead (as root).
#
#   freshfs_setup WORK SIZE_MIB    allocates WORK/fs.img once (not sparse) and attaches it; sets loop_device
#   freshfs_make MOUNTPOINT [OPTS] makes ext4 (mkfs.ext4 OPTS) on it anew and mounts it at MOUNTPOINT
#   freshfs_cleanup MOUNTPOINT     unmounts and detaches (safe to call when nothing was set up)

loop_device=""

freshfs_setup() {
    local work=$1 size=$2
    # Allocated once, and mkfs told not to discard it: each run writes to the same blocks of the machine's file
    # system instead of allocating them again.
    fallocate -l "${size}M" "$work/fs.img"
    loop_device=$(losetup -f --direct-io=on --show "$work/fs.img")
    [ "$(cat "/sys/block/${loop_device#/dev/}/loop/dio" 2>/dev/null)" = 1 ] ||
        echo "warning: $loop_device does not use direct I/O: its writes go through the page cache twice" >&2
}

freshfs_make() {
    local mountpoint=$1 options=${2:-}
    mountpoint -q "$mountpoint" && umount "$mountpoint"
    # Inode tables and journal written now, not by a kernel thread in the background during the runs.
    # shellcheck disable=SC2086 # the options are words
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0,nodiscard $options "$loop_device"
    mount "$loop_device" "$mountpoint"
}

freshfs_cleanup() {
    local mountpoint=$1
    [ -n "$loop_device" ] || return 0
    if mountpoint -q "$mountpoint"; then umount "$mountpoint" || umount -l "$mountpoint" || true; fi
    losetup -d "$loop_device" || true
}
