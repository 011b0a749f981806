public import BargeCore
import BargeNetwork
import CBargeLinux
import Dispatch
import Foundation
import Glibc
import Logging
import NIOCore

/// The background agent: the supervisor, the drop-in watcher, the control socket and the signals, wired
/// together. `barge agent` runs it until SIGTERM or SIGINT.
public enum Agent {
    /// Runs until asked to stop; returns after a graceful stop (transfers checkpointed, state written).
    ///
    /// SIGHUP reloads the manifests; SIGTERM and SIGINT stop. Speaks systemd's notify protocol when
    /// `NOTIFY_SOCKET` is set.
    public static func run(config: AgentConfig, configPath: String?) async throws {
        CBargeLinux_tune_malloc()
        // An upload's settle check takes a read lease for an instant; a writer opening the file in that instant makes
        // the kernel signal a lease break (SIGIO), whose default action would end the agent.
        signal(SIGIO, SIG_IGN)
        _ = CBargeLinux_raise_descriptor_limit()  // files gathering for group commit stay open
        let notifier = SystemdNotifier()
        // The drop-in directory is not created: a missing one is a problem to report and wait out (a configuration
        // tool swapping it), never an empty directory that would prune every job.
        let supervisor = try Supervisor(config: config, configPath: configPath, notifier: notifier)
        // The network is known before the first plan: no job starts on an uplink its entry may not use.
        var monitor: NetworkMonitor?
        // Overrides that cannot be read stop the start: one may say "metered".
        let overrides = try await supervisor.storedUplinkOverrides()
        // NetworkManager's and ModemManager's verdicts, read before the first plan too. No system bus: none.
        var desktop: DesktopNetworkWatcher?
        do {
            desktop = try DesktopNetworkWatcher(stopped: { error in
                Log.error("NetworkManager and ModemManager: \(error) (their last verdicts stay in force)")
            })
        } catch {
            Log.debug("NetworkManager and ModemManager are not asked: \(error)")
        }
        do {
            let made = try NetworkMonitor(
                rules: config.networks,
                overrides: overrides,
                desktop: desktop?.facts ?? [:],
                changed: { supervisor.networkChanged(to: $0) },
                stopped: { error in
                    Log.error("the network monitor stopped (every transfer that needs the network waits): \(error)")
                }
            )
            await supervisor.monitorNetwork(made, snapshot: made.snapshot())
            monitor = made
        } catch {
            Log.error("the network is not monitored (every uplink counts as unmetered): \(error)")
        }
        try await supervisor.start()
        monitor?.start()
        if let monitor { desktop?.start { monitor.setDesktopFacts($0) } }
        let watcher = try ManifestWatcher(directory: config.manifestDirectory) {
            supervisor.manifestsMayHaveChanged()
        }
        // Without `admin-group`, the agent's own group administers it (systemd's Group=barge), unless that is root's.
        let adminGroup = config.adminGroup ?? (getegid() != 0 ? String(getegid()) : nil)
        let access = await offThePool { ControlAccess.resolve(group: adminGroup) }
        let server = ControlServer(path: config.controlSocket, supervisor: supervisor, access: access)
        let bound: ControlServer.Server
        var metricsBound: (MetricsListener, MetricsListener.Server)?
        do {
            bound = try await server.bind()
            if let address = config.metricsListen {
                let listener = MetricsListener(address: address, supervisor: supervisor)
                do {
                    metricsBound = (listener, try await listener.bind())
                } catch {
                    try? await bound.channel.close()
                    unlink(config.controlSocket)
                    throw MetricsListenError(address: address, reason: "\(error)")
                }
            }
        } catch {
            Log.error("\(error)")
            watcher.cancel()
            desktop?.stop()
            monitor?.stop()
            await supervisor.stop()
            throw error
        }
        let serving = Task { try await server.serve(bound) }
        let servingMetrics = metricsBound.map { listener, bound in Task { try await listener.serve(bound) } }

        let (signals, continuation) = AsyncStream<Int32>.makeStream()
        var sources: [any DispatchSourceSignal] = []
        for number in [SIGHUP, SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            sources.append(source)
        }
        notifier?.send("READY=1")
        Log.info("agent running: manifests in \(config.manifestDirectory), state in \(config.stateDirectory)")
        for await number in signals {
            if number == SIGHUP {
                Log.info("SIGHUP: reloading the manifests")
                await supervisor.reloadManifests()
                continue
            }
            Log.info("stopping")
            break
        }
        watcher.cancel()
        desktop?.stop()
        monitor?.stop()
        serving.cancel()
        _ = await serving.result
        servingMetrics?.cancel()
        _ = await servingMetrics?.result
        await supervisor.stop()
        for source in sources { source.cancel() }
        unlink(config.controlSocket)
    }
}
