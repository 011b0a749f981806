import BargeCore
import BargeTestSupport
import BargeTransfer
import CBargeLinux
import Foundation
import Testing

/// Runs a transfer to its end and returns what happened.
func fetch(
    _ request: TransferRequest,
    engine: TransferEngine = TransferEngine()
) async -> (
    outcome: TransferOutcome, events: [TransferEvent]
) {
    let handle = engine.start(request)
    var events: [TransferEvent] = []
    for await event in handle.events { events.append(event) }
    guard case .finished(let outcome) = events.last else { return (.cancelled, events) }
    return (outcome, events)
}

extension TransferOutcome {
    var completed: CompletedTransfer? {
        if case .completed(let done) = self { return done }
        return nil
    }

    var failure: TransferFailure? {
        if case .failed(let failure) = self { return failure }
        return nil
    }
}

func sha256Hex(_ bytes: [UInt8]) -> String { TestContent.sha256(bytes) }

/// The names in a directory (dotfiles included).
func listing(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
}

/// Bytes of a file in the page cache (`mincore` over a read-only mapping; nothing is read); nil when it cannot be
/// told.
func residentBytes(_ path: String) -> Int? {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var info = stat()
    guard fstat(descriptor, &info) == 0 else { return nil }
    let size = Int(info.st_size)
    guard size > 0 else { return 0 }
    guard let mapping = mmap(nil, size, PROT_READ, MAP_SHARED, descriptor, 0), mapping != MAP_FAILED else {
        return nil
    }
    defer { munmap(mapping, size) }
    let page = sysconf(Int32(_SC_PAGESIZE))
    var pages = [UInt8](repeating: 0, count: (size + page - 1) / page)
    guard mincore(mapping, size, &pages) == 0 else { return nil }
    return pages.reduce(0) { $0 + Int($1 & 1) } * page
}

/// Whether the scratch directories (under /tmp) are on a file system whose page cache a file leaves as barge
/// drops it: a disk file system (tmpfs keeps its files in those pages; overlayfs passes the calls to a lower
/// layer's cache, which the tests cannot see).
let scratchHasPageCache: Bool = {
    // ext2/3/4, xfs, btrfs, f2fs
    [0xEF53, 0x5846_5342, 0x9123_683E, 0xF2F5_2010].contains(CBargeLinux_file_system_type("/tmp"))
}()
