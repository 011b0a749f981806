import ArgumentParser
import BargeCore
import BargeLoader
import BargeNetwork
import BargeStore
import BargeTransfer
import Dispatch
import Foundation

/// `barge net`: the uplinks, their verdicts and rates (`show`, the default), and verdicts set by hand (`set`).
struct Net: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the uplinks and their verdicts, or set an uplink's verdict by hand.",
        subcommands: [NetShow.self, NetSet.self],
        defaultSubcommand: NetShow.self
    )
}

/// `barge net [show]`: the uplinks this machine has now, as the agent's network monitor sees and classifies them.
struct NetShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show the uplinks: kind, cost (unmetered or metered), roaming, the source of each verdict, rates.",
        discussion: """
            Asks the running agent (its monitor, its overrides, and how fast Barge's own transfers go by each
            uplink). Without an agent, or with --watch or --to, reads the kernel's links, addresses and routes here
            through netlink and classifies each uplink with the overrides in the agent's store, the rules under
            networks in the config, NetworkManager and ModemManager where they run, then the kernel's facts. With
            --watch, prints them again on every change until interrupted.
            """
    )

    @OptionGroup var options: GlobalOptions

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "Keep watching: print the uplinks again each time they change (one JSON document per line).")
    var watch = false

    @Option(name: .customLong("to"), help: "Also show the interface traffic to this address leaves by (repeatable).")
    var addresses: [String] = []

    func run() async throws {
        for address in self.addresses where !NetworkMonitor.isNumericAddress(address) {
            throw ValidationError("'\(address)' is not an IPv4 or IPv6 address (a host name is not looked up here)")
        }
        let config: AgentConfig
        do {
            config = try ConfigLoader.load(path: self.options.config).config
        } catch {
            throw ValidationError("cannot read the config \(error)")
        }
        if !self.watch, self.addresses.isEmpty, let report = Self.askAgent(config) {
            self.write(report)
            return
        }
        let overrides = await Self.storedOverrides(config)
        // NetworkManager's and ModemManager's verdicts, as the agent takes them (none without a system bus).
        let desktop = try? DesktopNetworkWatcher()
        guard self.watch else {
            let monitor = try NetworkMonitor(
                rules: config.networks,
                overrides: overrides ?? [:],
                desktop: desktop?.facts ?? [:]
            )
            var report = monitor.snapshot().report
            report.egress = self.addresses.map { address in
                NetworkReport.EgressReport(to: address, via: monitor.egress(to: address)?.report)
            }
            report.overrides = Self.reports(overrides)
            report.fromAgent = false
            self.write(await report.measuringRates())
            return
        }
        let json = self.json
        let monitor = try NetworkMonitor(
            rules: config.networks,
            overrides: overrides ?? [:],
            desktop: desktop?.facts ?? [:]
        ) { snapshot in
            var report = snapshot.report
            report.overrides = Self.reports(overrides)
            report.fromAgent = false
            Self.write(report, json: json)
        }
        monitor.start()
        desktop?.start { monitor.setDesktopFacts($0) }
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let stop = DispatchSemaphore(value: 0)
        var sources: [any DispatchSourceSignal] = []
        for number in [SIGINT, SIGTERM] {
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { stop.signal() }
            source.resume()
            sources.append(source)
        }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                stop.wait()
                done.resume()
            }
        }
        desktop?.stop()
        monitor.stop()
    }

    private func write(_ report: NetworkReport) { Self.write(report, json: self.json) }

    private static func write(_ report: NetworkReport, json: Bool) {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let data = (try? encoder.encode(report)) ?? Data("{}".utf8)
            FileHandle.standardOutput.write(data + Data("\n".utf8))
        } else {
            var text = report.text
            if report.fromAgent == false { text += "(read here: the agent is not running, or not asked)\n" }
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }

    /// The running agent's report; nil when no agent answers (or it does not monitor the network).
    private static func askAgent(_ config: AgentConfig) -> NetworkReport? {
        guard let reply = try? ControlClient(socketPath: config.controlSocket).send("GET", "/v1/network"),
            reply.status == 200
        else { return nil }
        return try? JSONDecoder().decode(NetworkReport.self, from: reply.body)
    }

    /// The overrides the agent's store keeps; none without a store. One that cannot be read is said on standard
    /// error, and the verdicts are shown without overrides (the report's `overrides` is then absent).
    private static func storedOverrides(_ config: AgentConfig) async -> [String: UplinkOverride]? {
        var info = stat()
        if stat(config.stateDirectory + "/" + JobStore.fileName, &info) != 0, errno == ENOENT { return [:] }
        do {
            let store = try JobStore(directory: config.stateDirectory)
            return try await store.uplinkOverrides()
        } catch {
            let message = "barge: cannot read the overrides in \(config.stateDirectory): \(error); shown without them\n"
            FileHandle.standardError.write(Data(message.utf8))
            return nil
        }
    }

    private static func reports(_ overrides: [String: UplinkOverride]?) -> [NetworkReport.OverrideReport]? {
        overrides.map { overrides in
            overrides.sorted { $0.key < $1.key }.map { name, override in
                NetworkReport.OverrideReport(name: name, cost: override.cost?.rawValue, roaming: override.roaming)
            }
        }
    }
}

/// `barge net set IFACE --cost … --roaming …`: an uplink's verdict set by hand, kept in the agent's store across
/// restarts; it comes before every rule and heuristic.
struct NetSet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Set an uplink's cost or roaming by hand (before every rule); 'auto' gives it back to the rules.",
        discussion: """
            Sent to the running agent, which stores it and applies it at once. Without a running agent it is written
            to the agent's store, and applies when the agent starts. Needs an administrator of the agent.
            """
    )

    @OptionGroup var options: GlobalOptions

    @Argument(help: "The interface (as `barge net` names it, e.g. wwan0).")
    var interface: String

    @Option(help: "metered, unmetered or auto.")
    var cost: String?

    @Option(help: "yes, no or auto.")
    var roaming: String?

    func validate() throws {
        guard self.cost != nil || self.roaming != nil else { throw ValidationError("give --cost, --roaming or both") }
        guard UplinkOverride.isInterfaceName(self.interface) else {
            throw ValidationError(
                "'\(self.interface)' is not an interface name (1–15 bytes, no '/', ':', '%' or white space)"
            )
        }
        do {
            _ = try self.change.applied(to: UplinkOverride())
        } catch {
            throw ValidationError("--\(error.description)")
        }
    }

    /// The change asked for: an option not given keeps its half.
    var change: UplinkOverrideChange { UplinkOverrideChange(cost: self.cost, roaming: self.roaming) }

    func run() async throws {
        let config: AgentConfig
        do {
            config = try ConfigLoader.load(path: self.options.config).config
        } catch {
            throw ValidationError("cannot read the config \(error)")
        }
        let body = try JSONEncoder().encode(self.change)
        // The agent merges the change with the override it keeps, stores it and applies it.
        if let reply = try AgentConnection(options: self.options).commandIfRunning(
            "/v1/network/\(self.interface)",
            body: body
        ) {
            print(reply.message)
            return
        }
        // No agent runs: written to its store, applied when it starts.
        let path = config.stateDirectory + "/" + JobStore.fileName
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw Self.refusal(
                errno == ENOENT
                    ? "the agent is not running and has no store yet (\(path)); start it, then set the override"
                    : "cannot read \(path): \(String(cString: strerror(errno)))"
            )
        }
        // Written as the store's owner only: a store that root made would lock the agent's own user out.
        guard info.st_uid == geteuid() else {
            throw Self.refusal(
                "the agent is not running, and its store \(path) belongs to uid \(info.st_uid): run this as that user"
            )
        }
        let store = try JobStore(directory: config.stateDirectory)
        let current = try await store.uplinkOverrides()[self.interface] ?? UplinkOverride()
        let override = try self.change.applied(to: current)
        try await store.setUplinkOverride(override, for: self.interface)
        print(
            "\(self.interface): \(UplinkOverride.describe(override)) (stored in \(config.stateDirectory); the agent "
                + "is not running and applies it when it starts)"
        )
    }

    /// Says a refusal on standard error; the error to throw (exit status 1).
    private static func refusal(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("barge: \(message)\n".utf8))
        return ExitCode(1)
    }
}
