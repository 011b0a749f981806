import Foundation
import Glibc
import Logging
import Testing

@testable import BargeAgent

/// The agent's log lines, without I/O: the journal's priority prefixes, metadata and escaping.
@Suite("Agent log lines")
struct AgentLogTests {
    /// For the journal, each level gets syslog's priority as a `<N>` prefix and no time stamp (journald adds its
    /// own); elsewhere, the time and the level lead.
    @Test func theJournalGetsPrioritiesAndATerminalGetsTimes() {
        let expected: [(Logger.Level, Int)] = [
            (.trace, 7), (.debug, 7), (.info, 6), (.notice, 5), (.warning, 4), (.error, 3), (.critical, 2),
        ]
        for (level, priority) in expected {
            let line = AgentLogHandler.line("stopping", level: level, metadata: [:], forJournal: true)
            #expect(line == "<\(priority)>stopping\n")
        }
        let now = Date(timeIntervalSince1970: 1_796_641_086)
        let line = AgentLogHandler.line("stopping", level: .warning, metadata: [:], forJournal: false, now: now)
        #expect(line == "2026-12-07T10:58:06Z warning stopping\n")
    }

    /// Metadata follows the message as `key=value`, sorted; a value with a space, quote or equals sign is quoted; a
    /// line break never splits one event into two lines.
    @Test func metadataFollowsAndOneEventIsOneLine() {
        let line = AgentLogHandler.line(
            "not found:\nsecond line",
            level: .error,
            metadata: [
                "job": "12", "manifest": "10 models", "host": "example.com", "uplink": "wlan0", "note": "a=\"b\"",
            ],
            forJournal: true
        )
        #expect(
            line
                == #"<3>not found:\nsecond line host=example.com job=12 manifest="10 models" note="a=\"b\"" uplink=wlan0"#
                + "\n"
        )
    }

    /// A URL in a logged reason keeps its scheme and authority only: its path and query may carry a token.
    @Test func urlsLoseTheirPathsAndQueries() {
        #expect(
            Log.withoutURLPaths("not found: https://bucket.example.com:8443/a/b.bin?X-Amz-Signature=abc (HTTP 404)")
                == "not found: https://bucket.example.com:8443/… (HTTP 404)"
        )
        #expect(Log.withoutURLPaths("cannot connect to http://10.0.0.5:80") == "cannot connect to http://10.0.0.5:80")
        #expect(Log.withoutURLPaths("(sftp://[::1]:22/srv/x) and ftp://h/p") == "(sftp://[::1]:22/…) and ftp://h/…")
        #expect(Log.withoutURLPaths("no URL here: 404") == "no URL here: 404")
    }

    /// `$JOURNAL_STREAM` counts only when it names standard error itself.
    @Test func theJournalStreamMustBeStandardError() {
        var status = stat()
        #expect(fstat(2, &status) == 0)
        let own = "\(status.st_dev):\(status.st_ino)"
        #expect(AgentLogHandler.standardErrorIsTheJournal(environment: ["JOURNAL_STREAM": own]))
        #expect(!AgentLogHandler.standardErrorIsTheJournal(environment: ["JOURNAL_STREAM": "\(status.st_dev):1"]))
        #expect(!AgentLogHandler.standardErrorIsTheJournal(environment: ["JOURNAL_STREAM": "nonsense"]))
        #expect(!AgentLogHandler.standardErrorIsTheJournal(environment: [:]))
    }
}
