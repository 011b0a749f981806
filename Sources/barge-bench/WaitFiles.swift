import CBargeLinux
import Foundation
import Glibc

/// `barge-bench wait-files DIR COUNT SUFFIX`: waits until DIR holds COUNT files named `*SUFFIX` (not hidden), then
/// prints the wall-clock instant it saw the last one (nanoseconds since 1970) and exits.
///
/// The burst benchmark's "all placed" time. Driven by inotify (a file is placed by a link or a rename), so the
/// waiting costs no CPU beside the agent it measures: a `find` every 10 ms took about a third of a core, which
/// a two-core machine takes from the agent.
func waitForFiles(in directory: String, count: Int, suffix: String) throws {
    let descriptor = inotify_init1(Int32(IN_CLOEXEC))
    guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    defer { close(descriptor) }
    // The watch first, then the listing: a file placed in between is in one or both, never in neither.
    guard inotify_add_watch(descriptor, directory, UInt32(IN_CREATE | IN_MOVED_TO)) >= 0 else {
        throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
    }
    var seen = Set<String>()
    func note(_ name: String) {
        if name.hasSuffix(suffix), !name.hasPrefix(".") { seen.insert(name) }
    }
    for name in try FileManager.default.contentsOfDirectory(atPath: directory) { note(name) }
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: MemoryLayout<inotify_event>.alignment)
    defer { buffer.deallocate() }
    while seen.count < count {
        let length = read(descriptor, buffer, 1 << 16)
        guard length > 0 else {
            if length < 0, errno == EINTR { continue }
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        var offset = 0
        while offset < length {
            let event = buffer.load(fromByteOffset: offset, as: inotify_event.self)
            let size = MemoryLayout<inotify_event>.size
            if event.len > 0 {
                note(String(cString: (buffer + offset + size).assumingMemoryBound(to: CChar.self)))
            }
            offset += size + Int(event.len)
        }
    }
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    print(Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec))
}
