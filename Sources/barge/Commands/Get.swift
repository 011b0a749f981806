import ArgumentParser
import BargeCore
import BargeLoader
import BargeTransfer
import Dispatch
import Foundation
import Glibc

/// `barge get URL DEST`: one download in the foreground, resumable, verified, with progress.
struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download one file in the foreground (resumable, verified, atomic).",
        discussion: """
            Writes into a hidden partial file beside DEST and renames it into place once complete and verified.
            Ctrl-C keeps the partial; running the same command again resumes it. Transient errors (network,
            5xx, 429) are retried with back-off; permanent ones (404, 403, TLS, hash mismatch) stop at once.
            When an agent runs (its control socket answers), the download becomes one of its jobs instead: it
            survives this terminal, and `barge status ID` follows it; --wait follows it here to the end. --foreground
            (or a --header) always downloads in this process.
            Exit status: 0 done, 1 failed, 2 usage, 130 interrupted.
            """
    )

    @OptionGroup var options: GlobalOptions

    @Argument(help: "The source URL.")
    var url: String

    @Argument(help: "The destination file (or an existing directory: the URL's file name is used).")
    var destination: String

    @Option(help: "The expected SHA-256 (64 hex digits).")
    var sha256: String?

    @Option(name: .customLong("max-rate"), help: "A rate cap, e.g. 5MiB/s or 20Mbit/s.")
    var maxRate: String?

    @Option(name: .customLong("header"), help: "An extra request header, 'Name: value' (repeatable).")
    var headers: [String] = []

    @Option(help: "How many transient failures in a row without progress are retried.")
    var retries = 5

    @Flag(help: "Download in this process even when an agent runs.")
    var foreground = false

    @Flag(help: "With an agent: follow the job until it ends (exit 0 when complete, 1 when it failed).")
    var wait = false

    func run() async throws {
        let config: AgentConfig
        do {
            config = try ConfigLoader.load(path: self.options.config).config
        } catch {
            throw ValidationError("cannot read the config \(error)")
        }
        var request = try self.request(config: config)
        if !self.foreground, self.headers.isEmpty, let client = Self.runningAgent(config) {
            try await self.submit(request, to: client)
            return
        }
        request.stallTimeout = 30
        let engine = TransferEngine()
        let progress = ProgressPrinter(destination: request.destination)
        let interrupted = InterruptFlag()
        var attempt = 0
        // The most the partial held after any attempt: progress is going past it (an attempt that starts over
        // from zero and fails at the same place again made none).
        var best: UInt64?
        while true {
            let handle = engine.start(request)
            let signals = interrupted.watch { engine.cancel(handle.id) }
            var outcome: TransferOutcome = .cancelled
            var reached: UInt64 = 0
            for await event in handle.events {
                switch event {
                case .started(let url, let offset):
                    progress.started(url: url, offset: offset)
                    if best == nil { best = offset }
                    reached = max(reached, offset)
                case .progress(let value):
                    progress.update(value)
                    reached = max(reached, value.received)
                case .checkpoint(let offset):
                    reached = max(reached, offset)
                case .finished(let result):
                    outcome = result
                case .response, .uploadSession:
                    break
                }
            }
            signals.cancel()
            progress.finish()
            switch outcome {
            case .completed(let done):
                print("\(request.destination): \(ByteCount(done.size).humanReadable), sha256 \(done.sha256 ?? "-")")
                return
            case .notModified:
                print("\(request.destination): not modified")
                return
            case .cancelled:
                FileHandle.standardError.write(Data("interrupted; run the same command again to resume\n".utf8))
                throw ExitCode(130)
            case .failed(let failure):
                // Retries count attempts without progress: one that moved the offset forward starts the count again.
                attempt = reached > (best ?? .max) ? 1 : attempt + 1
                best = max(best ?? 0, reached)
                guard failure.kind == .transient, attempt <= self.retries else {
                    FileHandle.standardError.write(Data("barge: \(failure.reason)\n".utf8))
                    throw ExitCode(1)
                }
                let schedule = RetrySchedule(minimumDelay: TimeSpan(seconds: 1), maximumDelay: .minutes(1))
                let delay = schedule.delay(
                    attempt: attempt,
                    retryAfter: failure.retryAfter.map { TimeSpan(seconds: Int64($0.rounded(.up))) },
                    jitter: Double.random(in: 0..<1)
                )
                FileHandle.standardError.write(
                    Data(
                        "barge: \(failure.reason); retry \(attempt) of \(self.retries) in \(Int(delay.rounded()))s\n"
                            .utf8
                    )
                )
                try await Task.sleep(for: .seconds(delay))
                if interrupted.isSet { throw ExitCode(130) }
            }
        }
    }

    /// The agent's client when one answers on the config's control socket.
    static func runningAgent(_ config: AgentConfig) -> ControlClient? {
        guard FileManager.default.fileExists(atPath: config.controlSocket) else { return nil }
        let client = ControlClient(socketPath: config.controlSocket)
        guard let reply = try? client.send("GET", "/v1/agent", timeout: 5), reply.status == 200 else { return nil }
        return client
    }

    /// Hands the download to the agent as a one-shot job; with --wait, follows it to the end.
    private func submit(_ request: TransferRequest, to client: ControlClient) async throws {
        let job = NewJobRequest(
            url: self.url,
            destination: request.destination,
            sha256: request.sha256,
            maxRate: request.maxRate.rate?.bytesPerSecond
        )
        let reply = try client.send("POST", "/v1/jobs", body: try JSONEncoder().encode(job))
        guard let answer = try? JSONDecoder().decode(CommandReply.self, from: reply.body), answer.ok,
            let id = answer.jobs.first
        else {
            let message =
                (try? JSONDecoder().decode(CommandReply.self, from: reply.body))?.message ?? "status \(reply.status)"
            FileHandle.standardError.write(Data("barge: the agent refused the job: \(message)\n".utf8))
            throw ExitCode(1)
        }
        guard self.wait else {
            print("job \(id): \(request.destination) (follow it with `barge status \(id)`, or add --wait)")
            return
        }
        var last = ""
        while true {
            let status = try client.send("GET", "/v1/jobs/\(id)")
            guard status.status == 200, let current = try? JSONDecoder().decode(JobStatus.self, from: status.body)
            else {
                FileHandle.standardError.write(Data("barge: job \(id) is gone\n".utf8))
                throw ExitCode(1)
            }
            let line = "job \(id): \(current.state): \(current.reason)"
            if line != last {
                FileHandle.standardError.write(Data((line + "\n").utf8))
                last = line
            }
            switch current.state {
            case "complete", "up-to-date":
                print("\(request.destination): \(ByteCount(current.bytes).humanReadable)")
                return
            case "error", "cancelled":
                throw ExitCode(1)
            default:
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    private func request(config: AgentConfig) throws -> TransferRequest {
        if let problem = URLRules.problem(with: self.url, allowedSchemes: config.allowedSchemes) {
            throw ValidationError(problem)
        }
        var path = PathRules.resolve(self.destination, against: FileManager.default.currentDirectoryPath)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            let name = URL(string: self.url)?.lastPathComponent ?? ""
            guard !name.isEmpty, name != "/" else {
                throw ValidationError("\(self.destination) is a directory and the URL names no file; give a file name")
            }
            path += "/" + name
        }
        guard case .success(let destination) = PathRules.normalize(path) else {
            throw ValidationError("'\(self.destination)' is not a usable file path")
        }
        var request = TransferRequest(sources: [self.url], destination: destination)
        request.allowedSchemes = config.allowedSchemes
        request.proxy = config.proxy
        request.sshKnownHosts = config.sshKnownHosts
        request.reportsSHA256 = true  // printed when done
        if let sha256 = self.sha256 {
            guard sha256.count == 64, sha256.allSatisfy(\.isHexDigit) else {
                throw ValidationError("--sha256 must be 64 hexadecimal digits")
            }
            request.sha256 = sha256.lowercased()
        }
        if let maxRate = self.maxRate {
            do { request.maxRate = try RateLimit(parsing: maxRate) } catch {
                throw ValidationError("--max-rate: \(error)")
            }
        }
        for header in self.headers {
            guard let colon = header.firstIndex(of: ":") else {
                throw ValidationError("--header takes 'Name: value', found '\(header)'")
            }
            let name = String(header[..<colon]).trimmingCharacters(in: .whitespaces)
            let value = String(header[header.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
            request.headers.append(HTTPHeader(name: name, value: value))
        }
        return request
    }
}

/// Remembers a Ctrl-C (SIGINT or SIGTERM) and runs an action on it.
final class InterruptFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var set = false

    var isSet: Bool { self.lock.withLock { self.set } }

    /// Calls `action` on SIGINT or SIGTERM until the returned watch is cancelled.
    func watch(_ action: @escaping @Sendable () -> Void) -> SignalWatch {
        let handler: @Sendable () -> Void = { [self] in
            self.lock.withLock { self.set = true }
            action()
        }
        return SignalWatch(signals: [SIGINT, SIGTERM], handler: handler)
    }
}

/// Dispatch sources for some signals, whose default action is held off while the watch lasts.
final class SignalWatch {
    private let sources: [any DispatchSourceSignal]

    init(signals: [Int32], handler: @escaping @Sendable () -> Void) {
        self.sources = signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler(handler: handler)
            source.resume()
            return source
        }
    }

    func cancel() { self.sources.forEach { $0.cancel() } }
}
