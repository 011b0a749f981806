import BargeCore
import Foundation

/// The text of `barge status`: a header with the agent's view, the invalid manifests, and one row per job.
enum StatusTable {
    static func render(_ report: StatusReport) -> String {
        let agent = report.agent
        var text = "agent pid \(agent.pid), up \(duration(agent.now - agent.startedAt)); network: \(agent.network); "
        text += "transfers \(agent.running)/\(agent.maxTransfers) (\(agent.maxPerHost) per host); "
        text += "global rate \(agent.globalRate)"
        if let wake = agent.nextWake { text += "; next wake in \(duration(wake - agent.now))" }
        text += "\n"
        let invalid = report.manifests.filter { $0.state != "valid" }
        text += "manifests: \(report.manifests.count) in \(agent.manifestDirectory)"
        text += invalid.isEmpty ? "\n" : ", \(invalid.count) invalid\n"
        if let problem = agent.manifestDirectoryProblem {
            text += "  cannot read the manifest directory: \(problem)\n"
            text += "  every job is kept as it was; the directory is read again every few seconds\n"
        }
        for manifest in invalid {
            var running = manifest.runningLastGoodVersion ? " (its last good version keeps running)" : ""
            if manifest.runningLastGoodVersion, let stored = manifest.lastGoodVersionStoredAt {
                running = " (its last good version, stored \(duration(agent.now - stored)) ago, keeps running)"
            }
            text += "  \(manifest.id): invalid\(running)\n"
            for error in manifest.errors.prefix(5) { text += "    \(error)\n" }
        }
        guard !report.jobs.isEmpty else { return text + "no jobs\n" }
        var rows = [["ID", "STATE", "PROGRESS", "RATE", "ETA", "MANIFEST", "FILE", "REASON"]]
        for job in report.jobs {
            rows.append([
                String(job.id),
                job.state + (job.userSuspended && job.state != "suspended" ? " (suspended)" : ""),
                progress(job),
                job.bytesPerSecond.map { ByteCount(UInt64($0)).humanReadable + "/s" } ?? "",
                job.eta.map(duration) ?? "",
                job.manifest ?? "(get)",
                job.direction == "upload" ? "\(job.destination) → \(URLRules.host(of: job.url))" : job.destination,
                job.reason + (job.limit.map { "; limit \($0)" } ?? ""),
            ])
        }
        let widths = (0..<rows[0].count - 1).map { column in rows.map { $0[column].count }.max()! }
        for row in rows {
            var line = ""
            for (column, cell) in row.enumerated() {
                line +=
                    column < widths.count
                    ? cell.padding(toLength: widths[column] + 2, withPad: " ", startingAt: 0) : cell
            }
            text += line + "\n"
        }
        for job in report.jobs {
            guard let reply = job.reply else { continue }
            // A server's words: control characters (a terminal's escapes) are shown, not obeyed.
            let shown = reply.unicodeScalars.map { scalar in
                scalar.value < 0x20 && scalar != "\n" || scalar.value == 0x7f || (0x80..<0xa0).contains(scalar.value)
                    ? "\\u{\(String(scalar.value, radix: 16))}" : String(scalar)
            }.joined()
            text += "job \(job.id) reply: \(shown)\n"
        }
        return text
    }

    static func progress(_ job: JobStatus) -> String {
        guard let total = job.total, total > 0 else { return job.bytes > 0 ? ByteCount(job.bytes).humanReadable : "" }
        let percent = Int((Double(job.bytes) / Double(total) * 100).rounded(.down))
        return "\(ByteCount(job.bytes).humanReadable) / \(ByteCount(total).humanReadable) \(percent)%"
    }

    static func duration(_ seconds: Double) -> String {
        TimeSpan(seconds: Int64(max(0, seconds).rounded())).description
    }
}
