import ArgumentParser
import BargeCore
import BargeLoader
import BargeNetwork
import Dispatch
import Foundation

/// `barge net`: the uplinks this machine has now, as the network monitor sees and classifies them.
struct Net: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the uplinks: kind, cost (unmetered or metered), roaming, and the source of each verdict.",
        discussion: """
            Reads the kernel's links, addresses and routes through netlink and classifies each uplink with the
            config's 'networks' rules, then the kernel's facts. With --watch, prints them again on every change
            until interrupted.
            """
    )

    @OptionGroup var options: GlobalOptions

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "Keep watching: print the uplinks again each time they change (one JSON document per line).")
    var watch = false

    @Option(name: .customLong("to"), help: "Also show the interface traffic to this address leaves by (repeatable).")
    var addresses: [String] = []

    func run() throws {
        for address in self.addresses where !NetworkMonitor.isNumericAddress(address) {
            throw ValidationError("'\(address)' is not an IPv4 or IPv6 address (a host name is not looked up here)")
        }
        let config: AgentConfig
        do {
            config = try ConfigLoader.load(path: self.options.config).config
        } catch {
            throw ValidationError("cannot read the config \(error)")
        }
        let json = self.json
        let write: @Sendable (NetworkReport) -> Void = { report in
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                let data = (try? encoder.encode(report)) ?? Data("{}".utf8)
                FileHandle.standardOutput.write(data + Data("\n".utf8))
            } else {
                FileHandle.standardOutput.write(Data(report.text.utf8))
            }
        }
        guard self.watch else {
            let monitor = try NetworkMonitor(rules: config.networks)
            var report = monitor.snapshot().report
            report.egress = self.addresses.map { address in
                NetworkReport.EgressReport(to: address, via: monitor.egress(to: address)?.report)
            }
            write(report)
            return
        }
        let monitor = try NetworkMonitor(rules: config.networks) { write($0.report) }
        monitor.start()
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
        stop.wait()
        monitor.stop()
    }
}
