import ArgumentParser
import BargeAgent
import BargeCore
import BargeLoader
import BargeTransfer
import Foundation
import Glibc
import Logging

/// `barge agent`: the background agent in the foreground of its terminal (systemd runs it as a service).
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run the agent: mirror every manifest of the drop-in directory until stopped.",
        discussion: """
            Watches the manifest directory (inotify), keeps its state in SQLite under the state directory, and
            serves the control socket that `barge status` and the other commands use. SIGHUP reloads the
            manifests; SIGTERM and SIGINT stop gracefully (transfers checkpointed, exit status 0). Under systemd
            (Type=notify) it reports READY=1 and a one-line STATUS, and each log line carries its priority for the
            journal.
            """
    )

    @OptionGroup var options: GlobalOptions

    /// A log level, as `--log-level` takes it.
    enum LogLevel: String, ExpressibleByArgument, CaseIterable {
        case trace, debug, info, notice, warning, error, critical
    }

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The least severe events logged: trace, debug, info, notice, warning, error or critical.",
            discussion: "Default: info, or $BARGE_LOG_LEVEL when set.",
            valueName: "level"
        )
    )
    var logLevel: LogLevel?

    func run() async throws {
        let fromEnvironment = ProcessInfo.processInfo.environment["BARGE_LOG_LEVEL"].flatMap(LogLevel.init(rawValue:))
        let level = self.logLevel ?? fromEnvironment ?? .info
        AgentLogHandler.bootstrap(level: Logger.Level(rawValue: level.rawValue) ?? .info)
        let loaded: ParsedAgentConfig
        do {
            loaded = try ConfigLoader.load(path: self.options.config)
        } catch {
            throw ValidationError("cannot read the config \(error)")
        }
        if loaded.diagnostics.containsError {
            for diagnostic in loaded.diagnostics { FileHandle.standardError.write(Data("\(diagnostic)\n".utf8)) }
            throw ExitCode(1)
        }
        do {
            try await Agent.run(config: loaded.config, configPath: self.options.config)
        } catch {
            FileHandle.standardError.write(Data("barge agent: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// The running agent, found through the config's `control-socket`.
struct AgentConnection {
    let client: ControlClient
    let configPath: String?

    init(options: GlobalOptions) throws {
        let config: AgentConfig
        do {
            config = try ConfigLoader.load(path: options.config).config
        } catch {
            throw ValidationError("cannot read the config \(error)")
        }
        self.client = ControlClient(socketPath: config.controlSocket)
        self.configPath = options.config
    }

    /// Sends a request; a missing agent is reported with how to start one (exit status 1).
    func send(_ method: String, _ path: String, body: Data? = nil) throws -> (status: Int, body: Data) {
        do {
            return try self.client.send(method, path, body: body)
        } catch {
            throw self.unreachable(error)
        }
    }

    /// Says that the agent cannot be reached, with how to start one; the error to throw (exit status 1).
    private func unreachable(_ error: any Error) -> ExitCode {
        let start = self.configPath.map { "barge agent --config \($0)" } ?? "barge agent"
        FileHandle.standardError.write(
            Data("barge: \(error)\nIs the agent running? Start it with `\(start)` or `systemctl start barge`.\n".utf8)
        )
        return ExitCode(1)
    }

    func status() throws -> StatusReport {
        let reply = try self.send("GET", "/v1/status")
        guard reply.status == 200, let report = try? JSONDecoder().decode(StatusReport.self, from: reply.body) else {
            FileHandle.standardError.write(Data("barge: the agent answered \(reply.status) to /v1/status\n".utf8))
            throw ExitCode(1)
        }
        return report
    }

    /// One job's status (with an upload's reply); nil when the agent has no such job.
    func job(_ id: Int64) throws -> JobStatus? {
        let reply = try self.send("GET", "/v1/jobs/\(id)")
        guard reply.status == 200 else { return nil }
        return try? JSONDecoder().decode(JobStatus.self, from: reply.body)
    }

    /// Sends a command and prints its reply; a refused command exits 1.
    func command(_ path: String, body: Data? = nil) throws -> CommandReply {
        try self.decoded(self.send("POST", path, body: body), to: path)
    }

    /// Sends a command when an agent listens; nil when none does (no socket, or nothing accepts on it). An agent
    /// that listens but does not answer is an error, as for ``command(_:body:)``.
    func commandIfRunning(_ path: String, body: Data? = nil) throws -> CommandReply? {
        let reply: (status: Int, body: Data)
        do {
            reply = try self.client.send("POST", path, body: body)
        } catch  where error.nothingListens {
            return nil
        } catch {
            throw self.unreachable(error)
        }
        return try self.decoded(reply, to: path)
    }

    /// A command's reply; one that is not a reply, or a refusal, is said on standard error (exit status 1).
    private func decoded(_ reply: (status: Int, body: Data), to path: String) throws -> CommandReply {
        guard let decoded = try? JSONDecoder().decode(CommandReply.self, from: reply.body) else {
            FileHandle.standardError.write(Data("barge: the agent answered \(reply.status) to \(path)\n".utf8))
            throw ExitCode(1)
        }
        guard decoded.ok else {
            FileHandle.standardError.write(Data("barge: \(decoded.message)\n".utf8))
            throw ExitCode(1)
        }
        return decoded
    }
}

/// `barge status`: what the agent is doing and why.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the agent's jobs: state, reason, progress, rate and ETA.",
        discussion: "With a job id or a manifest name, only those jobs. --json prints the control API's answer."
    )

    @OptionGroup var options: GlobalOptions

    @Flag(help: "Print JSON (the control API's /v1/status).")
    var json = false

    @Argument(help: "A job id or a manifest name.")
    var selection: String?

    func run() throws {
        let connection = try AgentConnection(options: self.options)
        var report = try connection.status()
        if let selection {
            report.jobs = report.jobs.filter { String($0.id) == selection || $0.manifest == selection }
            // One upload: its server's reply too.
            if report.jobs.count == 1, report.jobs[0].direction == "upload", String(report.jobs[0].id) == selection,
                let single = try? connection.job(report.jobs[0].id)
            {
                report.jobs[0].reply = single.reply
            }
            report.manifests = report.manifests.filter {
                $0.id == selection || report.jobs.map(\.manifest).contains($0.id)
            }
        }
        if self.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(StatusTable.render(report), terminator: "")
        }
    }
}

/// `barge watch`: the status table, refreshed every second.
struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show `barge status` live, refreshed every second.")

    @OptionGroup var options: GlobalOptions

    @Option(help: "Seconds between refreshes.")
    var interval = 1.0

    func run() throws {
        let connection = try AgentConnection(options: self.options)
        let terminal = isatty(STDOUT_FILENO) == 1
        while true {
            let report = try connection.status()
            let screen = (terminal ? "\u{1B}[H\u{1B}[2J" : "") + StatusTable.render(report) + (terminal ? "" : "\n")
            FileHandle.standardOutput.write(Data(screen.utf8))
            usleep(useconds_t(max(0.1, self.interval) * 1_000_000))
        }
    }
}

/// Options of the job commands: job ids, or a whole manifest.
struct JobSelection: ParsableArguments {
    @Argument(help: "Job ids (see `barge status`).")
    var jobs: [Int64] = []

    @Option(help: "Every job of this manifest.")
    var manifest: String?

    func validate() throws {
        guard !self.jobs.isEmpty || self.manifest != nil else {
            throw ValidationError("name a job id or --manifest NAME")
        }
        guard self.jobs.isEmpty || self.manifest == nil else {
            throw ValidationError("give job ids or --manifest, not both")
        }
    }

    var paths: [String] {
        if let manifest { return ["/v1/manifests/\(manifest)"] }
        return self.jobs.map { "/v1/jobs/\($0)" }
    }
}

/// The shape of `barge suspend|resume|cancel|retry`.
protocol JobCommand: ParsableCommand {
    static var verb: String { get }
    var options: GlobalOptions { get }
    var selection: JobSelection { get }
}

extension JobCommand {
    func run() throws {
        let connection = try AgentConnection(options: self.options)
        for path in self.selection.paths {
            print(try connection.command("\(path)/\(Self.verb)").message)
        }
    }
}

/// `barge suspend`.
struct Suspend: JobCommand {
    static let configuration = CommandConfiguration(abstract: "Suspend jobs until `barge resume`.")
    static let verb = "suspend"
    @OptionGroup var options: GlobalOptions
    @OptionGroup var selection: JobSelection
}

/// `barge resume`.
struct Resume: JobCommand {
    static let configuration = CommandConfiguration(abstract: "Resume suspended jobs.")
    static let verb = "resume"
    @OptionGroup var options: GlobalOptions
    @OptionGroup var selection: JobSelection
}

/// `barge cancel`.
struct Cancel: JobCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cancel jobs: stop them and remove their partial files (finished files stay)."
    )
    static let verb = "cancel"
    @OptionGroup var options: GlobalOptions
    @OptionGroup var selection: JobSelection
}

/// `barge retry`.
struct Retry: JobCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make jobs due now: failed, cancelled, waiting for a retry or up to date."
    )
    static let verb = "retry"
    @OptionGroup var options: GlobalOptions
    @OptionGroup var selection: JobSelection
}

/// `barge reload`.
struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make the agent read the manifest directory again.")
    @OptionGroup var options: GlobalOptions

    func run() throws {
        print(try AgentConnection(options: self.options).command("/v1/reload").message)
    }
}
