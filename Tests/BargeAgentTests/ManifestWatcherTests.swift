import Foundation
import Synchronization
import Testing

@testable import BargeAgent

/// The drop-in directory's watcher against the real inotify: what it reports, and that it follows a directory
/// replaced along with its parent.
@Suite("Manifest watcher")
struct ManifestWatcherTests {
    /// Counts the watcher's callbacks.
    final class Changes: Sendable {
        let count = Mutex(0)

        /// Waits until more than `seen` callbacks came, at most `timeout` seconds; returns whether they did.
        func more(than seen: Int, timeout: Double = 15) async -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if self.count.withLock({ $0 }) > seen { return true }
                try? await Task.sleep(for: .milliseconds(10))
            }
            return false
        }

        var now: Int { self.count.withLock { $0 } }
    }

    let root: String

    init() throws {
        var template = Array("/tmp/barge-watch-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
        self.root = String(cString: made)
    }

    func write(_ path: String) throws {
        try "version: 1\n".write(toFile: path, atomically: false, encoding: .utf8)
    }

    /// A configuration tool that swaps the whole parent (`/etc/barge` renamed away, a new one renamed in) leaves
    /// the old directory's watch on the old inode: the swap itself is reported, and the new directory is watched.
    @Test func aParentReplacedByARenameIsFollowed() async throws {
        defer { try? FileManager.default.removeItem(atPath: self.root) }
        let parent = self.root + "/etc"
        try FileManager.default.createDirectory(atPath: parent + "/manifests.d", withIntermediateDirectories: true)
        let changes = Changes()
        let watcher = try ManifestWatcher(directory: parent + "/manifests.d") {
            changes.count.withLock { $0 += 1 }
        }
        defer { watcher.cancel() }
        try self.write(parent + "/manifests.d/a.yaml")
        #expect(await changes.more(than: 0))

        try FileManager.default.createDirectory(
            atPath: self.root + "/new/manifests.d",
            withIntermediateDirectories: true
        )
        let beforeSwap = changes.now
        #expect(rename(parent, self.root + "/old") == 0)
        #expect(rename(self.root + "/new", parent) == 0)
        #expect(await changes.more(than: beforeSwap), "the swapped parent was not reported")

        let beforeWrite = changes.now
        try self.write(parent + "/manifests.d/b.yaml")
        #expect(await changes.more(than: beforeWrite), "a manifest in the new directory was not seen")
    }
}
