import Foundation
import Glibc
public import Logging
import Synchronization

/// The agent's log (swift-log): one line per event on standard error, which systemd's journal collects, with the
/// event's metadata (`job=`, `manifest=`, `host=`, `uplink=` …) after the message. Never a secret: requests'
/// headers, credentials and URLs' paths and queries are not logged.
enum Log {
    /// The agent's logger; its level and output are set by ``AgentLogHandler/bootstrap(level:)`` (`--log-level`).
    static let logger = Logger(label: "barge")

    static func debug(_ message: @autoclosure () -> Logger.Message, _ metadata: Logger.Metadata = [:]) {
        Self.logger.debug(message(), metadata: metadata)
    }

    static func info(_ message: @autoclosure () -> Logger.Message, _ metadata: Logger.Metadata = [:]) {
        Self.logger.info(message(), metadata: metadata)
    }

    static func warning(_ message: @autoclosure () -> Logger.Message, _ metadata: Logger.Metadata = [:]) {
        Self.logger.warning(message(), metadata: metadata)
    }

    static func error(_ message: @autoclosure () -> Logger.Message, _ metadata: Logger.Metadata = [:]) {
        Self.logger.error(message(), metadata: metadata)
    }

    /// `text` with every URL cut to its scheme and authority (`https://host:port/…`): a URL's path and query may
    /// carry a token (a pre-signed URL), and the log is read by more people than the manifests.
    static func withoutURLPaths(_ text: String) -> String {
        text.replacing(#/([A-Za-z][A-Za-z0-9+.\-]*://[^/\s?#)]*)([^\s)]*)/#) { match in
            match.output.2.isEmpty ? String(match.output.1) : match.output.1 + "/…"
        }
    }

    static func critical(_ message: @autoclosure () -> Logger.Message, _ metadata: Logger.Metadata = [:]) {
        Self.logger.critical(message(), metadata: metadata)
    }
}

/// swift-log's handler for the agent: lines on standard error. Under systemd, with standard error connected to the
/// journal (`$JOURNAL_STREAM` names it), each line starts with its syslog priority (`<3>` error … `<7>` debug), which
/// journald takes as the entry's priority (`journalctl -p warning`) and strips; elsewhere each line starts with the
/// time and the level. Each line is one `write(2)`, so lines from several threads never interleave.
public struct AgentLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    /// Whether lines carry a `<N>` priority prefix for journald instead of a time stamp.
    let forJournal: Bool

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    /// A handler at `level`; `forJournal` as ``standardErrorIsTheJournal(environment:)`` tells.
    public init(level: Logger.Level, forJournal: Bool) {
        self.logLevel = level
        self.forJournal = forJournal
    }

    /// Makes every logger of the process write through this handler at `level`. Call once, before anything logs.
    public static func bootstrap(level: Logger.Level) {
        let journal = Self.standardErrorIsTheJournal()
        LoggingSystem.bootstrap { _ in AgentLogHandler(level: level, forJournal: journal) }
    }

    /// Whether standard error is the journal's stream: `$JOURNAL_STREAM` (`DEVICE:INODE`, set by systemd) names the
    /// very file descriptor 2 (not one inherited by a process whose output was redirected since).
    public static func standardErrorIsTheJournal(environment: [String: String]? = nil) -> Bool {
        guard let stream = (environment ?? ProcessInfo.processInfo.environment)["JOURNAL_STREAM"] else { return false }
        let parts = stream.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var status = stat()
        guard fstat(2, &status) == 0 else { return false }
        return UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode
    }

    /// syslog's priority for a level (journald's `PRIORITY=`).
    static func priority(of level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// One line: the message (line breaks escaped: one event is one line) and `key=value` metadata, sorted by key;
    /// a value with a space, a quote or an equals sign is quoted.
    static func line(
        _ message: Logger.Message,
        level: Logger.Level,
        metadata: Logger.Metadata,
        forJournal: Bool,
        now: Date = Date()
    ) -> String {
        var line = forJournal ? "<\(Self.priority(of: level))>" : "\(Self.timestamp(now)) \(level) "
        line += Self.escaped(message.description)
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            let text = Self.escaped("\(value)")
            let plain = !text.isEmpty && !text.contains { $0 == " " || $0 == "\"" || $0 == "=" }
            line += " \(key)=" + (plain ? text : "\"\(text.replacingOccurrences(of: "\"", with: "\\\""))\"")
        }
        return line + "\n"
    }

    private static func escaped(_ text: String) -> String {
        guard text.contains(where: { $0.isNewline || $0 == "\t" }) else { return text }
        return text.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
            .replacingOccurrences(of: "\t", with: "\\t")
    }

    /// `2026-12-07T11:07:41Z`.
    private static func timestamp(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func log(event: LogEvent) {
        var merged = self.metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let text = Self.line(event.message, level: event.level, metadata: merged, forJournal: self.forJournal)
        var bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + written, $0.count - written) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return }
            written += count
        }
    }
}
