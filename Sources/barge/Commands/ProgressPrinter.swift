import BargeCore
import BargeTransfer
import Foundation
import Glibc

/// Shows a download's progress on standard error: a redrawn bar on a terminal, a plain line every few seconds
/// otherwise (logs, pipes).
final class ProgressPrinter {
    private let destination: String
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private var lastLineAt = 0.0
    private var drewBar = false

    init(destination: String) {
        self.destination = destination
    }

    func started(url: String, offset: UInt64) {
        let resuming = offset > 0 ? ", resuming at \(ByteCount(offset).humanReadable)" : ""
        self.write("\(url) → \(self.destination)\(resuming)\n")
    }

    func update(_ progress: TransferProgress) {
        let now = Date().timeIntervalSince1970
        if self.isTerminal {
            self.write("\r" + Self.bar(progress) + "\u{1B}[K")
            self.drewBar = true
        } else if now - self.lastLineAt >= 2 {
            self.lastLineAt = now
            self.write(Self.line(progress) + "\n")
        }
    }

    func finish() {
        if self.drewBar {
            self.write("\n")
            self.drewBar = false
        }
    }

    /// `[=========>          ]  45%  12.3 MiB / 27 MiB  5.1 MiB/s  ETA 3s`
    static func bar(_ progress: TransferProgress) -> String {
        guard let total = progress.total, total > 0 else { return self.line(progress) }
        let fraction = min(1, Double(progress.received) / Double(total))
        let width = 24
        let filled = Int(fraction * Double(width))
        let arrow = filled < width ? ">" : ""
        let bar = String(repeating: "=", count: max(0, filled - (arrow.isEmpty ? 0 : 1))) + arrow
        let padded = bar + String(repeating: " ", count: max(0, width - bar.count))
        return "[\(padded)] \(self.line(progress))"
    }

    /// `45%  12.3 MiB / 27 MiB  5.1 MiB/s  ETA 3s`
    static func line(_ progress: TransferProgress) -> String {
        let received = ByteCount(progress.received).humanReadable
        let rate = "\(ByteCount(UInt64(progress.bytesPerSecond)).humanReadable)/s"
        guard let total = progress.total, total > 0 else { return "\(received)  \(rate)" }
        let percent = Int(Double(progress.received) / Double(total) * 100)
        var text = "\(percent)%  \(received) / \(ByteCount(total).humanReadable)  \(rate)"
        if progress.bytesPerSecond > 0, total > progress.received {
            text += "  ETA \(self.duration(Double(total - progress.received) / progress.bytesPerSecond))"
        }
        return text
    }

    static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded(.up))
        if whole < 60 { return "\(whole)s" }
        if whole < 3600 { return "\(whole / 60)m\(whole % 60)s" }
        return "\(whole / 3600)h\((whole % 3600) / 60)m"
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
