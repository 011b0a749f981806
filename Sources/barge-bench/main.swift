// barge-bench: benchmarks that print figures; run by scripts/bench/*.sh, never by the test suite.
//
//   barge-bench manifests [--files N] [--entries-per-file N] [--runs N]
//
// Writes N manifest files into a scratch directory, then loads the directory as the agent does (list, trust
// check, parse, validate against real file-system facts, cross-manifest checks) and prints the time per run
// and the process's peak resident memory.
import BargeCore
import BargeLoader
import BargeStore
import BargeTransfer
import CBargeLinux
import Foundation
import Glibc

func option(_ name: String, default value: Int) -> Int {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count,
        let parsed = Int(arguments[index + 1])
    else { return value }
    return parsed
}

func peakResidentMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024  // ru_maxrss is in KiB on Linux
}

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// One manifest of `entries` downloads that uses most of the language, with unique destinations.
func manifestText(file: Int, entries: Int) -> String {
    var text = """
        version: 1
        description: Benchmark manifest \(file)
        defaults:
          priority: low
          network: unmetered
          refresh: 6h
          window: "mon-fri 22:00-06:00"
          retry: {min-delay: 30s, give-up-after: 14d}
          headers: {X-Fleet: bench}
        download:

        """
    for entry in 0..<entries {
        let hex = String(repeating: String(format: "%02x", (file * 31 + entry) % 256), count: 32)
        if entry % 4 == 0 {
            text += """
                  - mirrors: [https://a.example.com/f\(file)/e\(entry).bin, https://b.example.com/f\(file)/e\(entry).bin]
                    dest: /srv/bench/f\(file)/e\(entry).bin
                    sha256: \(hex)
                    size: \(entry + 1)MiB
                    max-rate: 5MiB/s

                """
        } else {
            text += """
                  - url: https://origin.example.com/data/f\(file)/e\(entry).parquet
                    dest: /srv/bench/f\(file)/e\(entry).parquet
                    sha256: \(hex)
                    priority: normal

                """
        }
    }
    return text
}

func benchmarkManifests() throws {
    let files = option("--files", default: 100)
    let entriesPerFile = option("--entries-per-file", default: 100)
    let runs = option("--runs", default: 5)
    var template = Array("/tmp/barge-bench-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
    let directory = String(cString: made)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var bytes = 0
    for file in 0..<files {
        let text = manifestText(file: file, entries: entriesPerFile)
        bytes += text.utf8.count
        try text.write(
            toFile: String(format: "%@/%03d-bench.yaml", directory, file),
            atomically: false,
            encoding: .utf8
        )
    }
    var config = AgentConfig.defaults(scope: .system)
    config.allowedRoots = ["/srv"]
    let loader = ManifestLoader(config: config)
    var times: [Double] = []
    var entries = 0
    for _ in 0..<runs {
        let start = monotonicSeconds()
        let parsed = try loader.load(paths: [directory])
        times.append(monotonicSeconds() - start)
        entries = parsed.reduce(0) { $0 + ($1.manifest?.entryCount ?? 0) }
        precondition(parsed.count == files && parsed.allSatisfy(\.isValid), "benchmark manifests must be valid")
    }
    times.sort()
    let median = times[times.count / 2]
    print("manifests: \(files) files, \(entries) entries, \(bytes / 1024) KiB of YAML, \(runs) runs")
    print(
        String(
            format: "  load+validate: median %.1f ms, min %.1f ms, max %.1f ms (%.0f entries/s)",
            median * 1000,
            times.first! * 1000,
            times.last! * 1000,
            Double(entries) / median
        )
    )
    print(String(format: "  peak RSS: %.1f MiB", peakResidentMiB()))
    print("  target: well under 1 s for 10,000 entries in 100 files")
}

/// Downloads every `URL<TAB>DEST[<TAB>SHA256]` line of a list through one engine, all at once (the engine's
/// connection limits queue them), and exits non-zero if any failed. The transfer benchmark times this.
func downloadList(_ path: String, parallel: Int, threads: Int?) async throws {
    try await transferList(path, parallel: parallel, threads: threads) { fields in
        var request = TransferRequest(sources: [fields[0]], destination: fields[1])
        request.mayHaveEarlierPartial = false  // new files, as the agent's new jobs: no earlier partial to look for
        if fields.count > 2 { request.sha256 = fields[2] }
        return request
    }
}

/// Uploads every `SOURCE<TAB>URL` line of a list through one engine, all at once, with `uploadProtocol`, and exits
/// non-zero if any failed. The upload benchmark times this.
func uploadList(_ path: String, uploadProtocol: UploadEntry.UploadProtocol, parallel: Int) async throws {
    try await transferList(path, parallel: parallel, threads: nil) { fields in
        var request = TransferRequest(sources: [fields[1]], destination: fields[0])
        request.upload = UploadRequest(uploadProtocol: uploadProtocol)
        request.allowedSchemes = ["http", "https"]
        return request
    }
}

/// Starts a request for every tab-separated line of a list through one engine, and waits for all of them.
func transferList(
    _ path: String,
    parallel: Int,
    threads: Int?,
    request: ([String]) -> TransferRequest
) async throws {
    CBargeLinux_tune_malloc()  // the allocator and descriptor limit as the agent's process sets them
    _ = CBargeLinux_raise_descriptor_limit()
    let text = try String(contentsOfFile: path, encoding: .utf8)
    var limits = Concurrency()
    limits.total = parallel
    limits.perHost = parallel
    let engine = TransferEngine(limits: limits, threads: threads)
    let (reports, reporter) = engine.makeReportStream()
    var urls: [TransferID: String] = [:]
    // Split as bytes: the list's parsing is timed with the downloads.
    for line in text.utf8.split(separator: UInt8(ascii: "\n")) {
        let fields = line.split(separator: UInt8(ascii: "\t")).map { String(decoding: $0, as: UTF8.self) }
        urls[engine.start(request(fields), reportingTo: reporter)] = fields[0]
    }
    var failures: [String] = []
    var remaining = urls.count
    if remaining == 0 { reporter.finish() }
    reading: for await batch in reports {
        for report in batch {
            guard case .finished(let outcome) = report.event else { continue }
            if case .failed(let failure) = outcome { failures.append("\(urls[report.id] ?? "?"): \(failure)") }
            remaining -= 1
            if remaining == 0 { break reading }
        }
    }
    for failure in failures { print(failure) }
    await engine.shutdown()
    if !failures.isEmpty { exit(1) }
}

/// The pure reconciler on `entries` up-to-date jobs (and a few running and waiting ones): median plan time.
func benchmarkReconcile() {
    let entries = option("--entries", default: 10_000)
    let runs = option("--runs", default: 5)
    let now = Date().timeIntervalSince1970
    var views: [JobView] = []
    views.reserveCapacity(entries)
    for index in 0..<entries {
        var policy = TransferPolicy()
        policy.priority = Priority.allCases[index % 4]
        var record = JobRecord(id: Int64(index + 1))
        record.state = .upToDate
        record.reason = "fetched 1MiB; next check in 6h"
        record.dueAt = now + 3600 + Double(index)
        let spec = JobSpec(
            manifest: "m\(index / 100)",
            urls: ["https://origin.example.com/f\(index)"],
            destination: "/srv/bench/f\(index)",
            policy: policy
        )
        views.append(JobView(spec: spec, record: record, isRunning: false))
    }
    let facts = ReconcileFacts(now: LocalTime(epochSeconds: now))
    var times: [Double] = []
    for _ in 0..<runs {
        let start = monotonicSeconds()
        let plan = Reconciler.plan(views, facts: facts)
        times.append(monotonicSeconds() - start)
        precondition(plan.start.isEmpty && plan.wakeAt == now + 3600, "up-to-date jobs must wait for their due time")
    }
    times.sort()
    print(
        String(
            format: "reconcile: %d up-to-date jobs, median %.1f ms (min %.1f, max %.1f)",
            entries,
            times[times.count / 2] * 1000,
            times.first! * 1000,
            times.last! * 1000
        )
    )
}

/// Writes an agent's directory with `entries` mirrored (up-to-date) jobs: manifests, config, and a store seeded as
/// a long-running agent would have left it; scripts/bench/agent.sh then starts `barge agent` on it.
func prepareAgentState(_ directory: String) async throws {
    let entries = option("--entries", default: 10_000)
    let files = max(1, entries / 1000)
    let manifests = directory + "/manifests.d"
    try FileManager.default.createDirectory(atPath: manifests, withIntermediateDirectories: true)
    let now = Date().timeIntervalSince1970
    var inserts: [StoredJob] = []
    for file in 0..<files {
        var text = "version: 1\ndefaults: {refresh: 24h}\ndownload:\n"
        for entry in stride(from: file, to: entries, by: files) {
            let url = "https://origin.example.com/f\(file)/e\(entry).bin"
            let destination = "\(directory)/root/f\(file)/e\(entry).bin"
            text += "  - url: \(url)\n    dest: \(destination)\n"
            var policy = TransferPolicy()
            policy.refresh = .every(.hours(24))
            var record = JobRecord(id: 0)
            record.state = .upToDate
            record.dueAt = now + 86_400 + Double(entry)
            record.completedAt = now
            record.totalBytes = 1 << 20
            record.hasValidators = true
            record.reason = ""
            inserts.append(
                StoredJob(
                    spec: JobSpec(
                        manifest: String(format: "%03d-bench", file),
                        urls: [url],
                        destination: destination,
                        policy: policy
                    ),
                    record: record,
                    // As nginx sends them.
                    validators: MirrorValidators(
                        etag: "\"6752a3f1-\(String(entry, radix: 16))\"",
                        lastModified: "Thu, 26 Nov 2026 10:20:08 GMT",
                        contentSHA256: String(repeating: "a", count: 64)
                    )
                )
            )
        }
        try text.write(
            toFile: String(format: "%@/%03d-bench.yaml", manifests, file),
            atomically: false,
            encoding: .utf8
        )
    }
    try """
    manifests: \(manifests)
    state-dir: \(directory)/state
    control-socket: \(directory)/barge.sock
    allowed-roots: [\(directory)/root]

    """.write(toFile: directory + "/barge.yaml", atomically: false, encoding: .utf8)
    let store = try JobStore(directory: directory + "/state")
    var batch = JobStore.Batch()
    batch.inserts = inserts
    let ids = try await store.apply(batch).ids
    var update = JobStore.Batch()
    update.records = zip(ids, inserts).map { id, job in
        var record = job.record
        record.id = id
        return record
    }
    try await store.apply(update)
    print("agent state: \(entries) up-to-date jobs in \(files) manifests under \(directory)")
    print("a job in the agent's table: \(MemoryLayout<JobView>.stride) bytes")
}

switch CommandLine.arguments.dropFirst().first {
case "reconcile":
    benchmarkReconcile()
case "agent-state":
    guard CommandLine.arguments.count >= 3 else { exit(2) }
    try await prepareAgentState(CommandLine.arguments[2])
case "manifests":
    try benchmarkManifests()
case "download":
    guard CommandLine.arguments.count >= 3 else { exit(2) }
    try await downloadList(
        CommandLine.arguments[2],
        parallel: option("--parallel", default: 16),
        threads: CommandLine.arguments.contains("--threads") ? option("--threads", default: 1) : nil
    )
case "upload":
    guard CommandLine.arguments.count >= 3 else { exit(2) }
    let name = CommandLine.arguments.firstIndex(of: "--protocol").map { CommandLine.arguments[$0 + 1] } ?? "put"
    guard let uploadProtocol = UploadEntry.UploadProtocol(rawValue: name) else { exit(2) }
    try await uploadList(
        CommandLine.arguments[2],
        uploadProtocol: uploadProtocol,
        parallel: option("--parallel", default: 16)
    )
case "wait-files":
    guard CommandLine.arguments.count >= 5, let count = Int(CommandLine.arguments[3]) else { exit(2) }
    try waitForFiles(in: CommandLine.arguments[2], count: count, suffix: CommandLine.arguments[4])
default:
    print("usage: barge-bench manifests [--files N] [--entries-per-file N] [--runs N]")
    print("       barge-bench download LIST [--parallel N] [--threads N]")
    print("       barge-bench upload LIST [--protocol put|tus] [--parallel N]")
    print("       barge-bench reconcile [--entries N] [--runs N]")
    print("       barge-bench agent-state DIR [--entries N]")
    print("       barge-bench wait-files DIR COUNT SUFFIX")
    exit(2)
}
