import Crypto
import Foundation
import Glibc

/// A temporary directory for one test, removed when the value is released.
public final class ScratchDirectory: Sendable {
    /// The directory's absolute path.
    public let path: String

    /// Makes a fresh directory under /tmp.
    public init() throws {
        var template = Array("/tmp/barge-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        self.path = String(cString: made)
    }

    /// Writes `text` to `name` (creating directories) with `mode`; returns the file's path.
    @discardableResult
    public func write(_ name: String, _ text: String, mode: UInt32 = 0o644) throws -> String {
        try self.write(name, bytes: Array(text.utf8), mode: mode)
    }

    /// Writes `bytes` to `name` (creating directories) with `mode`; returns the file's path.
    @discardableResult
    public func write(_ name: String, bytes: [UInt8], mode: UInt32 = 0o644) throws -> String {
        let file = self.path + "/" + name
        let directory = (file as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: file, contents: Data(bytes)) else { throw POSIXError(.EIO) }
        chmod(file, mode_t(mode))
        return file
    }

    /// The content of `name`, or nil when it does not exist.
    public func read(_ name: String) -> [UInt8]? {
        FileManager.default.contents(atPath: self.path + "/" + name).map(Array.init)
    }

    deinit { try? FileManager.default.removeItem(atPath: self.path) }
}

/// Deterministic pseudo-random content, so tests and the servers agree on bytes without storing them.
public enum TestContent {
    /// `count` bytes from a seeded generator (xorshift), different for each seed.
    public static func bytes(count: Int, seed: UInt64 = 1) -> [UInt8] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var result = [UInt8](repeating: 0, count: count)
        var index = 0
        while index < count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            var word = state
            for _ in 0..<8 where index < count {
                result[index] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                index += 1
            }
        }
        return result
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it right after).
public func freeLoopbackPort() throws -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { throw POSIXError(.EIO) }
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard bound == 0 else { throw POSIXError(.EADDRINUSE) }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Waits, polling with a deadline, until `condition` holds (never a bare sleep as synchronisation).
///
/// It polls on a thread of its own: a task's sleep can overrun by seconds while tests of other suites hold the
/// few cooperative threads (two on CI's 2 cores) in synchronous waits, so a condition that holds for a while
/// only, or a deadline of a second, would be missed by the test and not by the code under test (it happened
/// on CI); and a poll that blocked a cooperative thread would starve the other suites in turn. The conditions
/// are about other processes and files; the caller is suspended while they run.
public func eventually(timeout: Double = 10, _ condition: @escaping () -> Bool) async -> Bool {
    let poll = UncheckedSendable(value: condition)
    return await withCheckedContinuation { continuation in
        Thread {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if poll.value() {
                    continuation.resume(returning: true)
                    return
                }
                usleep(20_000)
            }
            continuation.resume(returning: poll.value())
        }.start()
    }
}

/// A value handed to another thread while its owner waits for that thread (see ``eventually(timeout:_:)``).
private struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
}

extension TestContent {
    /// The SHA-256 of `bytes`, lowercase hex.
    public static func sha256(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
        }.joined()
    }
}
